//! The pivot identity, its validation, scopes, eIDAS levels and pairwise subjects.
//!
//! The pivot identity is what FranceConnect v2 calls `identite_pivot`: given names,
//! family name, birth date, gender, birth place (INSEE commune code, when born in
//! France) and birth country (INSEE country code, `99100` for France). Identity
//! providers' answers are checked against these formats before anything is released.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// INSEE code of France in the country code list (COG).
pub const FRANCE: &str = "99100";

/// Claims a service may receive, in the order they are shown to the person.
pub const CLAIMS: &[&str] = &[
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "birthplace",
    "birthcountry",
    "email",
    "preferred_username",
];

/// Scopes Socle accepts (`openid` plus one per claim and the groups).
pub const SCOPES: &[&str] = &[
    "openid",
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "birthplace",
    "birthcountry",
    "email",
    "preferred_username",
    "profile",
    "birth",
    "identite_pivot",
];

/// The claims a scope releases.
pub fn scope_claims(scope: &str) -> &'static [&'static str] {
    match scope {
        "given_name" => &["given_name"],
        "family_name" => &["family_name"],
        "birthdate" => &["birthdate"],
        "gender" => &["gender"],
        "birthplace" => &["birthplace"],
        "birthcountry" => &["birthcountry"],
        "email" => &["email"],
        "preferred_username" => &["preferred_username"],
        "profile" => &[
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "preferred_username",
        ],
        "birth" => &["birthplace", "birthcountry"],
        "identite_pivot" => &[
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "birthplace",
            "birthcountry",
        ],
        _ => &[],
    }
}

/// The claims released by a set of scopes, in [`CLAIMS`] order.
pub fn claims_for(scopes: &[String]) -> Vec<&'static str> {
    CLAIMS
        .iter()
        .copied()
        .filter(|c| scopes.iter().any(|s| scope_claims(s).contains(c)))
        .collect()
}

/// French label of a claim, for the consent page.
pub fn claim_label(claim: &str) -> &'static str {
    match claim {
        "given_name" => "Prénoms",
        "family_name" => "Nom de naissance",
        "birthdate" => "Date de naissance",
        "gender" => "Sexe",
        "birthplace" => "Lieu de naissance (code INSEE)",
        "birthcountry" => "Pays de naissance (code INSEE)",
        "email" => "Adresse électronique",
        "preferred_username" => "Nom d’usage",
        _ => "Donnée",
    }
}

/// A claim's value as shown to the person (French): dates `JJ/MM/AAAA`, gender in
/// words, an empty birthplace as "né(e) à l’étranger".
pub fn display_value(claim: &str, value: &str) -> String {
    match (claim, value) {
        ("gender", "male") => "Masculin".into(),
        ("gender", "female") => "Féminin".into(),
        ("birthdate", d) => match (d.get(8..10), d.get(5..7), d.get(0..4)) {
            (Some(day), Some(month), Some(year)) if d.len() == 10 => {
                format!("{day}/{month}/{year}")
            }
            _ => d.to_string(),
        },
        ("birthplace", "") => "Né(e) à l’étranger".into(),
        _ => value.to_string(),
    }
}

/// eIDAS level of assurance, as `acr` values `eidas1`, `eidas2`, `eidas3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Eidas(pub u8);

impl Eidas {
    pub const LOW: Eidas = Eidas(1);

    pub fn parse(acr: &str) -> Option<Eidas> {
        match acr {
            "eidas1" => Some(Eidas(1)),
            "eidas2" => Some(Eidas(2)),
            "eidas3" => Some(Eidas(3)),
            _ => None,
        }
    }

    pub fn from_level(level: u8) -> Option<Eidas> {
        (1..=3).contains(&level).then_some(Eidas(level))
    }

    pub fn acr(self) -> &'static str {
        match self.0 {
            1 => "eidas1",
            2 => "eidas2",
            _ => "eidas3",
        }
    }

    pub fn label(self) -> &'static str {
        match self.0 {
            1 => "faible",
            2 => "substantiel",
            _ => "élevé",
        }
    }
}

/// A verified pivot identity (plus the optional email and usage name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub given_name: String,
    pub family_name: String,
    pub birthdate: String,
    pub gender: String,
    /// Empty when born abroad.
    pub birthplace: String,
    pub birthcountry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

