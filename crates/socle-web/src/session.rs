//! The pages' cookies and CSRF tokens, in one place, for the identity pages, the
//! citizen space and the Espace agent.
//!
//! On an https public address (or behind this process's own TLS) every cookie is
//! `__Host-`-prefixed: browsers then take it only from this host, `Secure`, with
//! `Path=/` and no `Domain`, so no sibling domain and no plain-HTTP page can plant or
//! overwrite one (a planted session is a login CSRF: the person acts in the
//! attacker's account). On plain HTTP (`socle demo`) the prefix cannot be used; each
//! cookie keeps its bare name and narrower path.
//!
//! CSRF tokens are 256 bits from the operating system's generator.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::AppState;

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
