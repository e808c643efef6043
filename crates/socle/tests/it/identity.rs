//! Identity federation over real HTTP: Socle as OpenID Connect provider to services
//! (registered through the admin API) and as relying party to identity providers (the
//! demo FI mounted under /demo/fi, reached over HTTP, and a misbehaving mock FI served
//! by this test on its own port). Every rule of the issue has a refusal test here.

use std::collections::BTreeMap;
use std::time::Duration;

use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::identity::*;
use crate::support::{Backend, TestApp, TestDb};

async fn error_redirect(app: &TestApp, url: &str) -> BTreeMap<String, String> {
    let r = app.get(url).await;
    assert_eq!(r.status(), 303, "{url}: {}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query(&loc)
}

// ----- the tests ---------------------------------------------------------------------

async fn code_flow_with_pkce_userinfo_and_journal(backend: Backend) {
    let app = identity_app(backend).await;
    let d = app.get("/.well-known/openid-configuration").await;
    assert_eq!(d.status(), 200);
    let disco: Value = d.json().await.unwrap();
    assert_eq!(disco["issuer"], format!("{}/api/v2", app.base));
    let d2: Value = app
        .get("/api/v2/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disco, d2);
    assert_eq!(disco["code_challenge_methods_supported"], json!(["S256"]));

    let client = register_franceconnect(&app).await;
    let login = demo_login(&app, &client, "marie", &[]).await;
    let r = token(&app, &client, &login).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    let set = jwks(&app).await;
    let id = verify(t["id_token"].as_str().unwrap(), &set);
    assert_eq!(id["iss"], json!(format!("{}/api/v2", app.base)));
    assert_eq!(id["aud"], json!(client.id));
    assert_eq!(id["nonce"], json!(login.nonce));
    assert_eq!(id["acr"], json!("eidas1"));
    assert!(id.get("amr").is_none(), "amr only when asked for: {id:?}");
    assert!(id.get("family_name").is_none(), "claims are at userinfo");
    for claim in ["exp", "iat", "auth_time"] {
        assert!(
            id[claim].is_i64(),
            "{claim} is an integer NumericDate: {}",
            id[claim]
        );
    }
    assert!(id["sid"].as_str().unwrap().len() >= 32);
    {
        use base64::Engine;
        let digest = socle_identity::sha256_hex(t["access_token"].as_str().unwrap().as_bytes());
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            id["at_hash"],
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
        );
    }
    let sub = id["sub"].as_str().unwrap().to_string();
    assert!(
        sub.ends_with("v1") && sub.len() == 66,
        "pairwise sub, not the FI's: {sub}"
    );
    assert!(!sub.contains("demo-"));

    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(ui.status(), 200);
    assert_eq!(ui.headers()["content-type"], "application/jwt");
    let info = verify(ui.text().await.unwrap().trim(), &set);
    assert_eq!(info["sub"], json!(sub));
    assert_eq!(info["given_name"], "Marie Claire");
    assert_eq!(info["family_name"], "Dupont");
    assert_eq!(info["birthplace"], "75107");
    assert_eq!(info["email"], "marie.dupont@example.fr");
    assert_eq!(info["aud"], json!(client.id));

    // Same person, second login: same sub. Another service: another sub.
    let again = demo_login(&app, &client, "marie", &[]).await;
    let t2: Value = token(&app, &client, &again).await.json().await.unwrap();
    assert_eq!(
        verify(t2["id_token"].as_str().unwrap(), &set)["sub"],
        json!(sub)
    );
    let other = register_default(&app).await;
    let l3 = demo_login(&app, &other, "marie", &[]).await;
    let t3: Value = token(&app, &other, &l3).await.json().await.unwrap();
    assert_ne!(
        verify(t3["id_token"].as_str().unwrap(), &set)["sub"],
        json!(sub)
    );

    // The journal: a consent and a login per connection, under a pseudonym, with claim
    // names and never their values.
    let journal = app.journal.as_ref().unwrap();
    let cp = journal.latest_checkpoint().await.unwrap();
    journal
        .wait_for_size(cp.size, Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cp = journal.latest_checkpoint().await.unwrap();
    let (_, rows) = journal.entries(0, cp.size).await.unwrap();
    let entries: Vec<socle_journal::Entry> = rows
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.leaf);
            for personal in [
                "Dupont",
                "Marie",
                "75107",
                "1980-06-14",
                "marie.dupont",
                "demo-marie",
            ] {
                assert!(
                    !text.contains(personal),
                    "personal data {personal} in the journal: {text}"
                );
            }
            socle_journal::Entry::decode(&r.leaf).unwrap()
        })
        .collect();
    let logins: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == socle_journal::EntryKind::Login)
        .collect();
    let consents: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == socle_journal::EntryKind::Consent)
        .collect();
    assert_eq!(logins.len(), 3);
    assert_eq!(consents.len(), 3);
    let l = logins[0];
    assert_eq!(l.details["client_id"], client.id);
    assert_eq!(l.details["provider"], "demo");
    assert_eq!(l.details["acr"], "eidas1");
    assert_eq!(
        l.details["claims"],
        "given_name,family_name,birthdate,gender,birthplace,birthcountry,email"
    );
    assert_eq!(l.organisations, vec!["13002526500013".to_string()]);
    // One person, one pseudonym (the index's), but a different subject in every
    // entry of the public log.
    let identity = crate::support::demo_identity("marie");
    let pseudonym = journal.pseudonym(&identity.identity_hash());
    let subjects: std::collections::BTreeSet<_> =
        entries.iter().filter_map(|e| e.subject.clone()).collect();
    assert_eq!(subjects.len(), 6, "no two entries share a subject");
    assert!(
        logins.iter().chain(&consents).all(|e| e
            .subject
            .as_deref()
            .is_some_and(|s| s != pseudonym && journal.is_subject(&pseudonym, s))),
        "every entry is the person's, none shows their pseudonym"
    );
    let listed = journal.subject_entries(&pseudonym, 100).await.unwrap();
    assert_eq!(
        listed.len(),
        6,
        "the person's connections and consents are listed by pseudonym"
    );
}

