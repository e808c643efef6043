//! The HTTP surface of Socle.
//!
//! [`router`] assembles the axum routers of every audience (operations, API
//! documentation, pages, static assets) behind one stack of middleware: request ids,
//! security headers, metrics, size and time limits, panic recovery. It renders the
//! DSFR pages and maps every error once to the public shape (`error.rs`). It holds no
//! SQL (it calls `socle-store`) and no serving loop, TLS or configuration parsing
//! (the `socle` binary owns those).

pub mod assets;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod pages;
pub mod ratelimit;
pub mod routes;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use socle_journal::Journal;
use socle_store::{Instance, Store};

pub use error::{ApiError, ErrorBody};

/// Settings the HTTP layer needs, already validated by the binary's configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub instance_name: Arc<str>,
    /// TLS is terminated by this process (enables HSTS).
    pub tls: bool,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Longest time a request may take, body included.
    pub request_timeout: Duration,
    /// Longest time `/readyz` waits for the store.
    pub ready_timeout: Duration,
    /// Requests per second one client may make to `/journal/*`.
    pub journal_rate_limit: u32,
    /// The reverse proxies whose `X-Forwarded-For` names the client
    /// ([`extract::client_ip`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bearer token of the administration API (`None`: closed).
    pub admin_token: Option<Arc<str>>,
    /// `/metrics` on the main address (`socle demo`); otherwise only on
    /// [`metrics_router`]'s own listener.
    pub metrics_public: bool,
    /// `gateway.public_url`: the gateway's own host (lower case, no port) and its
    /// address; `None`: the gateway is under the platform's address.
    pub gateway: Option<(String, String)>,
    /// Journeys the home page proposes (the demonstration's, `socle demo`): title,
    /// address, what one sees.
    pub journeys: Vec<pages::Link>,
}

/// What every node has, whether its services opened or not: the store, the settings,
/// the metrics and the process's own state. The operations routes, the static assets
/// and every middleware layer take only this.
pub struct Node {
    pub store: Store,
    pub instance: Arc<Instance>,
    pub settings: Arc<WebSettings>,
    pub metrics: PrometheusHandle,
    /// Set when shutdown begins, so `/readyz` tells load balancers to stop sending.
    pub draining: Arc<AtomicBool>,
    pub started: Instant,
}

impl Node {
    pub fn instance_name(&self) -> Arc<str> {
        self.settings.instance_name.clone()
    }
}

/// One pointer to a [`Node`], cloned per request.
#[derive(Clone)]
pub struct NodeState(Arc<Node>);

impl NodeState {
    pub fn new(node: Node) -> NodeState {
        NodeState(Arc::new(node))
    }
}

impl std::ops::Deref for NodeState {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.0
    }
}

/// Shared by every handler of a node whose services are open; one pointer to clone
/// (every middleware layer and handler takes a copy per request). A node whose
/// database schema was behind at start has none: it serves [`not_ready_router`].
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for NodeState {
    fn from_ref(state: &AppState) -> NodeState {
        state.node.clone()
    }
}

/// What the application state holds: the node, and every service.
pub struct AppParts {
    pub node: NodeState,
    pub journal: Journal,
    pub journal_limiter: Arc<ratelimit::RateLimiter>,
    /// The OpenID Connect provider.
    pub identity: socle_identity::Provider,
    /// The catalogue of APIs.
    pub catalogue: socle_catalogue::Catalogue,
    /// Back-office accounts and habilitation requests.
    pub back_office: socle_catalogue::BackOffice,
    /// The gateway.
    pub gateway: socle_gateway::Gateway,
    /// People's consents for consent-based habilitations.
    pub consents: socle_gateway::Consents,
    /// The citizen space ("Mon espace").
    pub citizen: Arc<routes::citizen::Citizen>,
}

impl std::ops::Deref for AppParts {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl AppState {
    /// A habilitation or API changed on this node: the gateway sees it at the next
    /// call (other nodes within a second).
    pub async fn gateway_changed(&self) {
        if let Err(e) = self.gateway.reload().await {
            tracing::warn!(error = %e, "gateway not reloaded; it retries within a second");
        }
    }
}

/// The whole application router; `extra` holds routes the binary adds (the
/// demonstration's, `socle-demo`), served behind the same middleware.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    use axum::middleware::from_fn_with_state;

    let journal = Router::new()
        .route("/journal/checkpoint", get(routes::journal::checkpoint))
        .route("/journal/checkpoints", get(routes::journal::checkpoints))
        .route("/journal/key", get(routes::journal::key))
        .route("/journal/entries", get(routes::journal::entries))
        .route("/journal/nodes", get(routes::journal::nodes))
        .route("/journal/proof/inclusion", get(routes::journal::inclusion))
        .route(
            "/journal/proof/consistency",
            get(routes::journal::consistency),
        )
        .route_layer(from_fn_with_state(
            state.clone(),
            routes::journal::rate_limit,
        ));

