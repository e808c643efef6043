//! The gateway over real HTTP, on both stores: a real upstream (a raw HTTP server on
//! port 0 that can answer, stall, reset, or send garbage), habilitations obtained
//! through the back-office API, tokens from the token endpoint, and every refusal
//! reason; minimisation, the caller assertion, the journal entry per exchange, rate
//! limits and quotas (seen by a second node), revocation effective at the next call,
//! fail-closed when the journal cannot write, and calls on a person's behalf with
//! consent.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_both_stores;
use crate::support::Backend;
use crate::support::back_office::{PRODUCER, REQUESTER, admin, complete_form};
use crate::support::gateway::*;
use crate::support::identity::{ADMIN_TOKEN, jwks, verify};

/// A validated habilitation of the requester for `quotient-familial`, its
/// credentials and a token: what every machine-to-machine scenario starts from.
async fn granted(backend: Backend) -> (Env, String, String, String, String) {
    let env = Env::new(backend, false).await;
    let (hab, client_id, secret) = env.habilitation("quotient-familial", complete_form()).await;
    let (s, t) = env.token(&client_id, &secret, None).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    (env, hab, client_id, secret, token)
}

/// The token endpoint (`client_credentials`): wrong secret, unknown client, a scope
/// beyond the habilitation, then a token naming its habilitation.
async fn machine_tokens(backend: Backend) {
    let env = Env::new(backend, false).await;
    let (hab, client_id, secret) = env.habilitation("quotient-familial", complete_form()).await;

    // The token endpoint: wrong secret, unknown client, scope beyond the habilitation.
    assert_eq!(
        env.token(&client_id, "wrong", None).await.1["error"],
        "invalid_client"
    );
    assert_eq!(env.token("hab-unknown", &secret, None).await.0, 401);
    let (s, e) = env.token(&client_id, &secret, Some("composition")).await;
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (400, "invalid_scope"),
        "{e}"
    );
    for empty in ["", " "] {
        let (s, e) = env.token(&client_id, &secret, Some(empty)).await;
        assert_eq!(
            (s, e["error"].as_str().unwrap()),
            (400, "invalid_scope"),
            "a token for no scope: {e}"
        );
    }
    let (s, t) = env.token(&client_id, &secret, None).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["scope"], "quotient_familial");
    assert_eq!(t["token_type"], "Bearer");
    let token = t["access_token"].as_str().unwrap().to_string();
    let keys = jwks(&env.app).await;
    let claims = verify(&token, &keys);
    assert_eq!(claims["habilitation"], hab.as_str());
    assert_eq!(claims["aud"], format!("{}/gateway", env.app.base));
    let disco: Value = env
        .app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        disco["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_credentials"))
    );
}