async fn authorization_requests_are_checked(backend: Backend) {
    let app = identity_app(backend).await;
    let client = register_franceconnect(&app).await;

    // A wrong or missing redirect_uri, an unknown client: a page, never a redirect.
    for (extra, needle) in [
        (
            vec![("redirect_uri", "http://127.0.0.1:9/evil")],
            "adresse de retour",
        ),
        (
            vec![("redirect_uri", "http://127.0.0.1:9/callback/")],
            "adresse de retour",
        ),
        (vec![("redirect_uri", "")], "redirect_uri"),
        (vec![("client_id", "unknown")], "pas connu"),
    ] {
        let (url, _) = authorize_url(&client, &extra);
        let r = app
            .client
            .get(app.url(&url))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(r.headers().get("location").is_none());
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{extra:?}: {body}");
        assert!(body.contains("lang=\"fr\""));
    }
    // A repeated redirect_uri: a page too.
    let (url, _) = authorize_url(&client, &[]);
    let r = app
        .get(&format!(
            "{url}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // Everything else: back to the service with the error and the state.
    let (url, _) = authorize_url(&client, &[]);
    let q = error_redirect(&app, &format!("{url}&scope=openid")).await;
    assert_eq!(q["error"], "invalid_request", "repeated parameter");
    for (extra, error) in [
        (vec![("state", "short")], "invalid_request"),
        (vec![("state", "")], "invalid_request"),
        (vec![("nonce", "short")], "invalid_request"),
        (vec![("nonce", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "profile")], "invalid_scope"),
        (vec![("scope", "openid birth")], "invalid_scope"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
        // OpenID Connect Core §3.1.2.6: request objects are refused, not ignored.
        (
            vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
        (
            vec![("request_uri", "https://fs.example/req/1")],
            "request_uri_not_supported",
        ),
    ] {
        let (url, login) = authorize_url(&client, &extra);
        let q = error_redirect(&app, &url).await;
        assert_eq!(q["error"], error, "{extra:?}");
        if extra[0].0 != "state" {
            assert_eq!(q.get("state"), Some(&login.state));
        }
    }
    // idp_hint (FranceConnect, ProConnect): straight to that provider when it can serve
    // the request; otherwise the choice page.
    let (url, _) = authorize_url(&client, &[("idp_hint", "demo")]);
    let r = app.get(&url).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("/demo/fi/authorize?"), "{to}");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("socle_session=")
    );
    // A session cookie the platform does not know is never adopted (no session
    // fixation): the login gets a new random one. A live one is kept.
    let session_of = |r: &reqwest::Response| {
        r.headers()["set-cookie"].to_str().unwrap()["socle_session=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string()
    };
    let live = session_of(&r);
    for (sent, adopted) in [("x".repeat(43), false), (live.clone(), true)] {
        let (url, _) = authorize_url(&client, &[("idp_hint", "demo")]);
        let r = app
            .client
            .get(format!("{}{url}", app.base))
            .header("cookie", format!("socle_session={sent}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(session_of(&r) == sent, adopted, "{sent}");
    }
    // An idp_hint naming no provider: the choice page for a standard client (the
    // hint is not OpenID Connect's), FranceConnect's invalid_request for its profile
    // (its error Y030016).
    let standard = register_default(&app).await;
    let (url, _) = authorize_url(&standard, &[("idp_hint", "unknown-provider")]);
    let r = app.get(&url).await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/v2/interaction/")
    );
    let (url, _) = authorize_url(&client, &[("idp_hint", "unknown-provider")]);
    let q = error_redirect(&app, &url).await;
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["error_description"], "invalid idp_hint parameter");

    // Unrecognised parameters are ignored (RFC 6749 §3.1).
    let (url, _) = authorize_url(&client, &[("unknown_parameter", "x"), ("ui_locales", "fr")]);
    let r = app.get(&url).await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/v2/interaction/")
    );

    // A public client must use PKCE.
    let public = register(
        &app,
        json!({"name": "App", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert!(public.secret.is_none());
    let (url, _) = authorize_url(
        &public,
        &[("code_challenge", ""), ("code_challenge_method", "")],
    );
    assert_eq!(error_redirect(&app, &url).await["error"], "invalid_request");

    // A disabled client is refused with a page.
    let r = app
        .client
        .post(app.url(&format!("/api/admin/clients/{}/disable", client.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (url, _) = authorize_url(&client, &[]);
    assert_eq!(app.get(&url).await.status(), 400);
}

async fn token_endpoint_rules(backend: Backend) {
    let app = identity_app_with(backend, |c| {
        // Long enough for a code to be exchanged on a loaded two-core machine (at 1 s
        // the first exchanges failed there now and then), short enough to expire one.
        c.identity.code_lifetime = Duration::from_secs(3);
    })
    .await;
    let client = register_default(&app).await;

    // Wrong secret, unknown client, no authentication.
    let login = demo_login(&app, &client, "jean", &[]).await;
    let bad = TestClient {
        id: client.id.clone(),
        secret: Some("wrong".into()),
    };
    let r = token(&app, &bad, &login).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_client");
    assert_eq!(e["code"], "invalid_client");
    assert!(e["request_id"].as_str().is_some());
    // The failed attempt did not use the code: PKCE mismatch next.
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", login.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &format!("w{}", "1".repeat(50))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // Replay: the first exchange works, the second fails and revokes what the first got.
    let login = demo_login(&app, &client, "jean", &[]).await;
    let first: Value = token(&app, &client, &login).await.json().await.unwrap();
    let access = first["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {first}"))
        .to_string();
    assert_eq!(userinfo(&app, &access).await.status(), 200);
    let r = token(&app, &client, &login).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = userinfo(&app, &access).await;
    assert_eq!(
        r.status(),
        401,
        "a replayed code revokes the tokens issued from it"
    );
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Expired code (lifetime 3 s here).
    let login = demo_login(&app, &client, "jean", &[]).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let r = token(&app, &client, &login).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // redirect_uri must repeat the authorization request's.
    let login = demo_login(&app, &client, "jean", &[]).await;
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", login.code.as_str()),
            ("redirect_uri", LOGOUT),
            ("code_verifier", login.verifier.as_str()),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // client_secret_post works; other grant types and duplicated parameters do not.
    let login = demo_login(&app, &client, "jean", &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", login.code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", login.verifier.as_str()),
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_deref().unwrap()),
    ];
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    // client_credentials is for the gateway, with a habilitation's credentials only.
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = app
        .client
        .post(app.url("/api/v2/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=a&code=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // No token: 401 with a Bearer challenge.
    let r = app.get("/api/v2/userinfo").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

async fn levels_consent_and_logout(backend: Backend) {
    let app = identity_app(backend).await;
    let client = register_franceconnect(&app).await;

    // Marie is known at eidas1 only: a service asking eidas2 gets no identity.
    let mut b = Browser::new(&app);
    let (url, login) = authorize_url(&client, &[("acr_values", "eidas2")]);
    let r = login_via(&mut b, &url, "demo", "marie").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("niveau de garantie"), "{}", r.body);
    let back = unescape(between(&r.body, "fr-btn--secondary\" href=\"", "\"").unwrap());
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], login.state);
    // Jean is eidas2: the acr returned is what was obtained.
    let l = demo_login(&app, &client, "jean", &[("acr_values", "eidas2")]).await;
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    assert_eq!(
        verify(t["id_token"].as_str().unwrap(), &jwks(&app).await)["acr"],
        "eidas2"
    );
    // Unknown acr values are ignored (FranceConnect, OpenID Connect Core §5.5.1.1):
    // "eidas2 niveau_inconnu" asks eidas2, "eidas4" alone asks nothing more than the
    // client's level. Unknown scope values are ignored too (Core §3.1.2.1), and the
    // token response says which scopes were granted.
    let l = demo_login(
        &app,
        &client,
        "jean",
        &[
            ("acr_values", "eidas2 niveau_inconnu"),
            ("scope", "openid email address phone rnipp_birth"),
        ],
    )
    .await;
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    assert_eq!(t["scope"], "openid email");
    assert_eq!(
        verify(t["id_token"].as_str().unwrap(), &jwks(&app).await)["acr"],
        "eidas2"
    );
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[("acr_values", "eidas2 niveau_inconnu")]);
    let r = login_via(&mut b, &url, "demo", "marie").await;
    assert_eq!(r.status, 502, "eidas2 still asked: {}", r.body);
    let l = demo_login(&app, &client, "marie", &[("acr_values", "eidas4")]).await;
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    assert_eq!(
        verify(t["id_token"].as_str().unwrap(), &jwks(&app).await)["acr"],
        "eidas1"
    );
    // Fatou is eidas3: asked eidas1, the token says eidas3 (obtained, not more).
    let l = demo_login(&app, &client, "fatou", &[]).await;
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap().to_string();
    assert_eq!(verify(&id_token, &jwks(&app).await)["acr"], "eidas3");

    // Invalid identity data from the FI: refused with a page, the service gets an error.
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    let r = login_via(&mut b, &url, "demo", "erreur").await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("mal formée"), "{}", r.body);

    // Refusing consent: access_denied to the service, and a journal entry.
    let mut b = Browser::new(&app);
    let (url, login) = authorize_url(&client, &[]);
    let r = b.get(&url).await;
    let choice = b.get(r.location.as_deref().unwrap()).await;
    // CSRF: a form without the token is refused.
    let r = b
        .post(&form_action(&choice.body), &[("provider", "demo")])
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            &form_action(&choice.body),
            &[("csrf", &csrf(&choice.body)), ("provider", "demo")],
        )
        .await;
    let fi = b.get(r.location.as_deref().unwrap()).await;
    let r = demo_fi(&mut b, &fi, "lucas").await;
    let r = b.get(r.location.as_deref().unwrap()).await;
    let consent = b.get(r.location.as_deref().unwrap()).await;
    assert!(consent.body.contains("Bernard"), "the person sees the data");
    assert!(consent.body.contains("Service test"), "and who gets it");
    let r = b
        .post(
            &form_action(&consent.body),
            &[("csrf", &csrf(&consent.body)), ("decision", "refuse")],
        )
        .await;
    let q = query(r.location.as_deref().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], login.state);

    // The choice page remembers the last choice on the device.
    let (url, _) = authorize_url(&client, &[]);
    let r = b.get(&url).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert!(page.body.contains("(dernier choix)"));
    // The form leads to the identity provider: its origin is an allowed form target.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {}", app.base)),
        "{csp}"
    );

    // Logout: id_token_hint, state and a registered post_logout_redirect_uri.
    let end = |hint: &str, state: &str, uri: &str| {
        logout_path(&[
            ("id_token_hint", hint),
            ("state", state),
            ("post_logout_redirect_uri", uri),
        ])
    };
    let mut b = Browser::new(&app);
    for url in [
        end(&id_token, "s", "http://127.0.0.1:9/not-registered"),
        end(&id_token, "", LOGOUT),
        end("", "s", LOGOUT),
        end("eyJhbGciOiJub25lIn0.e30.", "s", LOGOUT),
    ] {
        let r = b.get(&url).await;
        assert_eq!(r.status, 400, "{url}");
        assert!(r.location.is_none());
    }
    let r = b.get(&end(&id_token, "logout-state", LOGOUT)).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{LOGOUT}?state=logout-state").as_str())
    );

    // After a real login, logout goes through the FI's end_session and comes back.
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    let r = login_via(&mut b, &url, "demo", "jean").await;
    let code = query(r.location.as_deref().unwrap())["code"].clone();
    let l = Login {
        code,
        state: String::new(),
        nonce: String::new(),
        verifier: verifier_and_challenge().0,
    };
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    // A userinfo JWT is signed by the same keys for the same audience, but names no
    // session: not a logout hint.
    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(ui.headers()["content-type"], "application/jwt");
    let ui = ui.text().await.unwrap();
    let r = b.get(&end(&ui, "bye", LOGOUT)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("pas un jeton d’identité"), "{}", r.body);
    // Someone else's ID token (the earlier login, another browser) in a link: the
    // service is sent back, but this browser's session is left alone — no provider
    // logout chained, no cookie cleared (RP-Initiated Logout 1.0 §2).
    let r = b.get(&end(&id_token, "not-mine", LOGOUT)).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{LOGOUT}?state=not-mine").as_str())
    );
    assert!(!r.headers.contains_key("set-cookie"));
    // The browser's own ID token: its session ends, chained to the provider.
    let r = b
        .get(&end(t["id_token"].as_str().unwrap(), "bye", LOGOUT))
        .await;
    assert_eq!(r.status, 303);
    ended_through_the_fi(&mut b, r, "bye").await;
}

/// A logout answer that ended the browser's session: its cookie is cleared, the demo
/// FI's logout is chained, and the person is back at the service with `state`.
async fn ended_through_the_fi(b: &mut Browser, r: Resp, state: &str) {
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let fi_logout = r.location.unwrap();
    assert!(fi_logout.contains("/demo/fi/session/end"), "{fi_logout}");
    let r = b.get(&fi_logout).await;
    let r = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{LOGOUT}?state={state}").as_str())
    );
}

/// A login of `jean` in `b`, and the ID token the service gets for it.
async fn encrypted_login(app: &TestApp, client: &TestClient, b: &mut Browser) -> String {
    let (url, mut login) = authorize_url(client, &[]);
    let r = login_via(b, &url, "demo", "jean").await;
    login.code = query(r.location.as_deref().unwrap())["code"].clone();
    let t: Value = token(app, client, &login).await.json().await.unwrap();
    t["id_token"].as_str().unwrap().to_string()
}