    use axum::routing::{any, post, put};
    use routes::{admin, agent, catalogue, citizen, contests, habilitations, oidc, partners};
    let identity = Router::new()
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route(
            "/api/v2/.well-known/openid-configuration",
            get(oidc::discovery),
        )
        .route("/api/v2/jwks", get(oidc::jwks))
        .route(
            "/api/v2/authorize",
            get(oidc::authorize_get).post(oidc::authorize_post),
        )
        .route("/api/v2/interaction/{id}", get(oidc::choice))
        .route("/api/v2/interaction/{id}/choice", post(oidc::choose))
        .route(
            "/api/v2/interaction/{id}/consent",
            get(oidc::consent_page).post(oidc::consent),
        )
        .route("/api/v2/oidc-callback/{provider}", get(oidc::callback))
        .route(
            "/api/v2/oidc-callback",
            get(oidc::callback_without_provider),
        )
        .route("/api/v2/token", post(oidc::token))
        .route("/api/v2/userinfo", get(oidc::userinfo).post(oidc::userinfo))
        .route(
            "/api/v2/session/end",
            get(oidc::end_session_get).post(oidc::end_session_post),
        )
        .route("/api/v2/client/logout-callback", get(oidc::logout_callback))
        .route(
            "/api/admin/clients",
            get(admin::list_clients).post(admin::create_client),
        )
        .route(
            "/api/admin/clients/{client_id}/disable",
            post(admin::disable_client),
        )
        .route(
            "/api/admin/clients/{client_id}/secret",
            post(admin::renew_client_secret),
        )
        .route(
            "/api/admin/clients/{client_id}/redirect-uris",
            put(admin::set_redirect_uris),
        )
        .route("/api/v1/apis", get(catalogue::list))
        .route("/api/v1/apis/{id}", get(catalogue::detail))
        .route("/api/v1/data-items", get(catalogue::data_items))
        .route("/api/v1/catalogue.jsonld", get(catalogue::dcat))
        .route(
            "/api/admin/organisations",
            post(catalogue::put_organisation),
        )
        .route("/api/admin/data-items", post(catalogue::put_data_item))
        .route("/api/admin/apis", post(catalogue::put_api))
        .route(
            "/api/admin/organisations/{siret}/webhooks",
            post(catalogue::add_webhook),
        )
        .route(
            "/api/admin/organisations/{siret}/deliveries",
            get(catalogue::deliveries),
        )
        .route("/api/v1/session", post(habilitations::sign_in))
        .route("/api/v1/register", get(habilitations::register))
        .route(
            "/api/v1/habilitations",
            get(habilitations::list).post(habilitations::create),
        )
        .route(
            "/api/v1/habilitations/{id}",
            get(habilitations::get).put(habilitations::update),
        )
        .route(
            "/api/v1/habilitations/{id}/actions",
            post(habilitations::act),
        )
        .route(
            "/api/v1/habilitations/{id}/reopen",
            post(habilitations::reopen),
        )
        .route(
            "/api/v1/habilitations/{id}/production",
            post(habilitations::ask_production),
        )
        .route(
            "/api/v1/habilitations/{id}/credentials",
            get(habilitations::credentials),
        )
        .route(
            "/api/v1/habilitations/{id}/credentials/renew",
            post(habilitations::renew_credentials),
        )
        .route(
            "/espace-agent/connexion",
            get(agent::login_form).post(agent::login),
        )
        .route("/espace-agent/deconnexion", post(agent::logout))
        .route("/espace-agent", get(agent::list))
        .route("/espace-agent/demandes", post(agent::create))
        .route("/espace-agent/demandes/nouvelle", get(agent::new_form))
        .route("/espace-agent/demandes/{id}", get(agent::show))
        .route("/espace-agent/demandes/{id}/action", post(agent::act))
        .route(
            "/espace-agent/demandes/{id}/identifiants",
            post(agent::credentials),
        )
        .route(
            "/espace-agent/demandes/{id}/modifier",
            get(agent::edit_form).post(agent::edit),
        )
        .route("/espace-agent/integrations", post(partners::create))
        .route("/espace-agent/contestations", get(contests::agent_list))
        .route(
            "/espace-agent/contestations/{id}",
            get(contests::agent_show).post(contests::agent_act),
        )
        .route(
            "/espace-agent/integrations/nouvelle",
            get(partners::new_form),
        )
        .route("/espace-agent/demandes/{id}/secret", post(partners::renew))
        .route(
            "/espace-agent/demandes/{id}/reouvrir",
            post(partners::reopen),
        )
        .route(
            "/espace-agent/demandes/{id}/production",
            post(partners::production),
        )
        .route("/catalogue", get(catalogue::page))
        .route("/catalogue/donnees", get(catalogue::data_items_page))
        .route("/catalogue/{id}", get(catalogue::api_page))
        .route("/mon-espace", get(citizen::home))
        .route("/mon-espace/", get(citizen::home))
        .route("/mon-espace/connexion", get(citizen::login))
        .route("/mon-espace/retour", get(citizen::callback))
        .route("/mon-espace/deconnexion", post(citizen::logout))
        .route("/mon-espace/donnees", get(citizen::data))
        .route("/mon-espace/donnees/{index}/preuve", get(citizen::proof))
        .route(
            "/mon-espace/donnees/{index}/contester",
            get(contests::form).post(contests::file),
        )
        .route("/mon-espace/contestations", get(contests::mine))
        .route("/mon-espace/resume", post(citizen::digest))
        .route("/mon-espace/connexions", get(citizen::connections))
        .route("/mon-espace/autorisations", get(citizen::authorisations))
        .route(
            "/mon-espace/autorisations/demande",
            get(citizen::request).post(citizen::decide),
        )
        .route(
            "/mon-espace/autorisations/{id}/retrait",
            post(citizen::revoke),
        )
        .route("/mon-espace/autorisations/{id}/recu", get(citizen::receipt))
        .route("/mon-espace/export", get(citizen::export))
        .route("/gateway/{org}/{api}/{version}", any(routes::gateway::call))
        .route(
            "/gateway/{org}/{api}/{version}/{*path}",
            any(routes::gateway::call),
        );

