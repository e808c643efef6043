//! The catalogue: public JSON API and DSFR pages (search, API page, data dictionary,
//! DCAT-AP export), and the administration endpoints that register organisations,
//! data items and APIs.

use crate::routes::admin::ADMIN_API;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use socle_catalogue::{ApiInput, DataItem, Listed, Organisation, OrganisationInput, Search};
use socle_gateway::Usage;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, PageError};
use crate::extract::ApiQuery;
use crate::pages::{Layout, render};

/// A page of APIs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiList {
    pub apis: Vec<ApiSummary>,
}

/// An API as listed (its OpenAPI document is in the detail).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiSummary {
    pub id: String,
    pub title: String,
    pub description: String,
    pub themes: Vec<String>,
    pub version: String,
    pub access_mode: String,
    pub producer: Organisation,
    pub scopes: Vec<socle_catalogue::Scope>,
}

impl From<Listed> for ApiSummary {
    fn from(l: Listed) -> Self {
        ApiSummary {
            id: l.api.id,
            title: l.api.title,
            description: l.api.description,
            themes: l.api.themes,
            version: l.api.version,
            access_mode: l.api.access_mode,
            producer: l.producer,
            scopes: l.api.scopes,
        }
    }
}

/// Searches the catalogue.
#[utoipa::path(get, path = "/api/v1/apis", tag = "catalogue", params(Search),
    responses((status = 200, description = "The APIs matching every filter, by title", body = ApiList)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<Search>,
) -> Result<Json<ApiList>, ApiError> {
    let found = state.catalogue.search(&q).await?;
    Ok(Json(ApiList {
        apis: found.into_iter().map(ApiSummary::from).collect(),
    }))
}

/// One API with its producer, scopes, current OpenAPI document and versions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiDetail {
    #[serde(flatten)]
    pub api: Listed,
    pub versions: Vec<String>,
    /// Where services call it: `/gateway/{organisation}/{api}/v{major}/…`.
    pub gateway_path: String,
    /// Calls through the gateway counted by this node since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ApiUsage>,
}

#[utoipa::path(get, path = "/api/v1/apis/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "The API's slug")),
    responses((status = 200, description = "The API", body = ApiDetail),
        (status = 404, description = "No such API", body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiDetail>, ApiError> {
    let c = &state.catalogue;
    let api = c.api(&id).await?;
    let versions = c.versions(&id).await?;
    let usage = usage(&state, &id).map(|(all, per)| ApiUsage {
        all,
        services: per
            .into_iter()
            .map(|(service, usage)| ServiceUsage { service, usage })
            .collect(),
    });
    Ok(Json(ApiDetail {
        gateway_path: gateway_path(&state, &api.api),
        api,
        versions,
        usage,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DataItemList {
    pub data_items: Vec<DataItem>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemSearch {
    /// Words looked for in the name, meaning and legal source (accents ignored).
    pub q: Option<String>,
}

/// The data dictionary, searchable.
#[utoipa::path(get, path = "/api/v1/data-items", tag = "catalogue", params(ItemSearch),
    responses((status = 200, description = "The data items matching every word", body = DataItemList)))]
pub async fn data_items(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ItemSearch>,
) -> Result<Json<DataItemList>, ApiError> {
    let items = state.catalogue.data_items().await?;
    Ok(Json(DataItemList {
        data_items: socle_catalogue::service::filter_items(items, q.q.as_deref()),
    }))
}

fn base_url(state: &AppState) -> String {
    state.identity.config().public_url.clone()
}

/// The catalogue as DCAT-AP style JSON-LD.
#[utoipa::path(get, path = "/api/v1/catalogue.jsonld", tag = "catalogue",
    responses((status = 200, description = "A dcat:Catalog of dcat:DataService", content_type = "application/ld+json")))]
pub async fn dcat(State(state): State<AppState>) -> Result<Response, ApiError> {
    let doc = state.catalogue.dcat(&base_url(&state)).await?;
    let mut r = Json(doc).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/ld+json"),
    );
    Ok(r)
}

// ----- administration -------------------------------------------------------------

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON {what}: {e}")))
}

/// Registers or updates an organisation.
#[utoipa::path(post, path = "/api/admin/organisations", tag = "administration",
    request_body = OrganisationInput, security(("admin_token" = [])),
    responses((status = 201, description = "Registered", body = Organisation),
        (status = 422, description = "Invalid: every problem listed", body = ErrorBody)))]
