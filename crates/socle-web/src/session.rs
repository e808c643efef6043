//! The pages' sessions, cookies and CSRF tokens, in one place, for the identity pages,
//! the citizen space and the Espace agent.
//!
//! - [`Cookie`]: each cookie's name, path and `SameSite`, set and read the same way.
//! - [`StoredSession`]: a session kept in the store under a hash of its token, the
//!   token in a cookie; a new token at each login (no fixation), deleted at logout
//!   (the citizen space's). The Espace agent's session is a back-office token
//!   (`socle_catalogue`), the identity pages' a browser session of the identity
//!   provider (`socle_identity`): both use the cookies and CSRF checks here.
//! - [`check_csrf`], [`csrf_of`], [`csrf_refused`]: every form carries a token checked
//!   in constant time; a form without the right one changes nothing.
//!
//! On an https public address (or behind this process's own TLS) every cookie is
//! `__Host-`-prefixed: browsers then take it only from this host, `Secure`, with
//! `Path=/` and no `Domain`, so no sibling domain and no plain-HTTP page can plant or
//! overwrite one (a planted session is a login CSRF: the person acts in the
//! attacker's account). On plain HTTP (`socle demo`) the prefix cannot be used; each
//! cookie keeps its bare name and narrower path.
//!
//! CSRF tokens are 256 bits from the operating system's generator.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use socle_core::clock::now;
use socle_store::IdentityStore;

use crate::AppState;
use crate::error::{ApiError, PageError};

/// One of the pages' cookies: its bare name, the path it is scoped to on plain HTTP,
/// and its `SameSite`.
#[derive(Debug, Clone, Copy)]
pub struct Cookie {
    pub name: &'static str,
    pub path: &'static str,
    pub same_site: &'static str,
}

/// The identity pages' browser session.
pub const SESSION: Cookie = Cookie {
    name: "socle_session",
    path: "/",
    same_site: "Lax",
};
/// The identity provider a person chose last.
pub const FI_CHOICE: Cookie = Cookie {
    name: "socle_fi",
    path: "/api/v2/interaction",
    same_site: "Lax",
};
/// The citizen space's session.
pub const ESPACE: Cookie = Cookie {
    name: "socle_espace",
    path: "/mon-espace",
    same_site: "Lax",
};
/// The Espace agent's session.
pub const AGENT: Cookie = Cookie {
    name: "socle_agent",
    path: "/espace-agent",
    same_site: "Lax",
};
/// The Espace agent's sign-in form token (double-submit).
pub const AGENT_LOGIN_CSRF: Cookie = Cookie {
    name: "socle_agent_csrf",
    path: "/espace-agent",
    same_site: "Strict",
};

impl Cookie {
    /// Its name: `__Host-` prefixed when `secure`.
    pub fn name(&self, secure: bool) -> String {
        if secure {
            format!("__Host-{}", self.name)
        } else {
            self.name.to_string()
        }
    }

