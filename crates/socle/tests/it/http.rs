//! The HTTP foundation, over real HTTP against servers on port 0.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::on_both_stores;
use crate::support::{Backend, Relay, TestApp, TestDb};

async fn error_body(r: reqwest::Response) -> Value {
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers()
    );
    let body: Value = r.json().await.unwrap();
    for field in ["code", "title", "detail", "request_id"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "missing {field}: {body}"
        );
    }
    assert_eq!(
        body["request_id"], request_id,
        "the body quotes the header's request id"
    );
    body
}

async fn health_and_readiness(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    // The same checks for a person, in French.
    let r = app.get("/etat").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Le service est disponible"), "{page}");
    assert_eq!(
        body["store"],
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    assert_eq!(body["schema_version"], socle_store::LATEST_SCHEMA_VERSION);
    app.stop().await.unwrap();
}

async fn metrics_count_requests_by_route_template(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..3 {
        assert_eq!(app.get("/static/dsfr/dsfr.min.css").await.status(), 200);
    }
    assert_eq!(app.get("/no/such/thing/4242").await.status(), 404);
    // `serve` keeps the metrics off the public address (issue 29, item 9): they answer
    // on `server.metrics_listen` only.
    let public = app.get("/metrics").await;
    assert_eq!(public.status(), 404);
    let metrics_addr = app.metrics_addr.expect("a metrics listener in serve mode");
    assert_ne!(metrics_addr, app.addr);
    let r = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(crate::support::media_type(&r), "text/plain");
    let text = r.text().await.unwrap();
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("socle_http_requests_total{")
                && l.contains(r#"route="/static/dsfr/{*path}""#)
                && l.contains(r#"status="200""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no request counter in:\n{text}"));
    assert!(count >= 3.0, "{count}");
    // (Not the bare "4242": a sample value of another test in the process may hold
    // those digits.)
    assert!(
        !text.contains("/no/such/thing"),
        "raw paths must not become labels"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("socle_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("socle_store_pool_connections{state=\"idle\"}"),
        "{text}"
    );
    assert!(text.contains("socle_store_pool_max_connections"), "{text}");
    assert!(text.contains("socle_build_info{"), "{text}");
}

async fn request_ids_are_echoed_or_generated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123.def")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123.def");
    let r = app.get("/healthz").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 32);
    let r = app.get("/healthz").await;
    assert_ne!(
        r.headers()["x-request-id"].to_str().unwrap(),
        generated,
        "fresh per request"
    );
    // A hostile id (too long, or with characters that could forge log lines) is replaced.
    let r = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    let body = error_body(r).await;
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b\"c");
}

async fn errors_have_one_shape(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = error_body(app.get("/api/v1/nothing-here").await).await;
    assert_eq!(body["code"], "not_found");
    let r = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_body(r).await["code"], "method_not_allowed");
    let r = app
        .client
        .post(app.url("/api/v1/csp-reports"))
        .header("content-type", "application/csp-report")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = error_body(r).await;
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["detail"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
    // A path segment that is not UTF-8: the framework's plain-text refusal becomes the
    // error shape for an API, a French page for a person.
    let r = app.get("/api/v1/habilitations/%FF").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_body(r).await["code"], "bad_request");
    let r = app
        .client
        .get(app.url("/espace-agent/demandes/%FF"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Adresse invalide") && html.contains("<html lang=\"fr\""),
        "{html}"
    );

    // A browser gets a page in French with a way back, not JSON.
    let r = app
        .client
        .get(app.url("/une/page/absente"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(crate::support::media_type(&r), "text/html");
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\""), "{html}");
    assert!(html.contains("Page non trouvée"));
    assert!(html.contains("href=\"/\""), "a way back");
    assert!(html.contains("/static/dsfr/dsfr.min.css"));
}

