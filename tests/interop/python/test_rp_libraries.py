"""Python relying-party libraries against Socle, each with its defaults (issue 31, item 0).

- Authlib's `requests` client (OAuth2Session): `state` of 30 characters, no `nonce`,
  60 s of leeway on the access token's expiry, JSON userinfo expected;
- Authlib's Flask integration: `state` of 30 characters, `nonce` of 20, the ID token
  checked against the JWKS, userinfo fetched as JSON;
- idpyoidc's RPHandler (IdentityPython, OpenID Certified): discovery, code flow with
  PKCE, ID token and userinfo.

Socle runs as the real binary (`socle demo`, so the demonstration identity provider is
there) on a free port; the person's browser is a `requests.Session` that does not
follow redirects. Run by scripts/interop-test (SOCLE_TEST_BIN: the binary).
"""

import html
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from urllib.parse import parse_qs, urljoin, urlparse

import requests

import warnings

# The libraries' own notices (Authlib's jose module moving to joserfc; idpyoidc naming
# each content type it parses) are not the test's output.
warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
logging.getLogger("idpyoidc").setLevel(logging.ERROR)

BIN = os.environ["SOCLE_TEST_BIN"]
ADMIN = "interop-admin-token-0123456789abcdefghijkl"
RP_REDIRECT = "http://127.0.0.1:9/callback"
RP_LOGOUT = "http://127.0.0.1:9/logged-out"
SCOPE = "openid identite_pivot email"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Socle:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.url}/api/v2"
        self.dir = tempfile.mkdtemp(prefix="socle-pyinterop-")
        config = os.path.join(self.dir, "socle.toml")
        with open(config, "w") as f:
            f.write(f'[admin]\ntoken = "{ADMIN}"\n')
        self.log = open(os.path.join(self.dir, "socle.log"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "demo", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(self.dir, "data"), "--config", config],
            stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(400):
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("socle did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.seek(0)
        tail = self.log.read()[-4000:]
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return tail

    def register(self, **extra):
        body = {"name": "Service Python", "organisation": "13002526500013",
                "redirect_uris": [RP_REDIRECT], "post_logout_redirect_uris": [RP_LOGOUT],
                "scopes": ["openid", "identite_pivot", "email"], **extra}
        r = requests.post(f"{self.url}/api/admin/clients", json=body,
                          headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 201, r.text
        return r.json()


def field(page, name):
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def form_action(page, base):
    return urljoin(base, html.unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1)))


def hidden(page):
    return [(k, html.unescape(v)) for k, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)]


def person_logs_in(socle, authorize_url, login="jean"):
    """The person's browser, from the service's authorization URL to its callback
    (choice of the demonstration provider, its login, consent): the callback URL."""
    b = requests.Session()

    def go(method, url, **kw):
        r = b.request(method, url, allow_redirects=False, **kw)
        loc = r.headers.get("location")
        return r, (urljoin(url, loc) if loc else None)

    r, loc = go("GET", authorize_url)
    assert r.status_code == 303, (r.status_code, r.text)
    choice_url = loc
    r, _ = go("GET", choice_url)
    assert r.status_code == 200, r.text
    r, loc = go("POST", form_action(r.text, choice_url),
                data={"csrf": field(r.text, "csrf"), "provider": "demo"})
    assert r.status_code == 303, r.text
    r, _ = go("GET", loc)
    r, loc = go("POST", f"{socle.url}/demo/fi/authorize",
                data=hidden(r.text) + [("login", login), ("decision", "login")])
    assert loc and loc.startswith(f"{socle.url}/api/v2/oidc-callback"), (r.status_code, loc, r.text)
    r, consent_url = go("GET", loc)
    assert r.status_code == 303, r.text
    r, _ = go("GET", consent_url)
    assert r.status_code == 200, r.text
    r, loc = go("POST", form_action(r.text, consent_url),
                data={"csrf": field(r.text, "csrf"), "decision": "accept"})
    assert loc and loc.startswith(RP_REDIRECT), (r.status_code, loc)
    return loc


