//! People of the back office and their roles. Until agents log in through identity
//! federation, accounts are local: an e-mail, an argon2id password hash, one
//! organisation, roles. A federated agent will map onto the same [`Actor`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a person may do, within their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The platform's operator: every organisation.
    Operator,
    /// Administrator of their organisation (both sides of its requests).
    OrgAdmin,
    /// Reviews requests for their organisation's APIs.
    Instructor,
    /// Writes and follows their organisation's requests.
    Developer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "org_admin" => Some(Role::OrgAdmin),
            "instructor" => Some(Role::Instructor),
            "developer" => Some(Role::Developer),
            _ => None,
        }
    }
}

/// Whoever acts, as the rules see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub email: String,
    /// SIRET of their organisation.
    pub organisation: String,
    pub roles: Vec<Role>,
}

/// A local account as stored (password only as its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub email: String,
    pub name: String,
    pub organisation: String,
    pub roles: Vec<Role>,
    pub password_hash: String,
}

impl User {
    pub fn actor(&self) -> Actor {
        Actor {
            email: self.email.clone(),
            organisation: self.organisation.clone(),
            roles: self.roles.clone(),
        }
    }
}

/// argon2id hash of a password, PHC string format.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against its stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
