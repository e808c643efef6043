//! Wiring: from a validated [`Config`] to a bound, running server.
//!
//! [`Application::build`] opens the store, applies migrations, records the instance and
//! binds the listener (port 0 in tests); [`Application::run_until_stopped`] serves until
//! the shutdown future resolves, then drains in-flight requests within
//! `server.shutdown_timeout` and closes the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use socle_demo::{Demo, DemoFi};
use socle_identity::{Broker, Client, FiSettings, KeyRing, MasterKey, Provider, ProviderConfig};
use socle_journal::{Entry, EntryKind, Journal, JournalConfig};
use socle_store::{InstanceStore, Location, Store, StoreOptions};
use socle_web::{AppParts, AppState, Node, NodeState, WebSettings};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::{telemetry, tls};

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `/metrics` on its own listener (`serve`); `None` in `demo`, where the main
    /// address serves them.
    metrics: Option<(TcpListener, SocketAddr)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    node: NodeState,
    /// The services; `None` when the schema was behind at start.
    state: Option<AppState>,
    /// The demonstration (`socle demo`), mounted under `/demo/`.
    demo: Option<Arc<Demo>>,
    config: Config,
}

/// A task that ends with its owner, whichever way the owner returns.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the store the configuration names, with its clear errors.
pub async fn open_store(config: &Config) -> Result<Store, socle_store::StoreError> {
    let location = match &config.database.url {
        Some(url) => Location::Postgres {
            url: url.expose().to_string(),
        },
        None => Location::Sqlite {
            path: config.sqlite_path(),
        },
    };
    let options = StoreOptions {
        location,
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
    };
    Store::open(&options).await
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let started = Instant::now();
        let tls = match &config.tls {
            Some(t) => Some(tls::acceptor(t)?),
            None => None,
        };
        let store = open_store(&config).await?;
        if config.database.auto_migrate {
            store.migrate().await?;
        }
        let status = store.schema_status().await?;
        if status.current > status.latest {
            return Err(socle_store::StoreError::SchemaTooNew {
                found: status.current,
                known: status.latest,
            }
            .into());
        }
        let instance = if status.is_current() {
            store
                .ensure_instance(config.instance.name.as_str())
                .await
                .context("cannot record the instance in the store")?
        } else {
            // database.auto_migrate = false and the schema is behind: serve, but not
            // ready, until an operator runs `socle migrate`.
            tracing::warn!(
                current = status.current,
                needed = status.latest,
                "database schema is behind this binary: run `socle migrate`; not ready until then"
            );
            socle_store::Instance {
                instance_id: String::new(),
                name: config.instance.name.to_string(),
                created_at: String::new(),
            }
        };

        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        let public_url = config.server.public_url.clone().unwrap_or_else(|| {
            let mut addr = local_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        });
        let node = NodeState::new(Node {
            store,
            instance: Arc::new(instance),
            settings: Arc::new(WebSettings {
                instance_name: config.instance.name.as_str().into(),
                tls: tls.is_some(),
                body_limit: config.server.body_limit,
                request_timeout: config.server.request_timeout,
                ready_timeout: std::time::Duration::from_secs(2),
                journal_rate_limit: config.journal.rate_limit,
                trusted_proxies: config.server.trusted_proxies.clone(),
                admin_token: config.admin.token.as_ref().map(|t| Arc::from(t.expose())),
                metrics_public: config.demo,
                gateway: config
                    .gateway
                    .public_url
                    .as_ref()
                    .and_then(|u| crate::config::url_host(u).map(|h| (h, u.clone()))),
                journeys: if config.demo {
                    socle_demo::journeys()
                } else {
                    Vec::new()
                },
            }),
            metrics: telemetry::metrics_handle()?,
            draining: Arc::new(AtomicBool::new(false)),
            started,
        });
        // A schema behind this binary: serve, but not ready, until an operator runs
        // `socle migrate` and restarts the node (`socle_web::not_ready_router`).
        let state = if status.is_current() {
            Some(open_services(&config, &node, &public_url).await?)
        } else {
            None
        };
        let (state, demo) = match state {
            Some((state, demo)) => (Some(state), demo),
            None => (None, None),
        };
        metrics::gauge!(
            "socle_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "store" => node.store.kind()
        )
        .set(1.0);
        let metrics = if config.demo {
            None
        } else {
            let l = TcpListener::bind(config.server.metrics_listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} for metrics (server.metrics_listen)",
                        config.server.metrics_listen
                    )
                })?;
            let addr = l.local_addr()?;
            Some((l, addr))
        };
        Ok(Application {
            listener,
            local_addr,
            metrics,
            tls,
            node,
            state,
            demo,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` answers when not on the main address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn store(&self) -> &Store {
        &self.node.store
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.state.as_ref().map(|s| &s.journal)
    }

    /// Where `socle demo` writes the demonstration service's credentials.
    pub fn demo_file(&self) -> std::path::PathBuf {
        self.config.data_dir.join("demo.json")
    }

    pub fn gateway(&self) -> Option<&socle_gateway::Gateway> {
        self.state.as_ref().map(|s| &s.gateway)
    }

    pub fn consents(&self) -> Option<&socle_gateway::Consents> {
        self.state.as_ref().map(|s| &s.consents)
    }

    /// Seeds the demonstration data, once per database; the seeding is journaled like
    /// any admin change.
    pub async fn seed_demo(&self) -> anyhow::Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        mark_once(&state.node, "demo.seeded").await?;
        let doc = socle_demo::seed(state).await?;
        let path = self.demo_file();
        let _ = std::fs::remove_file(&path);
        write_private(&path, &serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        state
            .gateway
            .reload()
            .await
            .map_err(|e| anyhow::anyhow!("gateway not reloaded: {e}"))?;
        Ok(())
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests
    /// finish within `server.shutdown_timeout`, closes the store and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            local_addr,
            metrics,
            tls,
            node,
            state,
            demo,
            config,
        } = self;
        // The operator's metrics listener: plain HTTP, `/metrics` only; it stops with
        // the process (nothing in flight there needs draining).
        let _metrics_task = metrics.map(|(l, addr)| {
            tracing::info!(address = %addr, "serving metrics");
            let service = socle_web::metrics_router(node.clone());
            AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, service).await {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            }))
        });
        let router = match &state {
            Some(state) => socle_web::router(
                state.clone(),
                demo.map(socle_demo::routes).unwrap_or_default(),
            ),
            None => socle_web::not_ready_router(node.clone()),
        };
        let service =
            router.into_make_service_with_connect_info::<socle_web::extract::ClientAddr>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            let _ = stop_rx.await;
        };
        let mut server = match tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::new(listener, acceptor);
                tokio::spawn(async move {
                    axum::serve(listener, service)
                        .with_graceful_shutdown(graceful)
                        .await
                })
            }
            None => tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(graceful)
                    .await
            }),
        };
        tracing::info!(address = %local_addr, store = node.store.kind(), "serving");

        tokio::select! {
            result = &mut server => {
                // The server stopped by itself: report why.
                result.context("server task failed")?.context("server failed")?;
            }
            () = shutdown => {
                tracing::info!(
                    timeout_ms = config.server.shutdown_timeout.as_millis() as u64,
                    "shutting down: no new connections, draining in-flight requests"
                );
                node.draining.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(());
                match tokio::time::timeout(config.server.shutdown_timeout, &mut server).await {
                    Ok(result) => result.context("server task failed")?.context("server failed")?,
                    Err(_) => {
                        tracing::warn!("shutdown timeout reached: closing remaining connections");
                        server.abort();
                    }
                }
            }
        }
        if let Some(state) = &state {
            // Quota counters of the last second.
            state.gateway.flush().await;
            // Sequence what was acknowledged and sign a last checkpoint.
            state.journal.shutdown().await;
        }
        node.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens every service of a node whose schema is current: the journal, identity
/// federation, the catalogue and back office, the gateway and consents, the citizen
/// space; and starts their background tasks.
async fn open_services(
    config: &Config,
    node: &NodeState,
    public_url: &str,
) -> anyhow::Result<(AppState, Option<Arc<Demo>>)> {
    let store = &node.store;
    let journal = open_journal(store, config).await?;
    if !config.demo
        && let Some(path) = master_key_beside_database(config)
    {
        tracing::warn!(
            path = %path.display(),
            "the master key lives beside the database: a copy of the data directory opens every sealed key; keep it elsewhere (identity.master_key_file) and back it up apart (docs/OPERATIONS.md)"
        );
    }
    mark_once(node, "instance.created").await?;

    let (identity, demo) = open_identity(store, &journal, config, public_url).await?;
    // Back-channel logout tokens.
    let provider = identity.clone();
    deliver_every_half_second("back-channel logouts", move |http| {
        let provider = provider.clone();
        async move { provider.deliver_logouts(&http).await }
    });

    let catalogue = socle_catalogue::Catalogue::new(store.clone());
    let back_office = socle_catalogue::BackOffice::new(store.clone(), journal.clone())
        .with_platform(config.citizen.organisation.clone());
    let office = back_office.clone();
    // Habilitations whose accreditation ended expire (checked every 10 minutes).
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            let today = time::OffsetDateTime::now_utc().date().to_string();
            if let Err(e) = office.expire_due(&today).await {
                tracing::warn!(error = %e, "habilitation expiry not applied");
            }
        }
    });
    // Webhook deliveries.
    let webhooks = store.clone();
    deliver_every_half_second("webhook deliveries", move |http| {
        let store = webhooks.clone();
        async move { socle_catalogue::notify::deliver_due(&store, &http).await }
    });

    let mut gc = socle_gateway::GatewayConfig::new(public_url);
    gc.connect_timeout = config.gateway.connect_timeout;
    gc.timeout = config.gateway.timeout;
    gc.token_ttl = i64::try_from(config.gateway.token_lifetime.as_secs()).unwrap_or(900);
    gc.open_rate = config.gateway.open_rate_limit;
    gc.stale_after = i64::try_from(config.gateway.stale_after.as_secs()).unwrap_or(10);
    let gateway = socle_gateway::Gateway::open(
        gc,
        store.clone(),
        catalogue.clone(),
        journal.clone(),
        identity.keys.clone(),
        identity.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the gateway: {e}"))?;
    // The snapshot is rebuilt and quota counters saved every second.
    let upkeep = gateway.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.tick().await;
        }
    });
    let consents = socle_gateway::Consents::new(
        store.clone(),
        journal.clone(),
        identity.keys.clone(),
        &identity.issuer(),
    );
    let citizen = open_citizen(
        config, store, &gateway, &consents, &catalogue, &journal, &identity, public_url,
    )
    .await?;
    // The opt-in digests of new exchanges (at most daily per person).
    let every = config.citizen.digest_interval;
    let base = public_url.to_string();
    let c = citizen.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = socle_core::clock::now();
            match c.space.send_digests(now, &base).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sent = n, "citizen space: digests queued"),
                Err(e) => tracing::warn!(error = %e, "citizen space: digests not sent"),
            }
        }
    });
    let state = AppState::new(AppParts {
        node: node.clone(),
        journal_limiter: Arc::new(socle_web::ratelimit::RateLimiter::new(
            config.journal.rate_limit,
        )),
        journal,
        identity,
        catalogue,
        back_office,
        gateway,
        consents,
        citizen,
    });
    Ok((state, demo))
}

/// Records a one-time event of the instance (its creation, the demonstration's
/// seeding): the marker and its journal entry in one transaction, so a first start
/// that fails half-way records both on the next.
async fn mark_once(node: &Node, action: &str) -> anyhow::Result<bool> {
    let entry = Entry::new(EntryKind::Admin, "system", "ok")
        .detail("action", action)
        .detail("instance_id", node.instance.instance_id.clone());
    Ok(node
        .store
        .mark_once(action, &socle_journal::encode(vec![entry])?)
        .await?)
}

/// Opens the journal with the configured origin (derived from the instance name when
/// unset).
/// Attempts the deliveries that are due every half second, on a task of its own, with
/// the client for calls made on someone else's word (public addresses only, no
/// redirects: `socle_catalogue::notify::delivery_client`); a round that fails is
/// logged and the next one tried.
fn deliver_every_half_second<F, Fut, E>(what: &'static str, round: F)
where
    F: Fn(reqwest::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<usize, E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let Some(http) = socle_catalogue::notify::delivery_client() else {
            return;
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            if let Err(e) = round(http.clone()).await {
                tracing::debug!(error = %e, "{what} not attempted");
            }
        }
    });
}

pub async fn open_journal(store: &Store, config: &Config) -> anyhow::Result<Journal> {
    let origin = config
        .journal
        .origin
        .clone()
        .unwrap_or_else(|| socle_journal::origin_from_name(config.instance.name.as_str()));
    let mut jc = JournalConfig::new(origin);
    jc.origin_explicit = config.journal.origin.is_some();
    jc.checkpoint_interval = config.journal.checkpoint_interval;
    jc.max_unsequenced = config.journal.max_unsequenced;
    let master = master_key(config)?;
    // The wrong key (a node started without the shared one) must seal nothing.
    master
        .check_against(store)
        .await
        .context("the master key does not open the stored keys; nothing was changed")?;
    Ok(Journal::open(store.clone(), jc, &master).await?)
}

/// The master key for a command that only reads (`socle journal export`): never
/// creates one, so that a missing key is an error rather than a new, useless key.
pub fn existing_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &config.identity.master_key {
        return Ok(MasterKey::parse(text.expose())?);
    }
    let path = config.data_dir.join("master.key");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the master key at {} (set identity.master_key_file)",
            path.display()
        )
    })?;
    MasterKey::parse(&text)
        .with_context(|| format!("{} does not hold a master key", path.display()))
}

/// The file beside the embedded database that holds the master key in use, if any: a
/// copy of the data directory (a backup, a stolen disk) then carries both the sealed
/// secrets and the key that opens them.
pub fn master_key_beside_database(config: &Config) -> Option<std::path::PathBuf> {
    if config.database.url.is_some() {
        return None;
    }
    let path = config.data_dir.join("master.key");
    let stored = MasterKey::parse(&std::fs::read_to_string(&path).ok()?).ok()?;
    let in_use = master_key(config).ok()?;
    (stored == in_use).then_some(path)
}

/// Reads the master key from the configuration, or from `data_dir/master.key`,
/// creating that file (mode 0600) on first start.
pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &config.identity.master_key {
        return Ok(MasterKey::parse(text.expose())?);
    }
    let path = config.data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::parse(&text)
            .with_context(|| format!("{} does not hold a master key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
            let text = MasterKey::generate_text();
            write_private(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if config.database.url.is_some() {
                tracing::warn!(path = %path.display(), "generated a master key in the data directory: every node sharing this PostgreSQL database needs the same key (identity.master_key_file)");
            } else {
                tracing::info!(path = %path.display(), "generated the master key");
            }
            Ok(MasterKey::parse(&text)?)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// The identity provider, its keys and upstream providers; with `config.demo`, the
/// demonstration identity provider and service too.
pub async fn open_identity(
    store: &Store,
    journal: &Journal,
    config: &Config,
    public_url: &str,
) -> anyhow::Result<(Provider, Option<Arc<Demo>>)> {
    let keys = KeyRing::open(store.clone(), master_key(config)?)
        .await
        .context("cannot open the token signing keys")?;
    let mut providers: Vec<FiSettings> = config
        .identity
        .providers
        .iter()
        .map(|p| FiSettings {
            id: p.id.clone(),
            label: p.label.clone(),
            logo: p.logo.clone(),
            issuer: p.issuer.clone(),
            discovery_url: p.discovery_url.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.expose().to_string(),
            eidas_levels: p.eidas_levels.clone(),
            scope: p.scope.clone(),
            timeout: p.timeout,
            sandbox: false,
        })
        .collect();
    let demo_fi = if config.demo {
        let fi = DemoFi::new(public_url)?;
        providers.push(socle_demo::identity_provider(&fi));
        Some(fi)
    } else {
        None
    };
    let broker = Broker::new(providers, format!("{public_url}/api/v2/oidc-callback"))?;
    for p in broker.providers() {
        tracing::debug!(provider = %p.id, redirect_uri = %broker.redirect_uri(&p.id), "identity provider");
    }
    let mut pc = ProviderConfig::new(public_url);
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    pc.session_ttl = secs(config.identity.session_lifetime);
    pc.code_ttl = secs(config.identity.code_lifetime);
    pc.access_token_ttl = secs(config.identity.access_token_lifetime);
    pc.id_token_ttl = secs(config.identity.id_token_lifetime);
    // Services' keys by URL are fetched as webhooks are sent: public addresses only.
    let provider = Provider::new(store.clone(), journal.clone(), keys, broker, pc)
        .with_service_http(socle_catalogue::notify::delivery_client());

    let demo = match demo_fi {
        Some(fi) => Some(Arc::new(Demo::start(fi, &provider, public_url).await?)),
        None => None,
    };

    // Keys rotated by `socle keys rotate` (or another node) are picked up within 10 s;
    // expired sessions, codes and tokens go away every minute.
    let maintained = provider.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            if let Err(e) = maintained.keys.reload().await {
                tracing::debug!(error = %e, "signing keys not reloaded");
            } else {
                maintained.keys.ensure();
            }
            if n.is_multiple_of(6)
                && let Err(e) = maintained.purge().await
            {
                tracing::debug!(error = %e, "identity purge failed");
            }
        }
    });
    Ok((provider, demo))
}

/// The citizen space: a service provider of the platform (client `espace-usager`,
/// registered at each start with a secret derived from the platform's sealed secret, so
/// that nodes sharing the database agree), over the journal, catalogue and consents.
#[allow(clippy::too_many_arguments)]
async fn open_citizen(
    config: &Config,
    store: &Store,
    gateway: &socle_gateway::Gateway,
    consents: &socle_gateway::Consents,
    catalogue: &socle_catalogue::Catalogue,
    journal: &Journal,
    provider: &Provider,
    public_url: &str,
) -> anyhow::Result<Arc<socle_web::routes::citizen::Citizen>> {
    let mut seed = provider.keys.pairwise_secret();
    seed.extend_from_slice(b"|espace-usager");
    let secret = socle_identity::sha256_hex(&seed);
    let citizen = socle_web::routes::citizen::Citizen {
        space: socle_citizen::Space::new(
            store.clone(),
            journal.clone(),
            catalogue.clone(),
            consents.clone(),
            gateway.clone(),
        ),
        client_id: "espace-usager".into(),
        client_secret: secret.clone(),
        public_url: public_url.trim_end_matches('/').to_string(),
        eidas_level: config.citizen.eidas_level,
        session_ttl: i64::try_from(config.identity.session_lifetime.as_secs()).unwrap_or(1800),
    };
    let client = Client {
        // The platform's own space: the person logs in to see their own records.
        consent_exempt: true,
        ..Client::from(socle_identity::PlatformService {
            client_id: &citizen.client_id,
            name: "Mon espace",
            organisation: &config.citizen.organisation,
            secret: &secret,
            redirect_uri: citizen.redirect_uri(),
            post_logout_redirect_uri: citizen.post_logout_redirect_uri(),
            scopes: &["openid", "identite_pivot", "email"],
            eidas_level: config.citizen.eidas_level,
        })
    };
    provider
        .clients
        .put(&client)
        .await
        .context("cannot register the citizen space as a service")?;
    Ok(Arc::new(citizen))
}

/// Resolves on the next SIGTERM or SIGINT with the exit code of a process they stop
/// (143 or 130). The handlers are installed when this is called.
pub fn second_signal() -> impl Future<Output = i32> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>, code: i32| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                        code
                    }
                    None => std::future::pending::<i32>().await,
                }
            };
            tokio::select! {
                code = wait(term, 143) => code,
                code = wait(int, 130) => code,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: call it before serving, so a signal
/// that arrives as soon as the server answers is never the default (fatal) one.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