fn text(v: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn required(v: &Map<String, Value>, name: &str) -> Result<String, String> {
    match text(v, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{name} is missing")),
    }
}

fn valid_name(s: &str) -> bool {
    s.chars().count() <= 256
        && s.chars().any(|c| c.is_alphabetic())
        && s.chars()
            .all(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\'' | '’' | '.'))
}

/// `YYYY-MM-DD`, a real date, not in the future; presumed dates (`YYYY-01-01`,
/// `YYYY-MM-01`) are real dates too.
pub fn valid_birthdate(s: &str) -> bool {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, &fmt) {
        Ok(d) => d.year() >= 1870 && d <= time::OffsetDateTime::now_utc().date() && s.len() == 10,
        Err(_) => false,
    }
}

/// An INSEE commune code: five characters, digits, or `2A`/`2B` then three digits
/// (Corsica).
pub fn valid_commune(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && (b[..2].iter().all(u8::is_ascii_digit) || &b[..2] == b"2A" || &b[..2] == b"2B")
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// An INSEE country code: `99` then three digits.
pub fn valid_country(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b.starts_with(b"99") && b.iter().all(u8::is_ascii_digit)
}

/// An e-mail address, as the identity checks accept it.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

impl Identity {
    /// Reads and checks an identity provider's claims; the error names the first
    /// invalid field (never its value, which is personal data).
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Identity, String> {
        let given_name = required(claims, "given_name")?;
        let family_name = required(claims, "family_name")?;
        if !valid_name(&given_name) {
            return Err("given_name is not a name".into());
        }
        if !valid_name(&family_name) {
            return Err("family_name is not a name".into());
        }
        let birthdate = required(claims, "birthdate")?;
        if !valid_birthdate(&birthdate) {
            return Err("birthdate is not a date YYYY-MM-DD in the past".into());
        }
        let gender = required(claims, "gender")?;
        if gender != "male" && gender != "female" {
            return Err("gender is neither \"male\" nor \"female\"".into());
        }
        let birthcountry = required(claims, "birthcountry")?;
        if !valid_country(&birthcountry) {
            return Err("birthcountry is not an INSEE country code (99XXX)".into());
        }
        let birthplace = text(claims, "birthplace")?.unwrap_or_default();
        if birthcountry == FRANCE {
            if !valid_commune(&birthplace) {
                return Err("birthplace is not an INSEE commune code".into());
            }
        } else if !birthplace.is_empty() {
            return Err("birthplace is set for a person born abroad".into());
        }
        let email = text(claims, "email")?.filter(|s| !s.is_empty());
        if let Some(e) = &email
            && !valid_email(e)
        {
            return Err("email is not an address".into());
        }
        let preferred_username = text(claims, "preferred_username")?.filter(|s| !s.is_empty());
        if let Some(p) = &preferred_username
            && !valid_name(p)
        {
            return Err("preferred_username is not a name".into());
        }
        Ok(Identity {
            given_name,
            family_name,
            birthdate,
            gender,
            birthplace,
            birthcountry,
            email,
            preferred_username,
        })
    }

    /// FranceConnect's identity hash: base64 SHA-256 of the concatenated pivot fields
    /// (the birth place only for people born in France). The same person gets the
    /// same hash whichever provider vouched for them.
    pub fn identity_hash(&self) -> String {
        use base64::Engine;
        use sha2::Digest;
        let place = if self.birthcountry == FRANCE {
            self.birthplace.as_str()
        } else {
            ""
        };
        let serial = format!(
            "{}{}{}{}{}{}",
            self.given_name,
            self.family_name,
            self.birthdate,
            self.gender,
            place,
            self.birthcountry
        );
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(serial.as_bytes()))
    }

    /// The claim's value, if the identity has it.
    pub fn claim(&self, name: &str) -> Option<&str> {
        match name {
            "given_name" => Some(&self.given_name),
            "family_name" => Some(&self.family_name),
            "birthdate" => Some(&self.birthdate),
            "gender" => Some(&self.gender),
            "birthplace" => Some(&self.birthplace),
            "birthcountry" => Some(&self.birthcountry),
            "email" => self.email.as_deref(),
            "preferred_username" => self.preferred_username.as_deref(),
            _ => None,
        }
    }

    /// The claims the scopes release, as a JSON object (without `sub`).
    pub fn released(&self, scopes: &[String]) -> Map<String, Value> {
        let mut out = Map::new();
        for c in claims_for(scopes) {
            if let Some(v) = self.claim(c) {
                out.insert(c.to_string(), Value::String(v.to_string()));
            }
        }
        if out.contains_key("given_name") {
            let names: Vec<Value> = self
                .given_name
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect();
            out.insert("given_name_array".into(), Value::Array(names));
        }
        out
    }
}

