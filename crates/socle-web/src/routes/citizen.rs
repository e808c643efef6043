//! The citizen space, "Mon espace" (`/mon-espace/…`): a person logs in through identity
//! federation — the space is a service provider of the platform like any other — and
//! sees the exchanges that concern them with their proofs, their logins, their
//! consents (grant, withdraw, receipts), and can export everything as JSON. The rules
//! and reading are in `socle_citizen`; these handlers render and parse. The session is
//! a random token in an HttpOnly cookie, kept hashed in the store; forms carry a CSRF
//! token from the session.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socle_citizen::{
    AuthorisationView, CitizenError, ConnectionView, ConsentPreview, ExchangePage, Filter,
    LegalBasisView, Person, Space,
};

use crate::AppState;
use crate::error::{ApiError, PageError};
use crate::pages::{Layout, render};
use crate::routes::oidc::query_pairs;
use crate::session::{self, ESPACE_SESSION};

/// The citizen space as a service provider of the platform.
pub struct Citizen {
    pub space: Space,
    pub client_id: String,
    pub client_secret: String,
    pub public_url: String,
    /// The eIDAS level asked of identity providers (`acr_values`).
    pub eidas_level: u8,
    /// Lifetime of a session, seconds.
    pub session_ttl: i64,
}

impl Citizen {
    pub fn redirect_uri(&self) -> String {
        format!("{}/mon-espace/retour", self.public_url)
    }

    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/mon-espace/", self.public_url)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    /// Where to go once logged in (a path of the space).
    back_to: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    #[serde(default)]
    pending: Option<Pending>,
    #[serde(default)]
    identity_hash: Option<String>,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    id_token: String,
    /// The address the identity provider gave, for the opt-in digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
}

use socle_core::clock::{now, today};

async fn load(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    ESPACE_SESSION.load(state, headers).await
}

/// A logged-in person: the space, who they are, their session. A request without a
/// session is sent to the login, which comes back to the same address (GET), or to
/// the space's home (forms).
pub struct Signed {
    pub(crate) c: std::sync::Arc<Citizen>,
    pub(crate) p: Person,
    pub(crate) s: Session,
}

impl axum::extract::FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let c = state.citizen.clone();
        match load(state, &parts.headers).await {
            Some((_, s)) if s.identity_hash.is_some() => Ok(Signed {
                c,
                p: Person {
                    identity_hash: s.identity_hash.clone().unwrap_or_default(),
                },
                s,
            }),
            _ => {
                let back = match parts.uri.path_and_query() {
                    Some(p) if parts.method == axum::http::Method::GET => p.as_str().to_string(),
                    _ => "/mon-espace/".into(),
                };
                Err(Redirect::to(&format!(
                    "/mon-espace/connexion?retour={}",
                    url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
                ))
                .into_response())
            }
        }
    }
}

pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The fields of a form or query; `None` when one is repeated (which value would be
/// meant is not ours to guess).
fn fields(pairs: impl Iterator<Item = (String, String)>) -> Option<BTreeMap<String, String>> {
    crate::routes::oidc::unique(pairs.collect()).ok()
}

pub(crate) fn form_map(body: &Bytes) -> Option<BTreeMap<String, String>> {
    fields(url::form_urlencoded::parse(body).into_owned())
}

fn query_map(uri: &Uri) -> Option<BTreeMap<String, String>> {
    fields(query_pairs(uri).into_iter())
}

/// A form or address with a repeated field: refused, nothing changed.
pub(crate) fn repeated_field() -> PageError {
    PageError {
        status: StatusCode::BAD_REQUEST,
        title: "Demande invalide",
        message: "Un champ du formulaire ou de l’adresse est répété : la demande est refusée \
                  et rien n’a été modifié. Revenez à la page précédente et recommencez."
            .into(),
    }
}

/// The form's CSRF token is the session's.
pub(crate) fn check_csrf(s: &Session, m: &BTreeMap<String, String>) -> Result<(), PageError> {
    session::check_csrf(m.get("csrf").map(String::as_str), &s.csrf)
}

/// `13/11/2026 à 09:05 (UTC)` from an RFC 3339 time.
pub fn french_time(t: &str) -> String {
    let (Some(d), Some(h)) = (t.get(..10), t.get(11..16)) else {
        return t.to_string();
    };
    let p: Vec<&str> = d.split('-').collect();
    if p.len() != 3 {
        return t.to_string();
    }
    format!("{}/{}/{} à {h} (UTC)", p[2], p[1], p[0])
}

fn french_date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|d| format!("{:02}/{:02}/{:04}", d.day(), u8::from(d.month()), d.year()))
        .unwrap_or_default()
}

