//! What the hot path decides from: a snapshot of the published APIs (their upstream,
//! operations and scopes) and of the validated habilitations, rebuilt off the request
//! path and swapped whole. Pure: no I/O, no clock (today's date is passed in).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use socle_catalogue::habilitation::{Habilitation, LegalBasis, State};
use socle_catalogue::{Api, Organisation};

/// One operation of an API's OpenAPI document.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Lowercase HTTP method.
    pub method: String,
    /// The path template as the document writes it (`/personnes/{id}`): what the
    /// journal names as the operation performed.
    pub template: String,
    /// Path segments, percent-decoded; `None` for a `{parameter}`.
    pub segments: Vec<Option<String>>,
    /// Alternative scope sets from the operation's `security` (one must be granted
    /// whole); empty: any scope of the API reaches it.
    pub requires: Vec<Vec<String>>,
}

impl Operation {
    /// Whether the operation's path template matches the (decoded) segments.
    fn path_matches(&self, segments: &[Option<String>]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(want, got)| match (want, got) {
                    (Some(lit), Some(got)) => lit == got,
                    (Some(_), None) => false,
                    (None, got) => got.as_deref() != Some(""),
                })
    }

    #[cfg(test)]
    fn matches(&self, method: &str, segments: &[&str]) -> bool {
        let decoded: Vec<Option<String>> = segments.iter().map(|s| decode(s)).collect();
        self.method == method && self.path_matches(&decoded)
    }

    /// The operation as the journal names it: `GET /personnes/{id}`.
    pub fn name(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.template)
    }
}

/// A published API as the gateway routes it.
#[derive(Debug, Clone)]
pub struct Route {
    pub api: Api,
    /// A scope of the API declares a data item about a person (the dictionary's
    /// `personal`): a call must then name its person.
    pub personal: bool,
    /// The major version callers name (`1` for `1.4.0`).
    pub major: String,
    pub upstream: url::Url,
    pub operations: Vec<Operation>,
}

impl Route {
    /// The operation a call reaches, on a path already normalised
    /// ([`normalise_path`]). As OpenAPI 3.1 "Path Templating Matching" says, concrete
    /// paths are matched before templated ones, whatever the document's order: of the
    /// templates matching the path, the one with a literal segment where the others
    /// have a parameter (from the left) is the path; then its method.
    pub fn operation(&self, method: &str, path: &str) -> Result<Option<&Operation>, String> {
        best_operation(&self.operations, method, path)
    }

    /// The JSON pointers a set of scopes releases; `None` when one of them grants the
    /// whole body (the pointer `""`).
    pub fn fields(&self, scopes: &[String]) -> Option<Vec<String>> {
        let mut out = BTreeSet::new();
        for s in self.api.scopes.iter().filter(|s| scopes.contains(&s.name)) {
            for f in &s.fields {
                if f.is_empty() {
                    return None;
                }
                out.insert(f.clone());
            }
        }
        Some(out.into_iter().collect())
    }

    /// The data items a set of scopes carries.
    pub fn data_items(&self, scopes: &[String]) -> Vec<String> {
        let mut out = BTreeSet::new();
        for s in self.api.scopes.iter().filter(|s| scopes.contains(&s.name)) {
            out.extend(s.data_items.iter().cloned());
        }
        out.into_iter().collect()
    }
}

