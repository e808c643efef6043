//! The demonstration of `socle demo`, kept out of the platform's crates: the binary
//! links it, and only `socle demo` mounts it.
//!
//! - [`fi`]: a demonstration identity provider (fictitious people at each eIDAS
//!   level), which Socle's broker reaches over HTTP like any external provider;
//! - [`service`]: the "Démarche de démonstration", a relying party of the town hall
//!   that logs people in through Socle and calls the gateway on their behalf;
//! - [`providers`]: two data providers (the family-benefits fund, the tax office)
//!   that the gateway calls like external APIs;
//! - [`catalogue`]: the fictitious organisations, data dictionary, APIs,
//!   habilitations and back-office accounts, seeded once per database.
//!
//! Its routes ([`routes`]) are merged into the platform's router by the binary, under
//! `/demo/`; they use only the platform's public interfaces.

pub mod catalogue;
pub mod fi;
pub mod providers;
pub mod service;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use socle_identity::{Client, FiSettings, Provider};
use socle_store::InstanceStore;
use socle_web::AppState;

pub use fi::DemoFi;
pub use service::DemoFs;

/// Every half of the demonstration.
pub struct Demo {
    pub fi: DemoFi,
    pub fs: DemoFs,
    pub fd: providers::DemoFd,
}

/// The demonstration identity provider, as the broker's settings name it.
pub fn identity_provider(fi: &DemoFi) -> FiSettings {
    FiSettings {
        id: "demo".into(),
        label: "Fournisseur d’identité de démonstration".into(),
        logo: None,
        issuer: fi.issuer.clone(),
        discovery_url: None,
        client_id: fi.client_id.clone(),
        client_secret: fi.client_secret.clone(),
        eidas_levels: vec![1, 2, 3],
        scope: "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username".into(),
        timeout: std::time::Duration::from_secs(5),
        sandbox: true,
    }
}

impl Demo {
    /// The demonstration with its identity provider `fi`: registers the demonstration
    /// service as a client of the platform's provider (a fresh secret at each start).
    pub async fn start(fi: DemoFi, provider: &Provider, public_url: &str) -> anyhow::Result<Demo> {
        let secret = socle_identity::random_token(32);
        let fs = DemoFs::new(public_url, "demarche-demo".into(), secret.clone());
        provider.clients.put(&service_client(&fs, &secret)).await?;
        Ok(Demo {
            fi,
            fs,
            fd: Default::default(),
        })
    }
}

/// The demonstration service as a client of the platform.
fn service_client(fs: &DemoFs, secret: &str) -> Client {
    Client {
        // Written as a FranceConnect service is: held to its rules.
        profile: socle_identity::ClientProfile::Franceconnect,
        userinfo_signed_response_alg: Some("ES256".into()),
        ..Client::from(socle_identity::PlatformService {
            client_id: &fs.client_id,
            name: "Démarche de démonstration",
            // The town hall's procedure: its habilitations let it call the gateway on
            // the person's behalf.
            organisation: catalogue::TOWN_HALL,
            secret,
            redirect_uri: fs.redirect_uri(),
            post_logout_redirect_uri: fs.post_logout_redirect_uri(),
            scopes: &[
                "openid",
                "identite_pivot",
                "email",
                "preferred_username",
                "profile",
                "birth",
            ],
            eidas_level: 1,
        })
    }
}

/// The journeys the home page proposes in the demonstration.
pub fn journeys() -> Vec<socle_web::pages::Link> {
    use catalogue::{DEMO_DEVELOPER, DEMO_INSTRUCTOR_CAF, DEMO_PASSWORD};
    use socle_web::pages::Link;
    vec![
        Link::new(
            "Se connecter à une démarche",
            "/demo/fs/",
            "La démarche de démonstration de la mairie : connexion par la plateforme avec le \
             fournisseur d’identité de démonstration (personne « marie »), puis les données \
             obtenues pour vous par la passerelle.",
        ),
        Link::new(
            "Voir qui a utilisé ses données",
            "/mon-espace/",
            "Après l’appel à la passerelle décrit dans le README (socle-data/demo.json), \
             « Mes données » de Marie Dupont montre l’échange, avec sa preuve au journal.",
        ),
        Link::new(
            "Instruire une habilitation",
            "/espace-agent",
            &format!(
                "L’Espace agent, comme {DEMO_DEVELOPER} (qui demande) ou {DEMO_INSTRUCTOR_CAF} \
                 (qui instruit) ; mot de passe « {DEMO_PASSWORD} »."
            ),
        ),
    ]
}

/// The demonstration's routes, to merge into the platform's router.
pub fn routes(demo: Arc<Demo>) -> Router<AppState> {
    use service::{
        fi_authorize, fi_discovery, fi_end_session, fi_jwks, fi_login, fi_token, fi_userinfo,
        fs_callback, fs_home, fs_logged_out, fs_login,
    };
    Router::new()
        .route(
            "/demo/fi/.well-known/openid-configuration",
            get(fi_discovery),
        )
        .route("/demo/fi/jwks", get(fi_jwks))
        .route("/demo/fi/authorize", get(fi_authorize).post(fi_login))
        .route("/demo/fi/token", post(fi_token))
        .route("/demo/fi/userinfo", get(fi_userinfo))
        .route("/demo/fi/session/end", get(fi_end_session))
        .route("/demo/fs", get(fs_home))
        .route("/demo/fs/", get(fs_home))
        .route("/demo/fs/login", get(fs_login))
        .route("/demo/fs/callback", get(fs_callback))
        .route("/demo/fs/logged-out", get(fs_logged_out))
        .route("/demo/fd/caf/quotient-familial", get(providers::caf))
        .route("/demo/fd/impots/foyers-fiscaux", get(providers::impots))
        .layer(axum::Extension(demo))
}

/// Seeds the demonstration data (the catalogue rewritten at each start, its URLs
/// following the address the demo listens on; the habilitations and accounts once per
/// database) and returns the demonstration credentials file's content.
pub async fn seed(state: &AppState) -> anyhow::Result<serde_json::Value> {
    let public_url = &state.identity.config().public_url;
    catalogue::seed(&state.catalogue, public_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot seed the demonstration catalogue: {e}"))?;
    if state
        .store
        .mark_once("demo.back_office.seeded", &[])
        .await?
    {
        catalogue::seed_back_office(&state.store, &state.back_office)
            .await
            .map_err(|e| anyhow::anyhow!("cannot seed the demonstration habilitations: {e}"))?;
    }
    catalogue::credentials_file(&state.back_office, public_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare the demonstration credentials: {e}"))
}
