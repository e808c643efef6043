//! The back-office pages ("Espace agent"): sign-in, the requests a person may see,
//! a request with its history and the actions open to them, the request form. The
//! same rules as the JSON API apply (they are in `socle_catalogue`); these handlers
//! only render and parse. The session is the sign-in token in an HttpOnly cookie;
//! forms carry a CSRF token derived from it (or, to sign in, a double-submit cookie).

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use socle_catalogue::habilitation::{
    Accreditation, Action, Contact, Form, Habilitation, LegalBasis, Side, State as HabState,
};
use socle_catalogue::people::Actor;
use socle_catalogue::{BackOffice, CatalogueError};

use crate::AppState;
use crate::error::{PageError, STALE};
use crate::extract::ClientIp;
use crate::pages::{Layout, render};
use crate::session::{self, AGENT, AGENT_LOGIN_CSRF, csrf_of};

/// The signed-in agent, and their session's token: an extractor, so that a handler
/// of the Espace agent starts signed in. Without a valid session the request is sent
/// to the sign-in page.
pub struct Agent {
    pub actor: Actor,
    pub token: String,
    pub office: BackOffice,
}

impl axum::extract::FromRequestParts<AppState> for Agent {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let to_login = || Redirect::to("/espace-agent/connexion").into_response();
        let Some(token) = AGENT
            .read(&parts.headers, session::secure(state))
            .filter(|t| !t.is_empty())
        else {
            return Err(to_login());
        };
        match state.back_office.actor(&token).await {
            Ok(Some(actor)) => Ok(Agent {
                actor,
                token,
                office: state.back_office.clone(),
            }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

impl Agent {
    /// The form's fields, once its CSRF token is checked against the session's.
    pub(crate) fn form(&self, body: &Bytes) -> Result<BTreeMap<String, Vec<String>>, PageError> {
        let m = form_map(body);
        session::check_csrf(Some(&one(&m, "csrf")), &csrf_of(&self.token))?;
        Ok(m)
    }
}

/// After a step on an integration: this node's identity provider reads its client
/// afresh (the step wrote it).
pub(crate) fn client_changed(state: &AppState, h: &Habilitation) {
    if let (true, Some(id)) = (h.is_integration(), &h.client_id) {
        state.identity.clients.forget(id);
    }
}

/// The revision a page was built from, sent back with its form.
fn seen(m: &BTreeMap<String, Vec<String>>) -> Option<usize> {
    one(m, "revision").parse().ok()
}

fn form_map(body: &Bytes) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(body).into_owned() {
        m.entry(k).or_default().push(v);
    }
    m
}

pub(crate) fn one(m: &BTreeMap<String, Vec<String>>, k: &str) -> String {
    m.get(k)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_default()
}

// ----- sign-in --------------------------------------------------------------------

#[derive(Template)]
#[template(path = "agent_login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub csrf: String,
    pub message: Option<String>,
}

fn login_page(state: &AppState, message: Option<String>, status: StatusCode) -> Response {
    let csrf = session::csrf_token();
    let mut r = render(&LoginPage {
        layout: Layout::current(if message.is_some() {
            "Connexion refusée — Espace agent"
        } else {
            "Espace agent"
        }),
        csrf: csrf.clone(),
        message,
    });
    *r.status_mut() = status;
    if let Some(v) = AGENT_LOGIN_CSRF.set(&csrf, None, session::secure(state)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// "3 secondes", "1 minute", "15 minutes" (rounded up to the minute past a minute).
fn french_duration(seconds: u64) -> String {
    match seconds {
        0 | 1 => "1 seconde".into(),
        2..=59 => format!("{seconds} secondes"),
        _ => match seconds.div_ceil(60) {
            1 => "1 minute".into(),
            m => format!("{m} minutes"),
        },
    }
}

pub async fn login_form(State(state): State<AppState>) -> Response {
    login_page(&state, None, StatusCode::OK)
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(from): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = form_map(&body);
    let expected = AGENT_LOGIN_CSRF
        .read(&headers, session::secure(&state))
        .unwrap_or_default();
    session::check_csrf(Some(&one(&m, "csrf")), &expected)?;
    Ok(
        match state
            .back_office
            .sign_in(&one(&m, "email"), &one(&m, "password"), from)
            .await
        {
            Ok(Some(token)) => {
                let mut r = Redirect::to("/espace-agent").into_response();
                if let Some(v) = AGENT.set(&token, Some(28_800), session::secure(&state)) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Ok(None) => login_page(
                &state,
                Some("Adresse électronique ou mot de passe incorrect.".into()),
                StatusCode::UNAUTHORIZED,
            ),
            Err(CatalogueError::Throttled { retry_after }) => {
                let mut r = login_page(
                    &state,
                    Some(format!(
                        "Trop de tentatives de connexion ont échoué pour cette adresse. \
                     Pour protéger le compte, attendez {} avant de réessayer.",
                        french_duration(retry_after)
                    )),
                    StatusCode::TOO_MANY_REQUESTS,
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Err(e) => return Err(e.into()),
        },
    )
}

/// Signs out (a form with the CSRF token, so no other site can do it): the token is
/// deleted, so it stops working for the JSON API too, and the cookie is cleared.
pub async fn logout(
    State(state): State<AppState>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    a.form(&body)?;
    a.office.sign_out(&a.token).await?;
    let mut r = Redirect::to("/espace-agent/connexion").into_response();
    if let Some(v) = AGENT.clear(session::secure(&state)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

// ----- the list -------------------------------------------------------------------

pub struct Row {
    pub id: String,
    pub title: String,
    pub api: String,
    pub requester: String,
    pub state: &'static str,
}

pub fn state_label(s: HabState) -> &'static str {
    match s {
        HabState::Draft => "Brouillon",
        HabState::Submitted => "Soumise",
        HabState::ChangesRequested => "Modifications demandées",
        HabState::Validated => "Validée",
        HabState::Refused => "Refusée",
        HabState::Revoked => "Révoquée",
        HabState::Expired => "Expirée",
        HabState::Archived => "Archivée",
    }
}

#[derive(Template)]
#[template(path = "agent_list.html")]
pub struct ListPage {
    pub layout: Layout,
    pub email: String,
    pub organisation: String,
    pub csrf: String,
    pub rows: Vec<Row>,
}

pub async fn list(a: Agent) -> Result<Response, PageError> {
    let actor = &a.actor;
    let list = a.office.list(actor).await?;
    Ok(render(&ListPage {
        layout: Layout::current("Demandes d’habilitation"),
        email: actor.email.clone(),
        organisation: actor.organisation.clone(),
        csrf: csrf_of(&a.token),
        rows: list
            .into_iter()
            .map(|h| Row {
                title: if h.form.title.is_empty() {
                    "(sans titre)".into()
                } else {
                    h.form.title.clone()
                },
                id: h.id,
                api: h.api,
                requester: h.requester,
                state: state_label(h.state),
            })
            .collect(),
    }))
}

// ----- one request ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "agent_request.html")]
pub struct RequestPage {
    pub layout: Layout,
    pub id: String,
    pub title: String,
    pub state: &'static str,
    pub message: Option<String>,
    pub message_kind: &'static str,
    pub facts: Vec<(&'static str, String)>,
    pub actions: Vec<(&'static str, &'static str)>,
    pub editable: bool,
    pub credentials: bool,
    pub credentials_label: &'static str,
    /// An integration's client, as its developers see it.
    pub client: Vec<(&'static str, String)>,
    /// Renewing the secret with a grace period (an integration's requester).
    pub renew: bool,
    pub graces: &'static [(i64, &'static str)],
    /// Editing a validated integration's addresses (a new request).
    pub reopen: bool,
    /// Asking for production (a validated sandbox integration).
    pub production: bool,
    pub csrf: String,
    /// The request's revision, sent back with the actions form.
    pub revision: usize,
    pub history: Vec<(String, String, String, String)>,
}

fn action_label(a: Action) -> &'static str {
    match a {
        Action::Submit => "Soumettre la demande",
        Action::RequestChanges => "Demander des modifications",
        Action::Validate => "Valider",
        Action::Refuse => "Refuser",
        Action::Revoke => "Révoquer",
        Action::Archive => "Archiver",
        Action::Expire => "Expirer",
    }
}

/// What an instructor reads of an integration request.
fn integration_facts(h: &Habilitation) -> Vec<(&'static str, String)> {
    let f = &h.form;
    let i = f.integration.clone().unwrap_or_default();
    let justified = f
        .scopes
        .iter()
        .map(|s| match i.justifications.get(s) {
            Some(j) => format!("{s} : {j}"),
            None => s.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ; ");
    let mut facts = vec![
        (
            "Demande",
            if i.production {
                "Intégration en production".to_string()
            } else {
                "Intégration en bac à sable (identités de démonstration)".to_string()
            },
        ),
        ("Organisation demandeuse (SIRET)", h.requester.clone()),
        ("Adresse du service", i.service_url.clone()),
        ("Finalité", f.purpose.clone()),
        (
            "Base légale",
            format!("{} — {}", f.legal_basis.nature, f.legal_basis.text),
        ),
        ("Périmètres demandés et justification", justified),
        ("Niveau eIDAS minimal", i.eidas_level.to_string()),
        (
            "Profil",
            if i.profile == "franceconnect" {
                "Règles de FranceConnect".to_string()
            } else {
                "OpenID Connect standard".to_string()
            },
        ),
        ("Adresses de retour", i.redirect_uris.join(" ")),
        (
            "Adresses après déconnexion",
            i.post_logout_redirect_uris.join(" "),
        ),
        (
            "Déconnexion en arrière-plan",
            i.backchannel_logout_uri.clone().unwrap_or_default(),
        ),
    ];
    facts.extend(contact_facts(f));
    if i.production || !f.accreditation.authority.is_empty() {
        facts.push((
            "Homologation",
            format!(
                "{} du {} au {}",
                f.accreditation.authority, f.accreditation.start, f.accreditation.end
            ),
        ));
    }
    facts
}

pub(crate) async fn request_page(
    a: &Agent,
    h: &Habilitation,
    message: Option<(String, &'static str)>,
    status: StatusCode,
) -> Result<Response, PageError> {
    use socle_catalogue::habilitation::{may, may_edit, side};
    let (actor, token) = (&a.actor, a.token.as_str());
    let s = side(actor, &h.requester, &h.producer);
    let actions = Action::ALL
        .into_iter()
        .filter(|a| may(s, *a) && a.from(h.state).is_some())
        .map(|a| (a.as_str(), action_label(a)))
        .collect();
    let f = &h.form;
    let integration = h.is_integration();
    let requester_validated = s == Side::Requester && h.state == HabState::Validated;
    let client = match (
        integration,
        a.office.integration_client_view(actor, &h.id).await,
    ) {
        (true, Ok(Some(c))) => vec![
            ("Identifiant client (client_id)", c.client_id.clone()),
            (
                "Environnement",
                if c.sandbox {
                    "Bac à sable : seul le fournisseur d’identité de démonstration est proposé"
                        .into()
                } else {
                    "Production".into()
                },
            ),
            (
                "État du client",
                if c.disabled { "Désactivé" } else { "Actif" }.into(),
            ),
            ("Adresses de retour enregistrées", c.redirect_uris.join(" ")),
            ("Périmètres", c.scopes.join(" ")),
            (
                "Découverte OpenID Connect",
                "/.well-known/openid-configuration".into(),
            ),
        ],
        (true, Err(e)) => return Err(e.into()),
        _ => Vec::new(),
    };
    let facts = if integration {
        integration_facts(h)
    } else {
        vec![
            ("API", h.api.clone()),
            ("Organisation demandeuse (SIRET)", h.requester.clone()),
            ("Producteur (SIRET)", h.producer.clone()),
            ("Finalité", f.purpose.clone()),
            (
                "Base légale",
                format!("{} — {}", f.legal_basis.nature, f.legal_basis.text),
            ),
            ("Périmètres demandés", f.scopes.join(", ")),
            (
                "Durée de conservation",
                format!("{} mois", f.retention_months),
            ),
            ("Destinataires", f.recipients.join(", ")),
        ]
        .into_iter()
        .chain(contact_facts(f))
        .chain([
            (
                "Homologation",
                format!(
                    "{} du {} au {}",
                    f.accreditation.authority, f.accreditation.start, f.accreditation.end
                ),
            ),
            (
                "Volume attendu",
                format!("{} appels par jour", f.expected_volume),
            ),
            ("Mise en service", f.go_live.clone()),
        ])
        .collect()
    };
    let history = h
        .history
        .iter()
        .map(|e| {
            (
                e.at.replace('T', " ").trim_end_matches('Z').to_string(),
                e.actor.clone(),
                format!(
                    "{} → {}",
                    crate::pages::action_label(&e.action),
                    state_label(e.to)
                ),
                e.comment.clone().unwrap_or_default(),
            )
        })
        .collect();
    let (message, message_kind) = match message {
        Some((m, k)) => (Some(m), k),
        None => (None, "info"),
    };
    let mut r = render(&RequestPage {
        layout: Layout::current(if f.title.is_empty() {
            "Demande"
        } else {
            &f.title
        }),
        id: h.id.clone(),
        title: if f.title.is_empty() {
            "(sans titre)".into()
        } else {
            f.title.clone()
        },
        state: state_label(h.state),
        message,
        message_kind,
        facts,
        actions,
        editable: may_edit(s, h.state),
        credentials: requester_validated,
        credentials_label: if integration {
            "Obtenir le secret du client"
        } else {
            "Obtenir les identifiants"
        },
        renew: integration && requester_validated,
        graces: crate::routes::partners::GRACES,
        reopen: integration && requester_validated,
        production: s == Side::Requester && h.may_ask_production(),
        client,
        csrf: csrf_of(token),
        revision: h.revision(),
        history,
    });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

pub async fn show(Path(id): Path<String>, a: Agent) -> Result<Response, PageError> {
    let h = a.office.get(&a.actor, &id).await?;
    request_page(&a, &h, None, StatusCode::OK).await
}

pub async fn act(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let (actor, office) = (&a.actor, &a.office);
    let Some(action) = Action::parse(&one(&m, "action")).filter(|a| *a != Action::Expire) else {
        return Err(CatalogueError::Invalid("action inconnue".into()).into());
    };
    let comment = Some(one(&m, "comment")).filter(|c| !c.trim().is_empty());
    let msg = match office.act(actor, &id, action, comment, seen(&m)).await {
        Ok(h) => {
            client_changed(&state, &h);
            state.gateway_changed().await;
            return Ok(Redirect::to(&format!("/espace-agent/demandes/{id}")).into_response());
        }
        Err(CatalogueError::Invalid(m) | CatalogueError::Conflict(m)) => m,
        Err(CatalogueError::Stale { .. }) => STALE.to_string(),
        Err(e) => return Err(e.into()),
    };
    // Refused: the request as it is now, with the reason.
    let h = office.get(actor, &id).await?;
    request_page(
        &a,
        &h,
        Some((msg, "error")),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub async fn credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    a.form(&body)?;
    let (actor, office) = (&a.actor, &a.office);
    let issued = office.credentials(actor, &id).await;
    state.gateway_changed().await;
    let message = match issued? {
        (client_id, Some(secret)) => format!(
            "Identifiant client : {client_id} — secret : {secret} — copiez ce secret maintenant : il ne sera plus affiché."
        ),
        (client_id, None) => format!(
            "Identifiant client : {client_id}. Le secret a déjà été affiché une fois : la plateforme n’en garde que l’empreinte."
        ),
    };
    let h = office.get(actor, &id).await?;
    client_changed(&state, &h);
    request_page(&a, &h, Some((message, "success")), StatusCode::OK).await
}

// ----- the form -------------------------------------------------------------------

pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub kind: &'static str,
    pub multiline: bool,
    pub value: String,
}

#[derive(Template)]
#[template(path = "agent_form.html")]
pub struct FormPage {
    pub layout: Layout,
    pub heading: &'static str,
    pub api: String,
    pub api_title: String,
    pub action: String,
    pub csrf: String,
    pub message: Option<String>,
    pub fields: Vec<Field>,
    /// (name, description, checked)
    pub scopes: Vec<(String, String, bool)>,
    /// The legal basis is the person's consent.
    pub legal_consent: bool,
}

/// One input of a form.
pub(crate) fn field(
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    kind: &'static str,
    multiline: bool,
    value: String,
) -> Field {
    Field {
        name,
        label,
        hint,
        kind,
        multiline,
        value,
    }
}

fn fields(f: &Form) -> Vec<Field> {
    vec![
        field(
            "title",
            "Intitulé de la démarche",
            "",
            "text",
            false,
            f.title.clone(),
        ),
    ]
    .into_iter()
    .chain(purpose_fields(
        f,
        "Pourquoi ces données sont nécessaires, en quelques phrases.",
    ))
    .chain([
        field(
            "retention_months",
            "Durée de conservation (mois)",
            "Au-delà de 36 mois, une justification est demandée.",
            "number",
            false,
            if f.retention_months == 0 {
                String::new()
            } else {
                f.retention_months.to_string()
            },
        ),
        field(
            "retention_justification",
            "Justification de la durée de conservation",
            "",
            "text",
            false,
            f.retention_justification.clone().unwrap_or_default(),
        ),
        field(
            "recipients",
            "Destinataires des données",
            "Un par ligne.",
            "text",
            true,
            f.recipients.join("\n"),
        ),
    ])
    .chain(contact_fields(f))
    .chain(accreditation_fields(f, ""))
    .chain([
        field(
            "expected_volume",
            "Volume attendu (appels par jour)",
            "",
            "number",
            false,
            if f.expected_volume == 0 {
                String::new()
            } else {
                f.expected_volume.to_string()
            },
        ),
        field(
            "go_live",
            "Date de mise en service",
            "Format AAAA-MM-JJ.",
            "text",
            false,
            f.go_live.clone(),
        ),
        field(
            "visible_after",
            "Visibilité différée (facultatif)",
            "Format AAAA-MM-JJ. Les personnes ne verront les échanges de cette habilitation dans leur espace qu’à partir de cette date (enquête en cours, par exemple) ; elles sauront combien sont différés et jusqu’à quand.",
            "text",
            false,
            f.visible_after.clone().unwrap_or_default(),
        ),
    ])
    .collect()
}

/// The three contacts of a request, as its page shows them.
fn contact_facts(f: &Form) -> [(&'static str, String); 3] {
    let c = |c: &Contact| format!("{} <{}>", c.name, c.email);
    [
        ("Responsable de traitement", c(&f.controller)),
        ("Délégué à la protection des données", c(&f.dpo)),
        ("Contact technique", c(&f.technical_contact)),
    ]
}

/// A contact as a request form posts it (`{prefix}_name`, `{prefix}_email`).
pub(crate) fn posted_contact(m: &BTreeMap<String, Vec<String>>, prefix: &str) -> Contact {
    Contact {
        name: one(m, &format!("{prefix}_name")),
        email: one(m, &format!("{prefix}_email")),
    }
}

/// The accreditation as a request form posts it.
pub(crate) fn posted_accreditation(m: &BTreeMap<String, Vec<String>>) -> Accreditation {
    Accreditation {
        authority: one(m, "acc_authority"),
        start: one(m, "acc_start"),
        end: one(m, "acc_end"),
    }
}

/// The purpose and the legal basis: fields of every request form.
pub(crate) fn purpose_fields(f: &Form, purpose_hint: &'static str) -> Vec<Field> {
    vec![
        field(
            "purpose",
            "Finalité",
            purpose_hint,
            "text",
            true,
            f.purpose.clone(),
        ),
        field(
            "legal_nature",
            "Nature de la base légale",
            "Par exemple : mission d’intérêt public.",
            "text",
            false,
            f.legal_basis.nature.clone(),
        ),
        field(
            "legal_text",
            "Texte de référence",
            "Loi, décret ou délibération, et article.",
            "text",
            false,
            f.legal_basis.text.clone(),
        ),
        field(
            "legal_url",
            "Adresse du texte",
            "Facultatif.",
            "url",
            false,
            f.legal_basis.url.clone().unwrap_or_default(),
        ),
    ]
}

/// The controller, the DPO and the technical contact: fields of every request form.
pub(crate) fn contact_fields(f: &Form) -> Vec<Field> {
    vec![
        field(
            "controller_name",
            "Responsable de traitement — nom",
            "",
            "text",
            false,
            f.controller.name.clone(),
        ),
        field(
            "controller_email",
            "Responsable de traitement — adresse électronique",
            "",
            "email",
            false,
            f.controller.email.clone(),
        ),
        field(
            "dpo_name",
            "Délégué à la protection des données — nom",
            "",
            "text",
            false,
            f.dpo.name.clone(),
        ),
        field(
            "dpo_email",
            "Délégué à la protection des données — adresse électronique",
            "",
            "email",
            false,
            f.dpo.email.clone(),
        ),
        field(
            "tech_name",
            "Contact technique — nom",
            "",
            "text",
            false,
            f.technical_contact.name.clone(),
        ),
        field(
            "tech_email",
            "Contact technique — adresse électronique",
            "",
            "email",
            false,
            f.technical_contact.email.clone(),
        ),
    ]
}

/// The accreditation's fields; `hint` on the first (when it is required).
pub(crate) fn accreditation_fields(f: &Form, hint: &'static str) -> Vec<Field> {
    vec![
        field(
            "acc_authority",
            "Homologation — autorité",
            hint,
            "text",
            false,
            f.accreditation.authority.clone(),
        ),
        field(
            "acc_start",
            "Homologation — début",
            "Format AAAA-MM-JJ.",
            "text",
            false,
            f.accreditation.start.clone(),
        ),
        field(
            "acc_end",
            "Homologation — fin",
            "Format AAAA-MM-JJ.",
            "text",
            false,
            f.accreditation.end.clone(),
        ),
    ]
}

/// A whole number typed in a form: empty is 0 (the domain then says the field is
/// required); anything else that does not parse is a problem naming the field, never a
/// silent 0.
fn number<T: std::str::FromStr + Default>(
    m: &BTreeMap<String, Vec<String>>,
    name: &str,
    label: &str,
    problems: &mut Vec<String>,
) -> T {
    let text = one(m, name);
    let text = text.trim();
    if text.is_empty() {
        return T::default();
    }
    text.parse().unwrap_or_else(|_| {
        problems.push(format!(
            "« {label} » : « {text} » n’est pas un nombre entier positif."
        ));
        T::default()
    })
}

/// The habilitation form as posted, and the fields that could not be read.
fn parse_form(m: &BTreeMap<String, Vec<String>>) -> (Form, Vec<String>) {
    let url = one(m, "legal_url");
    let justification = one(m, "retention_justification");
    let mut problems = Vec::new();
    let form = Form {
        title: one(m, "title"),
        purpose: one(m, "purpose"),
        legal_basis: LegalBasis {
            nature: one(m, "legal_nature"),
            text: one(m, "legal_text"),
            url: (!url.trim().is_empty()).then_some(url),
            consent: m.contains_key("legal_consent"),
        },
        scopes: m.get("scopes").cloned().unwrap_or_default(),
        retention_months: number(
            m,
            "retention_months",
            "Durée de conservation (mois)",
            &mut problems,
        ),
        retention_justification: (!justification.trim().is_empty()).then_some(justification),
        recipients: one(m, "recipients")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        controller: posted_contact(m, "controller"),
        dpo: posted_contact(m, "dpo"),
        technical_contact: posted_contact(m, "tech"),
        accreditation: posted_accreditation(m),
        expected_volume: number(
            m,
            "expected_volume",
            "Volume attendu (appels par jour)",
            &mut problems,
        ),
        go_live: one(m, "go_live"),
        visible_after: Some(one(m, "visible_after")).filter(|d| !d.trim().is_empty()),
        integration: None,
    };
    (form, problems)
}

#[allow(clippy::too_many_arguments)]
async fn form_page(
    state: &AppState,
    token: &str,
    heading: &'static str,
    api: &str,
    action: String,
    form: &Form,
    message: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let listed = state.catalogue.api(api).await?;
    let mut r = render(&FormPage {
        layout: Layout::current(heading),
        heading,
        api: api.to_string(),
        api_title: listed.api.title.clone(),
        action,
        csrf: csrf_of(token),
        message,
        fields: fields(form),
        legal_consent: form.legal_basis.consent,
        scopes: listed
            .api
            .scopes
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.description.clone(),
                    form.scopes.contains(&s.name),
                )
            })
            .collect(),
    });
    *r.status_mut() = status;
    Ok(r)
}

pub async fn new_form(
    State(state): State<AppState>,
    a: Agent,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let api = q.get("api").cloned().unwrap_or_default();
    form_page(
        &state,
        &a.token,
        "Nouvelle demande d’habilitation",
        &api,
        "/espace-agent/demandes".into(),
        &Form::default(),
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let (form, problems) = parse_form(&m);
    let api = one(&m, "api");
    let message = if problems.is_empty() {
        match a.office.create(&a.actor, &api, form.clone()).await {
            Ok(h) => {
                return Ok(
                    Redirect::to(&format!("/espace-agent/demandes/{}", h.id)).into_response()
                );
            }
            Err(CatalogueError::Invalid(msg)) => msg,
            Err(e) => return Err(e.into()),
        }
    } else {
        problems.join(" ")
    };
    form_page(
        &state,
        &a.token,
        "Nouvelle demande d’habilitation",
        &api,
        "/espace-agent/demandes".into(),
        &form,
        Some(message),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub async fn edit_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
) -> Result<Response, PageError> {
    let h = a.office.get(&a.actor, &id).await?;
    let action = format!(
        "/espace-agent/demandes/{id}/modifier?revision={}",
        h.revision()
    );
    if h.is_integration() {
        return Ok(crate::routes::partners::form_page(
            &a.token,
            "Modifier la demande d’intégration",
            action,
            &h.form,
            None,
            StatusCode::OK,
        ));
    }
    form_page(
        &state,
        &a.token,
        "Modifier la demande",
        &h.api,
        action,
        &h.form,
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let (actor, office) = (&a.actor, &a.office);
    let revision = crate::routes::oidc::query_pairs(&uri)
        .into_iter()
        .find(|(k, _)| k == "revision")
        .and_then(|(_, v)| v.parse().ok());
    let h = office.get(actor, &id).await?;
    let (form, problems) = if h.is_integration() {
        (crate::routes::partners::parse(&m), Vec::new())
    } else {
        parse_form(&m)
    };
    // The revision the agent edited, so that a concurrent change is still seen.
    let action = format!(
        "/espace-agent/demandes/{id}/modifier?revision={}",
        revision.unwrap_or(h.revision())
    );
    if !problems.is_empty() {
        return form_page(
            &state,
            &a.token,
            "Modifier la demande",
            &h.api,
            action,
            &form,
            Some(problems.join(" ")),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match office.update(actor, &id, form.clone(), revision).await {
        Ok(_) => Ok(Redirect::to(&format!("/espace-agent/demandes/{id}")).into_response()),
        Err(CatalogueError::Invalid(msg)) if h.is_integration() => {
            Ok(crate::routes::partners::form_page(
                &a.token,
                "Modifier la demande d’intégration",
                action,
                &form,
                Some(msg),
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
