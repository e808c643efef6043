//! Catalogue records and the validation of what administrators submit. Every check
//! of an input runs; the error lists every problem at once.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::siret;
use crate::{CatalogueError, Result};

/// Kinds of organisations.
pub const KINDS: &[&str] = &[
    "ministry",
    "operator",
    "local_authority",
    "company",
    "association",
];

/// Access modes of an API.
pub const ACCESS_MODES: &[&str] = &["open", "account", "habilitation"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Organisation {
    /// SIRET of the establishment (14 digits), the organisation's identifier here.
    pub siret: String,
    /// SIREN (the first 9 digits of the SIRET).
    pub siren: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acronym: Option<String>,
    /// `ministry`, `operator`, `local_authority`, `company` or `association`.
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationInput {
    pub siret: String,
    pub name: String,
    #[serde(default)]
    pub acronym: Option<String>,
    pub kind: String,
}

/// A named data item of the dictionary ("quotient familial"…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataItem {
    /// Stable identifier (`a-z`, `0-9`, `-`).
    pub id: String,
    pub name: String,
    /// What it means, in plain words.
    pub meaning: String,
    /// `string`, `integer`, `number`, `boolean`, `date`…
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// SIRET of the organisation that produces it.
    pub producer: String,
    /// The law or regulation that defines it.
    pub legal_source: String,
    /// Whether it is about a person (personal data, GDPR art. 4(1)); an API whose
    /// data items are all non-personal may say its calls name nobody (`none`).
    #[serde(default = "yes")]
    pub personal: bool,
}

fn yes() -> bool {
    true
}

/// How a call names the person its data is about, so that every exchange about a
/// person reaches that person's space (docs/CATALOGUE.md, "Whose data").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectMode {
    /// Calls on a person's behalf, with the access token their login gave the service.
    #[default]
    PersonToken,
    /// The request carries the person's pivot identity (query parameters or JSON body
    /// fields named in `pivot`); the gateway computes the federation's identity hash.
    Pivot,
    /// The provider names the person in its answer: the `Socle-Subject` header (the
    /// identity hash, or the pivot identity as JSON), read and removed by the gateway.
    Provider,
    /// The data are about no person (reference data).
    None,
}

impl SubjectMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectMode::PersonToken => "person_token",
            SubjectMode::Pivot => "pivot",
            SubjectMode::Provider => "provider",
            SubjectMode::None => "none",
        }
    }
}

/// Where a request carries the pivot identity (`pivot` mode): the name of the
/// parameter (or top-level JSON body field) holding each pivot field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PivotFields {
    /// `query` (default) or `body` (a JSON object).
    #[serde(default)]
    pub source: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birthdate: String,
    pub gender: String,
    pub birthplace: String,
    pub birthcountry: String,
}

impl PivotFields {
    /// The request's parameter names, by pivot field.
    pub fn names(&self) -> [(&'static str, &str); 6] {
        [
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("birthdate", &self.birthdate),
            ("gender", &self.gender),
            ("birthplace", &self.birthplace),
            ("birthcountry", &self.birthcountry),
        ]
    }

    /// Whether the pivot is in a JSON body rather than the query.
    pub fn in_body(&self) -> bool {
        self.source.as_deref() == Some("body")
    }
}

/// How an API's calls name their person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(default)]
    pub mode: SubjectMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<PivotFields>,
}

pub type DataItemInput = DataItem;

/// A scope of an API: the response fields it covers, and the data items they carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub name: String,
    pub description: String,
    /// JSON pointers (RFC 6901) into the response, e.g. `/quotient_familial`.
    pub fields: Vec<String>,
    /// Identifiers of the data items those fields carry.
    #[serde(default)]
    pub data_items: Vec<String>,
}