// ----- login and logout --------------------------------------------------------------

/// Starts a login at the platform (authorization code flow, as any service).
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let c = &state.citizen;
    let q = query_map(&uri).ok_or_else(repeated_field)?;
    // Only a page of the space, written with visible characters (it becomes a
    // Location header), never the login steps themselves.
    let back_to = q
        .get("retour")
        .filter(|v| {
            v.starts_with("/mon-espace")
                && !v.contains("//")
                && !v.contains('\\')
                && v.bytes().all(|b| b.is_ascii_graphic())
                && !matches!(
                    v.split(['?', '#']).next(),
                    Some("/mon-espace/connexion" | "/mon-espace/retour")
                )
        })
        .cloned()
        .unwrap_or_else(|| "/mon-espace/".into());
    // A login always starts a fresh session: a session already in this browser may
    // have been planted (someone else's, logged in: a login CSRF would then show
    // them the person's choices and exchanges as their own). Whatever was there ends.
    if let Some((old, _)) = load(&state, &headers).await {
        ESPACE_SESSION.end(&state, &old).await;
    }
    let token = socle_identity::random_token(32);
    let pending = Pending {
        state: socle_identity::random_token(32),
        nonce: socle_identity::random_token(32),
        back_to,
    };
    let session = Session {
        csrf: session::csrf_token(),
        pending: Some(pending.clone()),
        ..Session::default()
    };
    ESPACE_SESSION.save(&state, &token, &session, 600).await?;
    let mut u = url::Url::parse(&format!("{}/api/v2/authorize", c.public_url))
        .map_err(|_| ApiError::internal())?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &c.client_id)
        .append_pair("redirect_uri", &c.redirect_uri())
        .append_pair("scope", "openid identite_pivot email")
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("acr_values", &format!("eidas{}", c.eidas_level));
    Ok(ESPACE_SESSION.with_cookie(
        &state,
        Redirect::to(u.as_str()).into_response(),
        &token,
        600,
    ))
}

/// Back from the platform: the code is exchanged (in process, with the space's
/// credentials), the ID token's nonce checked, the person's identity read from the
/// access token.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let c = &state.citizen;
    let identity = &state.identity;
    let q = query_map(&uri).ok_or_else(repeated_field)?;
    let failed = |m: &str| {
        Err(PageError {
            status: StatusCode::BAD_REQUEST,
            title: "Connexion impossible",
            message: m.to_string(),
        })
    };
    let Some((token, mut session)) = load(&state, &headers).await else {
        return failed(
            "Cette connexion a expiré ou n’a pas été commencée ici. Recommencez depuis « Mon espace ».",
        );
    };
    let Some(pending) = session
        .pending
        .take()
        .filter(|p| Some(&p.state) == q.get("state"))
    else {
        return failed(
            "Cette connexion est inconnue ou a déjà abouti. Recommencez depuis « Mon espace ».",
        );
    };
    if q.get("error").map(String::as_str) == Some("access_denied") {
        // Cancelled on the choice page or refused at the provider: the person's choice,
        // said plainly, with the way back (not an error page).
        let page = crate::routes::oidc::LoginErrorPage {
            layout: Layout::current("Connexion annulée"),
            cancelled: true,
            message: "Vous avez annulé la connexion : vous n’êtes pas connecté à « Mon espace »."
                .into(),
            back_url: Some("/mon-espace/".into()),
            retry_url: None,
            client_name: Some("Mon espace".into()),
            request_id: String::new(),
        };
        return Ok(render(&page));
    }
    if q.contains_key("error") {
        return failed(
            "La connexion n’a pas abouti. Vous pouvez recommencer depuis « Mon espace ».",
        );
    }
    let Some(code) = q.get("code") else {
        return failed("La plateforme n’a pas renvoyé de code de connexion.");
    };
    let form: BTreeMap<String, String> = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", c.redirect_uri().as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let tokens = match identity
        .token(&form, Some((c.client_id.clone(), c.client_secret.clone())))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "citizen space: code not exchanged");
            return failed("La connexion n’a pas pu aboutir. Recommencez depuis « Mon espace ».");
        }
    };
    let id_token = tokens
        .get("id_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let nonce_ok = identity
        .keys
        .verify(id_token)
        .ok()
        .and_then(|p| p.claim("nonce").and_then(Value::as_str).map(str::to_string))
        .is_some_and(|n| n == pending.nonce);
    let access = tokens
        .get("access_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let person = match identity.person_token(access).await {
        Ok(p) if nonce_ok => p,
        _ => return failed("La réponse de la plateforme n’a pas pu être vérifiée. Recommencez."),
    };
    session.identity_hash = Some(person.identity_hash.clone());
    session.given_name = person.identity.given_name.clone();
    session.email = person.identity.email.clone();
    session.id_token = id_token.to_string();
    // A new session token once logged in (no fixation).
    ESPACE_SESSION.end(&state, &token).await;
    let fresh = socle_identity::random_token(32);
    ESPACE_SESSION
        .save(&state, &fresh, &session, c.session_ttl)
        .await?;
    Ok(ESPACE_SESSION.with_cookie(
        &state,
        Redirect::to(&pending.back_to).into_response(),
        &fresh,
        c.session_ttl,
    ))
}

