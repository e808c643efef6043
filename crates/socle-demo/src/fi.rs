//! The demonstration identity provider of `socle demo`: a small, standard OpenID
//! Connect provider (code flow, PKCE, ES256 ID tokens, JSON userinfo, logout) with a
//! handful of fictitious people at different eIDAS levels. Socle's broker reaches it
//! over HTTP exactly as it reaches an external provider. Its state is in memory: it is
//! a demonstration, restarted with the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Value, json};

use socle_identity::error::Result;
use socle_identity::{Eidas, Identity, IdentityError, OidcError};

/// A fictitious person.
#[derive(Debug, Clone)]
pub struct Person {
    pub login: &'static str,
    pub description: &'static str,
    pub level: Eidas,
    /// Claims as the provider sends them (not validated: one person is deliberately
    /// invalid, to show the refusal).
    pub claims: Value,
}

/// The demonstration people.
pub fn people() -> Vec<Person> {
    vec![
        Person {
            login: "marie",
            description: "Marie Claire Dupont, née en 1980 à Paris 7e — niveau faible (eidas1)",
            level: Eidas(1),
            claims: json!({"given_name": "Marie Claire", "family_name": "Dupont",
                "birthdate": "1980-06-14", "gender": "female", "birthplace": "75107",
                "birthcountry": "99100", "email": "marie.dupont@example.fr"}),
        },
        Person {
            login: "jean",
            description: "Jean Martin, né en 1972 à Lyon (date présumée) — niveau substantiel (eidas2)",
            level: Eidas(2),
            claims: json!({"given_name": "Jean", "family_name": "Martin",
                "birthdate": "1972-01-01", "gender": "male", "birthplace": "69123",
                "birthcountry": "99100", "email": "jean.martin@example.fr",
                "preferred_username": "Martin-Roux"}),
        },
        Person {
            login: "fatou",
            description: "Fatou Diallo, née en 1991 au Sénégal — niveau élevé (eidas3)",
            level: Eidas(3),
            claims: json!({"given_name": "Fatou", "family_name": "Diallo",
                "birthdate": "1991-09-01", "gender": "female", "birthplace": "",
                "birthcountry": "99341", "email": "fatou.diallo@example.fr"}),
        },
        Person {
            login: "lucas",
            description: "Lucas Bernard, né en 1995 à Ajaccio — niveau substantiel (eidas2)",
            level: Eidas(2),
            claims: json!({"given_name": "Lucas Antoine", "family_name": "Bernard",
                "birthdate": "1995-03-27", "gender": "male", "birthplace": "2A004",
                "birthcountry": "99100"}),
        },
        Person {
            login: "erreur",
            description: "Identité mal formée (date de naissance impossible) — pour voir le refus",
            level: Eidas(1),
            claims: json!({"given_name": "Camille", "family_name": "Essai",
                "birthdate": "1990-02-30", "gender": "female", "birthplace": "33063",
                "birthcountry": "99100"}),
        },
    ]
}

struct Grant {
    person: usize,
    nonce: Option<String>,
    challenge: Option<String>,
    redirect_uri: String,
    expires: i64,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, (usize, i64)>,
    /// When expired codes and tokens were last swept (at most once a second: a sweep
    /// walks every live token).
    swept_at: i64,
}

/// A validated authorization request to the demo provider.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    pub redirect_uri: String,
    pub state: String,
    pub nonce: Option<String>,
    pub challenge: Option<String>,
    pub acr: Eidas,
}

/// The demonstration identity provider.
#[derive(Clone)]
pub struct DemoFi {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// The broker's callback, the only redirect URI this provider accepts.
    pub redirect_uri: String,
    /// Where the provider's logout returns (Socle's logout callback).
    pub post_logout_redirect_uri: String,
    key: Arc<Jwk>,
    signer: Arc<socle_identity::es256::Es256Signer>,
    people: Arc<Vec<Person>>,
    state: Arc<Mutex<State>>,
}