/// A published API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Api {
    /// The slug, also the identifier.
    pub id: String,
    /// SIRET of the producing organisation.
    pub organisation: String,
    pub title: String,
    pub description: String,
    pub themes: Vec<String>,
    pub version: String,
    /// The OpenAPI 3 document of this version.
    #[schema(value_type = Object)]
    pub openapi: Value,
    pub upstream_url: String,
    /// `open`, `account` or `habilitation`.
    pub access_mode: String,
    /// Requests per second allowed to one consumer.
    pub rate_limit: u32,
    #[serde(default)]
    pub sla: String,
    pub contact: String,
    #[serde(default)]
    pub documentation: Vec<String>,
    pub scopes: Vec<Scope>,
    /// The lowest eIDAS level (1 faible, 2 substantiel, 3 élevé) of the person's login
    /// for calls on a person's behalf (the provider's requirement for its data); none:
    /// any level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_eidas_level: Option<u8>,
    /// How a call names the person its data is about.
    #[serde(default)]
    pub subject: Subject,
}

/// What an administrator submits to publish an API (a new version replaces the
/// record; earlier OpenAPI documents are kept per version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiInput {
    /// Lowercase letters, digits and hyphens.
    pub slug: String,
    pub organisation: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub themes: Vec<String>,
    /// The OpenAPI 3 document, as JSON text (its parser's error is returned on failure).
    pub openapi: String,
    pub upstream_url: String,
    /// Allow an `http` or private upstream (loopback demonstrations only).
    #[serde(default)]
    pub allow_private_upstream: bool,
    pub access_mode: String,
    #[serde(default)]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub sla: String,
    pub contact: String,
    #[serde(default)]
    pub documentation: Vec<String>,
    pub scopes: Vec<Scope>,
    /// The lowest eIDAS level (1, 2 or 3) of the person's login for calls on a
    /// person's behalf; none: any level.
    #[serde(default)]
    pub person_eidas_level: Option<u8>,
    /// How a call names the person its data is about: `person_token` (default),
    /// `pivot` (with where the pivot is), `provider` or `none` (no personal data).
    #[serde(default)]
    pub subject: Subject,
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn text(problems: &mut Vec<String>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        problems.push(format!("{field} is required"));
    } else if value.chars().count() > max {
        problems.push(format!("{field} is longer than {max} characters"));
    }
}

fn done<T>(problems: Vec<String>, value: T) -> Result<T> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(CatalogueError::Invalid(problems.join("; ")))
    }
}

impl OrganisationInput {
    pub fn validate(self) -> Result<Organisation> {
        let mut problems = Vec::new();
        if let Some(p) = siret::siret_problem(&self.siret) {
            problems.push(p);
        }
        text(&mut problems, "name", &self.name, 200);
        if !KINDS.contains(&self.kind.as_str()) {
            problems.push(format!(
                "kind {:?} is not one of {}",
                self.kind,
                KINDS.join(", ")
            ));
        }
        let siren = self.siret.get(..9).unwrap_or_default().to_string();
        done(
            problems,
            Organisation {
                siret: self.siret,
                siren,
                name: self.name.trim().to_string(),
                acronym: self.acronym.filter(|a| !a.trim().is_empty()),
                kind: self.kind,
            },
        )
    }
}

impl DataItem {
    pub fn validate(self) -> Result<DataItem> {
        let mut problems = Vec::new();
        if !valid_slug(&self.id) {
            problems.push(format!(
                "id {:?} must be lowercase letters, digits and hyphens",
                self.id
            ));
        }
        text(&mut problems, "name", &self.name, 200);
        text(&mut problems, "meaning", &self.meaning, 2000);
        text(&mut problems, "type", &self.kind, 40);
        text(&mut problems, "legal_source", &self.legal_source, 500);
        if let Some(p) = siret::siret_problem(&self.producer) {
            problems.push(format!("producer: {p}"));
        }
        done(problems, self)
    }
}

pub use crate::address::public_ip;

