// Certified OpenID Connect libraries against Socle, over real HTTP:
//  - npm `openid-client` (OpenID Certified relying party library) is a service provider
//    (FS) that logs in through Socle: code flow with PKCE, ID token and signed userinfo
//    checks, RP-initiated logout;
//  - npm `oidc-provider` (OpenID Certified provider) is an upstream identity provider
//    (FI) that Socle's broker uses like any external provider.
// Socle runs as the real binary (`socle demo --config`, so the demonstration FI is there
// too) on a free port; oidc-provider runs in this process on port 0.
//
// Run by scripts/interop-test (SOCLE_TEST_BIN: the binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import * as client from 'openid-client';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const BIN = process.env.SOCLE_TEST_BIN;
assert.ok(BIN, 'SOCLE_TEST_BIN must name the socle binary');
const ADMIN = 'interop-admin-token-0123456789abcdefghijkl';
const FI_SECRET = 'interop-fi-secret-0123456789abcdefghijkl';
const RP_REDIRECT = 'http://127.0.0.1:9/callback';
const RP_LOGOUT = 'http://127.0.0.1:9/logged-out';

let socle; let socleUrl; let dir; let fiServer; let fiIssuer;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// ----- the upstream identity provider: oidc-provider ------------------------------------
const PEOPLE = {
  yann: { given_name: 'Yann Erwan', family_name: 'Le Goff', birthdate: '1985-11-01', gender: 'male',
    birthplace: '35238', birthcountry: '99100', email: 'yann.legoff@example.fr' },
};

async function startFi(socleBase) {
  const port = await freePort();
  fiIssuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(fiIssuer, {
    clients: [{
      client_id: 'socle', client_secret: FI_SECRET,
      redirect_uris: [`${socleBase}/api/v2/oidc-callback/oidc-provider`],
      post_logout_redirect_uris: [`${socleBase}/api/v2/client/logout-callback`],
      id_token_signed_response_alg: 'RS256',
    }],
    claims: {
      openid: ['sub'],
      identite_pivot: ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry'],
      email: ['email'],
    },
    acrValues: ['eidas1', 'eidas2'],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return { sub: id, ...PEOPLE[id] }; } };
    },
  });
  // The person "logs in" as yann at eidas2 and consents to what Socle asked.
  const interactions = async (req, res) => {
    const details = await provider.interactionDetails(req, res);
    const grant = new provider.Grant({ accountId: 'yann', clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: 'yann', acr: 'eidas2', amr: ['pwd', 'otp'] },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  };
  const callback = provider.callback();
  fiServer = http.createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interactions(req, res).catch((e) => { res.statusCode = 500; res.end(String(e)); });
    } else {
      callback(req, res);
    }
  });
  await new Promise((resolve) => fiServer.listen(port, '127.0.0.1', resolve));
}

