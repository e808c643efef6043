//! Habilitation requests over real HTTP, on both stores: a service developer finds an
//! API, drafts a request, is told what is missing, submits, is asked for changes,
//! resubmits, is validated and fetches credentials once; every permission rule is
//! tried from the wrong side; every step is in the history and the journal.

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::back_office::*;
use crate::support::identity::ADMIN_TOKEN;
use crate::support::{Backend, TestApp, run_binary};

async fn request_changes_and_validation(backend: Backend) {
    use socle_catalogue::people::Role;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    // The provider's webhook receiver: a real HTTP server that fails twice, then accepts.
    let receiver = Receiver::start().await;
    let (s, hook) = crate::catalogue::post(
        &app,
        &format!("/api/admin/organisations/{PRODUCER}/webhooks"),
        json!({"url": receiver.url, "allow_private": true}),
    )
    .await;
    assert_eq!(s, 201, "{hook}");
    let hook_secret = hook["secret"].as_str().unwrap().to_string();
    let (s, e) = crate::catalogue::post(
        &app,
        &format!("/api/admin/organisations/{PRODUCER}/webhooks"),
        json!({"url": "https://169.254.169.254/hook"}),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    user(&app, "dev@caf.fr", PRODUCER, Role::Developer).await;
    user(&app, "instructeur@dgfip.fr", OTHER, Role::Instructor).await;

    // Sign-in: wrong password refused; no token, no access.
    let r = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": "dev@demoville.fr", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.get("/api/v1/habilitations").await.status(), 401);

    let dev = Call {
        app: &app,
        token: sign_in(&app, "dev@demoville.fr").await,
    };
    let inst = Call {
        app: &app,
        token: sign_in(&app, "instructeur@caf.fr").await,
    };
    let caf_dev = Call {
        app: &app,
        token: sign_in(&app, "dev@caf.fr").await,
    };
    let stranger = Call {
        app: &app,
        token: sign_in(&app, "instructeur@dgfip.fr").await,
    };

    // An instructor does not write requests; a developer does, as a draft.
    assert_eq!(
        inst.post("/api/v1/habilitations", json!({"api": "quotient-familial"}))
            .await
            .0,
        403
    );
    let (s, h) = dev
        .post(
            "/api/v1/habilitations",
            json!({"api": "quotient-familial", "form": {"title": "Cantine"}}),
        )
        .await;
    assert_eq!(s, 201, "{h}");
    assert_eq!(h["state"], "draft");
    let id = h["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/habilitations/{id}");

    // The draft is the requester's alone.
    assert_eq!(
        inst.get(&path).await.0,
        404,
        "the provider does not see drafts"
    );
    assert_eq!(stranger.get(&path).await.0, 404);
    assert!(
        inst.get("/api/v1/habilitations").await.1["habilitations"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Submitting an incomplete request says everything that is missing.
    let (s, e) = dev.act(&id, "submit", None).await;
    assert_eq!(s, 422);
    let d = e["detail"].as_str().unwrap();
    for part in [
        "purpose",
        "legal_basis",
        "retention_months",
        "dpo",
        "accreditation",
        "go_live",
    ] {
        assert!(d.contains(part), "{part}: {d}");
    }
    // Refused at submission, saying why: an unknown scope; a legal basis's link that is
    // not a web address (it is shown to people).
    for (field, value, says) in [
        (
            "scopes",
            json!(["quotient_familial", "not-a-scope"]),
            "not-a-scope",
        ),
        (
            "legal_basis",
            json!({"nature": "mission d’intérêt public", "text": "Code de l’éducation",
                "url": "javascript:alert(1)"}),
            "legal_basis.url must be an https",
        ),
    ] {
        let mut form = complete_form();
        form[field] = value;
        assert_eq!(
            dev.send(reqwest::Method::PUT, &path, Some(form)).await.0,
            200
        );
        let (_, e) = dev.act(&id, "submit", None).await;
        assert!(e["detail"].as_str().unwrap().contains(says), "{e}");
    }
    assert_eq!(
        dev.send(reqwest::Method::PUT, &path, Some(complete_form()))
            .await
            .0,
        200
    );
    // A developer cannot validate, even their own request.
    assert_eq!(dev.act(&id, "validate", None).await.0, 403);
    let (s, h) = dev.act(&id, "submit", None).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["state"], "submitted");
    assert_eq!(
        dev.send(reqwest::Method::PUT, &path, Some(complete_form()))
            .await
            .0,
        403,
        "no edit once submitted"
    );

    // The provider reviews: a developer of the provider cannot; another organisation's
    // instructor cannot even see it; changes need a comment.
    assert_eq!(caf_dev.act(&id, "validate", None).await.0, 404);
    assert_eq!(stranger.act(&id, "validate", None).await.0, 404);
    assert_eq!(inst.act(&id, "request_changes", None).await.0, 422);
    let (s, h) = inst
        .act(
            &id,
            "request_changes",
            Some("Précisez la durée de conservation."),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["state"], "changes_requested");
    assert_eq!(
        inst.act(&id, "validate", None).await.0,
        409,
        "not from changes_requested"
    );

    let mut form = complete_form();
    form["retention_months"] = json!(48);
    assert_eq!(
        dev.send(reqwest::Method::PUT, &path, Some(form.clone()))
            .await
            .0,
        200
    );
    assert!(
        dev.act(&id, "submit", None).await.1["detail"]
            .as_str()
            .unwrap()
            .contains("36 months")
    );
    form["retention_justification"] = json!("Contentieux possibles sur quatre ans.");
    assert_eq!(
        dev.send(reqwest::Method::PUT, &path, Some(form)).await.0,
        200
    );
    assert_eq!(dev.act(&id, "submit", None).await.0, 200);
    // If-Match: a change is made only to the revision the caller read (RFC 9110).
    let read = inst
        .app
        .client
        .get(inst.app.url(&path))
        .bearer_auth(&inst.token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["cache-control"], "no-store");
    let etag = read.headers()["etag"].to_str().unwrap().to_string();
    let validate = |tag: &str| {
        inst.app
            .client
            .post(inst.app.url(&format!("{path}/actions")))
            .bearer_auth(&inst.token)
            .header("if-match", tag)
            .json(&json!({"action": "validate"}))
            .send()
    };
    let stale = validate("\"1\"").await.unwrap();
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["code"], "precondition_failed");
    assert_eq!(validate("W/1").await.unwrap().status(), 400);
    let ok = validate(&etag).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_ne!(
        ok.headers()["etag"].to_str().unwrap(),
        etag,
        "a new revision"
    );
    let h: Value = ok.json().await.unwrap();
    assert_eq!(h["state"], "validated");
    assert!(h.get("secret_hash").is_none());

    // Credentials: to the requester only, the secret once.
    assert_eq!(inst.get(&format!("{path}/credentials")).await.0, 403);
    assert_eq!(
        stranger.get(&format!("{path}/credentials")).await.0,
        404,
        "not even its existence"
    );
    let (s, c) = dev.get(&format!("{path}/credentials")).await;
    assert_eq!(s, 200);
    assert!(c["client_id"].as_str().unwrap().starts_with("hab-"));
    assert!(c["client_secret"].as_str().unwrap().len() >= 40);
    let (_, again) = dev.get(&format!("{path}/credentials")).await;
    assert_eq!(again["client_id"], c["client_id"]);
    assert!(again.get("client_secret").is_none(), "shown once");

    // The whole history, visible to both sides.
    let (_, seen_by_provider) = inst.get(&path).await;
    let actions: Vec<&str> = seen_by_provider["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "update",
            "update",
            "update",
            "submit",
            "request_changes",
            "update",
            "update",
            "submit",
            "validate"
        ]
    );
    assert_eq!(actions.first(), Some(&"create"));
    assert_eq!(actions.last(), Some(&"validate"));
    assert_eq!(actions.iter().filter(|a| **a == "submit").count(), 2);
    assert_eq!(
        seen_by_provider["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "request_changes")
            .unwrap()["comment"],
        "Précisez la durée de conservation."
    );

    // The register of processing of the requesting organisation (GDPR art. 30).
    let (s, reg) = dev.get("/api/v1/register").await;
    assert_eq!(s, 200);
    assert_eq!(reg["organisation"], REQUESTER);
    let p = &reg["processing"][0];
    assert_eq!(p["name"], "Tarification de la cantine");
    assert_eq!(p["retention_months"], 48);
    assert!(p["source"].as_str().unwrap().contains("CAF démo"));
    let r = app
        .client
        .get(app.url("/api/v1/register?format=csv"))
        .bearer_auth(&dev.token)
        .send()
        .await
        .unwrap();
    assert_eq!(crate::support::media_type(&r), "text/csv");
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("\"Tarification de la cantine\""));
    assert!(
        inst.get("/api/v1/register").await.1["processing"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the provider's register lists what it receives, not this"
    );

    // Revocation needs a comment, and so does the provider's archiving of a validated
    // habilitation (it ends access just the same); then archiving; nothing after.
    assert_eq!(inst.act(&id, "revoke", None).await.0, 422);
    assert_eq!(inst.act(&id, "archive", None).await.0, 422);
    assert_eq!(
        inst.act(&id, "revoke", Some("Fin de la convention."))
            .await
            .1["state"],
        "revoked"
    );
    assert_eq!(dev.get(&format!("{path}/credentials")).await.0, 409);
    assert_eq!(dev.act(&id, "archive", None).await.1["state"], "archived");
    assert_eq!(inst.act(&id, "validate", None).await.0, 409);
    assert_eq!(
        dev.act(&id, "expire", None).await.0,
        400,
        "only the platform expires"
    );

    // The journal: one habilitation entry per step (edits of the form included, as the
    // request's history lists them), agents as pseudonyms.
    let journal = app.journal.as_ref().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let cp = journal.latest_checkpoint().await.unwrap();
    let (_, rows) = journal.entries(0, cp.size).await.unwrap();
    let steps: Vec<socle_journal::Entry> = rows
        .iter()
        .filter_map(|r| socle_journal::Entry::decode(&r.leaf).ok())
        .filter(|e| e.kind == socle_journal::EntryKind::Habilitation)
        .collect();
    let names: Vec<&str> = steps.iter().map(|e| e.details["action"].as_str()).collect();
    assert_eq!(
        names,
        [
            "create",
            "update",
            "update",
            "update",
            "submit",
            "request_changes",
            "update",
            "update",
            "submit",
            "validate",
            "revoke",
            "archive"
        ]
    );
    for e in &steps {
        assert!(
            e.actor.starts_with("agent:") && !e.actor.contains('@'),
            "{}",
            e.actor
        );
        assert_eq!(
            e.organisations,
            vec![REQUESTER.to_string(), PRODUCER.to_string()]
        );
    }
    // Webhooks: every event reached the provider, signed; the first after two refusals
    // (retries with backoff); the delivery log says so.
    let expected = [
        "submit",
        "request_changes",
        "submit",
        "validate",
        "revoke",
        "archive",
    ];
    let log = loop_until(|| async {
        let r = app
            .client
            .get(app.url(&format!("/api/admin/organisations/{PRODUCER}/deliveries")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let log: Value = r.json().await.unwrap();
        let done = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "delivered")
            .count();

        (done == expected.len()).then_some(log)
    })
    .await;
    // The receiver refused the first two requests: those deliveries were retried.
    let attempts: Vec<i64> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(
        attempts.iter().sum::<i64>(),
        expected.len() as i64 + 2,
        "{log}"
    );
    assert!(attempts.iter().any(|a| *a >= 2), "{log}");
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), expected.len() + 2);
    let mut events = Vec::new();
    for (signature, event, body) in &received {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(hook_secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        assert_eq!(
            *signature,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], *event);
        assert_eq!(v["habilitation"]["id"], id);
        events.push(event.clone());
    }
    for e in expected {
        assert!(
            events.contains(&format!("habilitation.{e}")),
            "{e}: {events:?}"
        );
    }
    // And an e-mail for each, in the outbox, to the API's contact.
    let mails = {
        use socle_store::NotificationStore;
        app.store.outbox(100).await.unwrap()
    };
    assert_eq!(mails.len(), expected.len());
    assert!(
        mails
            .iter()
            .all(|(to, subject, _)| to == "api@caf.example.fr" && subject.contains("Habilitation"))
    );
}

