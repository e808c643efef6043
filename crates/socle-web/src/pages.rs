//! Server-rendered pages (askama templates checked at compile time) in the DSFR.
//!
//! Every page extends `base.html`: DSFR header with the instance name, skip links,
//! footer, `lang="fr"`, no inline script or style (the CSP forbids them).

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;
use crate::assets::DSFR_VERSION;
use crate::error::{ApiError, PageError};
use crate::middleware::current_instance_name;

/// What the base layout needs on every page.
pub struct Layout {
    pub instance_name: String,
    pub page_title: String,
    pub dsfr_version: &'static str,
    /// Which top-level section is current, for `aria-current` in the navigation.
    pub section: &'static str,
}

impl Layout {
    /// A layout for the request being served (the instance name comes from the
    /// request context set by the middleware).
    pub fn current(page_title: &str) -> Self {
        Self {
            instance_name: current_instance_name()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "Socle".into()),
            page_title: page_title.to_string(),
            dsfr_version: DSFR_VERSION,
            section: "",
        }
    }

    pub fn section(mut self, section: &'static str) -> Self {
        self.section = section;
        self
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub layout: Layout,
    pub status: u16,
    pub heading: &'a str,
    pub message: &'a str,
    pub request_id: String,
}

/// A link the home page offers: title, address, what one finds there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub title: String,
    pub href: String,
    pub desc: String,
}

impl Link {
    pub fn new(title: &str, href: &str, desc: &str) -> Link {
        Link {
            title: title.into(),
            href: href.into(),
            desc: desc.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub store_kind: &'static str,
    pub since: String,
    /// What this instance offers, each with its address.
    pub capabilities: Vec<Link>,
    /// The journeys to try (the demonstration's).
    pub journeys: Vec<Link>,
}

/// What this instance offers: every capability it serves, each with its address
/// (the gateway's on its own host when `gateway.public_url` is set).
pub fn capabilities(state: &AppState) -> Vec<Link> {
    let gateway = match &state.settings.gateway {
        Some((_, url)) => format!("{url}/gateway/"),
        None => "/gateway/".into(),
    };
    vec![
        Link::new(
            "Fédération d’identité",
            "/espace-agent/integrations/nouvelle",
            "Les services publics connectent leurs usagers par OpenID Connect avec les \
             fournisseurs d’identité de la plateforme ; un service demande son intégration \
             depuis l’Espace agent (découverte : /.well-known/openid-configuration).",
        ),
        Link::new(
            "Catalogue des API",
            "/catalogue",
            "Les API des administrations, leur dictionnaire de données, ce que chaque \
             périmètre transmet.",
        ),
        Link::new(
            "Espace agent",
            "/espace-agent",
            "Demander, instruire et suivre les habilitations, intégrer un service à la \
             fédération d’identité, répondre aux contestations.",
        ),
        Link::new(
            "Passerelle d’échange",
            "/api/docs",
            &format!(
                "Les données circulent entre administrations sous habilitation, minimisées et \
                 inscrites au journal avant d’être transmises ; on l’appelle à {gateway} \
                 (chaque API du catalogue dit son adresse)."
            ),
        ),
        Link::new(
            "Mon espace",
            "/mon-espace",
            "Chacun voit qui a utilisé ses données, pourquoi, avec la preuve, et gère ses \
             autorisations.",
        ),
        Link::new(
            "Journal des échanges",
            "/journal",
            "L’historique signé de tout ce qui se passe sur la plateforme, vérifiable par \
             chacun : personne ne peut le réécrire en silence.",
        ),
    ]
}

pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            crate::middleware::respond(ApiError::internal(), true)
        }
    }
}

pub async fn home(State(state): State<AppState>) -> Response {
    render(&HomePage {
        layout: Layout::current("Accueil").section("home"),
        store_kind: state.store.kind(),
        since: state.instance.created_at.chars().take(10).collect(),
        capabilities: capabilities(&state),
        journeys: state.settings.journeys.clone(),
    })
}

/// One entry as listed on the journal page.
pub struct EntryLine {
    pub index: u64,
    pub kind: &'static str,
    pub time: String,
    pub summary: String,
    pub outcome: String,
}

pub struct CheckpointFacts {
    pub size: u64,
    pub root: String,
    pub created_at: String,
}