// ----- Socle ---------------------------------------------------------------------------
before(async () => {
  const port = await freePort();
  socleUrl = `http://127.0.0.1:${port}`;
  await startFi(socleUrl);
  dir = mkdtempSync(join(tmpdir(), 'socle-interop-'));
  writeFileSync(join(dir, 'socle.toml'), `
[admin]
token = "${ADMIN}"

[[identity.providers]]
id = "oidc-provider"
label = "oidc-provider (fournisseur certifié)"
issuer = "${fiIssuer}"
client_id = "socle"
client_secret = "${FI_SECRET}"
eidas_levels = [1, 2]
scope = "openid identite_pivot email"
`);
  socle = spawn(BIN, ['demo', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'),
    '--config', join(dir, 'socle.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  socle.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${socleUrl}/readyz`)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`socle did not start:\n${log}`);
});

after(async () => {
  socle?.kill('SIGTERM');
  await new Promise((r) => (socle ? socle.on('exit', r) : r()));
  fiServer?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ----- a cookie-keeping browser that does not follow redirects ---------------------------
class Browser {
  constructor() { this.jars = new Map(); }
  jar(url) { const o = new URL(url).origin; if (!this.jars.has(o)) this.jars.set(o, new Map()); return this.jars.get(o); }
  async request(url, init = {}) {
    const jar = this.jar(url);
    const headers = { accept: 'text/html', ...(init.headers || {}) };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      if (attrs.some((a) => /max-age=0/i.test(a.trim()))) jar.delete(name); else jar.set(name, pair.slice(i + 1));
    }
    const location = r.headers.get('location');
    return { url, status: r.status, location: location && new URL(location, url).href, body: await r.text() };
  }
  get(url) { return this.request(url); }
  post(url, form) {
    return this.request(url, { method: 'POST', body: new URLSearchParams(form),
      headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  }
}

const decode = (s) => s.replace(/&#(x?)([0-9a-f]+);/gi, (_, x, n) => String.fromCodePoint(parseInt(n, x ? 16 : 10)))
  .replace(/&amp;/g, '&').replace(/&quot;/g, '"');
const field = (html, name) => decode(html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1]);
const formAction = (html, base) => new URL(decode(html.match(/<form method="post" action="([^"]+)"/)[1]), base).href;
const hidden = (html) => [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)]
  .map(([, k, v]) => [k, decode(v)]);

// A service written for FranceConnect (its profile: signed userinfo, 32-character state
// and nonce, state at logout) unless `extra` says otherwise.
async function registerRp(extra = {}) {
  const r = await fetch(`${socleUrl}/api/admin/clients`, {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Service openid-client', organisation: '13002526500013',
      profile: 'franceconnect',
      redirect_uris: [RP_REDIRECT], post_logout_redirect_uris: [RP_LOGOUT],
      scopes: ['openid', 'identite_pivot', 'email'], ...extra }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return r.json();
}

async function rpConfig(registered) {
  return client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {
    id_token_signed_response_alg: 'ES256',
    userinfo_signed_response_alg: 'ES256',
  }, client.ClientSecretBasic(registered.client_secret), { execute: [client.allowInsecureRequests] });
}

// Authorize at Socle, pick the provider, pass its login, consent: the RP's callback URL.
async function loginThrough(browser, config, provider, acr = 'eidas1', defaults = false) {
  const verifier = client.randomPKCECodeVerifier();
  // FranceConnect asks for 32 characters or more; the library's own values otherwise.
  const state = defaults ? client.randomState() : client.randomState() + client.randomState();
  const nonce = defaults ? client.randomNonce() : client.randomNonce() + client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: RP_REDIRECT, scope: 'openid identite_pivot email', state, nonce, acr_values: acr,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  let r = await browser.get(url.href);
  assert.equal(r.status, 303, r.body);
  const choice = await browser.get(r.location);
  assert.equal(choice.status, 200);
  r = await browser.post(formAction(choice.body, r.location), { csrf: field(choice.body, 'csrf'), provider });
  assert.equal(r.status, 303, r.body);
  let fi = await browser.get(r.location);
  if (provider === 'demo') {
    fi = await browser.post(`${socleUrl}/demo/fi/authorize`, [...hidden(fi.body), ['login', 'jean'], ['decision', 'login']]);
  } else {
    // oidc-provider: authorization → interaction (finished at once) → authorization resume.
    while (fi.location && !fi.location.startsWith(socleUrl)) fi = await browser.get(fi.location);
  }
  assert.ok(fi.location?.startsWith(`${socleUrl}/api/v2/oidc-callback`), `FI answer: ${fi.status} ${fi.location} ${fi.body}`);
  r = await browser.get(fi.location);
  assert.equal(r.status, 303, r.body);
  const consent = await browser.get(r.location);
  assert.equal(consent.status, 200, consent.body);
  r = await browser.post(formAction(consent.body, r.location), { csrf: field(consent.body, 'csrf'), decision: 'accept' });
  assert.ok(r.location.startsWith(RP_REDIRECT), r.location);
  return { callback: new URL(r.location), verifier, state, nonce };
}

async function logout(browser, config, idToken) {
  const state = client.randomState();
  const end = client.buildEndSessionUrl(config, { id_token_hint: idToken, post_logout_redirect_uri: RP_LOGOUT, state });
  let r = await browser.get(end.href);
  assert.equal(r.status, 303, r.body);
  // Through the identity provider's logout, then back.
  for (let hops = 0; hops < 8 && !r.location?.startsWith(RP_LOGOUT); hops++) {
    if (r.status === 200 && r.body.includes('op.logoutForm')) {
      const action = decode(r.body.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)[1]);
      r = await browser.post(new URL(action, r.url).href, { xsrf: field(r.body, 'xsrf'), logout: 'yes' });
    } else {
      r = await browser.get(r.location);
    }
  }
  assert.equal(r.location, `${RP_LOGOUT}?state=${state}`);
}

test('openid-client logs in through Socle and the demo identity provider', async () => {
  const registered = await registerRp();
  const config = await rpConfig(registered);
  assert.equal(config.serverMetadata().issuer, `${socleUrl}/api/v2`);
  const browser = new Browser();
  const { callback, verifier, state, nonce } = await loginThrough(browser, config, 'demo');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.equal(claims.acr, 'eidas2');
  assert.equal(claims.aud, registered.client_id);
  assert.match(claims.sub, /^[0-9a-f]{64}v1$/);
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.family_name, 'Martin');
  assert.equal(info.birthplace, '69123');
  assert.equal(info.email, 'jean.martin@example.fr');
  await logout(browser, config, tokens.id_token);

  // A replayed code is refused by Socle and reported by the library.
  await assert.rejects(client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
  }), (e) => e.error === 'invalid_grant');
});

test('openid-client with its defaults and a standard client: JSON userinfo, logout without state', async () => {
  const registered = await registerRp({ profile: 'standard' });
  const config = await client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {},
    client.ClientSecretBasic(registered.client_secret), { execute: [client.allowInsecureRequests] });
  const browser = new Browser();
  const { callback, verifier, state, nonce } = await loginThrough(browser, config, 'demo', 'eidas1', true);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  assert.equal(tokens.expires_in, 300);
  const info = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub);
  assert.equal(info.family_name, 'Martin');
  const end = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: RP_LOGOUT });
  let r = await browser.get(end.href);
  for (let hops = 0; hops < 4 && !r.location?.startsWith(RP_LOGOUT); hops++) r = await browser.get(r.location);
  assert.equal(r.location, RP_LOGOUT);
});