/// Ends the space's session, then the platform's (RP-initiated logout).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let c = &state.citizen;
    let Some((token, s)) = load(&state, &headers).await else {
        return Ok(Redirect::to("/mon-espace/").into_response());
    };
    let m = form_map(&body).ok_or_else(repeated_field)?;
    check_csrf(&s, &m)?;
    ESPACE_SESSION.end(&state, &token).await;
    let target = url::Url::parse_with_params(
        &format!("{}/api/v2/session/end", c.public_url),
        &[
            ("id_token_hint", s.id_token.as_str()),
            ("state", socle_identity::random_token(32).as_str()),
            (
                "post_logout_redirect_uri",
                c.post_logout_redirect_uri().as_str(),
            ),
        ],
    )
    .map(|u| u.to_string())
    .unwrap_or_else(|_| "/mon-espace/".into());
    Ok(ESPACE_SESSION.cleared(&state, Redirect::to(&target).into_response()))
}

// ----- pages -------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "citizen_home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub given_name: Option<String>,
    pub csrf: String,
    pub current: &'static str,
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let s = load(&state, &headers)
        .await
        .map(|(_, s)| s)
        .filter(|s| s.identity_hash.is_some());
    no_store(render(&HomePage {
        layout: Layout::current("Mon espace").section("espace"),
        given_name: s.as_ref().map(|s| s.given_name.clone()),
        csrf: s.map(|s| s.csrf).unwrap_or_default(),
        current: "accueil",
    }))
}

pub struct ExchangeRow {
    pub index: u64,
    pub when: String,
    pub service: String,
    pub provider: String,
    pub api: String,
    pub data_items: String,
    pub purpose: String,
    pub recipient: String,
    pub legal_basis: String,
    pub ok: bool,
    /// The state of the person's contest of this exchange, if any.
    pub contest: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "citizen_data.html")]
pub struct DataPage {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub rows: Vec<ExchangeRow>,
    pub page: ExchangePage,
    pub organisation: String,
    pub api: String,
    pub from: String,
    pub to: String,
    pub withheld_until: String,
    pub previous: Option<String>,
    pub next: Option<String>,
    /// The address the person's digest goes to, if they asked for one.
    pub digest: Option<String>,
    /// Whether the identity provider gave an address (a digest is possible).
    pub can_digest: bool,
}

fn filter_query(f: &Filter, page: usize) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("organisation", &f.organisation),
        ("api", &f.api),
        ("du", &f.from),
        ("au", &f.to),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    s.append_pair("page", &page.to_string());
    format!("/mon-espace/donnees?{}", s.finish())
}