async fn accounts_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    admin(
        &app,
        "/api/admin/organisations",
        json!({"siret": PLATFORM, "name": "DINUM", "kind": "ministry"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let env = app.db.env();
    let (code, out, err) = run_binary(
        &[
            "admin",
            "user",
            "create",
            "--email",
            "ops@example.gouv.fr",
            "--name",
            "Opérateur",
            "--organisation",
            PLATFORM,
            "--role",
            "operator",
            "--password-file",
            file.to_str().unwrap(),
        ],
        &env,
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("account ops@example.gouv.fr created"));
    let (code, _, err) = run_binary(
        &[
            "admin",
            "user",
            "create",
            "--email",
            "x@example.gouv.fr",
            "--name",
            "X",
            "--organisation",
            "99999999999999",
            "--role",
            "wizard",
            "--password-file",
            file.to_str().unwrap(),
        ],
        &env,
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("wizard"), "{err}");
    assert!(!sign_in(&app, "ops@example.gouv.fr").await.is_empty());
}

on_both_stores!(
    request_changes_and_validation,
    accounts_from_the_command_line
);

/// A town hall with a validated habilitation to the family-benefits API.
async fn validated(backend: Backend) -> (TestApp, String, String, String) {
    use socle_catalogue::people::Role;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    let dev = sign_in(&app, "dev@demoville.fr").await;
    let inst = sign_in(&app, "instructeur@caf.fr").await;
    let d = Call {
        app: &app,
        token: dev.clone(),
    };
    let i = Call {
        app: &app,
        token: inst.clone(),
    };
    let (_, h) = d
        .post(
            "/api/v1/habilitations",
            json!({"api": "quotient-familial", "form": complete_form()}),
        )
        .await;
    let id = h["id"].as_str().unwrap().to_string();
    assert_eq!(d.act(&id, "submit", None).await.0, 200);
    assert_eq!(i.act(&id, "validate", None).await.0, 200);
    (app, id, dev, inst)
}

async fn reopening_and_expiry(backend: Backend) {
    let (app, id, dev, inst) = validated(backend).await;
    let d = Call {
        app: &app,
        token: dev,
    };
    let i = Call {
        app: &app,
        token: inst,
    };
    // Reopening: only the requester, only a validated habilitation; the old one stays
    // valid until the new one is validated, then it is archived.
    assert_eq!(
        i.post(&format!("/api/v1/habilitations/{id}/reopen"), json!({}))
            .await
            .0,
        403
    );
    let (s, new) = d
        .post(&format!("/api/v1/habilitations/{id}/reopen"), json!({}))
        .await;
    assert_eq!(s, 201, "{new}");
    assert_eq!(new["state"], "draft");
    assert_eq!(new["reopens"], id);
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_eq!(
        d.get(&format!("/api/v1/habilitations/{id}")).await.1["state"],
        "validated"
    );
    assert_eq!(d.act(&new_id, "submit", None).await.0, 200);
    assert_eq!(i.act(&new_id, "validate", None).await.0, 200);
    let (_, old) = d.get(&format!("/api/v1/habilitations/{id}")).await;
    assert_eq!(old["state"], "archived");
    assert_eq!(
        old["history"].as_array().unwrap().last().unwrap()["action"],
        "superseded"
    );
    assert_eq!(
        d.post(&format!("/api/v1/habilitations/{id}/reopen"), json!({}))
            .await
            .0,
        409
    );

    // Expiry: the platform expires validated habilitations whose accreditation ended.
    let office = socle_catalogue::BackOffice::new(app.store.clone(), app.journal.clone().unwrap());
    assert_eq!(
        office.expire_due("2028-12-31").await.unwrap(),
        0,
        "still accredited"
    );
    assert_eq!(office.expire_due("2029-01-02").await.unwrap(), 1);
    let (_, h) = d.get(&format!("/api/v1/habilitations/{new_id}")).await;
    assert_eq!(h["state"], "expired");
    assert_eq!(
        h["history"].as_array().unwrap().last().unwrap()["actor"],
        "system"
    );
    assert_eq!(
        d.get(&format!("/api/v1/habilitations/{new_id}/credentials"))
            .await
            .0,
        409
    );
    assert_eq!(d.act(&new_id, "archive", None).await.1["state"], "archived");
}

on_both_stores!(reopening_and_expiry);

async fn repeated_failed_sign_ins_make_the_account_wait(backend: Backend) {
    use crate::support::identity::Browser;
    use socle_catalogue::people::Role;
    use socle_catalogue::throttle::FREE;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    let attempt = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/v1/session"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (status, retry, r.json::<Value>().await.unwrap())
        }
    };
    // An address nobody has and an existing account are treated alike: the first
    // failures are only refused, then the address must wait — even with the right
    // password, which is not checked. (Each check right after the last failure: the
    // first wait is 2 s.)
    for email in ["personne@demoville.fr", "Dev@Demoville.fr"] {
        for n in 1..=FREE {
            let (status, retry, body) = attempt(email, "wrong password!").await;
            assert_eq!((status, retry), (401, None), "failure {n}: {body}");
        }
        let (status, retry, body) = attempt(email, PASSWORD).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["code"], "too_many_attempts");
        assert!(matches!(retry, Some(1..=2)), "{retry:?}");
    }
    // The sign-in page says so in French, with Retry-After, and signs nobody in (the
    // address as typed, case aside).
    let mut b = Browser::new(&app);
    let page = b.get("/espace-agent/connexion").await;
    let r = b
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &csrf_in(&page.body)),
                ("email", "dev@demoville.fr"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Trop de tentatives"), "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        r.headers
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("socle_agent=")),
        "no sign-in cookie"
    );
    // Other accounts are not concerned.
    assert_eq!(attempt("instructeur@caf.fr", PASSWORD).await.0, 200);
    // Attempts sent all at once are held like attempts in a row: each is counted
    // before its password is checked.
    let burst = futures_util::future::join_all(
        (0..3 * FREE).map(|_| attempt("rafale@demoville.fr", "wrong password!")),
    )
    .await;
    let checked = burst.iter().filter(|(s, _, _)| *s == 401).count();
    let held = burst.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(
        (checked, held),
        (FREE as usize, 2 * FREE as usize),
        "{burst:?}"
    );
    // Once the wait is over the right password works, and clears the failures: the
    // next mistake is refused without a wait.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = attempt("dev@demoville.fr", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(attempt("dev@demoville.fr", "wrong password!").await.0, 401);
    assert_eq!(attempt("dev@demoville.fr", PASSWORD).await.0, 200);
}