/// A service whose ID tokens are encrypted sends one as it received it (a JWE the
/// platform cannot decrypt) as `id_token_hint`: the platform knows it by its hash, ends
/// that browser's session and chains the provider's logout; an altered or unknown JWE
/// is a page, another browser's leaves this session alone.
async fn an_encrypted_id_token_is_a_logout_hint(backend: Backend) {
    let app = identity_app(backend).await;
    let mut enc = Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    enc.set_key_id("enc-1");
    enc.set_key_use("enc");
    let mut public = enc.to_public_key().unwrap();
    public.set_key_id("enc-1");
    public.set_key_use("enc");
    let client = register(
        &app,
        json!({"name": "Chiffré", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
               "post_logout_redirect_uris": [LOGOUT],
               "jwks": {"keys": [Value::Object(public.as_ref().clone())]},
               "id_token_encrypted_response_alg": "ECDH-ES"}),
    )
    .await;
    let end = |hint: &str, state: &str| {
        logout_path(&[
            ("id_token_hint", hint),
            ("state", state),
            ("post_logout_redirect_uri", LOGOUT),
        ])
    };
    let mut b = Browser::new(&app);
    let mine = encrypted_login(&app, &client, &mut b).await;
    assert_eq!(mine.split('.').count(), 5, "a JWE");
    let (inner, _) = josekit::jwe::deserialize_compact(
        &mine,
        &josekit::jwe::ECDH_ES.decrypter_from_jwk(&enc).unwrap(),
    )
    .unwrap();
    let sid = verify(std::str::from_utf8(&inner).unwrap(), &jwks(&app).await)["sid"].clone();
    assert!(sid.is_string());
    let mut other = Browser::new(&app);
    let theirs = encrypted_login(&app, &client, &mut other).await;

    // Altered (one character of the tag) or never issued: a page, nothing ends.
    let mut altered = mine.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for hint in [altered, format!("{}.x", &mine[..mine.rfind('.').unwrap()])] {
        let r = b.get(&end(&hint, "s")).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("pas connu de la plateforme"), "{}", r.body);
        assert!(r.location.is_none() && !r.headers.contains_key("set-cookie"));
    }
    // Another browser's encrypted ID token: back to the service, this session stays.
    let r = b.get(&end(&theirs, "not-mine")).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{LOGOUT}?state=not-mine").as_str())
    );
    assert!(!r.headers.contains_key("set-cookie"));
    // The browser's own: its session ends, chained to the provider, back with state.
    let r = b.get(&end(&mine, "bye")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    ended_through_the_fi(&mut b, r, "bye").await;
}

// ----- a misbehaving upstream provider ------------------------------------------------

async fn upstream_failures_are_pages_never_500(backend: Backend) {
    let fi = MockFi::start().await;
    let provider = fi.provider("mock", vec![1, 2]);
    // A provider that does not answer at all (nothing listens on port 1).
    let mut down = fi.provider("down", vec![1, 2]);
    down.issuer = "http://127.0.0.1:1".into();
    let app = identity_app_with(backend, move |c| {
        c.identity.providers.push(provider);
        c.identity.providers.push(down);
    })
    .await;
    let client = register_default(&app).await;

    // idp_hint naming a provider that cannot be reached: the choice page, with the
    // others and the way back to the service — not a dead end.
    let mut b = Browser::new(&app);
    let (url, login) = authorize_url(&client, &[("idp_hint", "down")]);
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.clone().unwrap();
    assert!(to.starts_with("/api/v2/interaction/"), "{to}");
    let page = b.get(&to).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("FI mock"), "{}", page.body);
    let cancel = unescape(between(&page.body, "fr-link--icon-left\" href=\"", "\"").unwrap());
    assert!(cancel.starts_with(REDIRECT), "{cancel}");
    let q = query(&cancel);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], login.state);

    // The certified-provider path works with this mock too (acr eidas2 taken as obtained).
    fi.set(Mode::Good);
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    let r = login_via(&mut b, &url, "mock", "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let code = query(r.location.as_deref().unwrap())["code"].clone();
    let l = Login {
        code,
        state: String::new(),
        nonce: String::new(),
        verifier: verifier_and_challenge().0,
    };
    let t: Value = token(&app, &client, &l).await.json().await.unwrap();
    let id = verify(t["id_token"].as_str().unwrap(), &jwks(&app).await);
    assert_eq!(id["acr"], "eidas2");
    assert_ne!(id["sub"], "fi-subject-42", "never the FI's own subject");

    for (mode, needle) in [
        // The person refused at the provider: their choice, a 200 page (issue 30).
        (Mode::Deny, "n’avez pas autorisé FI mock"),
        (Mode::Forged, "n’a pas pu être vérifiée"),
        (Mode::Expired, "n’a pas pu être vérifiée"),
        (Mode::WrongIssuer, "n’a pas pu être vérifiée"),
        (Mode::WrongAudience, "n’a pas pu être vérifiée"),
        (Mode::WrongNonce, "n’a pas pu être vérifiée"),
        (Mode::InvalidIdentity, "mal formée"),
        (Mode::Slow, "ne répond pas"),
        (Mode::NotJson, "n’a pas pu être vérifiée"),
        (Mode::MixUpIss, "n’a pas pu être vérifiée"),
        (Mode::NoIss, "n’a pas pu être vérifiée"),
        (Mode::UserinfoWrongAudience, "n’a pas pu être vérifiée"),
        (Mode::Huge, "n’a pas pu être vérifiée"),
    ] {
        fi.set(mode);
        let mut b = Browser::new(&app);
        let (url, login) = authorize_url(&client, &[]);
        let r = login_via(&mut b, &url, "mock", "").await;
        let status = if mode == Mode::Deny { 200 } else { 502 };
        assert_eq!(r.status, status, "{mode:?}: {}", r.body);
        assert!(r.body.contains(needle), "{mode:?}: {}", r.body);
        let back = unescape(between(&r.body, "fr-btn--secondary\" href=\"", "\"").unwrap());
        let q = query(&back);
        assert_eq!(q["error"], "access_denied", "{mode:?}");
        assert_eq!(q["state"], login.state);
        assert!(r.body.contains("Choisir un autre compte"));
    }
    // An old tab or a made-up answer: the person's, a 400 page, never a bad gateway.
    for query_string in [
        "state=inconnu&code=x",
        "code=x",
        "state=inconnu&error=access_denied",
    ] {
        let r = Browser::new(&app)
            .get(&format!("/api/v2/oidc-callback/mock?{query_string}"))
            .await;
        assert_eq!(r.status, 400, "{query_string}: {}", r.body);
        assert!(
            r.body.contains("Recommencez") || r.body.contains("incomplète"),
            "{}",
            r.body
        );
    }

    // prompt=login and max_age are passed on to the provider, whose auth_time must then
    // be recent: an hour-old authentication (its own session) is refused, with a page
    // saying why; without them the same answer is taken.
    fi.set(Mode::OldAuthTime);
    for extra in [
        vec![("prompt", "login")],
        vec![("max_age", "600")],
        vec![("prompt", "login consent"), ("max_age", "0")],
    ] {
        let mut b = Browser::new(&app);
        let (url, login) = authorize_url(&client, &extra);
        let r = login_via(&mut b, &url, "mock", "").await;
        let asked = fi.last_authorize.lock().unwrap().clone();
        if extra
            .iter()
            .any(|(k, v)| *k == "prompt" && v.contains("login"))
        {
            assert_eq!(
                asked.get("prompt").map(String::as_str),
                Some("login"),
                "{extra:?}"
            );
            // max_age=0 with it: auth_time is then required of the provider (Core §2).
            assert_eq!(
                asked.get("max_age").map(String::as_str),
                Some("0"),
                "{extra:?}"
            );
        } else if let Some((_, m)) = extra.iter().find(|(k, _)| *k == "max_age") {
            assert_eq!(
                asked.get("max_age").map(String::as_str),
                Some(*m),
                "{extra:?}"
            );
        }
        assert_eq!(r.status, 502, "{extra:?}: {}", r.body);
        assert!(r.body.contains("authentifier à nouveau"), "{}", r.body);
        let back = unescape(between(&r.body, "fr-btn--secondary\" href=\"", "\"").unwrap());
        let q = query(&back);
        // Core §3.1.2.1: the re-authentication did not happen.
        assert_eq!(
            (q["error"].as_str(), &q["state"]),
            ("login_required", &login.state)
        );
    }
    // No auth_time, or one in the future: refused when freshness was asked, taken (as
    // the time of the login) otherwise.
    for mode in [Mode::NoAuthTime, Mode::FutureAuthTime] {
        fi.set(mode);
        let mut b = Browser::new(&app);
        let (url, _) = authorize_url(&client, &[("max_age", "600")]);
        let r = login_via(&mut b, &url, "mock", "").await;
        assert_eq!(r.status, 502, "{mode:?}: {}", r.body);
        let mut b = Browser::new(&app);
        let (url, _) = authorize_url(&client, &[]);
        let r = login_via(&mut b, &url, "mock", "").await;
        assert_eq!(r.status, 303, "{mode:?}: {}", r.body);
    }
    fi.set(Mode::OldAuthTime);
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[("max_age", "7200")]);
    assert_eq!(
        login_via(&mut b, &url, "mock", "").await.status,
        303,
        "recent enough"
    );
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    assert_eq!(login_via(&mut b, &url, "mock", "").await.status, 303);
    assert!(!fi.last_authorize.lock().unwrap().contains_key("prompt"));
    fi.set(Mode::Good);
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[("prompt", "login")]);
    assert_eq!(
        login_via(&mut b, &url, "mock", "").await.status,
        303,
        "authenticated now"
    );
    let (url, _) = authorize_url(&client, &[("max_age", "-1")]);
    assert_eq!(error_redirect(&app, &url).await["error"], "invalid_request");

    // A service asking more than any provider offers gets a clear error.
    let strict = TestApp::spawn_with(backend, {
        let p = fi.provider("mock", vec![1]);
        move |c| {
            c.admin.token = Some(ADMIN_TOKEN.into());
            c.identity.providers.push(p);
        }
    })
    .await;
    let client = register_default(&strict).await;
    let (url, _) = authorize_url(&client, &[("acr_values", "eidas2")]);
    let q = error_redirect(&strict, &url).await;
    assert_eq!(q["error"], "unmet_authentication_requirements");
    assert!(q["error_description"].contains("eidas2"));
    // FranceConnect's profile: its code (Y020002).
    let client = register_franceconnect(&strict).await;
    let (url, _) = authorize_url(&client, &[("acr_values", "eidas2")]);
    let q = error_redirect(&strict, &url).await;
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["error_description"], "acr_values not supported");
}