pub async fn data(signed: Signed, uri: Uri) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let q = query_map(&uri).ok_or_else(repeated_field)?;
    let date = |k: &str| {
        q.get(k)
            .filter(|d| {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .is_ok()
            })
            .cloned()
    };
    let filter = Filter {
        organisation: q.get("organisation").filter(|o| !o.is_empty()).cloned(),
        api: q.get("api").filter(|a| !a.is_empty()).cloned(),
        from: date("du"),
        to: date("au"),
    };
    let page_no = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let page = c.space.exchanges(&p, &filter, page_no).await?;
    let digest = c.space.digest(&p).await?;
    let contested: std::collections::HashMap<u64, &'static str> = c
        .space
        .contests(&p)
        .await?
        .into_iter()
        .map(|x| (x.index, x.state.label()))
        .collect();
    let rows = page
        .items
        .iter()
        .map(|e| ExchangeRow {
            contest: contested.get(&e.index).copied(),
            index: e.index,
            when: french_time(&e.time),
            service: e.service_name.clone(),
            provider: e.provider_name.clone(),
            api: e.api_title.clone(),
            data_items: e.data_items.join(", "),
            purpose: e.purpose.clone(),
            recipient: e.recipient.clone(),
            legal_basis: e.legal_basis.clone(),
            ok: e.outcome == "ok",
        })
        .collect();
    Ok(no_store(render(&DataPage {
        layout: Layout::current("Mes données").section("espace"),
        csrf: s.csrf,
        current: "donnees",
        rows,
        organisation: filter.organisation.clone().unwrap_or_default(),
        api: filter.api.clone().unwrap_or_default(),
        from: filter.from.clone().unwrap_or_default(),
        to: filter.to.clone().unwrap_or_default(),
        withheld_until: page
            .withheld_until
            .as_deref()
            .map(|d| french_time(&format!("{d}T00:00")).replace(" à 00:00 (UTC)", ""))
            .unwrap_or_default(),
        digest,
        can_digest: s.email.is_some(),
        previous: (page.page > 1).then(|| filter_query(&filter, page.page - 1)),
        next: (page.page < page.pages).then(|| filter_query(&filter, page.page + 1)),
        page,
    })))
}

/// `POST /mon-espace/resume`: asks for (`choix=oui`) or withdraws (`choix=non`) the
/// daily digest of new exchanges.
pub async fn digest(signed: Signed, body: Bytes) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let m = form_map(&body).ok_or_else(repeated_field)?;
    check_csrf(&s, &m)?;
    let now = now();
    let done = match m.get("choix").map(String::as_str) {
        Some("oui") => c.space.subscribe(&p, s.email.as_deref(), now).await,
        Some("non") => c.space.unsubscribe(&p).await,
        _ => Err(CitizenError::Invalid("Choix inconnu.".into())),
    };
    done?;
    Ok(Redirect::to("/mon-espace/donnees").into_response())
}

/// The proof bundle of one entry, as a file (`socle journal verify --proof`).
pub async fn proof(signed: Signed, Path(index): Path<String>) -> Result<Response, PageError> {
    let Signed { c, p, s: _ } = signed;
    // Parsed here, not by the extractor: a bad index is a page like any unknown one.
    let index = index.parse::<u64>().map_err(|_| PageError::not_found())?;
    let b = c.space.proof(&p, index).await?;
    let mut r = no_store(axum::Json(b).into_response());
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"preuve-{index}.json\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

pub struct ConnectionRow {
    pub when: String,
    pub service: String,
    pub provider: String,
    pub level: String,
}

#[derive(Template)]
#[template(path = "citizen_connections.html")]
pub struct ConnectionsPage {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub rows: Vec<ConnectionRow>,
}

fn level(acr: &str) -> String {
    socle_identity::Eidas::parse(acr)
        .map(|e| format!("{} ({acr})", e.label()))
        .unwrap_or_else(|| acr.to_string())
}

pub async fn connections(signed: Signed) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let list: Vec<ConnectionView> = c.space.connections(&p).await?;
    Ok(no_store(render(&ConnectionsPage {
        layout: Layout::current("Mes connexions").section("espace"),
        csrf: s.csrf,
        current: "connexions",
        rows: list
            .into_iter()
            .map(|v| ConnectionRow {
                when: french_time(&v.time),
                service: v.service,
                provider: if v.provider == "demo" {
                    "Fournisseur d’identité de démonstration".into()
                } else {
                    v.provider
                },
                level: level(&v.acr),
            })
            .collect(),
    })))
}

