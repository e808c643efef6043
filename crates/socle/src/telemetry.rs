//! Logs (`tracing`, human or JSON) and the process-wide Prometheus recorder.
//!
//! Log lines carry the request id (from the request span) but never query strings,
//! bodies or headers: those may hold personal data or secrets.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global log subscriber; call once, from `main`.
pub fn init_logs(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match config.format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

const UPKEEP_THREAD: &str = "socle-metrics";
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use (metrics are global to
/// the process, so servers started in one process, as in tests, share it).
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static METRICS: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("socle_http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            // Histogram samples pile up in the recorder until they are drained: by a
            // scrape of `/metrics`, or by this upkeep. Without it, an instance nobody
            // scrapes would grow by every request's duration (24 bytes each) for ever.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| format!("cannot start the metrics upkeep: {e}"))?;
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))
}

#[cfg(test)]
mod tests {
    /// The recorder comes with the thread that drains its histograms.
    #[test]
    fn the_recorder_is_kept_drained() {
        let handle = super::metrics_handle().unwrap();
        metrics::histogram!("socle_test_upkeep_seconds").record(0.5);
        assert!(handle.render().contains("socle_test_upkeep_seconds"));
        // The new thread names itself once it runs: give it a moment.
        let mut names = Vec::new();
        for _ in 0..100 {
            names = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect();
            if names.iter().any(|n| n == super::UPKEEP_THREAD) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(names.iter().any(|n| n == super::UPKEEP_THREAD), "{names:?}");
    }
}