/// A call with a service's token: the answer minimised to the granted field, hashed
/// and signed; what the provider received (no caller's credentials or hop headers,
/// the caller assertion); one journal entry with keyed hashes.
async fn a_machine_call_is_minimised_signed_and_journaled(backend: Backend) {
    let (env, hab, client_id, _, token) = granted(backend).await;
    let keys = jwks(&env.app).await;

    // A minimised answer, hashes, rate headers; the provider's own headers stay behind.
    let r = env
        .app
        .client
        .get(env.app.url(&qf("/quotient-familial")) + "&identifiant=0000001")
        .bearer_auth(&token)
        .header("cookie", "session=abc")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-socle-sign", "jws")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .header("accept-language", "fr")
        .header("x-http-method-override", "DELETE")
        .header("x-original-url", "/admin")
        .header("true-client-ip", "10.0.0.1")
        .header("x-request-id", "chosen-by-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    for absent in ["server", "set-cookie", "x-powered-by"] {
        assert!(h.get(absent).is_none(), "{absent} leaked");
    }
    // The provider said `public, max-age=86400`: never for an answer about a person.
    assert_eq!(h["cache-control"], "no-store");
    // The caller's X-Request-Id is echoed for its logs, but the exchange's id is the
    // platform's own.
    assert_eq!(h["x-request-id"], "chosen-by-the-caller");
    assert_ne!(h["x-socle-request-id"], "chosen-by-the-caller");
    assert_eq!(h["ratelimit-limit"], "1000");
    assert!(h.get("ratelimit-remaining").is_some() && h.get("ratelimit-reset").is_some());
    let request_hash = h["x-socle-request-hash"].to_str().unwrap().to_string();
    let request_id = h["x-socle-request-id"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        h["x-socle-response-hash"].to_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&body))
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"quotientFamilial": 640}),
        "only the granted field"
    );
    // The delivery's signature binds the request and response hashes.
    let sig = verify(h["x-socle-signature"].to_str().unwrap(), &keys);
    assert_eq!(
        sig["response_hash"],
        h["x-socle-response-hash"].to_str().unwrap()
    );
    assert_eq!(sig["request_id"], request_id.as_str());

    // What the provider received.
    let (line, seen) = env.up.last();
    assert!(
        line.starts_with("GET /api/quotient-familial?identifiant=0000001 "),
        "{line}"
    );
    for absent in [
        "authorization",
        "cookie",
        "x-forwarded-for",
        "x-private",
        "x-socle-sign",
        "x-http-method-override",
        "x-original-url",
        "true-client-ip",
        "x-request-id",
    ] {
        assert!(header(&seen, absent).is_none(), "{absent} forwarded");
    }
    assert_eq!(
        header(&seen, "x-socle-journal-key"),
        h["x-socle-journal-key"].to_str().ok()
    );
    assert_eq!(header(&seen, "accept-language"), Some("fr"));
    assert_eq!(
        header(&seen, "x-socle-request-id"),
        Some(request_id.as_str())
    );
    assert_eq!(
        header(&seen, "x-socle-request-hash"),
        Some(request_hash.as_str())
    );
    let assertion = verify(header(&seen, "x-socle-assertion").unwrap(), &keys);
    assert_eq!(assertion["aud"], PRODUCER);
    assert_eq!(assertion["sub"], REQUESTER);
    assert_eq!(assertion["habilitation"], hab.as_str());
    assert_eq!(assertion["context"], "Cantine 2027");
    assert_eq!(assertion["object"], "dossier-42");
    assert_eq!(assertion["recipient"], REQUESTER);
    assert!(assertion.get("person").is_none());

    // One journal entry for the exchange, with what the citizen space will show.
    // Its hashes are keyed by the exchange's key: whoever holds the key checks them,
    // the public cannot try the few possible answers against them.
    let e = exchange_entry(&env.app, &h).await;
    assert_eq!(e["kind"], "exchange");
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["actor"], format!("client:{client_id}"));
    assert_eq!(e["purpose"], "Cantine 2027 / dossier-42");
    let key = h["x-socle-journal-key"].to_str().unwrap();
    assert_eq!(key.len(), 64);
    assert_eq!(
        e["response_hash"],
        keyed(key, h["x-socle-response-hash"].to_str().unwrap()).as_str()
    );
    let text = e.to_string();
    assert!(
        !text.contains(&request_hash)
            && !text.contains(h["x-socle-response-hash"].to_str().unwrap()),
        "no plain hash in the public journal: {text}"
    );
    assert_ne!(e["details"]["request_id"], "chosen-by-the-caller");
    assert_eq!(e["details"]["api"], "quotient-familial");
    assert_eq!(e["details"]["habilitation"], hab.as_str());
    assert_eq!(e["details"]["scopes"], "quotient_familial");
    assert_eq!(e["details"]["status"], "200");
    assert!(
        e["legal_basis"]
            .as_str()
            .unwrap()
            .contains("mission d’intérêt public")
    );
    assert_eq!(e["organisations"], json!([REQUESTER, PRODUCER]));

    // The organisation may be named by its acronym; the purpose may come in headers.
    let r = env
        .app
        .client
        .get(
            env.app
                .url("/gateway/caf-demo/quotient-familial/v1/quotient-familial"),
        )
        .bearer_auth(&token)
        .header("x-socle-context", "Cantine")
        .header("x-socle-recipient", REQUESTER)
        .header("x-socle-object", "o-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Each reason a call is refused, none of which reaches the provider.
async fn refused_calls_never_reach_the_provider(backend: Backend) {
    let (env, _, _, _, token) = granted(backend).await;

    // Refusals: each reason, and the provider never called.
    let before = env.up.count();
    refused(
        env.call(&qf("/quotient-familial"), None).await,
        401,
        "missing_token",
    )
    .await;
    refused(
        env.call(&qf("/quotient-familial"), Some("not-a-token"))
            .await,
        401,
        "invalid_token",
    )
    .await;
    let forged = format!("{}x", &token[..token.len() - 1]);
    refused(
        env.call(&qf("/quotient-familial"), Some(&forged)).await,
        401,
        "invalid_token",
    )
    .await;
    let b = refused(
        env.call(
            &format!("/gateway/{PRODUCER}/quotient-familial/v1/quotient-familial"),
            Some(&token),
        )
        .await,
        400,
        "missing_purpose",
    )
    .await;
    assert_eq!(b["meta"]["provider"], "CAF démo", "the provider's acronym");
    let long_object = format!(
        "context=C&recipient=99003003300015&object={}",
        "o".repeat(51)
    );
    for (q, why) in [
        ("context=C&recipient=12345678901234&object=o", "recipient"),
        (long_object.as_str(), "50 characters"),
        ("recipient=99003003300015&object=o", "context is required"),
    ] {
        let b = refused(
            env.call(
                &format!("/gateway/{PRODUCER}/quotient-familial/v1/quotient-familial?{q}"),
                Some(&token),
            )
            .await,
            400,
            "missing_purpose",
        )
        .await;
        assert!(b["detail"].as_str().unwrap().contains(why), "{b}");
    }
    let path = |org: &str, api: &str, version: &str, op: &str| {
        format!("/gateway/{org}/{api}/{version}{op}?{PURPOSE}")
    };
    for (url, status, code) in [
        (path(PRODUCER, "inconnue", "v1", "/x"), 404, "unknown_api"),
        (
            path(REQUESTER, "quotient-familial", "v1", "/quotient-familial"),
            404,
            "unknown_api",
        ),
        (
            path(PRODUCER, "quotient-familial", "v2", "/quotient-familial"),
            404,
            "unknown_version",
        ),
        (qf("/autre"), 404, "unknown_operation"),
        (
            qf("/quotient-familial/..%2F..%2Fadmin"),
            400,
            "invalid_path",
        ),
        (qf("/%2E%2E%2Fsecret"), 400, "invalid_path"),
        (qf("/a%2Fb"), 400, "invalid_path"),
        (qf("/a%5Cb"), 400, "invalid_path"),
        (qf("/quotient-familial/..;"), 400, "invalid_path"),
        (
            qf("/quotient-familial/..%3B/..%3B/admin"),
            400,
            "invalid_path",
        ),
        (qf("/scoped"), 403, "scope_not_granted"),
        // A token for one API does not open another.
        (
            path(PRODUCER, "limitee", "v1", "/quotient-familial"),
            403,
            "wrong_api",
        ),
    ] {
        refused(env.call(&url, Some(&token)).await, status, code).await;
    }
    let r = env
        .app
        .client
        .post(env.app.url(&qf("/quotient-familial")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    refused(r, 404, "unknown_operation").await;
    // A chunked body over the limit (1 MiB): the gateway's error shape, not axum's text.
    let mut sock = tokio::net::TcpStream::connect(env.app.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        qf("/quotient-familial")
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 2 << 20];
    let _ = sock
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await;
    let _ = sock.write_all(&chunk).await; // the server may stop reading first
    let _ = sock.write_all(b"\r\n0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.300}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json")
            && answer.contains("\"code\":\"payload_too_large\""),
        "{answer:.600}"
    );
    assert_eq!(
        env.up.count(),
        before,
        "no refused call reached the provider"
    );
}

/// A provider misbehaving gets errors in the platform's shape, each exchange
/// journaled; the API's usage statistics count them.
async fn a_misbehaving_provider_and_usage_statistics(backend: Backend) {
    let (env, _, _, _, token) = granted(backend).await;
    assert_eq!(
        env.call(&qf("/quotient-familial"), Some(&token))
            .await
            .status(),
        200
    );

    // The provider misbehaving: errors in the platform's shape, internals withheld,
    // and each exchange journaled.
    for (path, status, code) in [
        ("/garbage", 502, "upstream_invalid"),
        ("/text", 502, "upstream_invalid"),
        ("/fail", 502, "upstream_error"),
        ("/missing", 404, "not_found_at_provider"),
        ("/bad-request", 400, "rejected_by_provider"),
        ("/slow", 504, "upstream_timeout"),
        ("/reset", 502, "upstream_unavailable"),
    ] {
        let r = env.call(&qf(path), Some(&token)).await;
        assert_eq!(
            r.headers().get("x-socle-journal-key").map(|k| k.len()),
            Some(64),
            "a journaled failure gives the key of its entry's hashes: {path}"
        );
        let rh = r
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let b = refused(r, status, code).await;
        assert_eq!(b["meta"]["provider"], "CAF démo", "{path}");
        let text = b.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("db.rs") && !text.contains("inconnu"),
            "{text}"
        );
        let e = find_entry(&env.app, path, |e| {
            e["details"]["request_id"] == rh.as_str()
        })
        .await;
        assert_eq!(e["outcome"], "error", "{path}");
        assert_eq!(e["details"]["status"], status.to_string(), "{path}");
    }

    // Usage statistics: the API's JSON and page, and /metrics.
    let d: Value = env
        .app
        .get("/api/v1/apis/quotient-familial")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["gateway_path"],
        format!("/gateway/{PRODUCER}/quotient-familial/v1/")
    );
    assert!(d["usage"]["calls"].as_u64().unwrap() >= 8, "{}", d["usage"]);
    assert!(d["usage"]["errors"].as_u64().unwrap() >= 6);
    assert_eq!(d["usage"]["services"][0]["service"], REQUESTER);
    assert!(d["usage"]["p99_ms"].as_f64().unwrap() > 0.0);
    let page = env
        .app
        .get("/catalogue/quotient-familial")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Utilisation de l’API par service") && page.contains("Mairie de Démoville")
    );
    let metrics = env.app.metrics().await;
    assert!(
        metrics.contains("socle_gateway_calls_total{api=\"quotient-familial\""),
        "{metrics}"
    );
}