async fn admin_api_and_client_options(backend: Backend) {
    let app = identity_app(backend).await;
    // Closed without the token, refused with a wrong one, lists every problem.
    let r = app
        .client
        .get(app.url("/api/admin/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/api/admin/clients"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "", "organisation": "12", "redirect_uris": ["ftp://x"], "eidas_level": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    for part in ["name", "SIRET", "ftp://x", "eidas_level"] {
        assert!(e["detail"].as_str().unwrap().contains(part), "{part}: {e}");
    }
    let before = clients(&app).await;
    assert!(before.iter().all(|c| c.get("secret_hash").is_none()));

    // private_key_jwt, RS256 ID tokens encrypted with RSA-OAEP, JSON userinfo.
    use josekit::jwk::KeyPair;
    let mut sig = ES256.generate_key_pair().unwrap().to_jwk_key_pair();
    sig.set_key_id("sig-1");
    sig.set_key_use("sig");
    let mut enc = josekit::jwe::RSA_OAEP
        .generate_key_pair(2048)
        .unwrap()
        .to_jwk_key_pair();
    enc.set_key_id("enc-1");
    enc.set_key_use("enc");
    let public: Vec<Value> = [&sig, &enc]
        .iter()
        .map(|k| {
            let mut p = k.to_public_key().unwrap();
            p.set_key_id(k.key_id().unwrap());
            p.set_key_use(k.key_use().unwrap());
            Value::Object(p.as_ref().clone())
        })
        .collect();
    // Encryption to a JWKS without a key of the right type is refused at registration,
    // not found out at the token endpoint after the person's code is spent.
    let r = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "Chiffré sans clé", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
               "jwks": {"keys": [public[0].clone()]},
               "id_token_encrypted_response_alg": "RSA-OAEP"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("needs an encryption key"),
        "{e}"
    );
    let client = register(
        &app,
        json!({"name": "Chiffré", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": public},
               "id_token_signed_response_alg": "RS256", "id_token_encrypted_response_alg": "RSA-OAEP",
               "userinfo_signed_response_alg": "none"}),
    )
    .await;
    assert!(client.secret.is_none());
    let login = demo_login(&app, &client, "fatou", &[]).await;
    let assertion = |jti: &str| {
        let mut p = JwtPayload::new();
        p.set_issuer(&client.id);
        p.set_subject(&client.id);
        p.set_audience(vec![format!("{}/api/v2/token", app.base)]);
        p.set_jwt_id(jti);
        p.set_claim("exp", Some(json!(socle_identity::now() + 60)))
            .unwrap();
        let mut h = JwsHeader::new();
        h.set_key_id("sig-1");
        josekit::jwt::encode_with_signer(&p, &h, &ES256.signer_from_jwk(&sig).unwrap()).unwrap()
    };
    let a1 = assertion("jti-1");
    let exchange = |a: String, code: String| {
        let app = &app;
        let verifier = login.verifier.clone();
        async move {
            app.client
                .post(app.url("/api/v2/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = exchange(a1.clone(), login.code.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t: Value = r.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    assert_eq!(id_token.split('.').count(), 5, "a JWE");
    let (inner, header) = josekit::jwe::deserialize_compact(
        id_token,
        &josekit::jwe::RSA_OAEP.decrypter_from_jwk(&enc).unwrap(),
    )
    .unwrap();
    assert_eq!(header.content_encryption(), Some("A256GCM"));
    let claims = verify(std::str::from_utf8(&inner).unwrap(), &jwks(&app).await);
    assert_eq!(claims["aud"], json!(client.id));
    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert!(
        ui.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let info: Value = ui.json().await.unwrap();
    assert_eq!(info["family_name"], "Diallo");
    assert_eq!(info["birthplace"], "");
    // The same assertion twice is refused; so is one signed by another key.
    let login2 = demo_login(&app, &client, "fatou", &[]).await;
    let r = exchange(a1, login2.code.clone()).await;
    assert_eq!(r.status(), 401);
    let mut other = ES256.generate_key_pair().unwrap().to_jwk_key_pair();
    other.set_key_id("sig-1");
    let mut p = JwtPayload::new();
    p.set_issuer(&client.id);
    p.set_subject(&client.id);
    p.set_audience(vec![format!("{}/api/v2/token", app.base)]);
    p.set_jwt_id("jti-forged");
    p.set_claim("exp", Some(json!(socle_identity::now() + 60)))
        .unwrap();
    let mut h = JwsHeader::new();
    h.set_key_id("sig-1");
    let forged =
        josekit::jwt::encode_with_signer(&p, &h, &ES256.signer_from_jwk(&other).unwrap()).unwrap();
    assert_eq!(exchange(forged, login2.code.clone()).await.status(), 401);
    assert_eq!(
        exchange(assertion("jti-2"), login2.code).await.status(),
        200
    );
}

async fn sessions_live_in_the_store(backend: Backend) {
    // Two nodes on one database: the login starts on one and ends on the other
    // (PostgreSQL: both running; SQLite, one process per file: one after the other).
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.demo = true;
    config.admin.token = Some(ADMIN_TOKEN.into());
    let mut a = TestApp::start(db, config.clone()).await;
    let client = register_default(&a).await;
    let mut b = Browser::new(&a);
    let (url, login) = authorize_url(&client, &[]);
    let r = b.get(&url).await;
    let choice_url = r.location.unwrap();
    if backend == Backend::Sqlite {
        a.stop_in_place().await.unwrap();
    }
    let node = socle::Application::build(config.clone()).await.unwrap();
    let base = format!("http://{}", node.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.run_until_stopped(async {
        let _ = rx.await;
    }));
    b.base = base;
    let r = login_via(
        &mut b,
        &choice_url_to_authorize(&choice_url),
        "demo",
        "marie",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let q = query(r.location.as_deref().unwrap());
    assert_eq!(
        q["state"], login.state,
        "the login begun on node A ends on node B"
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    if backend != Backend::Sqlite {
        return;
    }
    // On SQLite the logins in progress have a file of their own, never fsynced: after a
    // machine crash it may be damaged. A damaged file is replaced by an empty one at
    // start; new logins work.
    let logins = socle_store::logins_path(&config.sqlite_path());
    assert!(logins.exists(), "{}", logins.display());
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", logins.display()));
    }
    std::fs::write(
        &logins,
        b"garbage left by a crash, not a database ".repeat(200),
    )
    .unwrap();
    let node = socle::Application::build(config).await.unwrap();
    let base = format!("http://{}", node.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.run_until_stopped(async {
        let _ = rx.await;
    }));
    let mut fresh = Browser::new(&a);
    fresh.base = base;
    let (url, login) = authorize_url(&client, &[]);
    let r = login_via(&mut fresh, &url, "demo", "marie").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(query(r.location.as_deref().unwrap())["state"], login.state);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

async fn first_start_publishes_both_signing_keys(backend: Backend) {
    // The RSA key of a first start is generated in the background (the instance is
    // ready in milliseconds); the JWKS waits for it, and it is stored once.
    let db = TestDb::new(backend).await;
    let config = db.config();
    let keys_of = |base: String| async move {
        let v: Value = reqwest::get(format!("{base}/api/v2/jwks"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut keys: Vec<(String, String)> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["alg"].to_string(), k["kid"].to_string()))
            .collect();
        keys.sort();
        keys
    };
    // Stopped at once, before the generation can have finished: the next start
    // generates what is missing.
    let mut a = TestApp::start(db, config.clone()).await;
    a.stop_in_place().await.unwrap();
    let mut first = Vec::new();
    for round in 0..2 {
        let node = socle::Application::build(config.clone()).await.unwrap();
        let base = format!("http://{}", node.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.run_until_stopped(async {
            let _ = rx.await;
        }));
        let keys = keys_of(base).await;
        if round == 0 {
            let algs: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
            assert_eq!(algs, ["\"ES256\"", "\"RS256\""], "{keys:?}");
            first = keys;
        } else {
            assert_eq!(keys, first, "the keys are kept");
        }
        let _ = tx.send(());
        task.await.unwrap().unwrap();
    }
    // A key missing after the first start (its generation failed: the store was
    // unreachable) is generated again by the periodic upkeep, and signs.
    let store = socle::open_store(&config).await.unwrap();
    let ring =
        socle_identity::KeyRing::open(store.clone(), socle::app::master_key(&config).unwrap())
            .await
            .unwrap();
    let now = socle_identity::now();
    socle_store::IdentityStore::retire_keys(&store, "RS256", "none", now, now)
        .await
        .unwrap();
    ring.reload().await.unwrap();
    let mut p = JwtPayload::new();
    p.set_subject("s");
    assert!(ring.sign("RS256", &p, None).is_err(), "no active RS256 key");
    ring.ensure();
    ring.settled().await;
    let jwt = ring.sign("RS256", &p, None).unwrap();
    let kid = josekit::jwt::decode_header(&jwt)
        .unwrap()
        .claim("kid")
        .unwrap()
        .to_string();
    assert!(!first.iter().any(|(_, k)| *k == kid), "a new key: {kid}");
    assert!(ring.verify(&jwt).is_ok());
    store.close().await;
}

/// A service exempt from consent gets the identity without a consent page, unless it
/// asks for one with `prompt=consent` (OpenID Connect Core §3.1.2.1).
async fn prompt_consent_asks_even_for_an_exempt_service(backend: Backend) {
    let app = identity_app(backend).await;
    let exempt = register_exempt(&app).await;
    // Authorize (straight to the demo provider), log in there: where the callback goes.
    let after_login = |extra: Vec<(&'static str, &'static str)>| {
        let app = &app;
        let exempt = &exempt;
        async move {
            let mut b = Browser::new(app);
            let mut extra = extra;
            extra.push(("idp_hint", "demo"));
            extra.push(("scope", "openid identite_pivot"));
            let (url, _) = authorize_url(exempt, &extra);
            let r = b.get(&url).await;
            assert_eq!(r.status, 303, "{}", r.body);
            let fi = b.get(r.location.as_deref().unwrap()).await;
            let r = demo_fi(&mut b, &fi, "marie").await;
            let cb = b.get(r.location.as_deref().unwrap()).await;
            assert_eq!(cb.status, 303, "{}", cb.body);
            let to = cb.location.unwrap();
            let consent = if to.contains("/consent") {
                let page = b.get(&to).await.body;
                let r = b
                    .post(
                        &form_action(&page),
                        &[("csrf", &csrf(&page)), ("decision", "accept")],
                    )
                    .await;
                Some((page, r.location.unwrap_or_default()))
            } else {
                None
            };
            (to, consent)
        }
    };
    let (to, consent) = after_login(vec![]).await;
    assert!(to.starts_with(REDIRECT) && consent.is_none(), "{to}");
    let (to, consent) = after_login(vec![("prompt", "consent")]).await;
    let (page, back) = consent.unwrap_or_else(|| panic!("no consent page: {to}"));
    assert!(page.contains("Service exempté"), "{page}");
    assert!(query(&back).contains_key("code"), "accepted: {back}");
}

async fn a_login_renews_the_session_cookie(backend: Backend) {
    // Session fixation: a session cookie known before the login (one planted in the
    // person's browser, say) must be worth nothing after it. The login gives the
    // browser a new cookie; the old one's session is gone; the logins in progress in
    // other tabs follow the new cookie. Both ends: with the consent page, and without
    // (a client exempt from it, whose code is written with the session).
    let app = identity_app(backend).await;
    let client = register_default(&app).await;
    let exempt = register_exempt(&app).await;
    let mut b = Browser::new(&app);
    let (url, first) = authorize_url(&client, &[]);
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let choice_first = r.location.unwrap();
    let planted = b.cookies["socle_session"].clone();
    // A second tab, same browser: a login to the exempt service in the same session.
    let (url, second) = authorize_url(&exempt, &[("scope", "openid identite_pivot")]);
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let choice_second = r.location.unwrap();
    assert_eq!(
        b.cookies["socle_session"], planted,
        "one session for both tabs"
    );

    let r = login_via(&mut b, &format!("@{choice_first}"), "demo", "marie").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(query(r.location.as_deref().unwrap())["state"], first.state);
    let renewed = b.cookies["socle_session"].clone();
    assert_ne!(
        renewed, planted,
        "the login gives the browser a new session cookie"
    );

    // Whoever holds the old cookie has nothing: the second tab's login is not theirs.
    let victim_page = b.get(&choice_second).await;
    assert_eq!(victim_page.status, 200, "{}", victim_page.body);
    let mut intruder = Browser::new(&app);
    intruder
        .cookies
        .insert("socle_session".into(), planted.clone());
    let r = intruder.get(&choice_second).await;
    assert_ne!(r.status, 200, "the old cookie opens nothing: {}", r.body);
    assert!(!r.body.contains(&csrf(&victim_page.body)));

    // The second tab goes on with the new cookie, straight back to the exempt service,
    // and that login renews the cookie once more.
    let r = login_via(&mut b, &format!("@{choice_second}"), "demo", "marie").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.location.unwrap();
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(query(&back)["state"], second.state);
    assert!(query(&back).contains_key("code"));
    let third = b.cookies["socle_session"].clone();
    assert_ne!(third, renewed);
    // Neither earlier cookie names a session any more: a login begun with one gets a
    // fresh session.
    for old in [&planted, &renewed] {
        let mut stale = Browser::new(&app);
        stale
            .cookies
            .insert("socle_session".into(), old.to_string());
        let (url, _) = authorize_url(&client, &[]);
        let r = stale.get(&url).await;
        assert_eq!(r.status, 303);
        assert_ne!(
            &stale.cookies["socle_session"], old,
            "a stale cookie is replaced"
        );
    }
}

async fn on_https_the_session_cookie_is_host_only(backend: Backend) {
    // With an https public address the session cookie is `__Host-socle_session`:
    // Secure, Path=/, no Domain — browsers take it from this host only, so no sibling
    // domain or plain-HTTP page can plant one. (The test speaks HTTP to the server; the
    // cookie's attributes are what a browser would enforce.)
    let app = identity_app_with(backend, |c| {
        c.server.public_url = Some("https://socle.example.gouv.fr".into());
    })
    .await;
    let client = register_default(&app).await;
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-socle_session="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("Path=/;") && !set.contains("Domain"),
        "{set}"
    );
    let choice = r.location.unwrap();
    assert_eq!(b.get(&choice).await.status, 200, "read back under its name");
    // The same value under the plain name is not this session.
    let value = b.cookies.remove("__Host-socle_session").unwrap();
    b.cookies.insert("socle_session".into(), value);
    assert_ne!(b.get(&choice).await.status, 200);
}

/// Issue 31, item 0: by default a service is held to OpenID Connect's rules, so that
/// a relying-party library works with its defaults (Authlib: a 30-character `state`,
/// a 20-character `nonce` or none, JSON userinfo, 60 s of leeway on the token's
/// expiry, logout without `state`); the `franceconnect` profile keeps FranceConnect's.
async fn client_profiles_standard_and_franceconnect(backend: Backend) {
    let app = identity_app(backend).await;
    let standard = register_default(&app).await;
    let fc = register_franceconnect(&app).await;
    let listed = clients(&app).await;
    let profile_of = |id: &str| {
        listed
            .iter()
            .find(|c| c["client_id"] == id)
            .map(|c| c["profile"].clone())
    };
    assert_eq!(profile_of(&standard.id), Some(json!("standard")));
    assert_eq!(profile_of(&fc.id), Some(json!("franceconnect")));

    // Standard: 16 characters are enough, 15 are not; no nonce is fine, a short one
    // is not.
    let s16 = "s".repeat(16);
    let login = demo_login(&app, &standard, "marie", &[("state", &s16), ("nonce", "")]).await;
    assert_eq!(login.state, s16);
    let t: Value = token(&app, &standard, &login).await.json().await.unwrap();
    assert_eq!(t["expires_in"], 300, "{t}");
    let id = verify(t["id_token"].as_str().unwrap(), &jwks(&app).await);
    assert!(id.get("nonce").is_none(), "no nonce was sent: {id:?}");
    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(ui.status(), 200);
    assert_eq!(ui.headers()["content-type"], "application/json");
    let info: Value = ui.json().await.unwrap();
    assert_eq!(info["family_name"], "Dupont");
    for (extra, why) in [
        (vec![("state", "s".repeat(15))], "state"),
        (vec![("nonce", "n".repeat(15))], "nonce"),
    ] {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (url, _) = authorize_url(&standard, &extra);
        let q = error_redirect(&app, &url).await;
        assert_eq!(q["error"], "invalid_request", "{why}");
        assert!(q["error_description"].contains("16 characters"), "{q:?}");
    }

    // FranceConnect: 32 characters, a nonce, signed userinfo, 60-second tokens.
    for extra in [
        vec![("state", "s".repeat(31))],
        vec![("nonce", "n".repeat(31))],
        vec![("nonce", String::new())],
    ] {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (url, _) = authorize_url(&fc, &extra);
        let q = error_redirect(&app, &url).await;
        assert_eq!(q["error"], "invalid_request");
        assert!(q["error_description"].contains("32 characters"), "{q:?}");
    }
    let login = demo_login(&app, &fc, "marie", &[]).await;
    let t: Value = token(&app, &fc, &login).await.json().await.unwrap();
    assert_eq!(t["expires_in"], 60, "{t}");
    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(ui.headers()["content-type"], "application/jwt");
    // FranceConnect signs userinfo: "none" cannot be registered with its profile.
    let r = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "S", "organisation": "13002526500013", "profile": "franceconnect",
                      "redirect_uris": [REDIRECT], "userinfo_signed_response_alg": "none"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "S", "organisation": "13002526500013", "profile": "keycloak",
                      "redirect_uris": [REDIRECT]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown profile");

    // Logout without state: back to the standard service without one; a page for the
    // FranceConnect one.
    for (client, expected) in [(&standard, Some(LOGOUT.to_string())), (&fc, None)] {
        let mut b = Browser::new(&app);
        let (url, mut login) = authorize_url(client, &[]);
        let r = login_via(&mut b, &url, "demo", "marie").await;
        login.code = query(r.location.as_deref().unwrap())["code"].clone();
        let t: Value = token(&app, client, &login).await.json().await.unwrap();
        let end = logout_path(&[
            ("id_token_hint", t["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", LOGOUT),
        ]);
        let r = b.get(&end).await;
        match &expected {
            Some(to) => {
                // Through the identity provider's logout, and back without state.
                assert_eq!(r.status, 303, "{}", r.body);
                let r = b.get(r.location.as_deref().unwrap()).await;
                let r = b.get(r.location.as_deref().unwrap()).await;
                assert_eq!(r.location.as_deref(), Some(to.as_str()));
            }
            None => {
                assert_eq!(r.status, 400);
                assert!(r.body.contains("ne contient pas state"), "{}", r.body);
            }
        }
    }
}

/// Issue 31, item 1: single sign-on. A person logged in to one service through Socle
/// is not sent to an identity provider again by a second one within the session's
/// lifetime: the consent page still shows for a service not consented to in this
/// session; `prompt=none` gets a code when the session satisfies the request and
/// `login_required` / `consent_required` otherwise (Core §3.1.2.6); `prompt=login`,
/// a higher level or logout ends it.
async fn single_sign_on_and_prompt_none(backend: Backend) {
    let app = identity_app(backend).await;
    let a = register_default(&app).await;
    let exempt = register_exempt(&app).await;
    let c = register_default(&app).await;
    let d = register_default(&app).await;
    let exchange = |client: &TestClient, mut login: Login, location: &str| {
        let q = query(location);
        assert_eq!(q.get("state"), Some(&login.state), "{location}");
        login.code = q
            .get("code")
            .unwrap_or_else(|| panic!("a code: {location}"))
            .clone();
        let (app, client) = (&app, client.clone());
        async move {
            let t: Value = token(app, &client, &login).await.json().await.unwrap();
            verify(t["id_token"].as_str().unwrap(), &jwks(app).await)
        }
    };

    // Marie logs in to A, choosing the demonstration provider.
    let mut b = Browser::new(&app);
    let (url, login) = authorize_url(&a, &[]);
    let r = login_via(&mut b, &url, "demo", "marie").await;
    let id_a = exchange(&a, login, r.location.as_deref().unwrap()).await;

    // The exempt service with prompt=none: a code at once, no page.
    let (url, login) = authorize_url(
        &exempt,
        &[("prompt", "none"), ("scope", "openid identite_pivot")],
    );
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id_b = exchange(&exempt, login, r.location.as_deref().unwrap()).await;
    assert_ne!(id_b["sub"], id_a["sub"], "a pairwise subject per service");
    assert_eq!(
        id_b["auth_time"], id_a["auth_time"],
        "the same authentication"
    );
    assert_eq!(id_b["acr"], id_a["acr"]);
    assert_eq!(id_b["sid"], id_a["sid"], "the same session");

    // Service C without prompt: no choice page, but its consent page.
    let (url, login) = authorize_url(&c, &[]);
    let r = b.get(&url).await;
    assert_eq!(r.status, 303);
    let consent_url = r.location.unwrap();
    assert!(consent_url.ends_with("/consent"), "{consent_url}");
    let consent = b.get(&consent_url).await;
    assert_eq!(consent.status, 200);
    assert!(
        consent.body.contains("Dupont"),
        "the person's data are shown"
    );
    let r = b
        .post(
            &form_action(&consent.body),
            &[("csrf", &csrf(&consent.body)), ("decision", "accept")],
        )
        .await;
    exchange(&c, login, r.location.as_deref().unwrap()).await;
    // Consented in this session: prompt=none gets a code now.
    let (url, login) = authorize_url(&c, &[("prompt", "none")]);
    let r = b.get(&url).await;
    exchange(&c, login, r.location.as_deref().unwrap()).await;

    // A service never consented to: consent_required; no session: login_required;
    // a higher level than the session's: login_required; none with another value:
    // invalid_request. The service gets its state back each time.
    let (url, login) = authorize_url(&d, &[("prompt", "none")]);
    let q = query(b.get(&url).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "consent_required");
    assert_eq!(q["state"], login.state);
    let mut stranger = Browser::new(&app);
    let (url, _) = authorize_url(&a, &[("prompt", "none")]);
    let r = stranger.get(&url).await;
    assert_eq!(
        query(r.location.as_deref().unwrap())["error"],
        "login_required"
    );
    assert!(
        !r.headers.contains_key("set-cookie"),
        "no session is opened"
    );
    let (url, _) = authorize_url(&a, &[("prompt", "none"), ("acr_values", "eidas2")]);
    let q = query(b.get(&url).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
    let (url, _) = authorize_url(&a, &[("prompt", "none login")]);
    let q = query(b.get(&url).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "invalid_request");

    // Consent covers what was consented to: asking for more asks again.
    let e = register_default(&app).await;
    let (url, login) = authorize_url(&e, &[("scope", "openid email")]);
    let r = b.get(&url).await;
    let consent = b.get(r.location.as_deref().unwrap()).await;
    let r = b
        .post(
            &form_action(&consent.body),
            &[("csrf", &csrf(&consent.body)), ("decision", "accept")],
        )
        .await;
    exchange(&e, login, r.location.as_deref().unwrap()).await;
    let (url, _) = authorize_url(&e, &[("prompt", "none")]);
    let q = query(b.get(&url).await.location.as_deref().unwrap());
    assert_eq!(
        q["error"], "consent_required",
        "more claims than consented to"
    );

    // prompt=login: the choice page again; the same person logging in again keeps the
    // session the services know (sid).
    let (url, login) = authorize_url(&a, &[("prompt", "login")]);
    let r = b.get(&url).await;
    assert!(
        !r.location.as_deref().unwrap().ends_with("/consent"),
        "{:?}",
        r.location
    );
    let r = login_via(
        &mut b,
        &format!("@{}", r.location.unwrap()),
        "demo",
        "marie",
    )
    .await;
    let again = exchange(&a, login, r.location.as_deref().unwrap()).await;
    assert_eq!(again["sid"], id_a["sid"], "the same session");

    // After logout, no more single sign-on.
    let (url, mut login) = authorize_url(&a, &[("prompt", "none")]);
    let r = b.get(&url).await;
    login.code = query(r.location.as_deref().unwrap())["code"].clone();
    let t: Value = token(&app, &a, &login).await.json().await.unwrap();
    let end = logout_path(&[
        ("id_token_hint", t["id_token"].as_str().unwrap()),
        ("post_logout_redirect_uri", LOGOUT),
    ]);
    b.get(&end).await;
    let (url, _) = authorize_url(
        &exempt,
        &[("prompt", "none"), ("scope", "openid identite_pivot")],
    );
    let q = query(b.get(&url).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
}

/// Issue 31, item 3: the `claims` parameter (Core §5.5). Claims asked for in the ID
/// token are put there, those asked for at userinfo released there, when the client is
/// registered for them (and shown on the consent page); `amr` only when asked for;
/// `acr` asked as essential with values is a level requirement.
async fn the_claims_parameter(backend: Backend) {
    let app = identity_app(backend).await;
    let client = register_default(&app).await;
    let disco: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disco["claims_parameter_supported"], true);
    let asked = json!({
        "id_token": {"given_name": null, "amr": null,
                     "acr": {"essential": true, "values": ["eidas1", "eidas2"]}},
        "userinfo": {"email": {"essential": true}, "phone_number": null}
    })
    .to_string();
    let mut b = Browser::new(&app);
    let (url, mut login) = authorize_url(&client, &[("scope", "openid"), ("claims", &asked)]);
    let r = b.get(&url).await;
    let choice = b.get(r.location.as_deref().unwrap()).await;
    let r = b
        .post(
            &form_action(&choice.body),
            &[("csrf", &csrf(&choice.body)), ("provider", "demo")],
        )
        .await;
    let fi = b.get(r.location.as_deref().unwrap()).await;
    let r = demo_fi(&mut b, &fi, "marie").await;
    let r = b.get(r.location.as_deref().unwrap()).await;
    let consent = b.get(r.location.as_deref().unwrap()).await;
    assert!(
        consent.body.contains("Marie Claire"),
        "the given names are shown"
    );
    assert!(
        consent.body.contains("marie.dupont@example.fr"),
        "the email too"
    );
    assert!(!consent.body.contains("Dupont"), "not the family name");
    let r = b
        .post(
            &form_action(&consent.body),
            &[("csrf", &csrf(&consent.body)), ("decision", "accept")],
        )
        .await;
    login.code = query(r.location.as_deref().unwrap())["code"].clone();
    let t: Value = token(&app, &client, &login).await.json().await.unwrap();
    let id = verify(t["id_token"].as_str().unwrap(), &jwks(&app).await);
    assert_eq!(id["given_name"], "Marie Claire");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(
        id.get("email").is_none(),
        "asked at userinfo, not in the ID token"
    );
    let info: Value = userinfo(&app, t["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], "marie.dupont@example.fr");
    assert_eq!(info["given_name"], "Marie Claire");
    assert!(info.get("family_name").is_none(), "{info}");
    assert!(info.get("phone_number").is_none(), "{info}");

    // A claim the client is not registered for is not released.
    let narrow = register(
        &app,
        json!({"name": "Service étroit", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "scopes": ["openid", "email"]}),
    )
    .await;
    let asked = json!({"userinfo": {"family_name": {"essential": true}}}).to_string();
    let login = demo_login(
        &app,
        &narrow,
        "marie",
        &[("scope", "openid email"), ("claims", &asked)],
    )
    .await;
    let t: Value = token(&app, &narrow, &login).await.json().await.unwrap();
    let info: Value = userinfo(&app, t["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(info.get("family_name").is_none(), "{info}");
    assert_eq!(info["email"], "marie.dupont@example.fr");

    // acr essential with no eIDAS level: cannot be met; malformed claims: refused.
    for (claims, error) in [
        (
            json!({"id_token": {"acr": {"essential": true, "value": "loa-high"}}}).to_string(),
            "unmet_authentication_requirements",
        ),
        ("{not json".to_string(), "invalid_request"),
        (
            json!({"userinfo": {"email": true}}).to_string(),
            "invalid_request",
        ),
    ] {
        let (url, _) = authorize_url(&client, &[("claims", &claims)]);
        assert_eq!(error_redirect(&app, &url).await["error"], error, "{claims}");
    }
}

/// The bodies a back-channel logout endpoint received, and how many it refuses first.
#[derive(Clone, Default)]
struct LogoutEndpoint {
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refuse_first: usize,
}

async fn receive_logout(
    axum::extract::State(e): axum::extract::State<LogoutEndpoint>,
    body: String,
) -> axum::http::StatusCode {
    let mut all = e.received.lock().unwrap();
    all.push(body);
    if all.len() <= e.refuse_first {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::OK
    }
}

impl LogoutEndpoint {
    /// Serves on port 0; its URL.
    async fn start(refuse_first: usize) -> (LogoutEndpoint, String) {
        let e = LogoutEndpoint {
            refuse_first,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/backchannel", axum::routing::post(receive_logout))
            .with_state(e.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (e, url)
    }

    /// The logout tokens received, waiting up to `secs` for `n` of them.
    async fn tokens(&self, n: usize, secs: u64) -> Vec<String> {
        for _ in 0..secs * 10 {
            if self.received.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                url::form_urlencoded::parse(b.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Issue 31, item 2: back-channel logout. When a session ends (RP-initiated logout
/// from any service), every service it logged in to that registered a
/// `backchannel_logout_uri` gets a signed logout token, retried until it answers 200,
/// delivered once with one `jti`, journaled.
async fn back_channel_logout(backend: Backend) {
    let app = identity_app(backend).await;
    let disco: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disco["backchannel_logout_supported"], true);
    assert_eq!(disco["backchannel_logout_session_supported"], true);
    assert_eq!(disco["frontchannel_logout_supported"], false);
    let (steady, steady_url) = LogoutEndpoint::start(0).await;
    let (flaky, flaky_url) = LogoutEndpoint::start(1).await;
    let a = register(
        &app,
        json!({"name": "Service A", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [LOGOUT],
               "backchannel_logout_uri": steady_url,
               "backchannel_logout_session_required": true}),
    )
    .await;
    let b_client = register(
        &app,
        json!({"name": "Service B", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "scopes": ["openid", "identite_pivot"],
               "consent_exempt": true, "backchannel_logout_uri": flaky_url}),
    )
    .await;
    let silent = register_exempt(&app).await;
    let bad = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "S", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
                      "backchannel_logout_uri": "http://example.fr/logout#x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "http off localhost, a fragment");

    // Marie logs in to A, then (single sign-on) to B and to a service without a
    // back-channel URI.
    let mut b = Browser::new(&app);
    let (url, mut login) = authorize_url(&a, &[]);
    let r = login_via(&mut b, &url, "demo", "marie").await;
    login.code = query(r.location.as_deref().unwrap())["code"].clone();
    let t: Value = token(&app, &a, &login).await.json().await.unwrap();
    let id_a = verify(t["id_token"].as_str().unwrap(), &jwks(&app).await);
    let mut subs = vec![(a.id.clone(), id_a["sub"].clone())];
    for client in [&b_client, &silent] {
        let (url, mut login) = authorize_url(
            client,
            &[("prompt", "none"), ("scope", "openid identite_pivot")],
        );
        let r = b.get(&url).await;
        login.code = query(r.location.as_deref().unwrap())["code"].clone();
        let t: Value = token(&app, client, &login).await.json().await.unwrap();
        let id = verify(t["id_token"].as_str().unwrap(), &jwks(&app).await);
        subs.push((client.id.clone(), id["sub"].clone()));
    }
    assert!(
        steady.tokens(0, 0).await.is_empty(),
        "nothing before logout"
    );

    // She logs out from A.
    let end = logout_path(&[
        ("id_token_hint", t["id_token"].as_str().unwrap()),
        ("post_logout_redirect_uri", LOGOUT),
    ]);
    let r = b.get(&end).await;
    assert_eq!(r.status, 303);

    // A gets one token; B refuses the first attempt, then gets the same token again.
    let set = jwks(&app).await;
    let check = |jwt: &str, client: &TestClient| {
        let header = josekit::jwt::decode_header(jwt).unwrap();
        assert_eq!(header.claim("typ"), Some(&json!("logout+jwt")));
        let c = verify(jwt, &set);
        assert_eq!(c["iss"], json!(format!("{}/api/v2", app.base)));
        assert_eq!(c["aud"], json!(client.id.clone()));
        assert_eq!(c["sid"], id_a["sid"], "the session's sid");
        let sub = subs
            .iter()
            .find(|(id, _)| *id == client.id)
            .unwrap()
            .1
            .clone();
        assert_eq!(c["sub"], sub, "the service's pairwise sub");
        assert_eq!(
            c["events"],
            json!({"http://schemas.openid.net/event/backchannel-logout": {}})
        );
        assert!(c.get("nonce").is_none(), "a logout token has no nonce");
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert!(exp > iat && exp - iat <= 120);
        c["jti"].as_str().unwrap().to_string()
    };
    let got = steady.tokens(1, 10).await;
    assert_eq!(got.len(), 1);
    check(&got[0], &a);
    let got = flaky.tokens(2, 15).await;
    assert_eq!(got.len(), 2, "refused once, then delivered");
    assert_eq!(
        check(&got[0], &b_client),
        check(&got[1], &b_client),
        "one jti"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(steady.tokens(1, 0).await.len(), 1, "delivered once");
    assert_eq!(flaky.tokens(2, 0).await.len(), 2, "delivered once");
    let rows = app.store.backchannel_of(&b_client.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("delivered", 2));
    assert!(
        app.store
            .backchannel_of(&silent.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Another person logging in through the same browser session: the previous
    // person's services are told, as at a logout.
    let mut shared = Browser::new(&app);
    let (url, mut login) = authorize_url(&a, &[]);
    let r = login_via(&mut shared, &url, "demo", "marie").await;
    login.code = query(r.location.as_deref().unwrap())["code"].clone();
    let t: Value = token(&app, &a, &login).await.json().await.unwrap();
    let marie = verify(t["id_token"].as_str().unwrap(), &set);
    let (url, _) = authorize_url(
        &silent,
        &[("prompt", "login"), ("scope", "openid identite_pivot")],
    );
    let r = shared.get(&url).await;
    login_via(
        &mut shared,
        &format!("@{}", r.location.unwrap()),
        "demo",
        "jean",
    )
    .await;
    let got = steady.tokens(2, 10).await;
    assert_eq!(got.len(), 2, "A is told Marie's session there ended");
    let told = verify(&got[1], &set);
    assert_eq!((&told["sub"], &told["sid"]), (&marie["sub"], &marie["sid"]));

    // Journaled: who was told, under the person's pseudonym — A at Marie's logout, B
    // at its second attempt, A again when Jean replaced Marie (three deliveries; the
    // count is read until every one is in a checkpoint, never stopping early).
    let mut told = 0;
    for _ in 0..50 {
        told = crate::support::gateway::journal_entries(&app)
            .await
            .iter()
            .filter(|e| e["details"]["action"] == "logout.backchannel" && e["outcome"] == "ok")
            .count();
        if told >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(told, 3);
}

/// A service's JWKS endpoint: the set it serves, its `Cache-Control`, its fetches.
#[derive(Clone)]
struct KeyServer {
    served: std::sync::Arc<std::sync::Mutex<(String, &'static str)>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn serve_keys(
    axum::extract::State(k): axum::extract::State<KeyServer>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    k.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (body, cache) = k.served.lock().unwrap().clone();
    (
        [
            ("content-type", "application/json"),
            ("cache-control", cache),
        ],
        body,
    )
        .into_response()
}

impl KeyServer {
    async fn start(body: String, cache: &'static str) -> (KeyServer, String) {
        let k = KeyServer {
            served: std::sync::Arc::new(std::sync::Mutex::new((body, cache))),
            fetches: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = axum::Router::new()
            .route("/jwks", axum::routing::get(serve_keys))
            .with_state(k.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (k, format!("http://127.0.0.1:{port}/jwks"))
    }

    fn serve(&self, body: String) {
        self.served.lock().unwrap().0 = body;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A key pair for `use`, with its id.
fn key_pair(kind: &str, kid: &str) -> josekit::jwk::Jwk {
    use josekit::jwk::KeyPair;
    let mut k = match kind {
        "sig" => ES256.generate_key_pair().unwrap().to_jwk_key_pair(),
        _ => josekit::jwe::RSA_OAEP_256
            .generate_key_pair(2048)
            .unwrap()
            .to_jwk_key_pair(),
    };
    k.set_key_id(kid);
    k.set_key_use(kind);
    k
}

/// The public JWKS of `keys`.
fn public_set(keys: &[&josekit::jwk::Jwk]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut p = k.to_public_key().unwrap();
            p.set_key_id(k.key_id().unwrap());
            p.set_key_use(k.key_use().unwrap());
            Value::Object(p.as_ref().clone())
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Issue 31, item 4: service keys by URL. A service registers a `jwks_uri` for
/// `private_key_jwt` and for encryption; Socle fetches it (public-address rule: a
/// literal address is used as it is, a name must resolve to a public one), keeps it
/// as `Cache-Control` says, fetches again once for an unknown key id (a rotation),
/// and answers `invalid_client` — never a 500 — when it cannot be used.
async fn service_keys_by_url(backend: Backend) {
    let app = identity_app(backend).await;
    let (sig1, sig2) = (key_pair("sig", "sig-1"), key_pair("sig", "sig-2"));
    let (enc1, enc2) = (key_pair("enc", "enc-1"), key_pair("enc", "enc-2"));
    let (server, uri) = KeyServer::start(public_set(&[&sig1, &enc1]), "max-age=600").await;
    let client = register(
        &app,
        json!({"name": "Clés par URL", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri,
               "id_token_encrypted_response_alg": "RSA-OAEP-256"}),
    )
    .await;
    let listed = clients(&app).await;
    let me = listed
        .iter()
        .find(|c| c["client_id"] == client.id.as_str())
        .unwrap();
    assert_eq!(me["jwks_uri"], json!(uri));
    let assertion = |client_id: &str, key: &josekit::jwk::Jwk, jti: &str| {
        let mut p = JwtPayload::new();
        p.set_issuer(client_id);
        p.set_subject(client_id);
        p.set_audience(vec![format!("{}/api/v2/token", app.base)]);
        p.set_jwt_id(jti);
        p.set_claim("exp", Some(json!(socle_identity::now() + 60)))
            .unwrap();
        let mut h = JwsHeader::new();
        h.set_key_id(key.key_id().unwrap());
        josekit::jwt::encode_with_signer(&p, &h, &ES256.signer_from_jwk(key).unwrap()).unwrap()
    };
    let exchange = |client_id: String, a: String, login: Login| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/v2/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", client_id.as_str()),
                    ("code", login.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", login.verifier.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let decrypt = |id_token: &str, key: &josekit::jwk::Jwk| {
        josekit::jwe::deserialize_compact(
            id_token,
            &josekit::jwe::RSA_OAEP_256.decrypter_from_jwk(key).unwrap(),
        )
        .map(|(inner, _)| String::from_utf8(inner).unwrap())
    };

    // The first login: keys fetched once, the ID token encrypted to enc-1.
    let login = demo_login(&app, &client, "marie", &[]).await;
    let (status, t) = exchange(client.id.clone(), assertion(&client.id, &sig1, "a1"), login).await;
    assert_eq!(status, 200, "{t}");
    let inner = decrypt(t["id_token"].as_str().unwrap(), &enc1).unwrap();
    assert_eq!(verify(&inner, &jwks(&app).await)["aud"], json!(client.id));
    assert_eq!(server.fetches(), 1);
    // Kept: another login fetches nothing.
    let login = demo_login(&app, &client, "marie", &[]).await;
    let (status, _) = exchange(client.id.clone(), assertion(&client.id, &sig1, "a2"), login).await;
    assert_eq!(status, 200);
    assert_eq!(server.fetches(), 1, "kept as Cache-Control says");

    // The service rotates both keys and signs with the new one: an unknown key id
    // makes one new fetch, and the ID token goes to the new encryption key.
    server.serve(public_set(&[&sig2, &enc2]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let login = demo_login(&app, &client, "marie", &[]).await;
    let (status, t) = exchange(client.id.clone(), assertion(&client.id, &sig2, "a3"), login).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(server.fetches(), 2);
    let id_token = t["id_token"].as_str().unwrap();
    assert!(decrypt(id_token, &enc1).is_err(), "not to the retired key");
    decrypt(id_token, &enc2).unwrap();
    // The retired signing key no longer works.
    let login = demo_login(&app, &client, "marie", &[]).await;
    let (status, t) = exchange(client.id.clone(), assertion(&client.id, &sig1, "a4"), login).await;
    assert_eq!((status, t["error"].as_str()), (401, Some("invalid_client")));

    // No key to encrypt to yet: invalid_client before the code is spent; once the
    // service serves one, the same code works.
    let (partial, partial_uri) = KeyServer::start(public_set(&[&sig1]), "max-age=600").await;
    let late = register(
        &app,
        json!({"name": "Clé de chiffrement tardive", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
               "jwks_uri": partial_uri, "id_token_encrypted_response_alg": "RSA-OAEP-256"}),
    )
    .await;
    let login = demo_login(&app, &late, "marie", &[]).await;
    let kept = Login {
        code: login.code.clone(),
        state: login.state.clone(),
        nonce: login.nonce.clone(),
        verifier: login.verifier.clone(),
    };
    let (status, t) = exchange(late.id.clone(), assertion(&late.id, &sig1, "c1"), kept).await;
    assert_eq!(
        (status, t["error"].as_str()),
        (401, Some("invalid_client")),
        "{t}"
    );
    partial.serve(public_set(&[&sig1, &enc1]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, t) = exchange(late.id.clone(), assertion(&late.id, &sig1, "c2"), login).await;
    assert_eq!(status, 200, "the code was kept: {t}");
    decrypt(t["id_token"].as_str().unwrap(), &enc1).unwrap();

    // A JWKS that is not JSON, and a name that resolves to a private address: the
    // client's problem, invalid_client with the reason.
    let (_, not_json) = KeyServer::start("<html>".into(), "no-store").await;
    let private = uri.replace("127.0.0.1", "localhost");
    for (bad_uri, why) in [(not_json, "not JSON"), (private, "public address")] {
        let c = register(
            &app,
            json!({"name": "Clés inutilisables", "organisation": "13002526500013",
                   "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
                   "jwks_uri": bad_uri}),
        )
        .await;
        let login = demo_login(&app, &c, "marie", &[]).await;
        let (status, t) = exchange(c.id.clone(), assertion(&c.id, &sig1, "b"), login).await;
        assert_eq!(status, 401, "{t}");
        assert_eq!(t["error"], "invalid_client");
        assert!(
            t["error_description"].as_str().unwrap().contains(why),
            "{t}"
        );
    }
    // Both, or neither with private_key_jwt: refused at registration.
    for body in [
        json!({"jwks": {"keys": []}, "jwks_uri": uri}),
        json!({"jwks_uri": "ftp://example.fr/jwks"}),
    ] {
        let mut b = json!({"name": "S", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
                           "token_endpoint_auth_method": "private_key_jwt"});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = app
            .client
            .post(app.url("/api/admin/clients"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{b}");
    }
}

/// Issue 31, item 5 (a part): a service's secret renewed with a grace period it
/// chooses — the new one shown once, the old one accepted until the grace ends, then
/// refused — journaled.
async fn a_renewed_secret_and_its_grace_period(backend: Backend) {
    let app = identity_app(backend).await;
    let client = register_default(&app).await;
    let renew = |id: String, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url(&format!("/api/admin/clients/{id}/secret")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let with_secret = |secret: Option<String>| TestClient {
        id: client.id.clone(),
        secret,
    };
    let r = renew(client.id.clone(), json!({"grace_seconds": 2})).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    let new = fresh["client_secret"].as_str().unwrap().to_string();
    assert_ne!(Some(new.clone()), client.secret);
    for secret in [client.secret.clone(), Some(new.clone())] {
        let login = demo_login(&app, &client, "marie", &[]).await;
        assert_eq!(
            token(&app, &with_secret(secret), &login).await.status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let login = demo_login(&app, &client, "marie", &[]).await;
    assert_eq!(
        token(&app, &with_secret(client.secret.clone()), &login)
            .await
            .status(),
        401,
        "the old secret after its grace period"
    );
    assert_eq!(
        token(&app, &with_secret(Some(new.clone())), &login)
            .await
            .status(),
        200
    );
    // Out of range, no such client, a client without a secret.
    assert_eq!(
        renew(client.id.clone(), json!({"grace_seconds": -1}))
            .await
            .status(),
        422
    );
    assert_eq!(
        renew(client.id.clone(), json!({"grace_seconds": 2_592_001}))
            .await
            .status(),
        422
    );
    assert_eq!(renew("nobody".into(), json!({})).await.status(), 404);
    let public = register(
        &app,
        json!({"name": "Public", "organisation": "13002526500013", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(renew(public.id.clone(), json!({})).await.status(), 422);
    crate::support::gateway::find_entry(&app, "secret renewal", |e| {
        e["details"]["action"] == "client.secret_renewed"
            && e["details"]["client_id"] == client.id.as_str()
            && e["details"]["grace_seconds"] == "2"
    })
    .await;
}

/// Issue 31, item 5 (a part): a sandbox client is offered the demonstration identity
/// provider only (fictitious people): not on the choice page, not by `idp_hint`, not
/// by a forged choice, not by single sign-on from a login at a real provider.
async fn a_sandbox_client_sees_the_demonstration_provider_only(backend: Backend) {
    let fi = MockFi::start().await;
    let real = fi.provider("reel", vec![1, 2]);
    let app = identity_app_with(backend, move |c| c.identity.providers.push(real)).await;
    let production = register_default(&app).await;
    let sandbox = register(
        &app,
        json!({"name": "Bac à sable", "organisation": "13002526500013", "sandbox": true,
               "redirect_uris": [REDIRECT], "scopes": ["openid", "identite_pivot", "email"]}),
    )
    .await;
    let listed = clients(&app).await;
    let me = listed
        .iter()
        .find(|c| c["client_id"] == sandbox.id.as_str())
        .unwrap();
    assert_eq!(me["sandbox"], true);

    // The production client: both providers; the sandbox client: the demo one only.
    let mut b = Browser::new(&app);
    let (url, _) = authorize_url(&production, &[]);
    let r = b.get(&url).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert!(page.body.contains("value=\"reel\"") && page.body.contains("value=\"demo\""));
    let mut s = Browser::new(&app);
    let (url, _) = authorize_url(&sandbox, &[]);
    let r = s.get(&url).await;
    let choice_url = r.location.unwrap();
    let page = s.get(&choice_url).await;
    assert!(page.body.contains("value=\"demo\""), "{}", page.body);
    assert!(
        !page.body.contains("value=\"reel\""),
        "a real provider offered"
    );
    // A forged choice of the real provider is refused.
    let r = s
        .post(
            &form_action(&page.body),
            &[("csrf", &csrf(&page.body)), ("provider", "reel")],
        )
        .await;
    assert_ne!(r.status, 303, "{:?}", r.location);
    assert!(!r.location.unwrap_or_default().contains(&fi.issuer));
    // idp_hint naming the real provider: the choice page, not the provider.
    let (url, _) = authorize_url(&sandbox, &[("idp_hint", "reel")]);
    let r = s.get(&url).await;
    assert!(
        r.location
            .as_deref()
            .unwrap()
            .starts_with("/api/v2/interaction/"),
        "{:?}",
        r.location
    );

    // A session authenticated at the real provider is not reused for the sandbox
    // client (the demo one is, for both).
    let mut p = Browser::new(&app);
    let (url, _) = authorize_url(&production, &[]);
    let r = login_via(&mut p, &url, "reel", "").await;
    assert!(
        r.location
            .as_deref()
            .unwrap_or_default()
            .starts_with(REDIRECT),
        "{}",
        r.body
    );
    let (url, _) = authorize_url(&sandbox, &[("prompt", "none")]);
    let q = query(p.get(&url).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
}

/// Issue 31, item 5 (a part): a client's redirect URIs replaced (checked as at
/// registration, journaled); the old address stops being one codes go to.
async fn redirect_uris_are_replaced(backend: Backend) {
    let app = identity_app(backend).await;
    let client = register_default(&app).await;
    let moved = "http://127.0.0.1:9/new-callback";
    let put = |id: String, body: Value| {
        let app = &app;
        async move {
            app.client
                .put(app.url(&format!("/api/admin/clients/{id}/redirect-uris")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = put(
        client.id.clone(),
        json!({"redirect_uris": [moved], "post_logout_redirect_uris": [LOGOUT]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["redirect_uris"], json!([moved]));
    // The old address: a page, no redirect; the new one works.
    let (url, _) = authorize_url(&client, &[]);
    let r = app.get(&url).await;
    assert_eq!(r.status(), 400);
    let (url, _) = authorize_url(&client, &[("redirect_uri", moved)]);
    assert_eq!(app.get(&url).await.status(), 303);
    for (body, status) in [
        (json!({"redirect_uris": []}), 422),
        (json!({"redirect_uris": ["http://example.fr/cb"]}), 422),
        (json!({"redirect_uris": [moved], "other": 1}), 400),
    ] {
        assert_eq!(
            put(client.id.clone(), body.clone()).await.status(),
            status,
            "{body}"
        );
    }
    assert_eq!(
        put("nobody".into(), json!({"redirect_uris": [moved]}))
            .await
            .status(),
        404
    );
    crate::support::gateway::find_entry(&app, "redirect URIs changed", |e| {
        e["details"]["action"] == "client.redirect_uris_changed"
            && e["details"]["client_id"] == client.id.as_str()
    })
    .await;
}

/// `login_via` starts from the authorization URL; here the interaction already exists.
fn choice_url_to_authorize(choice: &str) -> String {
    format!("@{choice}")
}

on_both_stores!(
    code_flow_with_pkce_userinfo_and_journal,
    authorization_requests_are_checked,
    token_endpoint_rules,
    levels_consent_and_logout,
    upstream_failures_are_pages_never_500,
    admin_api_and_client_options,
    sessions_live_in_the_store,
    first_start_publishes_both_signing_keys,
    a_login_renews_the_session_cookie,
    prompt_consent_asks_even_for_an_exempt_service,
    on_https_the_session_cookie_is_host_only,
    an_encrypted_id_token_is_a_logout_hint,
    client_profiles_standard_and_franceconnect,
    single_sign_on_and_prompt_none,
    the_claims_parameter,
    back_channel_logout,
    service_keys_by_url,
    a_renewed_secret_and_its_grace_period,
    a_sandbox_client_sees_the_demonstration_provider_only,
    redirect_uris_are_replaced,
);
