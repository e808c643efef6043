//! The `claims` request parameter (OpenID Connect Core §5.5): which claims a service
//! asks for in the ID token and at userinfo, beyond its scopes.
//!
//! Socle releases a requested claim only when the client is registered for it (one of
//! its scopes covers it) and shows it on the consent page; others are ignored, as
//! Core §5.5 lets a provider do with voluntary claims. `acr` with `value`/`values` asks
//! for an eIDAS level as `acr_values` does (ProConnect's `{"acr": {"essential": true,
//! "value": "eidas2"}}`); asked as essential with no eIDAS level among its values, the
//! request cannot be met. `amr` (RFC 8176 values) is in the ID token only when asked
//! for. `value`/`values` of other claims do not filter anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pivot::Eidas;

/// Most claims accepted in one member: a request is not a way to make the platform work.
const MAX_CLAIMS: usize = 64;

/// How one claim is asked for (`null`, or an object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub essential: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
}

/// The `id_token` and `userinfo` members of a `claims` parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestedClaims {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id_token: BTreeMap<String, ClaimRequest>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub userinfo: BTreeMap<String, ClaimRequest>,
}

/// The authentication methods of RFC 8176's registry: the only `amr` values released.
pub const AMR_VALUES: &[&str] = &[
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop", "pwd", "rba",
    "retina", "sc", "sms", "swk", "tel", "user", "vbm", "wia",
];

impl RequestedClaims {
    /// Parses the parameter's JSON; the error says what is wrong, for `invalid_request`.
    pub fn parse(text: &str) -> Result<RequestedClaims, String> {
        let top = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(top)) => top,
            _ => return Err("claims must be a JSON object (OpenID Connect Core §5.5)".into()),
        };
        let mut out = RequestedClaims::default();
        for (member, target) in [
            ("id_token", &mut out.id_token),
            ("userinfo", &mut out.userinfo),
        ] {
            let entries = match top.get(member) {
                None | Some(Value::Null) => continue,
                Some(Value::Object(m)) => m,
                Some(_) => return Err(format!("claims.{member} must be a JSON object")),
            };
            if entries.len() > MAX_CLAIMS {
                return Err(format!(
                    "claims.{member} asks for more than {MAX_CLAIMS} claims"
                ));
            }
            for (name, asked) in entries {
                let request = match asked {
                    Value::Null => ClaimRequest::default(),
                    Value::Object(o) => ClaimRequest {
                        essential: match o.get("essential") {
                            None | Some(Value::Null) => false,
                            Some(Value::Bool(b)) => *b,
                            Some(_) => {
                                return Err(format!(
                                    "claims.{member}.{name}.essential must be true or false"
                                ));
                            }
                        },
                        value: o.get("value").filter(|v| !v.is_null()).cloned(),
                        values: match o.get("values") {
                            None | Some(Value::Null) => Vec::new(),
                            Some(Value::Array(a)) => a.clone(),
                            Some(_) => {
                                return Err(format!(
                                    "claims.{member}.{name}.values must be an array"
                                ));
                            }
                        },
                    },
                    _ => {
                        return Err(format!(
                            "claims.{member}.{name} must be null or a JSON object"
                        ));
                    }
                };
                target.insert(name.clone(), request);
            }
        }
        Ok(out)
    }

    /// The eIDAS levels asked of `acr` (in either member) and whether as essential;
    /// `None` when `acr` is not asked for.
    pub fn acr(&self) -> Option<(Vec<Eidas>, bool)> {
        let r = self
            .id_token
            .get("acr")
            .or_else(|| self.userinfo.get("acr"))?;
        let levels = r
            .value
            .iter()
            .chain(&r.values)
            .filter_map(Value::as_str)
            .filter_map(Eidas::parse)
            .collect();
        Some((levels, r.essential))
    }

    /// Whether the ID token should carry `amr`.
    pub fn wants_amr(&self) -> bool {
        self.id_token.contains_key("amr")
    }

    /// The names asked for in the ID token.
    pub fn id_token_names(&self) -> Vec<String> {
        self.id_token.keys().cloned().collect()
    }

    /// The names asked for at userinfo.
    pub fn userinfo_names(&self) -> Vec<String> {
        self.userinfo.keys().cloned().collect()
    }
}

/// The `amr` values of RFC 8176's registry among `amr`.
pub fn registered_amr(amr: &[String]) -> Vec<String> {
    amr.iter()
        .filter(|a| AMR_VALUES.contains(&a.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_members_and_refuses_what_is_not_core_5_5() {
        let r = RequestedClaims::parse(
            r#"{"id_token": {"acr": {"essential": true, "value": "eidas2"}, "amr": null,
                 "given_name": null},
                "userinfo": {"email": {"essential": true}, "birthplace": null},
                "other": 1}"#,
        )
        .unwrap();
        assert_eq!(r.acr(), Some((vec![Eidas(2)], true)));
        assert!(r.wants_amr());
        assert_eq!(r.id_token_names(), ["acr", "amr", "given_name"]);
        assert_eq!(r.userinfo_names(), ["birthplace", "email"]);
        let values = RequestedClaims::parse(
            r#"{"id_token": {"acr": {"values": ["eidas3", "eidas2", "other"]}}}"#,
        )
        .unwrap();
        assert_eq!(values.acr(), Some((vec![Eidas(3), Eidas(2)], false)));
        for bad in [
            "[]",
            "not json",
            r#"{"id_token": []}"#,
            r#"{"userinfo": {"email": true}}"#,
            r#"{"userinfo": {"email": {"essential": "yes"}}}"#,
            r#"{"id_token": {"acr": {"values": "eidas2"}}}"#,
        ] {
            assert!(RequestedClaims::parse(bad).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> =
            (0..65).map(|i| (format!("c{i}"), Value::Null)).collect();
        let many = serde_json::json!({ "userinfo": many }).to_string();
        assert!(RequestedClaims::parse(&many).is_err());
    }

    #[test]
    fn amr_keeps_rfc_8176_values_only() {
        let amr = ["pwd", "otp", "magic-link", "mfa"]
            .map(String::from)
            .to_vec();
        assert_eq!(registered_amr(&amr), ["pwd", "otp", "mfa"]);
    }
}