/// The pairwise subject of a person at one service: hex SHA-256 of client id, identity
/// hash and the platform secret, suffixed `v1` as FranceConnect does.
pub fn pairwise_sub(client_id: &str, identity_hash: &str, secret: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(client_id.as_bytes());
    h.update(identity_hash.as_bytes());
    h.update(secret);
    format!("{}v1", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn marie() -> Value {
        json!({"given_name": "Marie Claire", "family_name": "Dupont", "birthdate": "1980-06-01",
               "gender": "female", "birthplace": "75107", "birthcountry": "99100"})
    }

    #[test]
    fn accepts_a_pivot_identity_and_presumed_dates() {
        let id = Identity::from_claims(&claims(marie())).unwrap();
        assert_eq!(id.birthplace, "75107");
        let mut v = marie();
        v["birthdate"] = json!("1950-01-01");
        assert!(Identity::from_claims(&claims(v)).is_ok());
        let mut v = marie();
        v["birthplace"] = json!("2A004");
        assert!(Identity::from_claims(&claims(v)).is_ok());
        let mut v = marie();
        v["birthcountry"] = json!("99134");
        v["birthplace"] = json!("");
        assert!(Identity::from_claims(&claims(v)).is_ok());
    }

    #[test]
    fn refuses_invalid_formats_naming_the_field_not_the_value() {
        for (field, value) in [
            ("birthdate", json!("1980-13-01")),
            ("birthdate", json!("2999-01-01")),
            ("birthdate", json!("01/06/1980")),
            ("birthplace", json!("7510")),
            ("birthplace", json!("2C004")),
            ("birthcountry", json!("100")),
            ("gender", json!("M")),
            ("family_name", json!("")),
            ("given_name", json!(42)),
            ("family_name", json!("R2D2")),
        ] {
            let mut v = marie();
            v[field] = value.clone();
            let err = Identity::from_claims(&claims(v)).unwrap_err();
            assert!(err.starts_with(field), "{field}={value}: {err}");
            if let Some(s) = value.as_str()
                && !s.is_empty()
            {
                assert!(!err.contains(s), "the error reveals the value: {err}");
            }
        }
        let mut v = marie();
        v["birthcountry"] = json!("99134");
        assert!(
            Identity::from_claims(&claims(v)).is_err(),
            "birthplace abroad"
        );
    }

    #[test]
    fn identity_hash_ignores_the_birthplace_abroad_and_sub_is_pairwise() {
        let a = Identity::from_claims(&claims(marie())).unwrap();
        let h = a.identity_hash();
        assert_eq!(h.len(), 44);
        let s1 = pairwise_sub("client-1", &h, b"secret");
        let s2 = pairwise_sub("client-2", &h, b"secret");
        assert_ne!(s1, s2);
        assert!(s1.ends_with("v1") && s1.len() == 66);
        let mut b = a.clone();
        b.email = Some("x@example.org".into());
        assert_eq!(b.identity_hash(), h, "email is not part of the pivot");
    }

    #[test]
    fn values_are_shown_in_french_without_panicking_on_odd_input() {
        assert_eq!(display_value("birthdate", "1980-06-14"), "14/06/1980");
        assert_eq!(display_value("gender", "female"), "Féminin");
        assert_eq!(display_value("birthplace", ""), "Né(e) à l’étranger");
        assert_eq!(display_value("birthdate", "é1980-06-1"), "é1980-06-1");
    }

    #[test]
    fn scopes_release_their_claims() {
        let scopes = vec![
            "openid".to_string(),
            "birth".to_string(),
            "email".to_string(),
        ];
        assert_eq!(
            claims_for(&scopes),
            vec!["birthplace", "birthcountry", "email"]
        );
        let id = Identity::from_claims(&claims(marie())).unwrap();
        let out = id.released(&["profile".to_string()]);
        assert_eq!(out["given_name_array"], json!(["Marie", "Claire"]));
        assert!(!out.contains_key("birthplace"));
    }
}