pub struct ConsentRow {
    pub view: AuthorisationView,
    pub granted: String,
    pub until: String,
    pub revoked: String,
}

#[derive(Template)]
#[template(path = "citizen_authorisations.html")]
pub struct AuthorisationsPage {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub consents: Vec<ConsentRow>,
    pub others: Vec<LegalBasisView>,
    pub message: Option<String>,
}

/// What the person just did, shown once back on the list (the form's POST answers
/// with a redirect here: reloading the page never sends the form again).
enum Done {
    Granted(String),
    Revoked(String),
    Refused,
}

impl Done {
    /// What the address says was done, if the platform wrote that address for this
    /// session (`jeton`: a MAC under the session's secret): a link from elsewhere
    /// cannot make the page claim a step the person did not take.
    fn from_query(q: &BTreeMap<String, String>, s: &Session) -> Option<Done> {
        let receipt = || q.get("recu").cloned().unwrap_or_default();
        let done = match q.get("fait").map(String::as_str) {
            Some("accord") => Done::Granted(receipt()),
            Some("retrait") => Done::Revoked(receipt()),
            Some("refus") => Done::Refused,
            _ => return None,
        };
        let tag = q.get("jeton").map(String::as_str).unwrap_or_default();
        socle_identity::ct_eq(tag.as_bytes(), done.tag(s).as_bytes()).then_some(done)
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            Done::Granted(id) => ("accord", id),
            Done::Revoked(id) => ("retrait", id),
            Done::Refused => ("refus", ""),
        }
    }

    fn tag(&self, s: &Session) -> String {
        use hmac::{KeyInit, Mac};
        let (done, receipt) = self.parts();
        // HMAC takes keys of any length: the error branch cannot be taken.
        match hmac::Hmac::<sha2::Sha256>::new_from_slice(s.csrf.as_bytes()) {
            Ok(mut mac) => {
                mac.update(format!("mon-espace/autorisations\n{done}\n{receipt}").as_bytes());
                hex::encode(&mac.finalize().into_bytes()[..16])
            }
            Err(_) => String::new(),
        }
    }

    fn location(&self, s: &Session) -> String {
        let (done, receipt) = self.parts();
        let mut u = format!("/mon-espace/autorisations?fait={done}");
        if !receipt.is_empty() {
            u.push_str("&recu=");
            u.extend(url::form_urlencoded::byte_serialize(receipt.as_bytes()));
        }
        u.push_str("&jeton=");
        u.push_str(&self.tag(s));
        u
    }

    /// The message (the receipt's id came from the platform: the address is signed).
    fn message(&self) -> String {
        match self {
            Done::Granted(id) => format!(
                "Autorisation accordée. Vous pouvez la retirer à tout moment ici ; son reçu signé est à télécharger ci-dessous ({id})."
            ),
            Done::Revoked(id) => format!(
                "Autorisation retirée : le service ne pourra plus obtenir ces données. Reçu signé : « {id} »."
            ),
            Done::Refused => {
                "Vous avez refusé : aucune donnée ne sera transmise à ce service sur ce fondement."
                    .into()
            }
        }
    }
}

fn see_other(done: &Done, s: &Session) -> Response {
    no_store(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, done.location(s))],
        )
            .into_response(),
    )
}

async fn authorisations_page(
    c: &Citizen,
    p: &Person,
    s: &Session,
    done: Option<Done>,
) -> Result<Response, PageError> {
    let (consents, others) = c.space.authorisations(p).await?;
    let consents: Vec<ConsentRow> = consents
        .into_iter()
        .map(|v| ConsentRow {
            granted: french_date(v.consent.granted_at),
            until: french_date(v.consent.expires_at - 1),
            revoked: v.consent.revoked_at.map(french_date).unwrap_or_default(),
            view: v,
        })
        .collect();
    let title = match &done {
        Some(Done::Granted(_)) => "Autorisation accordée — Mes autorisations",
        Some(Done::Revoked(_)) => "Autorisation retirée — Mes autorisations",
        Some(Done::Refused) => "Refus enregistré — Mes autorisations",
        None => "Mes autorisations",
    };
    Ok(no_store(render(&AuthorisationsPage {
        layout: Layout::current(title).section("espace"),
        csrf: s.csrf.clone(),
        current: "autorisations",
        message: done.map(|d| d.message()),
        consents,
        others,
    })))
}