/// The operation of `ops` a normalised path reaches (see [`Route::operation`]); an
/// error when a parameter's value would read, at a provider that routes loosely, as a
/// literal segment of another operation: differing only in ASCII case (Express and
/// ASP.NET Core match routes ignoring case) or by a `.suffix` (Spring's suffix
/// patterns). Such a call would be authorised as one operation and served as another.
fn best_operation<'a>(
    ops: &'a [Operation],
    method: &str,
    path: &str,
) -> Result<Option<&'a Operation>, String> {
    let segments: Vec<Option<String>> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').map(decode).collect()
    };
    let specificity =
        |o: &Operation| -> Vec<bool> { o.segments.iter().map(Option::is_some).collect() };
    let Some(best) = ops
        .iter()
        .filter(|o| o.path_matches(&segments))
        .map(specificity)
        .max()
    else {
        return Ok(None);
    };
    let Some(chosen) = ops
        .iter()
        .filter(|o| o.path_matches(&segments) && specificity(o) == best)
        .find(|o| o.method == method)
    else {
        return Ok(None);
    };
    for (i, (want, got)) in chosen.segments.iter().zip(&segments).enumerate() {
        let (None, Some(got)) = (want, got) else {
            continue;
        };
        let loose = loosely(got);
        for other in ops.iter().filter(|o| o.segments.len() == segments.len()) {
            let Some(Some(lit)) = other.segments.get(i) else {
                continue;
            };
            let elsewhere_matches =
                other
                    .segments
                    .iter()
                    .zip(&segments)
                    .enumerate()
                    .all(|(j, (w, g))| {
                        j == i
                            || match (w, g) {
                                (Some(l), Some(g)) => l == g,
                                (None, g) => g.as_deref() != Some(""),
                                _ => false,
                            }
                    });
            if elsewhere_matches && lit != got && loose == lit.to_ascii_lowercase() {
                return Err(format!(
                    "the path segment {got:?} would read as {lit:?} (another operation) at a provider that ignores case or suffixes"
                ));
            }
        }
    }
    Ok(Some(chosen))
}

/// A segment as a loose router may read it: lower case, without a `.suffix`.
fn loosely(segment: &str) -> String {
    let lower = segment.to_ascii_lowercase();
    match lower.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => lower,
    }
}

/// A validated habilitation as the gateway enforces it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub client_id: Option<String>,
    pub secret_hash: Option<String>,
    /// SIRET of the service organisation.
    pub requester: String,
    /// SIRET of the providing organisation.
    pub producer: String,
    pub api: String,
    pub title: String,
    pub scopes: Vec<String>,
    pub legal_basis: LegalBasis,
    /// Its legal basis is the person's consent: calls need one, per person.
    pub consent_based: bool,
    /// First day of validity (`YYYY-MM-DD`, the accreditation's start).
    pub valid_from: String,
    /// Last day of validity (`YYYY-MM-DD`, the accreditation's end).
    pub valid_until: String,
    /// Exchanges are shown to the people concerned from this date (deferred
    /// visibility); until then they are journaled under a separate pseudonym.
    pub visible_after: Option<String>,
    /// Calls per day (the validated expected volume); 0: no quota.
    pub daily_quota: u64,
}

impl Grant {
    pub fn from_habilitation(h: &Habilitation) -> Option<Grant> {
        if h.state != State::Validated {
            return None;
        }
        Some(Grant {
            id: h.id.clone(),
            client_id: h.client_id.clone(),
            secret_hash: h.secret_hash.clone(),
            requester: h.requester.clone(),
            producer: h.producer.clone(),
            api: h.api.clone(),
            title: h.form.title.clone(),
            scopes: h.form.scopes.clone(),
            legal_basis: h.form.legal_basis.clone(),
            consent_based: h.form.legal_basis.is_consent(),
            valid_from: h.form.accreditation.start.clone(),
            valid_until: h.form.accreditation.end.clone(),
            visible_after: h.form.visible_after.clone(),
            daily_quota: h.form.expected_volume,
        })
    }

    /// Whether the habilitation is still in force on `today` (`YYYY-MM-DD`).
    pub fn in_force(&self, today: &str) -> bool {
        self.valid_from.as_str() <= today && self.valid_until.as_str() >= today
    }

    /// The reference written as the legal basis of an exchange.
    pub fn legal_reference(&self) -> String {
        format!("{} — {}", self.legal_basis.nature, self.legal_basis.text)
    }
}

/// The person key of exchanges under a habilitation with deferred visibility: the
/// journal's pseudonym of it differs from the person's usual one, so that nobody can
/// find those entries in the public journal from a pseudonym they know before the
/// date; the citizen space, which knows both, shows them once the date has passed.
pub fn deferred_person_key(habilitation: &str, identity_hash: &str) -> String {
    format!("deferred|{habilitation}|{identity_hash}")
}

