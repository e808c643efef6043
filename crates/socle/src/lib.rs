//! The `socle` binary's library half: configuration, wiring and serving.
//!
//! `main.rs` only parses the command line and calls into here, so the integration
//! tests can build exactly what the binary runs ([`Application::build`] with a
//! [`Config`], bound to port 0). This crate owns the process concerns the others must
//! not: configuration layers, log and metrics setup, TLS, signals and graceful
//! shutdown. Domain rules live in `socle-core`, SQL in `socle-store`, HTTP handling in
//! `socle-web`.

pub mod admin_cli;
pub mod app;
pub mod config;
pub mod journal_cli;
pub mod telemetry;
pub mod tls;

pub use app::{Application, open_store, second_signal, shutdown_signal};
pub use config::{Config, ConfigErrors, Layers};