pub async fn put_organisation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::routes::admin::authorize(&state, &headers)?;
    let input: OrganisationInput = json_body(&body, "organisation")?;
    let org = state
        .catalogue
        .put_organisation(input, Some(ADMIN_API))
        .await?;
    state.gateway_changed().await;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

/// Registers or updates a data item of the dictionary.
#[utoipa::path(post, path = "/api/admin/data-items", tag = "administration",
    request_body = DataItem, security(("admin_token" = [])),
    responses((status = 201, description = "Registered", body = DataItem),
        (status = 422, description = "Invalid: every problem listed", body = ErrorBody)))]
pub async fn put_data_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::routes::admin::authorize(&state, &headers)?;
    let input: DataItem = json_body(&body, "data item")?;
    let item = state
        .catalogue
        .put_data_item(input, Some(ADMIN_API))
        .await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// Publishes an API (or a new version of it: earlier OpenAPI documents are kept).
#[utoipa::path(post, path = "/api/admin/apis", tag = "administration",
    request_body = ApiInput, security(("admin_token" = [])),
    responses((status = 201, description = "Published", body = socle_catalogue::Api),
        (status = 422, description = "Invalid: every problem listed (the OpenAPI parser's error included)", body = ErrorBody)))]
pub async fn put_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::routes::admin::authorize(&state, &headers)?;
    let input: ApiInput = json_body(&body, "API")?;
    let api = state.catalogue.put_api(input, Some(ADMIN_API)).await?;
    state.gateway_changed().await;
    Ok((StatusCode::CREATED, Json(api)).into_response())
}

// ----- pages ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "catalogue.html")]
pub struct CataloguePage {
    pub layout: Layout,
    pub q: String,
    pub producer: String,
    pub theme: String,
    pub data_item: String,
    pub organisations: Vec<Organisation>,
    pub themes: Vec<String>,
    pub data_items: Vec<DataItem>,
    pub results: Vec<Listed>,
}

pub async fn page(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<Search>,
) -> Result<Response, PageError> {
    let c = &state.catalogue;
    let (results, all, organisations, data_items) = (
        c.search(&q).await?,
        c.search(&Search::default()).await?,
        c.organisations().await?,
        c.data_items().await?,
    );
    let mut themes: Vec<String> = all.iter().flat_map(|l| l.api.themes.clone()).collect();
    themes.sort();
    themes.dedup();
    let searched = [&q.q, &q.producer, &q.theme, &q.data_item]
        .iter()
        .any(|f| f.as_deref().is_some_and(|v| !v.is_empty()));
    Ok(render(&CataloguePage {
        layout: Layout::current(if searched {
            "Résultats de la recherche — Catalogue des API"
        } else {
            "Catalogue des API"
        })
        .section("catalogue"),
        q: q.q.unwrap_or_default(),
        producer: q.producer.unwrap_or_default(),
        theme: q.theme.unwrap_or_default(),
        data_item: q.data_item.unwrap_or_default(),
        organisations,
        themes,
        data_items,
        results,
    }))
}

pub struct ScopeView {
    pub name: String,
    pub description: String,
    pub fields: Vec<String>,
    /// (id, name) of the data items.
    pub items: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "catalogue_api.html")]
pub struct ApiPage {
    pub layout: Layout,
    pub api: socle_catalogue::Api,
    pub producer: Organisation,
    pub versions: Vec<String>,
    pub access: &'static str,
    /// "substantiel (eidas2)" when the API requires that level for calls on a
    /// person's behalf.
    pub person_level: Option<String>,
    /// How a call names the person its data is about, in French.
    pub subject: String,
    pub request_url: String,
    pub scopes: Vec<ScopeView>,
    /// (method, path, summary) of each operation of the OpenAPI document.
    pub operations: Vec<(String, String, String)>,
    /// Where services call it through the gateway.
    pub gateway_path: String,
    /// Usage through the gateway on this node: in all, and per service (name).
    pub usage: Option<(Usage, Vec<(String, Usage)>)>,
}