pub async fn authorisations(signed: Signed, uri: Uri) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let q = query_map(&uri).ok_or_else(repeated_field)?;
    authorisations_page(&c, &p, &s, Done::from_query(&q, &s)).await
}

pub async fn revoke(
    signed: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let m = form_map(&body).ok_or_else(repeated_field)?;
    check_csrf(&s, &m)?;
    let (consent, _) = c.space.revoke(&p, &id).await?;
    Ok(see_other(&Done::Revoked(consent.id), &s))
}

/// The signed receipt of a consent (a JWT, verifiable with the platform's JWKS).
pub async fn receipt(signed: Signed, Path(id): Path<String>) -> Result<Response, PageError> {
    let Signed { c, p, s: _ } = signed;
    let jwt = c.space.receipt(&p, &id).await?;
    let mut r = no_store((StatusCode::OK, jwt).into_response());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwt"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"recu-{id}.jwt\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[derive(Template)]
#[template(path = "citizen_request.html")]
pub struct RequestPage {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub preview: ConsentPreview,
    pub until: String,
    pub valid_until: String,
    /// The first date the form accepts (UTC), as `AAAA-MM-JJ`.
    pub today: String,
    pub message: Option<String>,
}

/// A service asks the person for a long-lived authorisation: the preview.
pub async fn request(signed: Signed, uri: Uri) -> Result<Response, PageError> {
    let Signed { c, p: _, s } = signed;
    let q = query_map(&uri).ok_or_else(repeated_field)?;
    let preview = c
        .space
        .request_preview(
            q.get("habilitation")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .await?;
    let until = q
        .get("jusqu_au")
        .cloned()
        .filter(|d| d.len() == 10 && d.as_str() <= preview.valid_until.as_str())
        .unwrap_or_else(|| preview.valid_until.clone());
    Ok(no_store(render(&RequestPage {
        layout: Layout::current("Autoriser un service").section("espace"),
        csrf: s.csrf,
        current: "autorisations",
        valid_until: french_time(&format!("{}T00:00", preview.valid_until))
            .replace(" à 00:00 (UTC)", ""),
        until,
        today: today(),
        preview,
        message: None,
    })))
}

/// The person's answer to the request: grant (until a date) or refuse.
pub async fn decide(signed: Signed, body: Bytes) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let m = form_map(&body).ok_or_else(repeated_field)?;
    check_csrf(&s, &m)?;
    let hab = m.get("habilitation").cloned().unwrap_or_default();
    if m.get("decision").map(String::as_str) != Some("accorder") {
        return Ok(see_other(&Done::Refused, &s));
    }
    let msg = match c
        .space
        .grant(
            &p,
            &hab,
            m.get("jusqu_au").map(String::as_str).unwrap_or_default(),
        )
        .await
    {
        Ok((consent, _)) => return Ok(see_other(&Done::Granted(consent.id), &s)),
        Err(CitizenError::Invalid(msg)) => msg,
        Err(e) => return Err(e.into()),
    };
    // Refused: the request again, with the reason.
    let preview = c.space.request_preview(&hab).await?;
    let mut r = render(&RequestPage {
        layout: Layout::current("Autoriser un service").section("espace"),
        csrf: s.csrf.clone(),
        current: "autorisations",
        valid_until: french_time(&format!("{}T00:00", preview.valid_until))
            .replace(" à 00:00 (UTC)", ""),
        until: m.get("jusqu_au").cloned().unwrap_or_default(),
        today: today(),
        preview,
        message: Some(msg),
    });
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(no_store(r))
}

/// Everything, as JSON (GDPR articles 15 and 20).
pub async fn export(signed: Signed) -> Result<Response, PageError> {
    let Signed { c, p, s: _ } = signed;
    let v = c.space.export(&p).await?;
    let mut r = no_store(axum::Json(v).into_response());
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"mes-donnees.json\""),
    );
    Ok(r)
}