#[derive(Template)]
#[template(path = "journal.html")]
pub struct JournalPage {
    pub layout: Layout,
    pub checkpoint: Option<CheckpointFacts>,
    pub origin: String,
    pub key: String,
    pub base_url: String,
    pub entries: Vec<EntryLine>,
}

fn kind_label(kind: socle_journal::EntryKind) -> &'static str {
    use socle_journal::EntryKind::*;
    match kind {
        Exchange => "Échange de données",
        Login => "Connexion",
        Consent => "Consentement",
        Habilitation => "Habilitation",
        Admin => "Administration",
        KeyRotation => "Clé de signature",
        Contest => "Contestation",
    }
}

/// An action as a person reads it: the journal's and a request's history record codes
/// (`submit`, `instance.created`); an unknown one is shown as recorded.
pub fn action_label(code: &str) -> String {
    let label = match code {
        "create" => "Création de la demande",
        "update" => "Modification du brouillon",
        "submit" => "Demande soumise",
        "request_changes" => "Modifications demandées",
        "validate" => "Demande validée",
        "refuse" => "Demande refusée",
        "revoke" => "Habilitation révoquée",
        "archive" => "Demande archivée",
        "expire" => "Habilitation expirée",
        "superseded" => "Remplacée par une nouvelle demande",
        "issue_secret" => "Secret du client délivré",
        "renew_secret" => "Secret du client renouvelé",
        "instance.created" => "Création de l’instance",
        "demo.seeded" => "Données de démonstration installées",
        "organisation.registered" => "Organisation enregistrée",
        "data_item.registered" => "Donnée du dictionnaire enregistrée",
        "api.published" => "API publiée",
        "webhook.registered" => "Notification (webhook) enregistrée",
        "user.created" => "Compte créé",
        "client.created" => "Service client enregistré",
        "client.disabled" => "Service client désactivé",
        "client.enabled" => "Service client réactivé",
        "client.secret_renewed" => "Secret d’un service renouvelé",
        "client.redirect_uris_changed" => "Adresses de retour d’un service modifiées",
        "contest.received" => "Contestation reçue",
        "contest.in_review" => "Contestation en cours d’examen",
        "contest.answered" => "Contestation traitée",
        "journal.key.created" => "Clé de signature du journal créée",
        "journal.macs.adopted" => "Entrées antérieures authentifiées",
        "oidc.key.rotated" => "Clé de signature des jetons renouvelée",
        "logout.backchannel" => "Déconnexion transmise à un service",
        "journal.benchmark" => "Mesure de performance du journal",
        other => return other.to_string(),
    };
    label.to_string()
}

/// The journal's public page: the latest checkpoint, how to verify, the last entries.
pub async fn journal(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    use base64::Engine;
    let journal = &state.journal;
    let latest = match journal.latest_checkpoint().await {
        Ok(cp) => Some(cp),
        Err(socle_journal::JournalError::NoCheckpoint) => None,
        Err(e) => return Err(e.into()),
    };
    let size = latest.as_ref().map_or(0, |c| c.size);
    let start = size.saturating_sub(20);
    let (_, rows) = journal.entries(start, size - start).await?;
    let entries = rows
        .into_iter()
        .rev()
        .map(|row| match socle_journal::Entry::decode(&row.leaf) {
            Ok(e) => EntryLine {
                index: row.index,
                kind: kind_label(e.kind),
                time: e.time.replace('T', " à ").trim_end_matches('Z').to_string() + " UTC",
                summary: match e.details.get("action") {
                    Some(action) => action_label(action),
                    None => e
                        .details
                        .get("api")
                        .cloned()
                        .unwrap_or_else(|| e.actor.clone()),
                },
                outcome: e.outcome,
            },
            Err(_) => EntryLine {
                index: row.index,
                kind: "Entrée illisible",
                time: String::new(),
                summary: String::new(),
                outcome: String::new(),
            },
        })
        .collect();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1:8080");
    let scheme = if state.settings.tls { "https" } else { "http" };
    Ok(render(&JournalPage {
        layout: Layout::current("Journal des échanges").section("journal"),
        checkpoint: latest.map(|c| CheckpointFacts {
            size: c.size,
            root: base64::engine::general_purpose::STANDARD.encode(c.root),
            created_at: c
                .created_at
                .replace('T', " à ")
                .trim_end_matches('Z')
                .to_string()
                + " UTC",
        }),
        origin: journal.origin().to_string(),
        key: journal.verifier_key(),
        base_url: format!("{scheme}://{host}"),
        entries,
    }))
}