/// Usage of an API through the gateway, as this node counted it since it started.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiUsage {
    #[serde(flatten)]
    pub all: Usage,
    /// Per service organisation (SIRET).
    pub services: Vec<ServiceUsage>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceUsage {
    pub service: String,
    #[serde(flatten)]
    pub usage: Usage,
}

fn usage(state: &AppState, api: &str) -> Option<(Usage, Vec<(String, Usage)>)> {
    let g = &state.gateway;
    let (all, per) = g.stats().for_api(api);
    (all.calls > 0).then_some((all, per))
}

/// Where an API is called: under the gateway's own address when it has one
/// (`gateway.public_url`), else the path on this one.
fn gateway_path(state: &AppState, api: &socle_catalogue::Api) -> String {
    format!(
        "{}/gateway/{}/{}/v{}/",
        state
            .settings
            .gateway
            .as_ref()
            .map(|(_, url)| url.as_str())
            .unwrap_or_default(),
        api.organisation,
        api.id,
        // The gateway's own reading of the version: "v2.0" and "2.0" are major 2.
        api.version
            .split('.')
            .next()
            .unwrap_or_default()
            .trim_start_matches('v')
    )
}

fn operations(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if let Some(op) = item.get(method) {
                    let summary = op
                        .get("summary")
                        .or_else(|| op.get("description"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push((method.to_uppercase(), path.clone(), summary.to_string()));
                }
            }
        }
    }
    out
}

pub async fn api_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let c = &state.catalogue;
    let (listed, versions, items) = (
        c.api(&id).await?,
        c.versions(&id).await?,
        c.data_items().await?,
    );
    let Listed { api, producer } = listed;
    let scopes = api
        .scopes
        .iter()
        .map(|s| ScopeView {
            name: s.name.clone(),
            description: s.description.clone(),
            fields: s.fields.clone(),
            items: s
                .data_items
                .iter()
                .map(|d| {
                    let name = items
                        .iter()
                        .find(|i| &i.id == d)
                        .map_or(d.clone(), |i| i.name.clone());
                    (d.clone(), name)
                })
                .collect(),
        })
        .collect();
    let access = match api.access_mode.as_str() {
        "open" => "Accès libre : aucune démarche n’est nécessaire.",
        "account" => "Accès sur compte : le service s’identifie, sans habilitation.",
        _ => {
            "Accès sur habilitation : le service décrit sa finalité et sa base légale, le producteur valide la demande."
        }
    };
    // Habilitation: a request in the back office; otherwise, the API's contact.
    let request_url = if api.access_mode == "habilitation" {
        format!("/espace-agent/demandes/nouvelle?api={}", api.id)
    } else if api.contact.contains('@') && !api.contact.contains(':') {
        format!("mailto:{}", api.contact)
    } else if url::Url::parse(&api.contact).is_ok_and(|u| u.scheme() == "https") {
        api.contact.clone()
    } else {
        // Neither an address nor a web page: no link to follow.
        String::new()
    };
    let operations = operations(&api.openapi);
    let mut usage = usage(&state, &api.id);
    if let (Some((_, per)), Ok(orgs)) = (usage.as_mut(), c.organisations().await) {
        for (service, _) in per.iter_mut() {
            if let Some(o) = orgs.iter().find(|o| &o.siret == service) {
                *service = o.name.clone();
            }
        }
    }
    Ok(render(&ApiPage {
        gateway_path: gateway_path(&state, &api),
        subject: subject_label(&api.subject),
        person_level: api
            .person_eidas_level
            .and_then(socle_identity::Eidas::from_level)
            .map(|e| format!("{} ({})", e.label(), e.acr())),
        usage,
        layout: Layout::current(&api.title).section("catalogue"),
        api,
        producer,
        versions,
        access,
        request_url,
        scopes,
        operations,
    }))
}

pub struct ItemView {
    pub item: DataItem,
    pub producer: String,
    /// (id, title) of the APIs that carry it.
    pub apis: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "data_items.html")]
pub struct DataItemsPage {
    pub layout: Layout,
    pub items: Vec<ItemView>,
}