test('openid-client: two services, one authentication (the second with prompt=none)', async () => {
  const first = await registerRp({ profile: 'standard' });
  const second = await registerRp({ profile: 'standard', consent_exempt: true });
  const discover = (r) => client.discovery(new URL(`${socleUrl}/api/v2`), r.client_id, {},
    client.ClientSecretBasic(r.client_secret), { execute: [client.allowInsecureRequests] });
  const [c1, c2] = [await discover(first), await discover(second)];
  const browser = new Browser();
  const l1 = await loginThrough(browser, c1, 'demo', 'eidas1', true);
  const t1 = await client.authorizationCodeGrant(c1, l1.callback, {
    pkceCodeVerifier: l1.verifier, expectedState: l1.state, expectedNonce: l1.nonce, idTokenExpected: true,
  });
  // The second service, in the same browser, without any page.
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(c2, {
    redirect_uri: RP_REDIRECT, scope: 'openid identite_pivot', state, nonce, prompt: 'none',
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const r = await browser.get(url.href);
  assert.equal(r.status, 303, r.body);
  assert.ok(r.location.startsWith(RP_REDIRECT), r.location);
  const t2 = await client.authorizationCodeGrant(c2, new URL(r.location), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const [id1, id2] = [t1.claims(), t2.claims()];
  assert.equal(id2.sid, id1.sid, 'one session');
  assert.equal(id2.auth_time, id1.auth_time, 'one authentication');
  assert.notEqual(id2.sub, id1.sub, 'a pairwise subject per service');
  // A browser without a session: login_required, reported by the library.
  const fresh = new Browser();
  const other = await fresh.get(url.href);
  await assert.rejects(client.authorizationCodeGrant(c2, new URL(other.location), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
  }), (e) => e.error === 'login_required');
});

test('back-channel logout: the logout_token verified by the jose library at the service', async () => {
  // The service's back-channel endpoint: refuses the first POST, accepts the next.
  const received = [];
  const bc = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      received.push(new URLSearchParams(body).get('logout_token'));
      res.statusCode = received.length === 1 ? 503 : 200;
      res.end();
    });
  });
  await new Promise((r) => bc.listen(0, '127.0.0.1', r));
  const bcUrl = `http://127.0.0.1:${bc.address().port}/backchannel-logout`;
  try {
    const registered = await registerRp({ profile: 'standard', backchannel_logout_uri: bcUrl,
      backchannel_logout_session_required: true });
    const config = await client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {},
      client.ClientSecretBasic(registered.client_secret), { execute: [client.allowInsecureRequests] });
    assert.equal(config.serverMetadata().backchannel_logout_supported, true);
    const browser = new Browser();
    const l = await loginThrough(browser, config, 'demo', 'eidas1', true);
    const tokens = await client.authorizationCodeGrant(config, l.callback, {
      pkceCodeVerifier: l.verifier, expectedState: l.state, expectedNonce: l.nonce, idTokenExpected: true,
    });
    const end = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: RP_LOGOUT });
    await browser.get(end.href);
    for (let i = 0; i < 100 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(received.length, 2, 'refused once, then delivered');
    const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
    const claims = [];
    for (const token of received) {
      const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
        issuer: `${socleUrl}/api/v2`, audience: registered.client_id, typ: 'logout+jwt', maxTokenAge: '2m',
      });
      assert.equal(protectedHeader.typ, 'logout+jwt');
      claims.push(payload);
    }
    const id = tokens.claims();
    for (const c of claims) {
      assert.deepEqual(c.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
      assert.equal(c.sid, id.sid);
      assert.equal(c.sub, id.sub);
      assert.equal(c.nonce, undefined);
    }
    assert.equal(claims[0].jti, claims[1].jti, 'the same token id on retry');
  } finally {
    bc.close();
  }
});