/// Checks an upstream base URL: absolute, `https`, and not a loopback, private,
/// link-local or cloud-metadata address — unless `allow_private` (demonstrations on
/// one machine). Host names are checked again when the gateway resolves them.
pub fn upstream_problem(url: &str, allow_private: bool) -> Option<String> {
    let u = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("upstream_url {url:?} is not an absolute URL: {e}")),
    };
    if u.scheme() != "https" && !(allow_private && u.scheme() == "http") {
        return Some(format!("upstream_url {url:?} must use https"));
    }
    let ip: Option<IpAddr> = match u.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        // RFC 6761: `localhost` and every name under it are the loopback.
        Some(url::Host::Domain(d))
            if {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            } =>
        {
            Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        Some(url::Host::Domain(_)) => None,
        None => return Some(format!("upstream_url {url:?} has no host")),
    };
    if let Some(ip) = ip {
        let private = !public_ip(ip);
        if private && !allow_private {
            return Some(format!(
                "upstream_url {url:?} is a loopback, private, link-local or metadata address: refused (allow_private_upstream is for demonstrations)"
            ));
        }
    }
    None
}

/// Parses and checks an OpenAPI 3 document; the error quotes the parser.
pub fn parse_openapi(text: &str) -> std::result::Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "openapi is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let version = v.get("openapi").and_then(Value::as_str).unwrap_or_default();
    if !version.starts_with("3.") {
        return Err("openapi: the document must declare \"openapi\": \"3.x\"".into());
    }
    if v.pointer("/info/title").and_then(Value::as_str).is_none() {
        return Err("openapi: info.title is required".into());
    }
    if v.pointer("/info/version").and_then(Value::as_str).is_none() {
        return Err("openapi: info.version is required".into());
    }
    match v.get("paths") {
        Some(Value::Object(paths)) if !paths.is_empty() => {
            if let Some(bad) = paths.keys().find(|p| !p.starts_with('/')) {
                return Err(format!("openapi: path {bad:?} must start with '/'"));
            }
        }
        _ => return Err("openapi: paths must list at least one operation".into()),
    }
    Ok(v)
}

/// A JSON pointer (RFC 6901): empty, or `/` then reference tokens with `~0`/`~1`
/// escapes only.
pub fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