impl DemoFi {
    pub fn new(public_url: &str) -> Result<DemoFi> {
        use josekit::jwk::KeyPair;
        let public_url = public_url.trim_end_matches('/');
        let mut key = ES256.generate_key_pair()?.to_jwk_key_pair();
        key.set_key_id(socle_identity::random_token(8));
        key.set_algorithm("ES256");
        key.set_key_use("sig");
        let signer = Arc::new(socle_identity::es256::Es256Signer::from_jwk(&key)?);
        Ok(DemoFi {
            signer,
            issuer: format!("{public_url}/demo/fi"),
            client_id: "socle-demo".into(),
            client_secret: socle_identity::random_token(32),
            redirect_uri: format!("{public_url}/api/v2/oidc-callback/demo"),
            post_logout_redirect_uri: format!("{public_url}/api/v2/client/logout-callback"),
            key: Arc::new(key),
            people: Arc::new(people()),
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    pub fn people(&self) -> &[Person] {
        &self.people
    }

    pub fn discovery(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "jwks_uri": format!("{i}/jwks"),
            "end_session_endpoint": format!("{i}/session/end"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "acr_values_supported": ["eidas1", "eidas2", "eidas3"],
            "scopes_supported": ["openid", "given_name", "family_name", "birthdate", "gender",
                "birthplace", "birthcountry", "email", "preferred_username"],
        })
    }

    pub fn jwks(&self) -> Value {
        let mut public = self.key.to_public_key().unwrap_or_else(|_| Jwk::new("EC"));
        public.set_key_id(self.key.key_id().unwrap_or_default());
        public.set_algorithm("ES256");
        public.set_key_use("sig");
        json!({ "keys": [Value::Object(public.as_ref().clone())] })
    }

    /// Checks an authorization request (the broker's).
    pub fn authorize(&self, q: &BTreeMap<String, String>) -> Result<DemoRequest> {
        let bad = |d: &str| IdentityError::Page(d.to_string());
        if q.get("client_id") != Some(&self.client_id) {
            return Err(bad("client_id inconnu du fournisseur de démonstration"));
        }
        if q.get("redirect_uri") != Some(&self.redirect_uri) {
            return Err(bad(
                "redirect_uri non enregistrée auprès du fournisseur de démonstration",
            ));
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err(bad("response_type doit valoir code"));
        }
        let Some(state) = q.get("state") else {
            return Err(bad("state manquant"));
        };
        let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
            (Some(c), Some(m)) if m == "S256" => Some(c.clone()),
            (None, None) => None,
            _ => return Err(bad("PKCE : seule la méthode S256 est acceptée")),
        };
        let acr = q
            .get("acr_values")
            .and_then(|a| a.split(' ').filter_map(Eidas::parse).min())
            .unwrap_or(Eidas::LOW);
        Ok(DemoRequest {
            redirect_uri: self.redirect_uri.clone(),
            state: state.clone(),
            nonce: q.get("nonce").cloned(),
            challenge,
            acr,
        })
    }

    /// The person `login` authenticated: the redirect back to the relying party.
    pub fn login(&self, req: &DemoRequest, login: &str) -> Result<String> {
        let Some(person) = self.people.iter().position(|p| p.login == login) else {
            return Err(IdentityError::Page("personne inconnue".into()));
        };
        let code = socle_identity::random_token(32);
        if let Ok(mut s) = self.state.lock() {
            let now = socle_core::clock::now();
            if s.swept_at != now {
                s.swept_at = now;
                s.codes.retain(|_, g| g.expires > now);
                s.tokens.retain(|_, t| t.1 > now);
            }
            s.codes.insert(
                code.clone(),
                Grant {
                    person,
                    nonce: req.nonce.clone(),
                    challenge: req.challenge.clone(),
                    redirect_uri: req.redirect_uri.clone(),
                    expires: now + 60,
                },
            );
        }
        let mut u = url::Url::parse(&req.redirect_uri)
            .map_err(|_| IdentityError::Page("redirect_uri".into()))?;
        u.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &req.state)
            .append_pair("iss", &self.issuer);
        Ok(u.to_string())
    }

