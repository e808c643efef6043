//! The process: graceful shutdown on SIGTERM/SIGINT, draining in-flight requests.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::read_response;
use crate::on_both_stores;
use crate::support::{Backend, Process, TestDb};

/// A request whose body is still arriving when SIGTERM comes is completed; new
/// connections are refused meanwhile; the process then exits 0.
async fn sigterm_drains_in_flight_requests(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut process = Process::serve(&db.env()).await;
    let addr = process.base.trim_start_matches("http://").to_string();

    let body = br#"{"csp-report":{"effective-directive":"img-src"}}"#;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/csp-reports HTTP/1.1\r\nhost: x\r\ncontent-type: application/csp-report\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    process.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    tcp.write_all(&body[10..]).await.unwrap();
    let response = read_response(&mut tcp).await;
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    drop(tcp);

    let code = process.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", process.stderr());
    let logs = process.stderr();
    assert!(
        logs.contains("shutting down") && logs.contains("stopped"),
        "{logs}"
    );
}

async fn sigint_stops_an_idle_server_promptly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut process = Process::serve(&db.env()).await;
    process.signal("INT");
    assert_eq!(
        process.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        process.stderr()
    );
}

/// Past `server.shutdown_timeout`, a stuck client no longer holds the process.
async fn shutdown_timeout_bounds_the_drain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut env = db.env();
    env.push(("SOCLE_SERVER__SHUTDOWN_TIMEOUT".into(), "500ms".into()));
    let mut process = Process::serve(&env).await;
    let addr = process.base.trim_start_matches("http://").to_string();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"POST /api/v1/csp-reports HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    process.signal("TERM");
    assert_eq!(
        process.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        process.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        process.stderr().contains("shutdown timeout reached"),
        "{}",
        process.stderr()
    );
}

/// A second signal while draining stops the process at once (exit code 143 for a
/// SIGTERM, 130 for a SIGINT), without
/// waiting for `server.shutdown_timeout` (30 s by default); the next start finds the
/// store whole.
async fn a_second_signal_stops_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut process = Process::serve(&db.env()).await;
    let addr = process.base.trim_start_matches("http://").to_string();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"POST /api/v1/csp-reports HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    process.signal("INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "still draining after the first signal"
    );
    let started = std::time::Instant::now();
    process.signal("TERM");
    assert_eq!(
        process.wait_exit(Duration::from_secs(5)).await,
        Some(143),
        "{}",
        process.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        process.stderr().contains("second signal"),
        "{}",
        process.stderr()
    );
    drop(tcp);
    // The next start finds the store whole.
    let mut again = Process::serve(&db.env()).await;
    let ready = reqwest::get(format!("{}/readyz", again.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(10)).await, Some(0));
}

on_both_stores!(
    sigterm_drains_in_flight_requests,
    sigint_stops_an_idle_server_promptly,
    shutdown_timeout_bounds_the_drain,
    a_second_signal_stops_at_once,
);

/// `log.format = "json"`: one JSON object per line, every request line carries the
/// request id, and no query string (which may hold personal data) is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_no_query_string() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = db.env();
    env.push(("SOCLE_LOG__FORMAT".into(), "json".into()));
    let mut process = Process::serve(&env).await;
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/unknown?nir=1850575123456&email=jean@example.fr",
            process.base
        ))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(5)).await, Some(0));
    let logs = process.stderr();
    let mut request_lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["span"]["request_id"] == "trace-me-42" {
            request_lines += 1;
            assert_eq!(v["status"], 404, "{line}");
            assert_eq!(v["route"], "unmatched", "{line}");
        }
    }
    assert!(request_lines >= 1, "{logs}");
    assert!(
        !logs.contains("1850575123456") && !logs.contains("jean@example.fr"),
        "{logs}"
    );
}