/// A renewed secret ends the tokens obtained with the old one; a revocation stops
/// the very next call.
async fn a_renewed_secret_then_a_revocation(backend: Backend) {
    let (env, hab, client_id, secret, token) = granted(backend).await;

    // A renewed secret ends the tokens obtained with the old one.
    let (s, renewed) = env
        .dev()
        .post(
            &format!("/api/v1/habilitations/{hab}/credentials/renew"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{renewed}");
    refused(
        env.call(&qf("/quotient-familial"), Some(&token)).await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        env.token(&client_id, &secret, None).await.0,
        401,
        "the old secret is refused"
    );
    let secret = renewed["client_secret"].as_str().unwrap().to_string();
    let token = env.token(&client_id, &secret, None).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.call(&qf("/quotient-familial"), Some(&token))
            .await
            .status(),
        200
    );

    // A revocation stops the very next call, and the next token.
    let (s, _) = env
        .inst()
        .act(&hab, "revoke", Some("fin de la convention"))
        .await;
    assert_eq!(s, 200);
    refused(
        env.call(&qf("/quotient-familial"), Some(&token)).await,
        403,
        "habilitation_inactive",
    )
    .await;
    assert_eq!(env.token(&client_id, &secret, None).await.0, 401);
}

async fn limits_quotas_and_fail_closed(backend: Backend) {
    let env = Env::new(backend, false).await;
    let mut form = complete_form();
    form["expected_volume"] = json!(4);
    let (hab, client_id, secret) = env.habilitation("limitee", form).await;
    let token = env.token(&client_id, &secret, None).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/gateway/{PRODUCER}/limitee/v1/quotient-familial?{PURPOSE}");

    // Rate: 2 per second; the third at once is refused with Retry-After.
    let (a, b, c) = tokio::join!(
        env.call(&path, Some(&token)),
        env.call(&path, Some(&token)),
        env.call(&path, Some(&token))
    );
    let mut statuses = vec![
        a.status().as_u16(),
        b.status().as_u16(),
        c.status().as_u16(),
    ];
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 429]);
    let limited = [a, b, c].into_iter().find(|r| r.status() == 429).unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    refused(limited, 429, "rate_limited").await;

    // An open API: no token, no purpose, limited per client address.
    let open = format!("/gateway/{PRODUCER}/ouverte/v1/quotient-familial");
    let r = env.call(&open, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-limit"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["quotientFamilial"], 640);
    assert!(
        v.get("adresse").is_none(),
        "open APIs are minimised to their scopes too"
    );
    let r = refused(env.call(&open, None).await, 429, "rate_limited").await;
    assert!(r["detail"].as_str().unwrap().contains("1 calls per second"));

    // Quota: 4 accepted calls a day (refused ones do not count).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(env.call(&path, Some(&token)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(env.call(&path, Some(&token)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = refused(env.call(&path, Some(&token)).await, 429, "quota_exceeded").await;
    assert!(r["detail"].as_str().unwrap().contains('4'));

    // The counters are in the store: a second node starting now sees the quota spent.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut config = env.app.db.config();
    config.admin.token = Some(ADMIN_TOKEN.into());
    // Nodes of one platform share its public address (the tokens' issuer).
    config.server.public_url = Some(env.app.base.clone());
    let node = socle::Application::build(config).await.unwrap();
    let other = format!("http://{}", node.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.run_until_stopped(async {
        let _ = rx.await;
    }));
    let r = env
        .app
        .client
        .get(format!("{other}{path}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    refused(r, 429, "quota_exceeded").await;
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    let _ = hab;

    // A habilitation whose accreditation has ended is refused before the daily expiry
    // job has filed it away.
    let mut form = complete_form();
    form["accreditation"] =
        json!({"authority": "Maire", "start": "2020-01-01", "end": "2021-01-01"});
    let (_, old_client, old_secret) = env.habilitation("quotient-familial", form).await;
    let r = env.token(&old_client, &old_secret, None).await;
    assert_eq!(r.0, 401, "no token for an expired habilitation: {}", r.1);

    // Fail closed: with the journal stopped, the provider's answer is withheld.
    let (_, client2, secret2) = env.habilitation("quotient-familial", complete_form()).await;
    let token2 = env.token(&client2, &secret2, None).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.call(&qf("/quotient-familial"), Some(&token2))
            .await
            .status(),
        200
    );

    // Fail closed when the habilitations in force cannot be re-read: the gateway goes
    // on for `stale_after` (2 s here), then refuses until the store answers again.
    env.app.store.__test_hide_habilitations(true).await.unwrap();
    let mut stale = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let before = env.up.count();
        let r = env.call(&qf("/quotient-familial"), Some(&token2)).await;
        if r.status() == 503 {
            assert_eq!(env.up.count(), before, "nothing sent to the provider");
            stale = Some(r.json::<Value>().await.unwrap());
            break;
        }
        let status = r.status();
        assert_eq!(
            status,
            200,
            "served from the last snapshot meanwhile: {}",
            r.text().await.unwrap()
        );
    }
    let stale = stale.expect("the gateway refuses once its snapshot is stale");
    assert_eq!(stale["code"], "gateway_stale", "{stale}");
    env.app
        .store
        .__test_hide_habilitations(false)
        .await
        .unwrap();
    let mut back = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if env
            .call(&qf("/quotient-familial"), Some(&token2))
            .await
            .status()
            == 200
        {
            back = true;
            break;
        }
    }
    assert!(back, "the gateway serves again once the store answers");

    env.app.journal.as_ref().unwrap().shutdown().await;
    let r = env.call(&qf("/quotient-familial"), Some(&token2)).await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("journal_unavailable"), "{text}");
    assert!(!text.contains("640"), "nothing released: {text}");
}

