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
use socle_journal::{Entry, EntryKind, Journal, JournalConfig};
use socle_store::{InstanceStore, Location, Store, StoreOptions};
use socle_web::{AppState, WebSettings};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::{telemetry, tls};

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    config: Config,
}

/// Opens the store the configuration names, with its clear errors.
pub async fn open_store(config: &Config) -> Result<Store, socle_store::StoreError> {
    let location = match &config.database.url {
        Some(url) => Location::Postgres { url: url.clone() },
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

        let journal = if status.is_current() {
            let journal = open_journal(&store, &config).await?;
            if store.mark_once("instance.created").await? {
                journal
                    .append(vec![
                        Entry::new(EntryKind::Admin, "system", "ok")
                            .detail("action", "instance.created")
                            .detail("instance_id", instance.instance_id.clone()),
                    ])
                    .await?;
            }
            Some(journal)
        } else {
            None
        };

        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;

        let state = AppState {
            store,
            instance: Arc::new(instance),
            settings: Arc::new(WebSettings {
                instance_name: config.instance.name.as_str().into(),
                tls: tls.is_some(),
                body_limit: config.server.body_limit,
                request_timeout: config.server.request_timeout,
                ready_timeout: std::time::Duration::from_secs(2),
                journal_rate_limit: config.journal.rate_limit,
            }),
            journal,
            journal_limiter: Arc::new(socle_web::ratelimit::RateLimiter::new(
                config.journal.rate_limit,
            )),
            metrics: telemetry::metrics_handle()?,
            draining: Arc::new(AtomicBool::new(false)),
            started,
        };
        metrics::gauge!(
            "socle_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "store" => state.store.kind()
        )
        .set(1.0);
        Ok(Application {
            listener,
            local_addr,
            tls,
            state,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.state.journal.as_ref()
    }

    /// Seeds the demonstration data, once per database; the seeding is journaled like
    /// any admin change.
    pub async fn seed_demo(&self) -> anyhow::Result<()> {
        let Some(journal) = &self.state.journal else {
            return Ok(());
        };
        if self.state.store.mark_once("demo.seeded").await? {
            journal
                .append(vec![
                    Entry::new(EntryKind::Admin, "system", "ok")
                        .detail("action", "demo.seeded")
                        .detail("instance_id", self.state.instance.instance_id.clone()),
                ])
                .await?;
        }
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
            tls,
            state,
            config,
        } = self;
        let router = socle_web::router(state.clone());
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
        tracing::info!(address = %local_addr, store = state.store.kind(), "serving");

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
                state.draining.store(true, Ordering::Relaxed);
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
        if let Some(journal) = &state.journal {
            // Sequence what was acknowledged and sign a last checkpoint.
            journal.shutdown().await;
        }
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the journal with the configured origin (derived from the instance name when
/// unset).
pub async fn open_journal(store: &Store, config: &Config) -> anyhow::Result<Journal> {
    let origin = config
        .journal
        .origin
        .clone()
        .unwrap_or_else(|| socle_journal::origin_from_name(config.instance.name.as_str()));
    let mut jc = JournalConfig::new(origin);
    jc.origin_explicit = config.journal.origin.is_some();
    jc.checkpoint_interval = config.journal.checkpoint_interval;
    Ok(Journal::open(store.clone(), jc).await?)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