    let main = operations(&state.node)
        .route("/readyz", get(routes::health::readyz))
        .route("/etat", get(routes::health::status))
        .merge(journal)
        .merge(identity)
        .merge(extra)
        .route("/", get(pages::home))
        .route("/journal", get(pages::journal))
        .route("/api/openapi.json", get(routes::docs::openapi_json))
        .route("/api/docs", get(routes::docs::api_docs))
        .route(
            "/api/v1/csp-reports",
            axum::routing::post(routes::reports::csp_report),
        )
        .fallback(not_found);
    layers(main, &state.node).with_state(state)
}

/// The router of a node whose database schema was behind at start: it is alive, says
/// why it is not ready, serves its metrics and static assets, and answers every other
/// address 503 `not_ready` (a page for a browser) until it is restarted on a current
/// schema.
pub fn not_ready_router(node: NodeState) -> Router {
    let main = operations(&node)
        .route("/readyz", get(routes::health::readyz_not_ready))
        .route("/etat", get(routes::health::status_not_ready))
        .fallback(not_ready);
    layers(main, &node).with_state(node)
}

/// The routes every node serves, ready or not.
fn operations<S: Clone + Send + Sync + 'static>(node: &NodeState) -> Router<S>
where
    NodeState: axum::extract::FromRef<S>,
{
    let mut r = Router::new();
    if node.settings.metrics_public {
        r = r.route("/metrics", get(routes::health::metrics));
    }
    r.route("/healthz", get(routes::health::healthz))
        .route("/static/dsfr/{*path}", get(assets::dsfr))
        .route("/static/socle/{*path}", get(assets::socle))
}

/// The stack of middleware every answer goes through.
fn layers<S: Clone + Send + Sync + 'static>(r: Router<S>, node: &NodeState) -> Router<S> {
    use axum::middleware::{from_fn, from_fn_with_state};
    // Layers run bottom-up on the way in: the request context is set first, so every
    // later layer and handler logs with the request id.
    r.method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .layer(from_fn(middleware::plain_rejections))
        .layer(from_fn_with_state(node.clone(), middleware::limits))
        .layer(from_fn(middleware::observe))
        .layer(from_fn_with_state(node.clone(), middleware::gateway_origin))
        .layer(from_fn_with_state(
            node.clone(),
            middleware::security_headers,
        ))
        .layer(from_fn_with_state(
            node.clone(),
            middleware::request_context,
        ))
}

/// `/metrics` alone, for the operator's listener (`server.metrics_listen`, loopback by
/// default): per-service counters are not published on the public address, where they
/// could be correlated with the public journal.
pub fn metrics_router(node: NodeState) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .fallback(not_found)
        .with_state(node)
}

async fn not_found(req: Request) -> Response {
    let html = middleware::wants_html(&req);
    middleware::respond(ApiError::not_found("no resource at this address"), html)
}

async fn not_ready(req: Request) -> Response {
    let html = middleware::wants_html(&req);
    middleware::respond(
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Not ready",
            "this node started while the database schema was behind; run `socle migrate`, \
             then restart this node",
        ),
        html,
    )
}

async fn method_not_allowed(req: Request) -> Response {
    let html = middleware::wants_html(&req);
    middleware::respond(ApiError::method_not_allowed(), html)
}