async fn csp_reports_are_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let report = serde_json::json!({"csp-report": {
        "document-uri": "http://example.test/mes-donnees?nir=1234",
        "effective-directive": "script-src-elem",
        "blocked-uri": "inline"
    }});
    let r = app
        .client
        .post(app.url("/api/v1/csp-reports"))
        .header("content-type", "application/csp-report")
        .body(report.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let text = app.metrics().await;
    assert!(
        text.contains(r#"socle_csp_violations_total{directive="script-src-elem"}"#),
        "{text}"
    );
    assert!(!text.contains("nir=1234"));
}

async fn security_headers_on_every_response(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/",
        "/healthz",
        "/nope",
        "/static/dsfr/dsfr.min.css",
        "/api/openapi.json",
    ] {
        let r = app.get(path).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert!(h.contains_key("referrer-policy"), "{path}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS on plain HTTP ({path})"
        );
        let cache = h["cache-control"].to_str().unwrap();
        if path.starts_with("/static/") {
            assert!(cache.contains("max-age"), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{path}: stored nowhere by default");
        }
    }
}

async fn static_assets_keep_the_dsfr_layout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.get("/static/dsfr/dsfr.min.css").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    let css = r.text().await.unwrap();
    // Every file the stylesheet points to is served at the same relative place.
    let mut checked = 0;
    for url in css
        .split("url(")
        .skip(1)
        .filter_map(|s| s.split(')').next())
    {
        let url = url.trim_matches('"');
        if url.starts_with("data:") || checked >= 40 {
            continue;
        }
        let r = app.get(&format!("/static/dsfr/{url}")).await;
        assert_eq!(r.status(), 200, "{url}");
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    let r = app.get("/static/dsfr/fonts/Marianne-Regular.woff2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "font/woff2");
    assert_eq!(app.get("/static/dsfr/LICENSE.md").await.status(), 200);
    assert_eq!(
        app.get("/static/dsfr/dsfr.module.min.js").await.status(),
        200
    );
    for bad in [
        "/static/dsfr/../../Cargo.toml",
        "/static/dsfr/%2e%2e/%2e%2e/Cargo.toml",
        "/static/dsfr/nope.css",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status(), 404, "{bad}");
    }
}

async fn home_page_is_a_french_dsfr_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(crate::support::media_type(&r), "text/html");
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\""));
    assert!(html.contains("name=\"viewport\""));
    assert!(html.contains("class=\"fr-skiplinks\""));
    assert!(html.contains("class=\"fr-header\"") && html.contains("class=\"fr-footer\""));
    assert!(
        html.contains("Socle test"),
        "the instance name is in the header"
    );
    assert!(html.contains("href=\"/api/docs\""));
    assert!(
        !html.contains("<script>") && !html.contains("style=\""),
        "no inline script or style"
    );
}

async fn openapi_describes_every_json_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/v1/csp-reports",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    // Every parameter is where it is sent: a path parameter names a segment of its
    // path (clients generated from the document send the others in the query).
    let mut in_query = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the path"
                    ),
                    "query" => in_query += 1,
                    _ => {}
                }
            }
        }
    }
    assert!(in_query >= 14, "{in_query} query parameters declared");
    let page = app.get("/api/docs").await.text().await.unwrap();
    assert!(page.contains("/readyz") && page.contains("/api/v1/csp-reports"));
    assert!(page.contains("Documentation des API"));
    // The operations' descriptions are written in English in the code: inside this
    // French page each is marked as English, for screen readers.
    let summaries =
        page.matches("<p><strong>").count() + page.matches("<p lang=\"en\"><strong>").count();
    assert!(summaries > 10, "{summaries} operation summaries");
    assert_eq!(
        page.matches("<p><strong>").count(),
        0,
        "an unmarked English summary"
    );
    assert!(
        page.matches("</strong> : <span lang=\"en\">").count() > 10,
        "responses marked as English"
    );
}

async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.server.body_limit = 1024).await;
    let big = "x".repeat(4096);
    let r = app
        .client
        .post(app.url("/api/v1/csp-reports"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_body(r).await["code"], "payload_too_large");
    // Without Content-Length (chunked), the limit is found while reading.
    let mut request =
        b"POST /api/v1/csp-reports HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..8 {
        request.extend_from_slice(format!("200\r\n{}\r\n", "x".repeat(512)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(&request).await.unwrap();
    let text = read_response(&mut tcp).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"payload_too_large\""), "{text}");
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from a raw socket.
pub async fn read_response(tcp: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if response.len() >= end + 4 + length {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no complete answer within 10 s: {}",
        String::from_utf8_lossy(&response)
    );
    String::from_utf8_lossy(&response).into_owned()
}

async fn slow_requests_get_408(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.server.request_timeout = Duration::from_millis(300)
    })
    .await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/csp-reports HTTP/1.1\r\nhost: x\r\ncontent-type: application/csp-report\r\ncontent-length: 100\r\n\r\n{\"csp",
    )
    .await
    .unwrap();
    let text = read_response(&mut tcp).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

async fn demo_serves_metrics_on_the_main_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.demo = true).await;
    assert_eq!(app.metrics_addr, None);
    assert!(app.metrics().await.contains("socle_build_info"));
}

on_both_stores!(
    health_and_readiness,
    metrics_count_requests_by_route_template,
    demo_serves_metrics_on_the_main_address,
    request_ids_are_echoed_or_generated,
    errors_have_one_shape,
    csp_reports_are_counted,
    security_headers_on_every_response,
    static_assets_keep_the_dsfr_layout,
    home_page_is_a_french_dsfr_page,
    openapi_describes_every_json_api,
    oversized_bodies_get_413,
    slow_requests_get_408,
);

