//! The source review's findings (issue 29), each held by a test that fails on the code
//! before its fix: the gateway's operation matching, provider content kept inert, and
//! the other defences listed in docs/SECURITY.md.

use serde_json::{Value, json};

use crate::gateway::{Env, PURPOSE, exchange_entry, refused};
use crate::habilitations::{PRODUCER, admin, complete_form};
use crate::on_both_stores;
use crate::support::Backend;

/// An API whose document lists a templated path before a literal one, each with its
/// own scope.
async fn publish_personnes(env: &Env) {
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "Personnes", "version": "1.0.0"},
        "paths": {
            "/personnes/{id}": {"get": {"security": [{"socle": ["lecture"]}],
                                        "responses": {"200": {"description": "ok"}}}},
            "/personnes/recherche": {"get": {"security": [{"socle": ["recherche"]}],
                                             "responses": {"200": {"description": "ok"}}}}
        }
    })
    .to_string();
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "personnes", "organisation": PRODUCER, "title": "API personnes",
            "description": "Des personnes", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "habilitation", "contact": "api@caf.example.fr",
            "scopes": [{"name": "lecture", "description": "Lire une personne", "fields": ["/nom"]},
                       {"name": "recherche", "description": "Rechercher", "fields": ["/resultats"]}]
        }),
    )
    .await;
}

/// Item 1: with a habilitation granting only `lecture`, neither the literal path
/// written after a template nor its percent-encoded spelling reaches `recherche`; the
/// path the provider sees is the normalised one; the journal names the operation.
async fn gateway_matches_operations_as_openapi_says(backend: Backend) {
    let env = Env::new(backend, false).await;
    publish_personnes(&env).await;
    let mut form = complete_form();
    form["scopes"] = json!(["lecture"]);
    let (_, client_id, secret) = env.habilitation("personnes", form).await;
    let (s, t) = env.token(&client_id, &secret, None).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    let url = |p: &str| format!("/gateway/{PRODUCER}/personnes/v1{p}?{PURPOSE}");

    let before = env.up.count();
    for path in [
        "/personnes/recherche",
        "/personnes/%72echerche",
        "/personnes/%72%65cherche",
        "/personnes/re%63herche",
    ] {
        let r = env.call(&url(path), Some(&token)).await;
        refused(r, 403, "scope_not_granted").await;
    }
    // An encoding that the provider could decode into another path is refused.
    for path in [
        "/personnes/%2572echerche",
        "/personnes/a%2Fb",
        "/personnes/a%3Bb",
    ] {
        let r = env.call(&url(path), Some(&token)).await;
        refused(r, 400, "invalid_path").await;
    }
    assert_eq!(env.up.count(), before, "the provider was reached");

    // The operation granted works, and the provider sees the normalised path.
    let r = env.call(&url("/personnes/%34%32"), Some(&token)).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"nom": "Dupont"}));
    let (line, _) = env.up.last();
    assert_eq!(line, "GET /api/personnes/42 HTTP/1.1");
    let e = exchange_entry(&env.app, &headers).await;
    assert_eq!(e["details"]["operation"], "GET /personnes/{id}", "{e}");
}

/// Item 3: an open API whose provider answers HTML with a script: the answer is
/// released (a scope grants the whole document) but inert, sandboxed and downloaded.
async fn provider_content_is_never_active(backend: Backend) {
    let env = Env::new(backend, false).await;
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "Pages", "version": "1.0.0"},
        "paths": {"/page": {"get": {"responses": {"200": {"description": "ok"}}}},
                  "/quotient-familial": {"get": {"responses": {"200": {"description": "ok"}}}}}
    })
    .to_string();
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "pages", "organisation": PRODUCER, "title": "API pages",
            "description": "Des pages", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "open", "contact": "api@caf.example.fr",
            "scopes": [{"name": "tout", "description": "Tout", "fields": [""]}]
        }),
    )
    .await;
    let r = env
        .call(&format!("/gateway/{PRODUCER}/pages/v1/page"), None)
        .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html");
    assert_eq!(
        h["content-security-policy"],
        "sandbox; default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(h["content-disposition"], "attachment");
    assert_eq!(h["cross-origin-resource-policy"], "same-origin");
    assert!(r.text().await.unwrap().contains("<script>"));

    // JSON stays inline, sandboxed too; errors carry the same policy.
    let r = env
        .call(
            &format!("/gateway/{PRODUCER}/pages/v1/quotient-familial"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-disposition").is_none());
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox;")
    );
    let r = env
        .call(&format!("/gateway/{PRODUCER}/pages/v1/absente"), None)
        .await;
    assert_eq!(r.headers()["cross-origin-resource-policy"], "same-origin");
    refused(r, 404, "unknown_operation").await;
}

on_both_stores!(
    gateway_matches_operations_as_openapi_says,
    provider_content_is_never_active,
);