/// Everything the hot path reads, built at once.
#[derive(Debug, Default)]
pub struct Snapshot {
    routes: HashMap<String, Arc<Route>>,
    /// SIRET, SIREN and acronym slug → SIRET.
    organisations: HashMap<String, String>,
    /// SIRET → the name errors give as `meta.provider` (the acronym, else the name).
    names: HashMap<String, String>,
    by_client: HashMap<String, Arc<Grant>>,
    by_service: HashMap<(String, String), Arc<Grant>>,
    by_id: HashMap<String, Arc<Grant>>,
}

/// Lowercase ASCII slug of an acronym ("CAF démo" → `caf-demo`).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = match c {
            'à' | 'â' | 'ä' | 'À' | 'Â' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        };
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn operations(openapi: &Value) -> Vec<Operation> {
    let root_security = openapi.get("security");
    let mut out = Vec::new();
    let Some(paths) = openapi.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        let segments: Vec<Option<String>> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    None
                } else {
                    // A literal the document wrote percent-encoded means its decoding;
                    // one that does not decode can never match.
                    Some(decode(s).unwrap_or_else(|| "\u{0}".to_string()))
                }
            })
            .collect();
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "options" | "head" | "patch"
            ) {
                continue;
            }
            let security = op.get("security").or(root_security);
            let requires = security
                .and_then(Value::as_array)
                .map(|reqs| {
                    reqs.iter()
                        .filter_map(Value::as_object)
                        .map(|r| {
                            r.values()
                                .filter_map(Value::as_array)
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect::<Vec<_>>()
                        })
                        .filter(|v| !v.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Operation {
                method: method.clone(),
                template: path.clone(),
                segments: segments.clone(),
                requires,
            });
        }
    }
    out
}

impl Snapshot {
    /// Builds the snapshot; APIs whose upstream does not parse are left out (logged by
    /// the caller from the returned names).
    pub fn build(
        apis: Vec<Api>,
        organisations: Vec<Organisation>,
        habilitations: Vec<Habilitation>,
        personal_items: &BTreeSet<String>,
    ) -> (Snapshot, Vec<String>) {
        let mut s = Snapshot::default();
        let mut skipped = Vec::new();
        for o in organisations {
            let name = o.acronym.clone().unwrap_or_else(|| o.name.clone());
            s.names.insert(o.siret.clone(), name);
            s.organisations.insert(o.siret.clone(), o.siret.clone());
            s.organisations.insert(o.siren.clone(), o.siret.clone());
            if let Some(a) = &o.acronym {
                let a = slug(a);
                if !a.is_empty() {
                    s.organisations.insert(a, o.siret.clone());
                }
            }
        }
        for api in apis {
            let base = if api.upstream_url.ends_with('/') {
                api.upstream_url.clone()
            } else {
                format!("{}/", api.upstream_url)
            };
            let Ok(upstream) = url::Url::parse(&base) else {
                skipped.push(api.id.clone());
                continue;
            };
            let major = api
                .version
                .split('.')
                .next()
                .unwrap_or_default()
                .trim_start_matches('v')
                .to_string();
            let operations = operations(&api.openapi);
            let personal = api
                .scopes
                .iter()
                .flat_map(|sc| &sc.data_items)
                .any(|d| personal_items.contains(d));
            s.routes.insert(
                api.id.clone(),
                Arc::new(Route {
                    personal,
                    api,
                    major,
                    upstream,
                    operations,
                }),
            );
        }
        for h in &habilitations {
            let Some(g) = Grant::from_habilitation(h) else {
                continue;
            };
            let g = Arc::new(g);
            if let Some(c) = &g.client_id {
                s.by_client.insert(c.clone(), g.clone());
            }
            // With several validated habilitations for one service and API (a reopened
            // one is validated, the old one archived just after), the one valid the
            // longest is used for calls on a person's behalf.
            let key = (g.requester.clone(), g.api.clone());
            if s.by_service
                .get(&key)
                .is_none_or(|other| (&other.valid_until, &other.id) < (&g.valid_until, &g.id))
            {
                s.by_service.insert(key, g.clone());
            }
            s.by_id.insert(g.id.clone(), g);
        }
        (s, skipped)
    }

