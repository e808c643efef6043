//! The partner space, in the Espace agent: a service's organisation asks to log its
//! users in through the platform (an integration request, on the habilitation
//! workflow), follows it, gets its client's secret once, renews it with a grace period,
//! edits its addresses (a new request, validated again) and asks for production once
//! the sandbox works. The rules are in `socle_catalogue`; these handlers render and
//! parse.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use socle_catalogue::CatalogueError;
use socle_catalogue::habilitation::{Form, IDENTITY, IDENTITY_SCOPES, Integration, LegalBasis};

use crate::AppState;
use crate::error::PageError;
use crate::pages::{Layout, render};
use crate::routes::agent::{
    Agent, Field, accreditation_fields, contact_fields, field, one, posted_accreditation,
    posted_contact, purpose_fields, request_page,
};
use crate::session::csrf_of;

/// Grace periods offered when a secret is renewed (seconds, label).
pub const GRACES: &[(i64, &str)] = &[
    (
        0,
        "Aucune : l’ancien secret cesse de fonctionner tout de suite",
    ),
    (3_600, "1 heure"),
    (86_400, "24 heures"),
    (604_800, "7 jours"),
    (2_592_000, "30 jours"),
];

#[derive(Template)]
#[template(path = "agent_integration_form.html")]
pub struct IntegrationFormPage {
    pub layout: Layout,
    pub heading: &'static str,
    pub stage: &'static str,
    pub action: String,
    pub csrf: String,
    pub message: Option<String>,
    pub service: Vec<Field>,
    pub addresses: Vec<Field>,
    pub people: Vec<Field>,
    pub accreditation: Vec<Field>,
    /// (scope, description, checked, justification)
    pub scopes: Vec<(&'static str, &'static str, bool, String)>,
    /// (value, label, checked)
    pub levels: Vec<(u8, &'static str, bool)>,
    pub profiles: Vec<(&'static str, &'static str, bool)>,
}

/// The integration form page, filled with `f`.
pub fn form_page(
    token: &str,
    heading: &'static str,
    action: String,
    f: &Form,
    message: Option<String>,
    status: StatusCode,
) -> Response {
    let i = f.integration.clone().unwrap_or_default();
    let mut r = render(&IntegrationFormPage {
        layout: Layout::current(heading),
        heading,
        stage: if i.production {
            "Production : de vraies personnes se connecteront au service."
        } else {
            "Bac à sable : seules des identités de démonstration se connecteront au service."
        },
        action,
        csrf: csrf_of(token),
        message,
        service: vec![
            field(
                "title",
                "Nom du service",
                "Tel que les usagers le verront.",
                "text",
                false,
                f.title.clone(),
            ),
            field(
                "service_url",
                "Adresse du service",
                "Par exemple : https://www.mairie.example.fr.",
                "url",
                false,
                i.service_url.clone(),
            ),
        ]
        .into_iter()
        .chain(purpose_fields(
            f,
            "Pourquoi le service identifie ses usagers, en quelques phrases.",
        ))
        .collect(),
        addresses: vec![
            field(
                "redirect_uris",
                "Adresses de retour (redirect_uri)",
                "Une par ligne ; https, ou http sur localhost.",
                "text",
                true,
                i.redirect_uris.join("\n"),
            ),
            field(
                "post_logout_redirect_uris",
                "Adresses après déconnexion (post_logout_redirect_uri)",
                "Facultatif ; une par ligne.",
                "text",
                true,
                i.post_logout_redirect_uris.join("\n"),
            ),
            field(
                "backchannel_logout_uri",
                "Adresse de déconnexion en arrière-plan (backchannel_logout_uri)",
                "Facultatif : la plateforme y envoie un logout_token quand la session de l’usager prend fin.",
                "url",
                false,
                i.backchannel_logout_uri.clone().unwrap_or_default(),
            ),
        ],
        people: contact_fields(f),
        accreditation: accreditation_fields(f, "Obligatoire pour la production."),
        scopes: IDENTITY_SCOPES
            .iter()
            .map(|(s, d)| {
                (
                    *s,
                    *d,
                    f.scopes.iter().any(|x| x == s),
                    i.justifications.get(*s).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        levels: [
            (1, "Faible (eIDAS 1)"),
            (2, "Substantiel (eIDAS 2)"),
            (3, "Élevé (eIDAS 3)"),
        ]
        .into_iter()
        .map(|(l, label)| (l, label, i.eidas_level.max(1) == l))
        .collect(),
        profiles: [
            (
                "standard",
                "OpenID Connect standard (recommandé pour les bibliothèques certifiées)",
            ),
            (
                "franceconnect",
                "Règles de FranceConnect : state et nonce de 32 caractères, userinfo signé, jetons de 60 secondes",
            ),
        ]
        .into_iter()
        .map(|(p, label)| {
            let current = if i.profile.is_empty() {
                "standard"
            } else {
                i.profile.as_str()
            };
            (p, label, current == p)
        })
        .collect(),
    });
    *r.status_mut() = status;
    r
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The integration form as posted (the stage is the request's, set by the domain).
pub fn parse(m: &BTreeMap<String, Vec<String>>) -> Form {
    let url = one(m, "legal_url");
    let backchannel = one(m, "backchannel_logout_uri");
    let scopes: Vec<String> = m.get("scopes").cloned().unwrap_or_default();
    let justifications = scopes
        .iter()
        .map(|s| (s.clone(), one(m, &format!("justification_{s}"))))
        .filter(|(_, j)| !j.trim().is_empty())
        .collect();
    Form {
        title: one(m, "title"),
        purpose: one(m, "purpose"),
        legal_basis: LegalBasis {
            nature: one(m, "legal_nature"),
            text: one(m, "legal_text"),
            url: (!url.trim().is_empty()).then_some(url),
            consent: false,
        },
        scopes,
        controller: posted_contact(m, "controller"),
        dpo: posted_contact(m, "dpo"),
        technical_contact: posted_contact(m, "tech"),
        accreditation: posted_accreditation(m),
        integration: Some(Integration {
            service_url: one(m, "service_url"),
            redirect_uris: lines(&one(m, "redirect_uris")),
            post_logout_redirect_uris: lines(&one(m, "post_logout_redirect_uris")),
            backchannel_logout_uri: (!backchannel.trim().is_empty())
                .then(|| backchannel.trim().to_string()),
            justifications,
            eidas_level: one(m, "eidas_level").parse().unwrap_or(0),
            profile: one(m, "profile"),
            production: false,
        }),
        ..Form::default()
    }
}

pub async fn new_form(a: Agent) -> Response {
    form_page(
        &a.token,
        "Nouvelle demande d’intégration",
        "/espace-agent/integrations".into(),
        &Form::default(),
        None,
        StatusCode::OK,
    )
}

pub async fn create(a: Agent, body: Bytes) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let form = parse(&m);
    match a.office.create(&a.actor, IDENTITY, form.clone()).await {
        Ok(h) => Ok(Redirect::to(&format!("/espace-agent/demandes/{}", h.id)).into_response()),
        Err(CatalogueError::Invalid(msg)) => Ok(form_page(
            &a.token,
            "Nouvelle demande d’intégration",
            "/espace-agent/integrations".into(),
            &form,
            Some(msg),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Renews the client's secret, the old one valid for the grace period chosen.
pub async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let Some(grace) = one(&m, "grace")
        .parse::<i64>()
        .ok()
        .filter(|g| GRACES.iter().any(|(x, _)| x == g))
    else {
        return Err(CatalogueError::Invalid(
            "choisissez une durée de validité de l’ancien secret".into(),
        )
        .into());
    };
    let (client_id, secret) = a
        .office
        .renew_secret_with_grace(&a.actor, &id, grace)
        .await?;
    let message = format!(
        "Identifiant client : {client_id} — nouveau secret : {secret} — copiez ce secret maintenant : il ne sera plus affiché. L’ancien reste valable {}.",
        GRACES
            .iter()
            .find(|(g, _)| *g == grace)
            .map_or("", |(_, l)| l)
            .to_lowercase()
    );
    let h = a.office.get(&a.actor, &id).await?;
    crate::routes::agent::client_changed(&state, &h);
    request_page(&a, &h, Some((message, "success")), StatusCode::OK).await
}

/// A new request to edit a validated integration's addresses (validated again).
pub async fn reopen(Path(id): Path<String>, a: Agent, body: Bytes) -> Result<Response, PageError> {
    follow_up(&a, &id, &body, false).await
}

/// A new request for production, from a validated sandbox integration.
pub async fn production(
    Path(id): Path<String>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    follow_up(&a, &id, &body, true).await
}

/// A request that follows a validated integration (an edit, or production): created,
/// then its form opened.
async fn follow_up(
    a: &Agent,
    id: &str,
    body: &Bytes,
    production: bool,
) -> Result<Response, PageError> {
    a.form(body)?;
    let h = match production {
        true => a.office.ask_production(&a.actor, id).await?,
        false => a.office.reopen(&a.actor, id).await?,
    };
    Ok(Redirect::to(&format!("/espace-agent/demandes/{}/modifier", h.id)).into_response())
}