/// PostgreSQL goes away under a running server: `/readyz` says so (503) quickly, and
/// comes back when the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_stopped_postgresql() {
    let db = TestDb::new(Backend::Postgres).await;
    let upstream: std::net::SocketAddr = {
        let u = url::Url::parse(&crate::support::postgres_admin_url()).unwrap();
        let host = u
            .host_str()
            .unwrap_or("127.0.0.1")
            .replace("localhost", "127.0.0.1");
        format!("{host}:{}", u.port().unwrap_or(5432))
            .parse()
            .unwrap()
    };
    let relay = Relay::start(upstream).await;
    let mut config = db.config();
    let mut url = url::Url::parse(&db.database_url().unwrap()).unwrap();
    url.set_port(Some(relay.addr.port())).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    config.database.url = Some(url.to_string().into());
    config.database.acquire_timeout = Duration::from_millis(500);
    let app = TestApp::start(db, config).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    relay.cut().await;
    let started = std::time::Instant::now();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let body = error_body(r).await;
    assert_eq!(body["code"], "not_ready");
    assert!(
        body["detail"].as_str().unwrap().contains("postgres store"),
        "{body}"
    );
    // Liveness does not depend on the store.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// TLS with rustls: HTTPS served with the configured certificate, and HSTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_hsts() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.tls = Some(socle::config::TlsConfig {
        cert_file,
        key_file,
    });
    let app = TestApp::start(db, config).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", app.addr)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{}/healthz", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    // Plain HTTP to the TLS port gets no HTTP answer, and the server keeps serving.
    let plain = reqwest::get(format!("http://{}/healthz", app.addr)).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let r = client
        .get(format!("https://localhost:{}/readyz", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The home page says what this instance serves, as configured, each with a link that
/// works; the demonstration adds its journeys; nothing announced is missing.
async fn the_home_page_links_every_capability(backend: Backend) {
    let hrefs = |html: &str| -> Vec<String> {
        html.split("href=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    };
    let app = TestApp::spawn_with(backend, |c| {
        c.gateway.public_url = Some("https://passerelle.test".into());
    })
    .await;
    let home = app.get("/").await.text().await.unwrap();
    let links = hrefs(&home);
    for capability in [
        "/espace-agent/integrations/nouvelle",
        "/catalogue",
        "/espace-agent",
        "/mon-espace",
        "/journal",
        "/api/docs",
    ] {
        assert!(
            links.iter().any(|l| l == capability),
            "{capability}: {links:?}"
        );
        let status = app.get(capability).await.status().as_u16();
        assert!(matches!(status, 200 | 303), "{capability} answers {status}");
    }
    assert!(
        home.contains("https://passerelle.test/gateway/"),
        "the gateway's own address"
    );
    assert!(
        !home.contains("Bientôt"),
        "nothing announced that is not there"
    );
    assert!(!links.iter().any(|l| l.starts_with("/demo/")), "{links:?}");

    let demo = TestApp::spawn_with(backend, |c| c.demo = true).await;
    let home = demo.get("/").await.text().await.unwrap();
    let links = hrefs(&home);
    assert!(home.contains("Essayer la démonstration"));
    for journey in ["/demo/fs/", "/mon-espace/", "/espace-agent"] {
        assert!(links.iter().any(|l| l == journey), "{journey}: {links:?}");
        let status = demo.get(journey).await.status().as_u16();
        assert!(matches!(status, 200 | 303), "{journey} answers {status}");
    }
    assert!(
        home.contains("/gateway/"),
        "the gateway under the platform's address"
    );
}

on_both_stores!(the_home_page_links_every_capability);

/// Each state of a page has its own title, saying where the person is (RGAA 8.6): a
/// search and its catalogue, a failed sign-in and the sign-in form, the demonstration
/// service's states.
async fn titles_say_where_the_person_is(backend: Backend) {
    use crate::support::identity::{Browser, csrf};
    let title = |html: &str| {
        html.split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or_default()
            .to_string()
    };
    let app = TestApp::spawn_with(backend, |c| c.demo = true).await;
    let mut b = Browser::new(&app);
    let catalogue = title(&b.get("/catalogue").await.body);
    let search = title(&b.get("/catalogue?q=cantine").await.body);
    assert!(search.starts_with("Résultats de la recherche"), "{search}");
    assert_ne!(catalogue, search);

    let form = b.get("/espace-agent/connexion").await;
    let r = b
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &csrf(&form.body)),
                ("email", "personne@exemple.gouv.fr"),
                ("password", "pas le bon mot de passe"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(
        title(&r.body).starts_with("Connexion refusée"),
        "{}",
        title(&r.body)
    );
    assert_ne!(title(&form.body), title(&r.body));

    let home = title(&b.get("/demo/fs/").await.body);
    let out = title(&b.get("/demo/fs/logged-out").await.body);
    let unknown = title(&b.get("/demo/fs/callback?state=inconnu").await.body);
    assert!(
        home != out && out != unknown && home != unknown,
        "{home} / {out} / {unknown}"
    );
}

on_both_stores!(titles_say_where_the_person_is);