test('openid-client with keys by URL (jwks_uri) for private_key_jwt and encryption, rotated mid-test', async () => {
  const pair = async (kid, use) => {
    const params = use === 'sig' ? { name: 'ECDSA', namedCurve: 'P-256' }
      : { name: 'RSA-OAEP', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
    const usages = use === 'sig' ? ['sign', 'verify'] : ['decrypt', 'encrypt'];
    const { privateKey, publicKey } = await crypto.subtle.generateKey(params, true, usages);
    const jwk = { ...(await crypto.subtle.exportKey('jwk', publicKey)), kid, use };
    delete jwk.key_ops; delete jwk.ext; delete jwk.alg;
    return { privateKey, jwk, kid };
  };
  let served = [await pair('sig-1', 'sig'), await pair('enc-1', 'enc')];
  let fetches = 0;
  const keys = http.createServer((req, res) => {
    fetches += 1;
    res.setHeader('content-type', 'application/json');
    res.setHeader('cache-control', 'max-age=300');
    res.end(JSON.stringify({ keys: served.map((k) => k.jwk) }));
  });
  await new Promise((r) => keys.listen(0, '127.0.0.1', r));
  try {
    const registered = await registerRp({ profile: 'standard', token_endpoint_auth_method: 'private_key_jwt',
      jwks_uri: `http://127.0.0.1:${keys.address().port}/jwks`,
      id_token_encrypted_response_alg: 'RSA-OAEP-256', id_token_encrypted_response_enc: 'A256GCM' });
    const loginWith = async ([sig, enc]) => {
      const config = await client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {
        id_token_encrypted_response_alg: 'RSA-OAEP-256', id_token_encrypted_response_enc: 'A256GCM',
      }, client.PrivateKeyJwt({ key: sig.privateKey, kid: sig.kid }), { execute: [client.allowInsecureRequests] });
      client.enableDecryptingResponses(config, ['A256GCM'], { key: enc.privateKey, alg: 'RSA-OAEP-256', kid: enc.kid });
      const l = await loginThrough(new Browser(), config, 'demo', 'eidas1', true);
      const tokens = await client.authorizationCodeGrant(config, l.callback, {
        pkceCodeVerifier: l.verifier, expectedState: l.state, expectedNonce: l.nonce, idTokenExpected: true,
      });
      assert.equal(tokens.id_token.split('.').length, 5, 'an encrypted ID token');
      return tokens.claims();
    };
    assert.equal((await loginWith(served)).acr, 'eidas2');
    assert.equal(fetches, 1);
    // The service rotates both keys: the new signing key id makes Socle fetch again.
    served = [await pair('sig-2', 'sig'), await pair('enc-2', 'enc')];
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await loginWith(served)).acr, 'eidas2');
    assert.equal(fetches, 2);
  } finally {
    keys.close();
  }
});

test('openid-client logs in through Socle to oidc-provider as the upstream identity provider', async () => {
  const registered = await registerRp();
  const config = await rpConfig(registered);
  const browser = new Browser();
  const { callback, verifier, state, nonce } = await loginThrough(browser, config, 'oidc-provider', 'eidas2');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.equal(claims.acr, 'eidas2', 'the level oidc-provider vouched for');
  assert.notEqual(claims.sub, 'yann', 'never the upstream subject');
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.given_name, 'Yann Erwan');
  assert.equal(info.family_name, 'Le Goff');
  assert.equal(info.birthplace, '35238');
  await logout(browser, config, tokens.id_token);
});

