//! Server-rendered pages (askama templates checked at compile time) in the DSFR.
//!
//! Every page extends `base.html`: DSFR header with the instance name, skip links,
//! footer, `lang="fr"`, no inline script or style (the CSP forbids them).

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;
use crate::assets::DSFR_VERSION;
use crate::error::ApiError;
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

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub store_kind: &'static str,
    pub since: String,
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
    })
}