async fn on_behalf_of_a_person_with_consent(backend: Backend) {
    let env = Env::new(backend, true).await;
    let app = &env.app;
    // The service (an OIDC client of the town hall) and its two habilitations: one on
    // a public-interest mission, one on the person's consent.
    let client = env.service("Cantine de Démoville", REQUESTER).await;
    let (_, m2m_client, m2m_secret) = env.habilitation("quotient-familial", complete_form()).await;
    let mut form = complete_form();
    form["legal_basis"] = json!({"nature": "accord exprès de la personne", "consent": true,
        "text": "RGPD, article 6, paragraphe 1, point a)"});
    form["scopes"] = json!(["quotient_familial", "composition"]);
    let (consent_hab, c_client, c_secret) = env.habilitation("limitee", form).await;

    let person_token = env.person_token(&client, "marie", &[]).await;

    // A habilitation whose accreditation has ended is refused at call time, on a
    // person's behalf too, before the daily expiry job files it away.
    let mut ended = complete_form();
    ended["accreditation"] =
        json!({"authority": "Maire", "start": "2020-01-01", "end": "2021-01-01"});
    env.habilitation("differee", ended).await;
    let before = env.up.count();
    refused(
        env.call(
            &format!("/gateway/{PRODUCER}/differee/v1/quotient-familial?{PURPOSE}"),
            Some(&person_token),
        )
        .await,
        403,
        "habilitation_expired",
    )
    .await;
    assert_eq!(env.up.count(), before);

    // With the person's token: the provider gets the pivot identity in the assertion.
    let r = env
        .call(&qf("/quotient-familial"), Some(&person_token))
        .await;
    assert_eq!(r.status(), 200);
    let answer_headers = r.headers().clone();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"quotientFamilial": 640})
    );
    let keys = jwks(app).await;
    let (_, seen) = env.up.last();
    let assertion = verify(header(&seen, "x-socle-assertion").unwrap(), &keys);
    assert_eq!(assertion["person"]["given_name"], "Marie Claire");
    assert_eq!(assertion["person"]["birthdate"], "1980-06-14");
    assert_eq!(assertion["client_id"], client.id.as_str());
    // The exchange is the person's, as their login is, recognised by their subject
    // key; the public log shows neither their pseudonym nor a subject shared by both.
    let marie = crate::support::demo_identity("marie");
    let journal = app.journal.as_ref().unwrap();
    let pseudonym = journal.pseudonym(&marie.identity_hash());
    let e = exchange_entry(app, &answer_headers).await;
    let subject = e["subject"].as_str().unwrap().to_string();
    assert!(journal.is_subject(&pseudonym, &subject) && subject != pseudonym);
    let login = find_entry(app, "the person's login", |x| {
        x["kind"] == "login"
            && x["subject"]
                .as_str()
                .is_some_and(|s| journal.is_subject(&pseudonym, s))
    })
    .await;
    assert_ne!(login["subject"], e["subject"]);
    assert!(
        !e.to_string().contains("Marie"),
        "no identity in the journal"
    );

    // Consent-based: refused without consent, to the person's token and to the
    // machine token alike.
    let limited = format!("/gateway/{PRODUCER}/limitee/v1/quotient-familial?{PURPOSE}");
    refused(
        env.call(&limited, Some(&person_token)).await,
        403,
        "consent_required",
    )
    .await;
    let m2m = env.token(&c_client, &c_secret, None).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    refused(
        env.call(&limited, Some(&m2m)).await,
        403,
        "consent_required",
    )
    .await;

    // The person consents (the citizen space's job; here through the store's API).
    let gateway = app.gateway.as_ref().unwrap();
    let consents = app.consents.as_ref().unwrap();
    let snapshot = gateway.snapshot();
    let grant = snapshot.grant(&consent_hab).unwrap();
    let route = snapshot.route_by_id("limitee").unwrap();
    let identity = crate::support::demo_identity("marie");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (consent, receipt) = consents
        .grant(&identity.identity_hash(), &grant, &route, now + 3600)
        .await
        .unwrap();
    let r = verify(&receipt, &keys);
    assert_eq!(r["legal_basis"], "consent");
    assert_eq!(r["controller"], REQUESTER);
    assert_eq!(r["event"], "granted");
    let r = env.call(&limited, Some(&person_token)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"quotientFamilial": 640, "allocataires": [{"nom": "Dupont"}], "enfants": [{"prenom": "Léa"}]})
    );
    // Revoked: the very next call is refused.
    consents
        .revoke(&identity.identity_hash(), &consent.id)
        .await
        .unwrap();
    refused(
        env.call(&limited, Some(&person_token)).await,
        403,
        "consent_required",
    )
    .await;
    let _ = (m2m_client, m2m_secret);

    // A login that did not release the pivot identity does not carry it to providers.
    let no_pivot = env
        .person_token(&client, "marie", &[("scope", "openid email")])
        .await;
    refused(
        env.call(&qf("/quotient-familial"), Some(&no_pivot)).await,
        403,
        "identity_not_released",
    )
    .await;

    // The person's token is no passe-partout: a service without a habilitation for the
    // API is refused.
    let other = env.service("Autre service", "13002526500013").await;
    let jean = env.person_token(&other, "jean", &[]).await;
    refused(
        env.call(&qf("/quotient-familial"), Some(&jean)).await,
        403,
        "no_habilitation",
    )
    .await;
}