class RelyingPartyLibraries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.socle = Socle()
        cls.meta = requests.get(f"{cls.socle.issuer}/.well-known/openid-configuration").json()

    @classmethod
    def tearDownClass(cls):
        cls.socle.stop()

    def test_authlib_requests_client_with_its_defaults(self):
        from authlib.common.security import generate_token
        from authlib.integrations.requests_client import OAuth2Session
        from authlib.jose import JsonWebKey, jwt
        from authlib.oidc.core import CodeIDToken

        rp = self.socle.register()
        session = OAuth2Session(rp["client_id"], rp["client_secret"], scope=SCOPE,
                                redirect_uri=RP_REDIRECT, code_challenge_method="S256")
        verifier = generate_token(48)
        url, state = session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=verifier)
        self.assertEqual(len(state), 30, "Authlib's default state")
        self.assertNotIn("nonce=", url)
        callback = person_logs_in(self.socle, url)
        token = session.fetch_token(self.meta["token_endpoint"], authorization_response=callback,
                                    code_verifier=verifier)
        # Authlib's default leeway is 60 s: a token valid 60 s would be expired already.
        self.assertFalse(token.is_expired(), token)
        keys = JsonWebKey.import_key_set(requests.get(self.meta["jwks_uri"]).json())
        claims = jwt.decode(token["id_token"], keys, claims_cls=CodeIDToken,
                            claims_options={"iss": {"essential": True, "value": self.socle.issuer}},
                            claims_params={"client_id": rp["client_id"],
                                           "access_token": token["access_token"]})
        claims.validate(leeway=60)
        self.assertEqual(claims["acr"], "eidas2")
        self.assertNotIn("nonce", claims)
        info = session.get(self.meta["userinfo_endpoint"])
        self.assertEqual(info.headers["content-type"], "application/json")
        self.assertEqual(info.json()["family_name"], "Martin")
        self.assertEqual(info.json()["sub"], claims["sub"])

    def test_authlib_flask_integration_with_its_defaults(self):
        from authlib.integrations.flask_client import OAuth
        from flask import Flask

        rp = self.socle.register()
        app = Flask(__name__)
        app.secret_key = "interop-flask-secret"
        oauth = OAuth(app)
        oauth.register("socle", client_id=rp["client_id"], client_secret=rp["client_secret"],
                       server_metadata_url=f"{self.socle.issuer}/.well-known/openid-configuration",
                       client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"})
        seen = {}

        @app.route("/login")
        def login():
            return oauth.socle.authorize_redirect(RP_REDIRECT)

        @app.route("/callback")
        def callback():
            token = oauth.socle.authorize_access_token()
            seen["token"] = token
            seen["userinfo"] = dict(oauth.socle.userinfo())
            return "ok"

        with app.test_client() as browser:
            r = browser.get("/login")
            self.assertEqual(r.status_code, 302)
            authorize = r.headers["location"]
            q = parse_qs(urlparse(authorize).query)
            self.assertEqual(len(q["state"][0]), 30, "Authlib's default state")
            self.assertEqual(len(q["nonce"][0]), 20, "Authlib's default nonce")
            back = person_logs_in(self.socle, authorize, login="marie")
            r = browser.get("/callback?" + urlparse(back).query)
            self.assertEqual(r.status_code, 200, r.data)
        # The ID token was verified by Authlib (signature, iss, aud, nonce, at_hash).
        self.assertEqual(seen["token"]["userinfo"]["acr"], "eidas1")
        self.assertEqual(seen["userinfo"]["family_name"], "Dupont")
        self.assertEqual(seen["userinfo"]["sub"], seen["token"]["userinfo"]["sub"])

    def test_idpyoidc_rp_handler_with_its_defaults(self):
        from idpyoidc.client.rp_handler import RPHandler

        rp = self.socle.register()
        # idpyoidc writes the RP's own key pair under the working directory
        # (private/, static/): a scratch one, never the tree.
        here = os.getcwd()
        scratch = tempfile.mkdtemp(prefix="idpyoidc-")
        self.addCleanup(shutil.rmtree, scratch, ignore_errors=True)
        self.addCleanup(os.chdir, here)
        os.chdir(scratch)
        handler = RPHandler(
            base_url="http://127.0.0.1:9",
            client_configs={"socle": {
                "client_type": "oidc",
                "issuer": self.socle.issuer,
                "client_id": rp["client_id"],
                "client_secret": rp["client_secret"],
                "redirect_uris": [RP_REDIRECT],
                "preference": {
                    "response_types_supported": ["code"],
                    "scopes_supported": SCOPE.split(),
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                },
                "add_ons": {"pkce": {
                    "function": "idpyoidc.client.oauth2.add_on.pkce.add_support",
                    "kwargs": {"code_challenge_length": 64, "code_challenge_method": "S256"},
                }},
            }},
            verify_ssl=False,
        )
        begun = handler.begin("socle")
        url = begun["url"] if isinstance(begun, dict) else begun
        callback = person_logs_in(self.socle, url)
        response = {k: v[0] for k, v in parse_qs(urlparse(callback).query).items()}
        result = handler.finalize(self.socle.issuer, response)
        self.assertNotIn("error", result, result)
        self.assertEqual(result["userinfo"]["family_name"], "Martin")
        self.assertEqual(result["id_token"]["acr"], "eidas2")


if __name__ == "__main__":
    unittest.main(verbosity=2)