    /// Its value in the request, under the name for this scheme only.
    pub fn read(&self, headers: &HeaderMap, secure: bool) -> Option<String> {
        let name = self.name(secure);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// The `Set-Cookie` value that stores `value` (a session cookie without `max_age`).
    pub fn set(&self, value: &str, max_age: Option<i64>, secure: bool) -> Option<HeaderValue> {
        let mut v = format!(
            "{}={value}; Path={}; HttpOnly; SameSite={}",
            self.name(secure),
            if secure { "/" } else { self.path },
            self.same_site
        );
        if let Some(age) = max_age {
            v.push_str(&format!("; Max-Age={age}"));
        }
        if secure {
            v.push_str("; Secure");
        }
        HeaderValue::from_str(&v).ok()
    }

    /// The `Set-Cookie` value that clears it.
    pub fn clear(&self, secure: bool) -> Option<HeaderValue> {
        self.set("", Some(0), secure)
    }
}

/// Whether the pages are served over https, as the public address says (the same
/// rule for every page's cookies).
pub fn secure(state: &AppState) -> bool {
    state.identity.config().secure_cookies()
}

/// A CSRF token: 256 bits from the operating system's generator, base64url.
pub fn csrf_token() -> String {
    socle_identity::csrf_token()
}

/// Compares a submitted token with the expected one in constant time.
pub fn same(a: &str, b: &str) -> bool {
    socle_identity::ct_eq(a.as_bytes(), b.as_bytes())
}

/// The CSRF token of a session known by its token alone (the Espace agent's): derived
/// from it, so nothing more is stored, and useless without the session's cookie.
pub fn csrf_of(token: &str) -> String {
    socle_core::sha256_hex(format!("csrf:{token}").as_bytes())
}

/// A form's CSRF token, checked against the expected one (an empty expected token
/// matches nothing).
pub fn check_csrf(sent: Option<&str>, expected: &str) -> Result<(), PageError> {
    match sent {
        Some(sent) if !expected.is_empty() && same(sent, expected) => Ok(()),
        _ => Err(csrf_refused()),
    }
}

/// The answer to a form without the right CSRF token: nothing was done.
pub fn csrf_refused() -> PageError {
    PageError {
        status: StatusCode::FORBIDDEN,
        title: "Formulaire expiré",
        message: "Ce formulaire a expiré ou ne vient pas de cette plateforme. Rechargez la \
                  page et recommencez."
            .into(),
    }
}

/// A session kept in the store under `{prefix}:{sha256(token)}` (the token itself is
/// never stored), its token in `cookie`.
pub struct StoredSession {
    pub cookie: Cookie,
    pub prefix: &'static str,
}

/// The citizen space's session.
pub const ESPACE_SESSION: StoredSession = StoredSession {
    cookie: ESPACE,
    prefix: "espace",
};

impl StoredSession {
    fn key(&self, token: &str) -> String {
        format!(
            "{}:{}",
            self.prefix,
            socle_core::sha256_hex(token.as_bytes())
        )
    }

    /// The session this request's cookie names, with its token, if it is stored and
    /// unexpired.
    pub async fn load<T: DeserializeOwned>(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Option<(String, T)> {
        let token = self
            .cookie
            .read(headers, secure(state))
            .filter(|t| t.len() >= 32)?;
        let doc = state.store.session(&self.key(&token), now()).await.ok()??;
        let value = serde_json::from_str(&doc).ok()?;
        Some((token, value))
    }

    /// Stores the session under `token` for `ttl` seconds.
    pub async fn save<T: Serialize>(
        &self,
        state: &AppState,
        token: &str,
        value: &T,
        ttl: i64,
    ) -> Result<(), PageError> {
        let doc = serde_json::to_string(value).map_err(|_| ApiError::internal())?;
        state
            .store
            .put_session(&self.key(token), &doc, now() + ttl)
            .await?;
        Ok(())
    }

    /// Deletes the session of `token` (a failure leaves it to expire).
    pub async fn end(&self, state: &AppState, token: &str) {
        if let Err(e) = state.store.delete_session(&self.key(token)).await {
            tracing::warn!(error = %e, "a session was not deleted; it expires by itself");
        }
    }

    /// `r` with the cookie that carries `token` for `ttl` seconds.
    pub fn with_cookie(
        &self,
        state: &AppState,
        mut r: Response,
        token: &str,
        ttl: i64,
    ) -> Response {
        if let Some(v) = self.cookie.set(token, Some(ttl), secure(state)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }

    /// `r` with the cookie cleared.
    pub fn cleared(&self, state: &AppState, mut r: Response) -> Response {
        if let Some(v) = self.cookie.clear(secure(state)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cookie_is_host_only_on_https() {
        for c in [SESSION, FI_CHOICE, ESPACE, AGENT, AGENT_LOGIN_CSRF] {
            let v = c.set("v", Some(1), true).unwrap();
            let v = v.to_str().unwrap();
            assert!(
                v.starts_with(&format!("__Host-{}=v; Path=/;", c.name)),
                "{v}"
            );
            assert!(v.ends_with("; Secure") && !v.contains("Domain"), "{v}");
            let v = c.clear(true).unwrap();
            assert!(v.to_str().unwrap().contains("Max-Age=0; Secure"));
        }
    }

    #[test]
    fn host_prefix_on_https() {
        let v = AGENT.set("t", Some(60), true).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-socle_agent=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        let v = AGENT.set("t", None, false).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "socle_agent=t; Path=/espace-agent; HttpOnly; SameSite=Lax"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("socle_agent=a; __Host-socle_agent=b"),
        );
        assert_eq!(AGENT.read(&h, true).as_deref(), Some("b"));
        assert_eq!(AGENT.read(&h, false).as_deref(), Some("a"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        let t = csrf_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, csrf_token());
    }
}
