//! The OpenAPI 3.1 document, generated from the handlers' annotations so it cannot
//! drift from the code, and a readable page listing every operation.

use askama::Template;
use axum::Json;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;

use crate::error::ErrorBody;
use crate::pages::{Layout, render};
use crate::routes::{admin, catalogue, gateway, habilitations, health, journal, reports};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Socle",
        description = "APIs of a Socle instance: the core of a state's digital services.",
        license(name = "EUPL-1.2"),
    ),
    paths(
        health::healthz, health::readyz, health::metrics, openapi_json, reports::csp_report,
        journal::checkpoint, journal::key, journal::checkpoints, journal::entries, journal::nodes,
        journal::inclusion, journal::consistency,
        admin::create_client, admin::list_clients, admin::disable_client, admin::renew_client_secret, admin::set_redirect_uris,
        catalogue::list, catalogue::detail, catalogue::data_items, catalogue::dcat,
        catalogue::put_organisation, catalogue::put_data_item, catalogue::put_api,
        catalogue::add_webhook, catalogue::deliveries,
        habilitations::sign_in, habilitations::list, habilitations::create, habilitations::get,
        habilitations::update, habilitations::act, habilitations::credentials,
        habilitations::register, habilitations::reopen, habilitations::renew_credentials,
        habilitations::ask_production,
        gateway::call,
    ),
    components(schemas(
        ErrorBody, health::Health, health::Ready, journal::CheckpointList, journal::CheckpointView,
        reports::LegacyReport, reports::ReportingApiReport, journal::NodesPage, journal::NodeView,
        journal::EntriesPage, journal::InclusionProofView, journal::ConsistencyProofView,
        socle_identity::ClientInput, socle_identity::ClientProfile, socle_identity::NewClientSecret,
        admin::ClientView, admin::SecretRenewal, admin::RedirectUris,
        catalogue::ApiList, catalogue::ApiSummary, catalogue::ApiDetail, catalogue::DataItemList,
        catalogue::ApiUsage, catalogue::ServiceUsage, socle_gateway::Usage,
        socle_catalogue::Organisation, socle_catalogue::OrganisationInput, socle_catalogue::DataItem,
        socle_catalogue::Api, socle_catalogue::ApiInput, socle_catalogue::Scope, socle_catalogue::Listed,
        catalogue::WebhookInput, catalogue::WebhookCreated, catalogue::Delivery, catalogue::DeliveryLog,
        habilitations::SignIn, habilitations::Token, habilitations::HabilitationList,
        habilitations::NewRequest, habilitations::Act, habilitations::ActionName, habilitations::Credentials,
        habilitations::Renewal,
        habilitations::Register, socle_catalogue::back_office::Processing,
        socle_catalogue::habilitation::Habilitation, socle_catalogue::habilitation::Form,
        socle_catalogue::habilitation::State, socle_catalogue::habilitation::Event,
        socle_catalogue::habilitation::Contact, socle_catalogue::habilitation::LegalBasis,
        socle_catalogue::habilitation::Integration,
        socle_catalogue::habilitation::Accreditation,
    )),
    modifiers(&AdminToken, &ErrorResponses),
    tags(
        (name = "operations", description = "Health, readiness and metrics, for operators and orchestrators"),
        (name = "journal", description = "The tamper-evident journal: signed checkpoints, entries, proofs (public, read-only, rate-limited)"),
        (name = "catalogue", description = "Published APIs, their scopes and the data dictionary (public)"),
        (name = "habilitations", description = "Requests for access to an API (DataPass model), for back-office accounts"),
        (name = "gateway", description = "Calls to data providers under habilitation: token from POST /api/v2/token (grant_type=client_credentials with the habilitation's credentials), or the person's access token from identity federation"),
        (name = "administration", description = "Service providers (OpenID Connect clients); needs the admin token"),
        (name = "documentation", description = "This description"),
    )
)]
pub struct ApiDoc;

/// The admin API's bearer token, as a security scheme.
struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "gateway_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "client_credentials access token (RFC 9068) of a habilitation, or a person's access token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation answers its errors in one shape, whatever their status (a refusal of
/// the framework — a query that does not parse —, 401/403 of each credential, 404,
/// 413, 429, 503 of a store or journal that cannot serve…): each says so with a
/// `default` response, so that a client generated from the document, or a checker
/// such as schemathesis, knows every status it may meet and its body.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = ResponseBuilder::new()
            .description(
                "An error, in the platform's shape: `code` (stable), `title`, `detail`, `request_id`",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_string())
                    .or_insert_with(|| error.clone().into());
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

struct OperationView {
    method: &'static str,
    path: String,
    summary: String,
    description: String,
    tag: String,
    responses: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct ApiDocsPage {
    layout: Layout,
    version: String,
    operations: Vec<OperationView>,
}

pub async fn api_docs() -> Response {
    let doc = ApiDoc::openapi();
    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods: [(&'static str, &Option<Operation>); 5] = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in methods {
            let Some(op) = op else { continue };
            operations.push(OperationView {
                method,
                path: path.clone(),
                summary: op.summary.clone().unwrap_or_default(),
                description: op.description.clone().unwrap_or_default(),
                tag: op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first().cloned())
                    .unwrap_or_default(),
                responses: op
                    .responses
                    .responses
                    .iter()
                    .map(|(code, r)| {
                        let text = match r {
                            utoipa::openapi::RefOr::T(r) => r.description.clone(),
                            utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                        };
                        (code.clone(), text)
                    })
                    .collect(),
            });
        }
    }
    render(&ApiDocsPage {
        layout: Layout::current("Documentation des API").section("api"),
        version: doc.info.version.clone(),
        operations,
    })
}