    /// The API `api` of organisation `organisation` (SIRET, SIREN or acronym slug).
    pub fn route(&self, organisation: &str, api: &str) -> Option<Arc<Route>> {
        let siret = self.organisations.get(organisation)?;
        self.routes
            .get(api)
            .filter(|r| &r.api.organisation == siret)
            .cloned()
    }

    /// The providing organisation's acronym or name, as API Entreprise's
    /// `meta.provider` gives it ("DGFIP", "INSEE"); its SIRET if it has neither.
    pub fn provider_name(&self, siret: &str) -> String {
        self.names
            .get(siret)
            .cloned()
            .unwrap_or_else(|| siret.to_string())
    }

    pub fn route_by_id(&self, api: &str) -> Option<Arc<Route>> {
        self.routes.get(api).cloned()
    }

    pub fn grant_by_client(&self, client_id: &str) -> Option<Arc<Grant>> {
        self.by_client.get(client_id).cloned()
    }

    pub fn grant(&self, id: &str) -> Option<Arc<Grant>> {
        self.by_id.get(id).cloned()
    }

    /// The validated habilitation of a service organisation for an API.
    pub fn grant_for(&self, requester: &str, api: &str) -> Option<Arc<Grant>> {
        self.by_service
            .get(&(requester.to_string(), api.to_string()))
            .cloned()
    }

    /// Every validated habilitation of a service organisation.
    pub fn grants_of(&self, requester: &str) -> Vec<Arc<Grant>> {
        let mut v: Vec<_> = self
            .by_id
            .values()
            .filter(|g| g.requester == requester)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// The purpose triple of a call (API Entreprise's mandatory parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose {
    /// The procedure or case (`context`), e.g. "Tarification cantine 2027".
    pub context: String,
    /// SIRET of the organisation that receives the data (`recipient`).
    pub recipient: String,
    /// The file or case reference (`object`, at most 50 characters).
    pub object: String,
}

/// Checks the purpose triple; the message lists every problem.
pub fn purpose(
    context: Option<&str>,
    recipient: Option<&str>,
    object: Option<&str>,
) -> Result<Purpose, String> {
    let mut problems = Vec::new();
    let context = context.map(str::trim).unwrap_or_default();
    let recipient = recipient.map(str::trim).unwrap_or_default();
    let object = object.map(str::trim).unwrap_or_default();
    if context.is_empty() {
        problems.push("context is required (the procedure the call serves)".to_string());
    } else if context.chars().count() > 200 {
        problems.push("context is longer than 200 characters".into());
    }
    if recipient.is_empty() {
        problems
            .push("recipient is required (SIRET of the organisation receiving the data)".into());
    } else if let Some(p) = socle_core::siret::siret_problem(recipient) {
        problems.push(format!("recipient: {p}"));
    }
    if object.is_empty() {
        problems.push("object is required (the case or file reference)".into());
    } else if object.chars().count() > 50 {
        problems.push("object is longer than 50 characters".into());
    }
    if context.chars().chain(object.chars()).any(char::is_control) {
        problems.push("context and object must not contain control characters".into());
    }
    if problems.is_empty() {
        Ok(Purpose {
            context: context.to_string(),
            recipient: recipient.to_string(),
            object: object.to_string(),
        })
    } else {
        Err(problems.join("; "))
    }
}

/// Bytes whose percent-encoding may not reach a provider: once decoded there, they
/// would change the path's structure (`/`, `\\`, `;` path parameters, `?`, `#`),
/// hide a second encoding (`%`), or end a string (controls).
fn meaningful_encoding(b: u8) -> bool {
    matches!(b, b'/' | b'\\' | b';' | b'?' | b'#' | b'%') || b.is_ascii_control()
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises the path a caller asks for, as RFC 3986 §6.2.2 says (percent-encoded
/// unreserved characters decoded, the other encodings' hex in upper case), and checks
/// it: segments only (no empty segment, no `.` or `..`, no `;` path parameter, no
/// backslash or control), and no segment still carrying an encoding that could change
/// its meaning at the provider (`%2F`, `%5C`, `%3B`, `%3F`, `%23`, `%25`, controls).
/// The result is both what operations are matched against and what is forwarded, so
/// the provider sees the path the platform authorised.
pub fn normalise_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let refuse = || format!("the path segment {seg:?} is not allowed");
        let bytes = seg.as_bytes();
        let start = out.len();
        let mut j = 0;
        while j < bytes.len() {
            let b = bytes[j];
            if b == b'%' {
                let hex = bytes
                    .get(j + 1..j + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!("the path segment {seg:?} has a malformed percent-encoding")
                    })?;
                if unreserved(hex) {
                    out.push(hex as char);
                } else if meaningful_encoding(hex) {
                    return Err(refuse());
                } else {
                    out.push_str(&format!("%{hex:02X}"));
                }
                j += 3;
            } else {
                if b == b'\\' || b == b';' || b.is_ascii_control() || !b.is_ascii() {
                    return Err(refuse());
                }
                out.push(b as char);
                j += 1;
            }
        }
        let normalised = &out[start..];
        if normalised.is_empty() || normalised == "." || normalised == ".." {
            return Err(refuse());
        }
        // Encoded bytes that are not UTF-8 (an overlong `%C0%AE` is `.` to some old
        // decoders) are refused.
        if decode(normalised).is_none() {
            return Err(refuse());
        }
    }
    Ok(out)
}

