//! Liveness, readiness and metrics: what an orchestrator and an operator poll.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::{AppState, NodeState};

/// The process is up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub version: String,
}

/// The instance can serve: the store answers and its schema is the one this binary
/// expects.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    pub schema_version: i64,
}

/// Liveness: answers as long as the process runs, without touching the store.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Readiness: the store is reachable and migrated, the journal writes, and the server
/// is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Not ready; `detail` says why", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    Ok(Json(readiness(&state).await?))
}

/// The node's checks, and the journal's: a journal that cannot write makes the gateway
/// refuse every exchange (nothing is released unjournaled), so the load balancer should
/// send them elsewhere.
async fn readiness(state: &AppState) -> Result<Ready, ApiError> {
    let ready = store_ready(&state.node).await?;
    if let Some(why) = state.journal.trouble() {
        return Err(not_ready(why));
    }
    Ok(ready)
}

#[derive(askama::Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub layout: crate::pages::Layout,
    pub ready: bool,
    /// The checks' own words (English, for the operator), when something is wrong.
    pub detail: String,
}

fn status_page(result: Result<Ready, ApiError>) -> Response {
    let (ready, detail) = match result {
        Ok(_) => (true, String::new()),
        Err(e) => (false, e.detail),
    };
    let mut r = crate::pages::render(&StatusPage {
        layout: crate::pages::Layout::current(if ready {
            "État du service : disponible"
        } else {
            "État du service : indisponible"
        })
        .section("etat"),
        ready,
        detail,
    });
    if !ready {
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/etat`: the same checks as `/readyz`, said in French for a person.
pub async fn status(State(state): State<AppState>) -> Response {
    status_page(readiness(&state).await)
}

/// `/etat` on a node whose schema was behind at start.
pub async fn status_not_ready(State(node): State<NodeState>) -> Response {
    let result = match store_ready(&node).await {
        Ok(_) => Err(not_ready(
            "this node started while the database schema was behind; restart it to serve",
        )),
        Err(e) => Err(e),
    };
    status_page(result)
}

/// `/readyz` of a node that started while the schema was behind (`not_ready_router`):
/// the journal, identity federation, the catalogue and the gateway were not opened and
/// answer 503 until a restart.
pub async fn readyz_not_ready(State(node): State<NodeState>) -> Result<Json<Ready>, ApiError> {
    store_ready(&node).await?;
    Err(not_ready(
        "this node started while the database schema was behind; the schema is current \
         now: restart this node to serve",
    ))
}

/// The checks of the node itself: not draining, the store answers in time, its schema
/// is this binary's.
async fn store_ready(state: &NodeState) -> Result<Ready, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(not_ready("the server is shutting down"));
    }
    let budget = state.settings.ready_timeout;
    let check = async {
        state.store.ping().await?;
        state.store.schema_status().await
    };
    let status = match tokio::time::timeout(budget, check).await {
        Err(_) => {
            return Err(not_ready(format!(
                "the {} store did not answer within {} ms",
                state.store.kind(),
                budget.as_millis()
            )));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            return Err(not_ready(format!(
                "the {} store is unreachable",
                state.store.kind()
            )));
        }
        Ok(Ok(status)) => status,
    };
    if status.current > status.latest {
        return Err(not_ready(format!(
            "the database schema (version {}) is newer than this binary (version {}): upgrade \
             this node",
            status.current, status.latest
        )));
    }
    if !status.is_current() {
        return Err(not_ready(format!(
            "the database schema is at version {} but this binary needs version {}: run `socle \
             migrate`",
            status.current, status.latest
        )));
    }
    Ok(Ready {
        status: "ready".into(),
        store: state.store.kind().into(),
        schema_version: status.current,
    })
}

fn not_ready(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "Not ready",
        detail,
    )
}

/// Prometheus metrics: requests by route template and status, latency histograms,
/// store pool gauges, build info.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "For the operator: `socle serve` answers it on `server.metrics_listen` (loopback by default), not on the public address; `socle demo` on the main address.",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<NodeState>) -> Response {
    let pool = state.store.pool_stats();
    metrics::gauge!("socle_store_pool_connections", "state" => "open").set(f64::from(pool.size));
    metrics::gauge!("socle_store_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("socle_store_pool_max_connections").set(f64::from(pool.max));
    let uptime = state.started.elapsed();
    metrics::gauge!("socle_uptime_seconds").set(uptime.as_secs_f64());
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