impl ApiInput {
    /// Validates into an API record; `known_items` are the dictionary's identifiers,
    /// `non_personal` those of its items about no person.
    pub fn validate(self, known_items: &[String], non_personal: &[String]) -> Result<Api> {
        let mut problems = Vec::new();
        if !valid_slug(&self.slug) {
            problems.push(format!(
                "slug {:?} must be lowercase letters, digits and hyphens",
                self.slug
            ));
        }
        if self.slug == crate::habilitation::IDENTITY {
            problems.push(format!(
                "slug {:?} is reserved: requests for it are login integrations",
                self.slug
            ));
        }
        if let Some(p) = siret::siret_problem(&self.organisation) {
            problems.push(format!("organisation: {p}"));
        }
        text(&mut problems, "title", &self.title, 200);
        text(&mut problems, "description", &self.description, 5000);
        text(&mut problems, "contact", &self.contact, 200);
        let openapi = match parse_openapi(&self.openapi) {
            Ok(v) => v,
            Err(e) => {
                problems.push(e);
                Value::Null
            }
        };
        let version = openapi
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(p) = upstream_problem(&self.upstream_url, self.allow_private_upstream) {
            problems.push(p);
        }
        if !ACCESS_MODES.contains(&self.access_mode.as_str()) {
            problems.push(format!(
                "access_mode {:?} is not one of {}",
                self.access_mode,
                ACCESS_MODES.join(", ")
            ));
        }
        if self.scopes.is_empty() {
            problems.push("scopes must list at least one scope".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.scopes {
            if !valid_slug(&s.name.replace('_', "-")) {
                problems.push(format!(
                    "scope name {:?} must be lowercase letters, digits, '-' or '_'",
                    s.name
                ));
            }
            if !names.insert(s.name.clone()) {
                problems.push(format!("scope {:?} is listed twice", s.name));
            }
            if s.fields.is_empty() {
                problems.push(format!("scope {:?} must cover at least one field", s.name));
            }
            for f in &s.fields {
                if !valid_pointer(f) {
                    problems.push(format!(
                        "scope {:?}: {f:?} is not a JSON pointer (RFC 6901)",
                        s.name
                    ));
                }
            }
            for d in &s.data_items {
                if !known_items.contains(d) {
                    problems.push(format!(
                        "scope {:?}: data item {d:?} is not in the dictionary",
                        s.name
                    ));
                }
            }
        }
        if self
            .person_eidas_level
            .is_some_and(|l| !(1..=3).contains(&l))
        {
            problems
                .push("person_eidas_level must be 1 (faible), 2 (substantiel) or 3 (élevé)".into());
        }
        match (self.subject.mode, &self.subject.pivot) {
            (SubjectMode::Pivot, None) => problems.push(
                "subject: the pivot mode names the request's parameters for each pivot field"
                    .into(),
            ),
            (SubjectMode::Pivot, Some(p)) => {
                if !matches!(p.source.as_deref(), None | Some("query" | "body")) {
                    problems.push("subject.pivot.source must be \"query\" or \"body\"".into());
                }
                for (field, name) in p.names() {
                    if name.trim().is_empty() || name.len() > 100 {
                        problems.push(format!(
                            "subject.pivot.{field} must name the request's parameter"
                        ));
                    }
                }
            }
            (_, Some(_)) => {
                problems.push("subject.pivot is for the pivot mode only".into());
            }
            (SubjectMode::None, None) => {
                for s in &self.scopes {
                    if s.data_items.is_empty()
                        || s.data_items.iter().any(|d| !non_personal.contains(d))
                    {
                        problems.push(format!(
                            "subject: scope {:?} carries personal data (or does not say which \
                             data items it carries): an API about people cannot choose \"none\"",
                            s.name
                        ));
                    }
                }
            }
            _ => {}
        }
        for d in &self.documentation {
            if !url::Url::parse(d).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
                problems.push(format!(
                    "documentation link {d:?} must be an https (or http) address"
                ));
            }
        }
        done(
            problems,
            Api {
                id: self.slug,
                organisation: self.organisation,
                title: self.title.trim().to_string(),
                description: self.description.trim().to_string(),
                themes: self.themes,
                version,
                openapi,
                upstream_url: self.upstream_url,
                access_mode: self.access_mode,
                rate_limit: self.rate_limit.unwrap_or(50),
                sla: self.sla,
                contact: self.contact,
                documentation: self.documentation,
                scopes: self.scopes,
                person_eidas_level: self.person_eidas_level,
                subject: self.subject,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        assert!(upstream_problem("https://api.impots.gouv.fr/v1", false).is_none());
        for bad in [
            "http://api.example.fr",
            "https://10.0.0.1/x",
            "https://192.168.1.2",
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1:8443",
            "https://localhost/x",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://100.64.0.1/",
            "https://localhost./",
            "https://api.localhost/",
            "https://[::ffff:0.0.0.0]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:100.64.0.1]/",
            "https://0.0.0.0/",
            "not a url",
        ] {
            assert!(upstream_problem(bad, false).is_some(), "{bad}");
        }
        assert!(upstream_problem("http://127.0.0.1:9000", true).is_none());
    }

    #[test]
    fn openapi_errors_quote_the_parser() {
        let e = parse_openapi("{\"openapi\": \"3.1.0\",\n \"info\": }").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(
            parse_openapi(r#"{"swagger":"2.0"}"#)
                .unwrap_err()
                .contains("3.x")
        );
        assert!(
            parse_openapi(r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}"#)
                .is_err()
        );
        assert!(
            parse_openapi(
                r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{}}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn pointers() {
        assert!(valid_pointer("/a/b~1c/~0d"));
        assert!(valid_pointer(""));
        assert!(!valid_pointer("a/b"));
        assert!(!valid_pointer("/a~2"));
    }
}