/// One password tried over many accounts from one client address (here behind a
/// trusted proxy, which names the client in `X-Forwarded-For`): once that address has
/// failed `FREE_PER_ADDRESS` times, any account waits from it — and only from it.
async fn spraying_many_accounts_from_one_address_makes_it_wait(backend: Backend) {
    use socle_catalogue::people::Role;
    use socle_catalogue::throttle::FREE_PER_ADDRESS;
    const SPRAYER: &str = "203.0.113.66";
    const OFFICE: &str = "198.51.100.20";
    let app = TestApp::spawn_with(backend, |c| {
        c.admin.token = Some(ADMIN_TOKEN.into());
        c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    let attempt = |email: String, from: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/v1/session"))
                .header("x-forwarded-for", from)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().contains_key("retry-after");
            (status, retry, r.json::<Value>().await.unwrap())
        }
    };
    // Each account tried once, all at once (each attempt is counted before its
    // password is checked): none would ever wait on its own, the address does.
    let sprayed = futures_util::future::join_all(
        (0..FREE_PER_ADDRESS + 5)
            .map(|i| attempt(format!("agent{i}@demoville.fr"), SPRAYER, "Printemps2026!")),
    )
    .await;
    let checked = sprayed.iter().filter(|(s, _, _)| *s == 401).count();
    let held: Vec<_> = sprayed.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(
        (checked, held.len()),
        (FREE_PER_ADDRESS as usize, 5),
        "{sprayed:?}"
    );
    assert!(
        held.iter()
            .all(|(_, retry, b)| *retry && b["code"] == "too_many_attempts"),
        "{held:?}"
    );
    // The same account from another address is not concerned.
    let (status, _, body) = attempt("dev@demoville.fr".into(), OFFICE, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
}

on_both_stores!(
    repeated_failed_sign_ins_make_the_account_wait,
    spraying_many_accounts_from_one_address_makes_it_wait
);

/// A step of the back office is written whole or not at all: the change, the
/// habilitation it supersedes, its journal entries (through the journal's durable
/// queue) and the provider's webhook and e-mail. When the journal's part cannot be
/// written, nothing is, and the step can be tried again.
async fn a_step_is_written_with_its_journal_entries_or_not_at_all(backend: Backend) {
    use socle_store::NotificationStore;
    let (app, id, dev, inst) = validated(backend).await;
    let d = Call {
        app: &app,
        token: dev,
    };
    let i = Call {
        app: &app,
        token: inst,
    };
    socle_catalogue::notify::add_webhook(
        &app.store,
        PRODUCER,
        "http://127.0.0.1:9/hook",
        true,
        "operator:test",
    )
    .await
    .unwrap();
    let (s, new) = d
        .post(&format!("/api/v1/habilitations/{id}/reopen"), json!({}))
        .await;
    assert_eq!(s, 201, "{new}");
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_eq!(d.act(&new_id, "submit", None).await.0, 200);
    let before = (
        app.store.deliveries(PRODUCER, 1000).await.unwrap().len(),
        app.store.outbox(1000).await.unwrap().len(),
    );
    let journal = app.journal.as_ref().unwrap();
    let steps = || async {
        let cp = journal.latest_checkpoint().await.unwrap();
        let (_, rows) = journal.entries(0, cp.size).await.unwrap();
        rows.iter()
            .filter_map(|r| socle_journal::Entry::decode(&r.leaf).ok())
            .filter(|e| e.kind == socle_journal::EntryKind::Habilitation)
            .map(|e| format!("{} {}", e.details["habilitation"], e.details["action"]))
            .collect::<Vec<String>>()
    };

    app.store.__test_refuse_queued_entries(true).await.unwrap();
    let (status, body) = i.act(&new_id, "validate", None).await;
    assert!(status >= 500, "{status} {body}");
    assert!(
        body["code"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(
        d.get(&format!("/api/v1/habilitations/{new_id}")).await.1["state"],
        "submitted"
    );
    assert_eq!(
        d.get(&format!("/api/v1/habilitations/{id}")).await.1["state"],
        "validated"
    );
    let after = (
        app.store.deliveries(PRODUCER, 1000).await.unwrap().len(),
        app.store.outbox(1000).await.unwrap().len(),
    );
    assert_eq!(after, before, "no webhook, no e-mail for a step not taken");

    app.store.__test_refuse_queued_entries(false).await.unwrap();
    assert_eq!(i.act(&new_id, "validate", None).await.0, 200);
    assert_eq!(
        d.get(&format!("/api/v1/habilitations/{id}")).await.1["state"],
        "archived"
    );
    let after = (
        app.store.deliveries(PRODUCER, 1000).await.unwrap().len(),
        app.store.outbox(1000).await.unwrap().len(),
    );
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 1),
        "one webhook, one e-mail"
    );
    // Both entries reach the journal (the sequencer integrates the queue within a
    // fraction of a second), once each.
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = steps().await;
        if seen.iter().any(|s| s.ends_with(" superseded")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let validate = format!("{new_id} validate");
    let superseded = format!("{id} superseded");
    assert_eq!(
        seen.iter().filter(|s| **s == validate).count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| **s == superseded).count(),
        1,
        "{seen:?}"
    );
}

on_both_stores!(a_step_is_written_with_its_journal_entries_or_not_at_all);

/// The CSRF field of a page's form.
fn csrf_in(body: &str) -> String {
    hidden_in(body, "csrf")
}

/// The value of a page's hidden field `name`.
fn hidden_in(body: &str, name: &str) -> String {
    body.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

async fn back_office_pages(backend: Backend) {
    use crate::support::identity::Browser;
    let (app, id, _, _) = validated(backend).await;
    let mut b = Browser::new(&app);
    // Not signed in: the sign-in page.
    let r = b.get("/espace-agent").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/espace-agent/connexion"));
    let page = b.get("/espace-agent/connexion").await;
    let csrf = csrf_in(&page.body);
    // A form without the double-submit token is refused; a wrong password says so.
    let r = b
        .post(
            "/espace-agent/connexion",
            &[("email", "dev@demoville.fr"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &csrf),
                ("email", "dev@demoville.fr"),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("incorrect"));
    // The page shown again carries a fresh token.
    let csrf = csrf_in(&r.body);
    let r = b
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &csrf),
                ("email", "instructeur@caf.fr"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let list = b.get("/espace-agent").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Tarification de la cantine"));
    let detail = b.get(&format!("/espace-agent/demandes/{id}")).await;
    assert_eq!(detail.status, 200);
    assert!(
        detail.body.contains("value=\"revoke\""),
        "the instructor may revoke"
    );
    // The history in words, not the recorded codes.
    assert!(
        detail.body.contains("Demande soumise") && detail.body.contains("Demande validée"),
        "{}",
        detail.body
    );
    assert!(!detail.body.contains("request_changes →") && !detail.body.contains("submit →"));
    assert!(
        !detail.body.contains("Obtenir les identifiants"),
        "credentials are the requester's"
    );
    // An action without the page's CSRF token is refused; without a comment, explained.
    let r = b
        .post(
            &format!("/espace-agent/demandes/{id}/action"),
            &[("action", "revoke")],
        )
        .await;
    assert_eq!(r.status, 403);
    let token = csrf_in(&detail.body);
    let r = b
        .post(
            &format!("/espace-agent/demandes/{id}/action"),
            &[("csrf", &token), ("action", "revoke")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("comment"), "{}", r.body);
    let r = b
        .post(
            &format!("/espace-agent/demandes/{id}/action"),
            &[
                ("csrf", &token),
                ("action", "revoke"),
                ("comment", "Fin de convention"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(
        b.get(&format!("/espace-agent/demandes/{id}"))
            .await
            .body
            .contains("Révoquée")
    );
    assert_eq!(b.get("/espace-agent/demandes/unknown").await.status, 404);
}

on_both_stores!(back_office_pages);

async fn webhooks_are_disabled_after_repeated_failures(backend: Backend) {
    use socle_store::NotificationStore;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    // A receiver that is never there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let (id, _) =
        socle_catalogue::notify::add_webhook(&app.store, PRODUCER, &url, true, "operator:test")
            .await
            .unwrap();
    for n in 0..3 {
        socle_catalogue::notify::notify(&app.store, PRODUCER, "test", &json!({"n": n}), "", "")
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    for _ in 0..60 {
        // Make every pending delivery due now, then attempt (the server's own worker
        // attempts too: the outcome is the same).
        for mut d in app.store.due_deliveries(i64::MAX, 100).await.unwrap() {
            d.next_at = 0;
            app.store.update_delivery(&d, 0).await.unwrap();
        }
        socle_catalogue::notify::deliver_due(&app.store, &http)
            .await
            .unwrap();
        if app
            .store
            .due_deliveries(i64::MAX, 100)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
    }
    let log = app.store.deliveries(PRODUCER, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    for d in &log {
        assert_eq!(d.state, "failed", "{d:?}");
        assert!(d.attempts >= socle_catalogue::notify::MAX_ATTEMPTS);
        assert_eq!(d.last_error.as_deref(), Some("connection failed"));
    }
    let hook = app.store.webhook(&id).await.unwrap().unwrap();
    assert!(
        !hook.enabled,
        "disabled after {} given-up deliveries",
        hook.failures
    );
    socle_catalogue::notify::notify(&app.store, PRODUCER, "test", &json!({}), "", "")
        .await
        .unwrap();
    assert_eq!(
        app.store.deliveries(PRODUCER, 10).await.unwrap().len(),
        3,
        "nothing queued for a disabled webhook"
    );
}

/// Deliveries are claimed one attempt at a time: several delivery loops at once (several
/// nodes, or this node's worker and another) send each event once.
async fn each_delivery_is_sent_once_by_concurrent_workers(backend: Backend) {
    use socle_store::NotificationStore;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    // A slow receiver that counts each delivery id.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
    async fn slow(
        axum::extract::State(seen): axum::extract::State<Seen>,
        headers: axum::http::HeaderMap,
    ) -> axum::http::StatusCode {
        let id = headers
            .get("x-socle-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push(id);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        axum::http::StatusCode::NO_CONTENT
    }
    let seen: Seen = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(slow))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    socle_catalogue::notify::add_webhook(&app.store, PRODUCER, &url, true, "operator:test")
        .await
        .unwrap();
    for n in 0..6 {
        socle_catalogue::notify::notify(&app.store, PRODUCER, "test", &json!({"n": n}), "", "")
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let (a, b, c) = tokio::join!(
        socle_catalogue::notify::deliver_due(&app.store, &http),
        socle_catalogue::notify::deliver_due(&app.store, &http),
        socle_catalogue::notify::deliver_due(&app.store, &http),
    );
    let attempts = a.unwrap() + b.unwrap() + c.unwrap();
    // The server's own worker may have taken some too; wait until all are delivered.
    for _ in 0..100 {
        let log = app.store.deliveries(PRODUCER, 10).await.unwrap();
        if log.iter().all(|d| d.state == "delivered") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = app.store.deliveries(PRODUCER, 10).await.unwrap();
    assert_eq!(log.len(), 6);
    assert!(
        log.iter()
            .all(|d| d.state == "delivered" && d.attempts == 1),
        "{log:?}"
    );
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let mut ids: Vec<String> = log.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    assert_eq!(got, ids, "each delivery received once");
    assert!(attempts <= 6, "{attempts} attempts for 6 deliveries");
}

on_both_stores!(each_delivery_is_sent_once_by_concurrent_workers);

async fn the_whole_request_through_the_pages(backend: Backend) {
    use crate::support::identity::Browser;
    use socle_catalogue::people::Role;
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    async fn sign(app: &TestApp, email: &str) -> Browser {
        let mut b = Browser::new(app);
        let page = b.get("/espace-agent/connexion").await;
        let r = b
            .post(
                "/espace-agent/connexion",
                &[
                    ("csrf", &csrf_in(&page.body)),
                    ("email", email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, 303);
        b
    }
    let mut dev = sign(&app, "dev@demoville.fr").await;
    let mut inst = sign(&app, "instructeur@caf.fr").await;
    // The developer finds the API and asks for access from its page.
    let api = dev.get("/catalogue/quotient-familial").await;
    assert!(
        api.body
            .contains("/espace-agent/demandes/nouvelle?api=quotient-familial")
    );
    let form = dev
        .get("/espace-agent/demandes/nouvelle?api=quotient-familial")
        .await;
    assert_eq!(form.status, 200);
    let c = csrf_in(&form.body);
    let fields: Vec<(&str, &str)> = vec![
        ("csrf", &c),
        ("api", "quotient-familial"),
        ("title", "Tarification de la cantine"),
        (
            "purpose",
            "Calculer le tarif de la cantine selon le quotient familial, sans justificatif.",
        ),
        ("legal_nature", "mission d’intérêt public"),
        ("legal_text", "Code de l’éducation, L. 551-1"),
        ("legal_url", ""),
        ("retention_months", "12"),
        ("retention_justification", ""),
        ("recipients", "Service enfance"),
        ("controller_name", "Maire"),
        ("controller_email", "maire@demoville.fr"),
        ("dpo_name", "DPD"),
        ("dpo_email", "dpd@demoville.fr"),
        ("tech_name", "DSI"),
        ("tech_email", "dsi@demoville.fr"),
        ("acc_authority", "Maire"),
        ("acc_start", "2026-01-01"),
        ("acc_end", "2029-01-01"),
        ("expected_volume", "500"),
        ("go_live", "2027-01-15"),
        ("scopes", "quotient_familial"),
    ];
    // A number that does not parse is a form error naming the field, never a silent 0;
    // nothing is created.
    let mut bad = fields.clone();
    bad[7] = ("retention_months", "douze");
    bad[19] = ("expected_volume", "5OO");
    let r = dev.post("/espace-agent/demandes", &bad).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("« Durée de conservation (mois) » : « douze »")
            && r.body
                .contains("« Volume attendu (appels par jour) » : « 5OO »"),
        "{}",
        r.body
    );
    let listed = dev.get("/espace-agent").await.body;
    assert!(!listed.contains("Tarification de la cantine"), "{listed}");
    let r = dev.post("/espace-agent/demandes", &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let detail_url = r.location.unwrap();
    let listed = dev.get("/espace-agent").await.body;
    assert!(listed.contains("Tarification de la cantine"), "{listed}");
    assert_eq!(
        act(&mut dev, detail_url.clone(), "submit", "").await.status,
        303
    );
    // An instructor opens the submitted request and leaves it open…
    let read_earlier = inst.get(&detail_url).await.body;
    assert_eq!(
        act(
            &mut inst,
            detail_url.clone(),
            "request_changes",
            "Précisez les destinataires."
        )
        .await
        .status,
        303
    );
    let page = dev.get(&detail_url).await;
    assert!(
        page.body.contains("Modifications demandées")
            && page.body.contains("Précisez les destinataires.")
    );
    // Resubmitted after an edit, then validated; credentials once.
    let edit = dev.get(&format!("{detail_url}/modifier")).await;
    let c = csrf_in(&edit.body);
    let target = edit
        .body
        .split("action=\"")
        .find(|s| s.starts_with(&format!("{detail_url}/modifier")))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(target.contains("?revision="), "{target}");
    let mut fields2 = fields.clone();
    fields2[0] = ("csrf", &c);
    fields2[9] = ("recipients", "Service enfance\nService financier");
    let mut bad = fields2.clone();
    bad[19] = ("expected_volume", "-3");
    let r = dev.post(&target, &bad).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("« -3 » n’est pas un nombre entier"),
        "{}",
        r.body
    );
    assert_eq!(dev.post(&target, &fields2).await.status, 303);
    // The same edit form sent again is out of date: refused, nothing overwritten.
    let r = dev.post(&target, &fields2).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("modifiée depuis que vous l’avez ouverte"),
        "{}",
        r.body
    );
    assert_eq!(
        act(&mut dev, detail_url.clone(), "submit", "").await.status,
        303
    );
    // …and validates from the page read before the changes: refused, it must be read
    // again.
    let r = act_from(&mut inst, &detail_url, &read_earlier, "validate", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("modifiée depuis que vous l’avez ouverte"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Soumise"), "still submitted: {}", r.body);
    assert_eq!(
        act(&mut inst, detail_url.clone(), "validate", "")
            .await
            .status,
        303
    );
    let page = dev.get(&detail_url).await;
    assert!(page.body.contains("Validée") && page.body.contains("Obtenir les identifiants"));
    let r = dev
        .post(
            &format!("{detail_url}/identifiants"),
            &[("csrf", &csrf_in(&page.body))],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("secret :"), "the secret is shown once");
    let r = dev
        .post(
            &format!("{detail_url}/identifiants"),
            &[("csrf", &csrf_in(&page.body))],
        )
        .await;
    assert!(!r.body.contains("secret :") && r.body.contains("déjà été affiché"));

    // Signing out is a form (no other site can do it) and ends the token itself: a copy
    // of the cookie kept elsewhere does not work any more.
    let mut kept = dev.clone();
    assert_eq!(kept.get("/espace-agent").await.status, 200);
    assert_eq!(dev.get("/espace-agent/deconnexion").await.status, 405);
    let list = dev.get("/espace-agent").await;
    let r = dev
        .post("/espace-agent/deconnexion", &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, 403, "CSRF refused");
    let r = dev
        .post(
            "/espace-agent/deconnexion",
            &[("csrf", &csrf_in(&list.body))],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = kept.get("/espace-agent").await;
    assert_eq!(r.status, 303, "signed out everywhere");
    assert!(r.location.unwrap().contains("/espace-agent/connexion"));
}

/// Submits one of the actions of a request's page, as its buttons do.
async fn act(
    b: &mut crate::support::identity::Browser,
    url: String,
    action: &str,
    comment: &str,
) -> crate::support::identity::Resp {
    let page = b.get(&url).await;
    act_from(b, &url, &page.body, action, comment).await
}

/// Submits an action from a page read earlier (its CSRF token and revision).
async fn act_from(
    b: &mut crate::support::identity::Browser,
    url: &str,
    page: &str,
    action: &str,
    comment: &str,
) -> crate::support::identity::Resp {
    let (c, revision) = (csrf_in(page), hidden_in(page, "revision"));
    b.post(
        &format!("{url}/action"),
        &[
            ("csrf", &c),
            ("revision", &revision),
            ("action", action),
            ("comment", comment),
        ],
    )
    .await
}

on_both_stores!(
    webhooks_are_disabled_after_repeated_failures,
    the_whole_request_through_the_pages
);