test('openid-client with private_key_jwt and a public PKCE-only client', async () => {
  const { privateKey, publicKey } = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const jwk = { ...(await crypto.subtle.exportKey('jwk', publicKey)), kid: 'rp-1', use: 'sig', alg: 'ES256' };
  const registered = await registerRp({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } });
  const config = await client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {
    id_token_signed_response_alg: 'ES256', userinfo_signed_response_alg: 'ES256',
  }, client.PrivateKeyJwt({ key: privateKey, kid: 'rp-1' }), { execute: [client.allowInsecureRequests] });
  const { callback, verifier, state, nonce } = await loginThrough(new Browser(), config, 'demo');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
  });
  const info = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub);
  assert.equal(info.family_name, 'Martin');

  const pub = await registerRp({ token_endpoint_auth_method: 'none' });
  const pconfig = await client.discovery(new URL(`${socleUrl}/api/v2`), pub.client_id, {
    id_token_signed_response_alg: 'ES256', userinfo_signed_response_alg: 'ES256',
  }, client.None(), { execute: [client.allowInsecureRequests] });
  const l = await loginThrough(new Browser(), pconfig, 'demo');
  const t = await client.authorizationCodeGrant(pconfig, l.callback, {
    pkceCodeVerifier: l.verifier, expectedState: l.state, expectedNonce: l.nonce,
  });
  assert.equal(t.claims().acr, 'eidas2');
});

// Encrypted ID tokens and userinfo (nested JWT: JWS in JWE, A256GCM), decrypted by
// openid-client (an implementation independent of the one Socle encrypts with).
for (const alg of ['RSA-OAEP-256', 'RSA-OAEP', 'ECDH-ES']) {
  test(`openid-client decrypts ID tokens and userinfo encrypted with ${alg} and A256GCM`, async () => {
    const params = alg === 'ECDH-ES'
      ? { name: 'ECDH', namedCurve: 'P-256' }
      : { name: 'RSA-OAEP', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]),
          hash: alg === 'RSA-OAEP' ? 'SHA-1' : 'SHA-256' };
    const usages = alg === 'ECDH-ES' ? ['deriveBits'] : ['decrypt', 'encrypt'];
    const { privateKey, publicKey } = await crypto.subtle.generateKey(params, true, usages);
    const jwk = { ...(await crypto.subtle.exportKey('jwk', publicKey)), kid: 'enc-1', use: 'enc' };
    delete jwk.key_ops; delete jwk.ext; delete jwk.alg;
    const registered = await registerRp({
      jwks: { keys: [jwk] },
      id_token_encrypted_response_alg: alg, id_token_encrypted_response_enc: 'A256GCM',
      userinfo_encrypted_response_alg: alg, userinfo_encrypted_response_enc: 'A256GCM',
    });
    const config = await client.discovery(new URL(`${socleUrl}/api/v2`), registered.client_id, {
      id_token_signed_response_alg: 'ES256', userinfo_signed_response_alg: 'ES256',
      id_token_encrypted_response_alg: alg, id_token_encrypted_response_enc: 'A256GCM',
      userinfo_encrypted_response_alg: alg, userinfo_encrypted_response_enc: 'A256GCM',
    }, client.ClientSecretBasic(registered.client_secret), { execute: [client.allowInsecureRequests] });
    client.enableDecryptingResponses(config, ['A256GCM'], { key: privateKey, alg, kid: 'enc-1' });
    const { callback, verifier, state, nonce } = await loginThrough(new Browser(), config, 'demo');
    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    });
    assert.equal(tokens.id_token.split('.').length, 5, 'the ID token is a JWE');
    const claims = tokens.claims();
    assert.equal(claims.acr, 'eidas2');
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.family_name, 'Martin');
  });
}

test('the discovery document satisfies openid-client and names FranceConnect v2 paths', async () => {
  const doc = await (await fetch(`${socleUrl}/.well-known/openid-configuration`)).json();
  assert.equal(doc.authorization_endpoint, `${socleUrl}/api/v2/authorize`);
  assert.equal(doc.token_endpoint, `${socleUrl}/api/v2/token`);
  assert.equal(doc.end_session_endpoint, `${socleUrl}/api/v2/session/end`);
  assert.deepEqual(doc.acr_values_supported, ['eidas1', 'eidas2', 'eidas3']);

});