    /// Where a refusal sends the person back.
    pub fn refuse(&self, req: &DemoRequest) -> String {
        let mut u = match url::Url::parse(&req.redirect_uri) {
            Ok(u) => u,
            Err(_) => return req.redirect_uri.clone(),
        };
        u.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &req.state)
            .append_pair("iss", &self.issuer);
        u.to_string()
    }

    /// The token endpoint.
    pub fn token(
        &self,
        form: &BTreeMap<String, String>,
        basic: Option<(String, String)>,
    ) -> Result<Value> {
        let (id, secret) = match basic {
            Some(b) => b,
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        if id != self.client_id || secret != self.client_secret {
            return Err(IdentityError::oidc(
                OidcError::InvalidClient,
                "bad client credentials",
            ));
        }
        let grant_err = |d: &str| IdentityError::oidc(OidcError::InvalidGrant, d);
        let code = form.get("code").cloned().unwrap_or_default();
        let grant = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.codes.remove(&code))
            .ok_or_else(|| grant_err("unknown or used code"))?;
        let now = socle_core::clock::now();
        if grant.expires <= now {
            return Err(grant_err("expired code"));
        }
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Err(grant_err("redirect_uri mismatch"));
        }
        if let Some(c) = &grant.challenge {
            let ok = form
                .get("code_verifier")
                .is_some_and(|v| socle_identity::sha256_b64url(v.as_bytes()) == *c);
            if !ok {
                return Err(grant_err("PKCE verification failed"));
            }
        }
        let person = &self.people[grant.person];
        let access = socle_identity::random_token(32);
        if let Ok(mut s) = self.state.lock() {
            s.tokens.insert(access.clone(), (grant.person, now + 60));
        }
        let mut p = JwtPayload::new();
        p.set_issuer(&self.issuer);
        p.set_subject(format!("demo-{}", person.login));
        p.set_audience(vec![self.client_id.clone()]);
        p.set_claim("iat", Some(json!(now)))?;
        p.set_claim("exp", Some(json!(now + 120)))?;
        if let Some(n) = &grant.nonce {
            p.set_claim("nonce", Some(json!(n)))?;
        }
        p.set_claim("acr", Some(json!(person.level.acr())))?;
        p.set_claim("amr", Some(json!(["pwd"])))?;
        p.set_claim("auth_time", Some(json!(now)))?;
        let mut header = JwsHeader::new();
        header.set_key_id(self.key.key_id().unwrap_or_default());
        header.set_token_type("JWT");
        let id_token = josekit::jwt::encode_with_signer(&p, &header, self.signer.as_ref())?;
        Ok(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 60, "id_token": id_token}),
        )
    }

    pub fn userinfo(&self, access_token: &str) -> Result<Value> {
        let person = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.tokens.get(access_token).copied())
            .filter(|t| t.1 > socle_core::clock::now())
            .map(|t| t.0)
            .ok_or_else(|| IdentityError::oidc(OidcError::InvalidToken, "unknown access token"))?;
        let p = &self.people[person];
        let mut claims = p.claims.clone();
        if let Value::Object(m) = &mut claims {
            m.insert("sub".into(), json!(format!("demo-{}", p.login)));
        }
        Ok(claims)
    }

    /// The provider's logout: back to the registered address with the state.
    pub fn end_session(&self, q: &BTreeMap<String, String>) -> Result<String> {
        if q.get("post_logout_redirect_uri") != Some(&self.post_logout_redirect_uri) {
            return Err(IdentityError::Page(
                "post_logout_redirect_uri non enregistrée auprès du fournisseur de démonstration"
                    .into(),
            ));
        }
        let mut u = url::Url::parse(&self.post_logout_redirect_uri)
            .map_err(|_| IdentityError::Page("post_logout_redirect_uri".into()))?;
        if let Some(s) = q.get("state") {
            u.query_pairs_mut().append_pair("state", s);
        }
        Ok(u.to_string())
    }

    /// The demo people are valid pivot identities, except the one meant to be refused.
    pub fn valid(&self, login: &str) -> bool {
        self.people
            .iter()
            .find(|p| p.login == login)
            .and_then(|p| p.claims.as_object())
            .is_some_and(|m| Identity::from_claims(m).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_person_but_one_is_a_valid_pivot_identity() {
        let fi = DemoFi::new("http://127.0.0.1:1").unwrap();
        for p in fi.people() {
            assert_eq!(fi.valid(p.login), p.login != "erreur", "{}", p.login);
        }
    }
}