/// The text a normalised segment stands for (every percent-encoding decoded), compared
/// with the document's literal segments; `None` when it is not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'%'
            && let Some(b) = bytes
                .get(j + 1..j + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            j += 3;
        } else {
            out.push(bytes[j]);
            j += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether granted scopes reach an operation.
pub fn covers(op: &Operation, granted: &[String]) -> bool {
    if granted.is_empty() {
        return false;
    }
    op.requires.is_empty()
        || op
            .requires
            .iter()
            .any(|set| set.iter().all(|s| granted.contains(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_and_scope_requirements() {
        let doc = json!({"paths": {
            "/foyers/{id}": {"get": {"security": [{"socle": ["rfr"]}, {"socle": ["a", "b"]}]}},
            "/ping": {"get": {}, "parameters": []}
        }});
        let ops = operations(&doc);
        assert_eq!(ops.len(), 2);
        let foyers = ops.iter().find(|o| o.segments.len() == 2).unwrap();
        assert!(foyers.matches("get", &["foyers", "123"]));
        assert!(!foyers.matches("get", &["foyers", ""]));
        assert!(!foyers.matches("post", &["foyers", "123"]));
        assert!(!foyers.matches("get", &["foyers", "1", "2"]));
        assert!(covers(foyers, &["rfr".into()]));
        assert!(covers(foyers, &["a".into(), "b".into()]));
        assert!(!covers(foyers, &["a".into()]));
        let ping = ops.iter().find(|o| o.segments.len() == 1).unwrap();
        assert!(covers(ping, &["x".into()]));
        assert!(!covers(ping, &[]));
    }

    #[test]
    fn paths_are_normalised_and_checked() {
        for (raw, want) in [
            ("", Some("")),
            ("a/b", Some("a/b")),
            ("personnes/%72echerche", Some("personnes/recherche")),
            ("personnes/%72%65%63herche", Some("personnes/recherche")),
            ("a%2eb", Some("a.b")),
            ("%7Euser", Some("~user")),
            ("caf%c3%a9", Some("caf%C3%A9")),
            ("a%20b", Some("a%20b")),
            ("a%3ab", Some("a%3Ab")),
            ("../x", None),
            ("a/../b", None),
            ("a/%2e%2e/b", None),
            ("a/%2E/b", None),
            ("a//b", None),
            ("a/", None),
            ("a%2Fb", None),
            ("a%2fb", None),
            ("a%5cb", None),
            ("a\\b", None),
            ("a/./b", None),
            ("a/..;/b", None),
            ("a/..%3B/b", None),
            ("a;jsessionid=1", None),
            ("a%00b", None),
            ("%2572echerche", None),
            ("a%3fb", None),
            ("a%23b", None),
            ("a%zzb", None),
            ("a%2", None),
            ("é", None),
            ("%C0%AE%C0%AE", None),
            ("a%FF", None),
        ] {
            assert_eq!(normalise_path(raw).ok().as_deref(), want, "{raw:?}");
        }
    }

    /// The matcher over a table of paths: concrete before templated whatever the
    /// document's order, literals compared with the decoded segment.
    #[test]
    fn operation_matching() {
        let ops = operations(&json!({"paths": {
            "/personnes/{id}": {"get": {"security": [{"s": ["lecture"]}]}},
            "/personnes/recherche": {"get": {"security": [{"s": ["recherche"]}]}},
            "/personnes/{id}/adresse": {"get": {}},
            "/{type}/recherche/{id}": {"get": {}},
            "/personnes/{id}/{champ}": {"get": {}},
            "/export": {"post": {}},
            "/{x}": {"get": {}},
            "/caf%C3%A9": {"get": {}}
        }}));
        let find = |method: &str, path: &str| -> Option<String> {
            let path = normalise_path(path).ok()?;
            best_operation(&ops, method, &path)
                .ok()
                .flatten()
                .map(Operation::name)
        };
        for (method, path, want) in [
            (
                "get",
                "personnes/recherche",
                Some("GET /personnes/recherche"),
            ),
            (
                "get",
                "personnes/%72echerche",
                Some("GET /personnes/recherche"),
            ),
            // Read as `recherche` by a provider that ignores case or suffixes: refused.
            ("get", "personnes/RECHERCHE", None),
            ("get", "personnes/Recherche", None),
            ("get", "personnes/recherche.json", None),
            ("get", "personnes/REcherche.xml", None),
            ("get", "personnes/recherches", Some("GET /personnes/{id}")),
            ("get", "personnes/.recherche", Some("GET /personnes/{id}")),
            ("get", "personnes/42", Some("GET /personnes/{id}")),
            (
                "get",
                "personnes/42/adresse",
                Some("GET /personnes/{id}/adresse"),
            ),
            (
                "get",
                "personnes/42/%61dresse",
                Some("GET /personnes/{id}/adresse"),
            ),
            (
                "get",
                "personnes/42/nom",
                Some("GET /personnes/{id}/{champ}"),
            ),
            (
                "get",
                "personnes/recherche/7",
                Some("GET /personnes/{id}/{champ}"),
            ),
            (
                "get",
                "foyers/recherche/7",
                Some("GET /{type}/recherche/{id}"),
            ),
            ("post", "personnes/recherche", None),
            ("get", "export", None),
            ("post", "export", Some("POST /export")),
            ("get", "autre", Some("GET /{x}")),
            ("get", "caf%C3%A9", Some("GET /caf%C3%A9")),
            ("get", "caf%c3%a9", Some("GET /caf%C3%A9")),
            ("get", "personnes", Some("GET /{x}")),
            ("get", "", None),
            ("get", "personnes/%2F", None),
        ] {
            assert_eq!(find(method, path).as_deref(), want, "{method} {path}");
        }
    }

    #[test]
    fn purpose_rules() {
        let ok = purpose(Some("Cantine"), Some("99003003300015"), Some("dossier-42")).unwrap();
        assert_eq!(ok.object, "dossier-42");
        let e = purpose(None, Some("12345678901234"), Some(&"x".repeat(51))).unwrap_err();
        assert!(e.contains("context is required"), "{e}");
        assert!(e.contains("recipient"), "{e}");
        assert!(e.contains("50 characters"), "{e}");
        assert!(purpose(Some("a\nb"), Some("99003003300015"), Some("o")).is_err());
    }

    #[test]
    fn slugs_and_consent() {
        assert_eq!(slug("CAF démo"), "caf-demo");
        assert_eq!(slug("CFP  démo!"), "cfp-demo");
        let basis = |nature: &str, consent| LegalBasis {
            nature: nature.into(),
            text: "t".into(),
            url: None,
            consent,
        };
        assert!(basis("Consentement de la personne", false).is_consent());
        assert!(basis("Accord exprès de la personne", true).is_consent());
        assert!(!basis("mission d’intérêt public", false).is_consent());
    }
}