pub async fn data_items_page(State(state): State<AppState>) -> Result<Response, PageError> {
    let c = &state.catalogue;
    let (items, orgs, apis) = (
        c.data_items().await?,
        c.organisations().await?,
        c.search(&Search::default()).await?,
    );
    let items = items
        .into_iter()
        .map(|item| ItemView {
            producer: orgs
                .iter()
                .find(|o| o.siret == item.producer)
                .map_or(item.producer.clone(), |o| o.name.clone()),
            apis: apis
                .iter()
                .filter(|l| l.api.scopes.iter().any(|s| s.data_items.contains(&item.id)))
                .map(|l| (l.api.id.clone(), l.api.title.clone()))
                .collect(),
            item,
        })
        .collect();
    Ok(render(&DataItemsPage {
        layout: Layout::current("Dictionnaire des données").section("catalogue"),
        items,
    }))
}

// ----- webhooks -------------------------------------------------------------------

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct WebhookInput {
    /// Where events are POSTed (https; a private address only with `allow_private`).
    pub url: String,
    #[serde(default)]
    pub allow_private: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    pub id: String,
    /// The HMAC-SHA256 key of `X-Hub-Signature-256`, shown once.
    pub secret: String,
}

/// Registers a webhook notified of the organisation's habilitation events.
#[utoipa::path(post, path = "/api/admin/organisations/{siret}/webhooks", tag = "administration",
    request_body = WebhookInput, security(("admin_token" = [])),
    params(("siret" = String, Path, description = "The organisation")),
    responses((status = 201, description = "Registered; the signing secret is shown once", body = WebhookCreated),
        (status = 404, description = "No such organisation", body = ErrorBody),
        (status = 422, description = "Refused URL", body = ErrorBody)))]
pub async fn add_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(siret): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::routes::admin::authorize(&state, &headers)?;
    let input: WebhookInput = json_body(&body, "webhook")?;
    if state.catalogue.organisation(&siret).await?.is_none() {
        return Err(ApiError::not_found(format!("organisation {siret}")));
    }
    let (id, secret) = socle_catalogue::notify::add_webhook(
        &state.store,
        &siret,
        &input.url,
        input.allow_private,
        ADMIN_API,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(WebhookCreated { id, secret })).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryLog {
    pub deliveries: Vec<Delivery>,
}

/// The delivery log of an organisation's webhooks, newest first.
#[utoipa::path(get, path = "/api/admin/organisations/{siret}/deliveries", tag = "administration",
    security(("admin_token" = [])), params(("siret" = String, Path, description = "The organisation")),
    responses((status = 200, description = "Deliveries and their outcome", body = DeliveryLog)))]
pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(siret): Path<String>,
) -> Result<Json<DeliveryLog>, ApiError> {
    use socle_store::NotificationStore;
    crate::routes::admin::authorize(&state, &headers)?;
    let rows = state.store.deliveries(&siret, 200).await?;
    Ok(Json(DeliveryLog {
        deliveries: rows
            .into_iter()
            .map(|d| Delivery {
                id: d.id,
                webhook_id: d.webhook_id,
                event: d.event,
                state: d.state,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
            })
            .collect(),
    }))
}

/// What the API page says of how a call names its person.
fn subject_label(s: &socle_catalogue::Subject) -> String {
    use socle_catalogue::SubjectMode;
    match (s.mode, &s.pivot) {
        (SubjectMode::PersonToken, _) => "par le jeton d’accès de la personne connectée (les appels de machine à machine ne sont rattachés à personne)".into(),
        (SubjectMode::Pivot, Some(p)) => format!(
            "par son identité pivot, dans la requête ({}) : la personne retrouve chaque échange dans son espace",
            p.names().iter().map(|(_, n)| n.to_string()).collect::<Vec<_>>().join(", ")
        ),
        (SubjectMode::Pivot, None) => "par son identité pivot, dans la requête".into(),
        (SubjectMode::Provider, _) => "par le fournisseur, dans sa réponse (en-tête Socle-Subject) : la personne retrouve chaque échange dans son espace".into(),
        (SubjectMode::None, _) => "données sans rapport avec une personne (référentiel)".into(),
    }
}