on_both_stores!(
    machine_tokens,
    a_machine_call_is_minimised_signed_and_journaled,
    refused_calls_never_reach_the_provider,
    a_misbehaving_provider_and_usage_statistics,
    a_renewed_secret_then_a_revocation,
    limits_quotas_and_fail_closed,
    on_behalf_of_a_person_with_consent
);

/// A provider may require a minimum eIDAS level of the person's login for calls on a
/// person's behalf: a lower login is refused before anything reaches it; calls with a
/// service's own credentials are not concerned.
async fn a_provider_requires_an_eidas_level_on_a_persons_behalf(backend: Backend) {
    let env = Env::new(backend, true).await;
    let app = &env.app;
    let openapi = crate::support::qf_openapi("3.0.3");
    let api = |level: Value| {
        json!({"slug": "exigeante", "organisation": PRODUCER, "title": "API exigeante",
            "description": "Le quotient familial", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "access_mode": "habilitation",
            "contact": "api@caf.example.fr", "person_eidas_level": level,
            "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"]}]})
    };
    let (s, e) = crate::catalogue::post(app, "/api/admin/apis", api(json!(4))).await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("person_eidas_level"),
        "{e}"
    );
    admin(app, "/api/admin/apis", api(json!(2))).await;
    let mut form = complete_form();
    form["scopes"] = json!(["quotient_familial"]);
    let (_, client_id, secret) = env.habilitation("exigeante", form).await;
    let client = env.service("Cantine de Démoville", REQUESTER).await;
    let path = format!("/gateway/{PRODUCER}/exigeante/v1/quotient-familial?{PURPOSE}");

    // Marie logs in at eidas1: refused, nothing sent.
    let low = env.person_token(&client, "marie", &[]).await;
    let before = env.up.count();
    let body = refused(
        env.call(&path, Some(&low)).await,
        403,
        "insufficient_eidas_level",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("eidas2"),
        "{body}"
    );
    assert_eq!(body["meta"]["provider"], "CAF démo");
    assert_eq!(env.up.count(), before, "nothing reached the provider");
    // Jean logs in at eidas2: served.
    let substantial = env.person_token(&client, "jean", &[]).await;
    assert_eq!(env.call(&path, Some(&substantial)).await.status(), 200);
    // The service's own credentials: not a call on a person's behalf.
    let (s, t) = env.token(&client_id, &secret, None).await;
    assert_eq!(s, 200, "{t}");
    let m2m = t["access_token"].as_str().unwrap();
    assert_eq!(env.call(&path, Some(m2m)).await.status(), 200);
    // The API page says so.
    let page = app.get("/catalogue/exigeante").await.text().await.unwrap();
    assert!(page.contains("substantiel (eidas2)"), "{page}");
}

on_both_stores!(a_provider_requires_an_eidas_level_on_a_persons_behalf);
