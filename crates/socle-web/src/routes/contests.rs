//! "Je conteste cet accès": the person's form and their contests in "Mon espace", and
//! the organisations' side in the Espace agent (the list, one contest, taking it in
//! hand, answering). The rules are in `socle_citizen::contest`.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use socle_citizen::CitizenError;
use socle_citizen::contest::{Contest, ContestAction, MAX_TEXT, REASONS};

use crate::AppState;
use crate::error::PageError;
use crate::pages::{Layout, render};
use crate::routes::agent::Agent;
use crate::routes::citizen::{Signed, check_csrf, form_map, french_time, no_store, repeated_field};

/// A contest as the pages show it.
pub struct ContestRow {
    pub id: String,
    pub index: u64,
    pub exchange_time: String,
    pub service: String,
    pub provider: String,
    pub api: String,
    pub purpose: String,
    pub reason: &'static str,
    pub text: String,
    pub state: &'static str,
    pub closed: bool,
    pub answer: String,
    /// (when, by whom, state) of each step.
    pub history: Vec<(String, String, &'static str)>,
}

fn row(c: Contest, names: &std::collections::HashMap<String, String>) -> ContestRow {
    let name = |siret: &str| {
        names
            .get(siret)
            .cloned()
            .unwrap_or_else(|| siret.to_string())
    };
    ContestRow {
        reason: c.reason_label(),
        state: c.state.label(),
        closed: c.state == socle_citizen::contest::ContestState::Closed,
        exchange_time: french_time(&c.exchange_time),
        service: name(&c.service),
        provider: name(&c.provider),
        history: c
            .history
            .iter()
            .map(|e| {
                (
                    french_time(&e.at),
                    if e.by == "person" {
                        "La personne".to_string()
                    } else {
                        name(&e.by)
                    },
                    e.state.label(),
                )
            })
            .collect(),
        id: c.id,
        index: c.index,
        api: c.api,
        purpose: c.purpose,
        text: c.text.unwrap_or_default(),
        answer: c.answer.unwrap_or_default(),
    }
}

async fn organisation_names(state: &AppState) -> std::collections::HashMap<String, String> {
    state
        .catalogue
        .organisations()
        .await
        .map(|l| l.into_iter().map(|o| (o.siret, o.name)).collect())
        .unwrap_or_default()
}

// ----- the person's side ------------------------------------------------------------

#[derive(Template)]
#[template(path = "citizen_contest.html")]
pub struct ContestForm {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub index: u64,
    pub reasons: Vec<(&'static str, &'static str, bool)>,
    pub text: String,
    pub max: usize,
    pub message: Option<String>,
}

fn contest_form(
    csrf: &str,
    index: u64,
    reason: &str,
    text: &str,
    message: Option<String>,
) -> Response {
    let mut r = render(&ContestForm {
        layout: Layout::current("Contester un échange").section("espace"),
        csrf: csrf.to_string(),
        current: "contestations",
        index,
        reasons: REASONS
            .iter()
            .map(|(k, l)| (*k, *l, *k == reason))
            .collect(),
        text: text.to_string(),
        max: MAX_TEXT,
        message: message.clone(),
    });
    if message.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    no_store(r)
}

fn index_of(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

fn unknown_exchange() -> PageError {
    CitizenError::NotFound("échange inconnu".into()).into()
}

/// `GET /mon-espace/donnees/{index}/contester`
pub async fn form(signed: Signed, Path(index): Path<String>) -> Result<Response, PageError> {
    let index = index_of(&index).ok_or_else(unknown_exchange)?;
    // Only the person's own exchange: the proof check says whether it is theirs.
    signed.c.space.proof(&signed.p, index).await?;
    Ok(contest_form(&signed.s.csrf, index, "", "", None))
}

/// `POST /mon-espace/donnees/{index}/contester`
pub async fn file(
    signed: Signed,
    Path(index): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let index = index_of(&index).ok_or_else(unknown_exchange)?;
    let m = form_map(&body).ok_or_else(repeated_field)?;
    check_csrf(&s, &m)?;
    let reason = m.get("raison").cloned().unwrap_or_default();
    let text = m.get("message").cloned().unwrap_or_default();
    match c
        .space
        .contest(&p, index, &reason, Some(text.clone()))
        .await
    {
        Ok(_) => Ok(Redirect::to("/mon-espace/contestations?fait=recue").into_response()),
        Err(CitizenError::Invalid(msg)) => {
            Ok(contest_form(&s.csrf, index, &reason, &text, Some(msg)))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "citizen_contests.html")]
pub struct ContestsPage {
    pub layout: Layout,
    pub csrf: String,
    pub current: &'static str,
    pub done: bool,
    pub rows: Vec<ContestRow>,
}

/// `GET /mon-espace/contestations`
pub async fn mine(
    State(state): State<AppState>,
    signed: Signed,
    uri: axum::http::Uri,
) -> Result<Response, PageError> {
    let Signed { c, p, s } = signed;
    let list = c.space.contests(&p).await?;
    let names = organisation_names(&state).await;
    let done = uri.query().is_some_and(|q| q.contains("fait=recue"));
    Ok(no_store(render(&ContestsPage {
        layout: Layout::current(if done {
            "Contestation reçue — Mes contestations"
        } else {
            "Mes contestations"
        })
        .section("espace"),
        csrf: s.csrf,
        current: "contestations",
        done,
        rows: list.into_iter().map(|x| row(x, &names)).collect(),
    })))
}

// ----- the organisations' side (Espace agent) ---------------------------------------

#[derive(Template)]
#[template(path = "agent_contests.html")]
pub struct AgentContests {
    pub layout: Layout,
    pub rows: Vec<ContestRow>,
}

/// `GET /espace-agent/contestations`
pub async fn agent_list(State(state): State<AppState>, a: Agent) -> Result<Response, PageError> {
    let list = state.citizen.space.contests_for(&a.actor).await?;
    let names = organisation_names(&state).await;
    Ok(no_store(render(&AgentContests {
        layout: Layout::current("Contestations"),
        rows: list.into_iter().map(|x| row(x, &names)).collect(),
    })))
}

#[derive(Template)]
#[template(path = "agent_contest.html")]
pub struct AgentContest {
    pub layout: Layout,
    pub csrf: String,
    pub c: ContestRow,
    pub message: Option<String>,
}

async fn agent_page(
    state: &AppState,
    a: &Agent,
    id: &str,
    message: Option<String>,
) -> Result<Response, PageError> {
    let c = state.citizen.space.contest_for(&a.actor, id).await?;
    let names = organisation_names(state).await;
    let status = if message.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut r = render(&AgentContest {
        layout: Layout::current("Contestation"),
        csrf: crate::session::csrf_of(&a.token),
        c: row(c, &names),
        message,
    });
    *r.status_mut() = status;
    Ok(no_store(r))
}

/// `GET /espace-agent/contestations/{id}`
pub async fn agent_show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
) -> Result<Response, PageError> {
    agent_page(&state, &a, &id, None).await
}

/// `POST /espace-agent/contestations/{id}`: take in hand, or answer and close.
pub async fn agent_act(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Agent,
    body: Bytes,
) -> Result<Response, PageError> {
    let m = a.form(&body)?;
    let action = match crate::routes::agent::one(&m, "action").as_str() {
        "examiner" => ContestAction::Review,
        "repondre" => ContestAction::Answer,
        _ => return Err(CitizenError::Invalid("action inconnue".into()).into()),
    };
    let answer = Some(crate::routes::agent::one(&m, "reponse"));
    let space = &state.citizen.space;
    match space.act_on_contest(&a.actor, &id, action, answer).await {
        Ok(_) => Ok(Redirect::to(&format!("/espace-agent/contestations/{id}")).into_response()),
        Err(CitizenError::Invalid(msg)) => agent_page(&state, &a, &id, Some(msg)).await,
        Err(e) => Err(e.into()),
    }
}
