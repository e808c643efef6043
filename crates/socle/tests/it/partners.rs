//! Issue 31, item 5: the partner space. A service's organisation onboards itself from
//! the Espace agent's pages — an integration request, validated by the platform's
//! instructors, becomes a sandbox client that logs a demonstration person in; its
//! secret is shown once and renewed with a grace period; its addresses are edited and
//! validated again; production is a second validation, the sandbox kept.

use crate::support::Backend;
use serde_json::Value;
use socle_catalogue::people::Role;

use crate::on_both_stores;
use crate::support::back_office::{PLATFORM, PRODUCER, REQUESTER, publish, user};
use crate::support::identity::{
    Browser, LOGOUT, REDIRECT, Resp, TestClient, clients, demo_login, identity_app, token, userinfo,
};

fn hidden(body: &str, name: &str) -> String {
    body.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no hidden {name}: {body}"))
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

pub(crate) async fn sign(app: &crate::support::TestApp, email: &str) -> Browser {
    let mut b = Browser::new(app);
    let page = b.get("/espace-agent/connexion").await;
    let r = b
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &hidden(&page.body, "csrf")),
                ("email", email),
                ("password", crate::support::back_office::PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    b
}

/// The integration form's fields, filled as a service's developer would.
fn integration_fields(csrf: &str, redirects: &str, justified: bool) -> Vec<(String, String)> {
    let mut f: Vec<(&str, &str)> = vec![
        ("csrf", csrf),
        ("title", "Portail famille de Démoville"),
        ("service_url", "https://famille.demoville.example.fr"),
        (
            "purpose",
            "Identifier les familles qui inscrivent leurs enfants à la cantine et au centre de loisirs.",
        ),
        ("legal_nature", "mission d’intérêt public"),
        ("legal_text", "Code de l’éducation, L. 551-1"),
        ("legal_url", ""),
        ("scopes", "identite_pivot"),
        ("scopes", "email"),
        ("eidas_level", "1"),
        ("profile", "standard"),
        ("redirect_uris", redirects),
        ("post_logout_redirect_uris", LOGOUT),
        ("backchannel_logout_uri", ""),
        ("controller_name", "Maire de Démoville"),
        ("controller_email", "maire@demoville.fr"),
        ("dpo_name", "DPD"),
        ("dpo_email", "dpd@demoville.fr"),
        ("tech_name", "DSI"),
        ("tech_email", "dsi@demoville.fr"),
        ("acc_authority", ""),
        ("acc_start", ""),
        ("acc_end", ""),
    ];
    if justified {
        f.push((
            "justification_identite_pivot",
            "Rattacher l’inscription au bon enfant et au bon foyer.",
        ));
        f.push((
            "justification_email",
            "Envoyer la confirmation d’inscription.",
        ));
    }
    f.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn post_fields(b: &mut Browser, url: &str, fields: &[(String, String)]) -> Resp {
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post(url, &f).await
}

/// An action of a request's page, as its buttons send it.
async fn act(b: &mut Browser, url: &str, action: &str, comment: &str) -> Resp {
    let page = b.get(url).await;
    b.post(
        &format!("{url}/action"),
        &[
            ("csrf", &hidden(&page.body, "csrf")),
            ("revision", &hidden(&page.body, "revision")),
            ("action", action),
            ("comment", comment),
        ],
    )
    .await
}

/// Saves the edit form of the draft at `url` with `fields` (its CSRF replaced).
async fn edit(b: &mut Browser, url: &str, fields: &[(String, String)]) -> Resp {
    let page = b.get(&format!("{url}/modifier")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let target = page
        .body
        .split("action=\"")
        .find(|s| s.starts_with(&format!("{url}/modifier")))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let mut fields = fields.to_vec();
    fields[0].1 = hidden(&page.body, "csrf");
    post_fields(b, &target, &fields).await
}

/// The secret a page shows once after "secret : ".
fn shown_secret(body: &str, label: &str) -> (String, String) {
    let id = body
        .split("Identifiant client : ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no client id shown: {body}"))
        .to_string();
    let secret = body
        .split(label)
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no secret shown: {body}"))
        .to_string();
    (id, secret)
}

fn client_of(list: &[Value], id: &str) -> Value {
    list.iter()
        .find(|c| c["client_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no client {id}"))
}

async fn a_service_onboards_itself_from_the_partner_space(backend: Backend) {
    let app = identity_app(backend).await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "partenaires@dinum.fr", PLATFORM, Role::Instructor).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    let mut dev = sign(&app, "dev@demoville.fr").await;
    let mut inst = sign(&app, "partenaires@dinum.fr").await;
    let mut caf = sign(&app, "instructeur@caf.fr").await;
    let before = clients(&app).await.len();

    // The developer finds the way from the list, fills the form and saves a draft.
    let list = dev.get("/espace-agent").await;
    assert!(list.body.contains("/espace-agent/integrations/nouvelle"));
    let form = dev.get("/espace-agent/integrations/nouvelle").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Bac à sable"), "{}", form.body);
    let csrf = hidden(&form.body, "csrf");
    let unjustified = integration_fields(&csrf, REDIRECT, false);
    let r = post_fields(&mut dev, "/espace-agent/integrations", &unjustified).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let url = r.location.unwrap();
    // Submitting without saying why each scope is needed is refused, naming it.
    let r = act(&mut dev, &url, "submit", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("needs its justification"), "{}", r.body);
    let justified = integration_fields(&csrf, REDIRECT, true);
    assert_eq!(edit(&mut dev, &url, &justified).await.status, 303);
    assert_eq!(act(&mut dev, &url, "submit", "").await.status, 303);

    // Another organisation's instructor does not even see it; the developer cannot
    // validate; the platform's instructor reads it and validates it.
    assert_eq!(caf.get(&url).await.status, 404);
    // (The session's CSRF token is on every page, e.g. the sign-out form.)
    let list = dev.get("/espace-agent").await;
    let r = dev
        .post(
            &format!("{url}/action"),
            &[
                ("csrf", &hidden(&list.body, "csrf")),
                ("action", "validate"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let page = inst.get(&url).await;
    assert!(
        page.body.contains("Rattacher l’inscription au bon enfant")
            && page.body.contains("bac à sable"),
        "{}",
        page.body
    );
    assert_eq!(act(&mut inst, &url, "validate", "").await.status, 303);

    // A sandbox client exists, without a secret until the developers ask for it.
    let listed = clients(&app).await;
    assert_eq!(listed.len(), before + 1);
    let page = dev.get(&url).await;
    assert!(
        page.body.contains("Obtenir le secret du client") && page.body.contains("Bac à sable"),
        "{}",
        page.body
    );
    let r = dev
        .post(
            &format!("{url}/identifiants"),
            &[("csrf", &hidden(&page.body, "csrf"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (client_id, secret) = shown_secret(&r.body, "— secret : ");
    let me = client_of(&clients(&app).await, &client_id);
    assert_eq!(me["sandbox"], true, "{me}");
    assert_eq!(me["profile"], "standard");
    assert_eq!(me["redirect_uris"][0], REDIRECT);
    // Shown once.
    let again = dev
        .post(
            &format!("{url}/identifiants"),
            &[("csrf", &hidden(&page.body, "csrf"))],
        )
        .await;
    assert!(
        !again.body.contains("— secret : ") && again.body.contains("déjà été affiché"),
        "{}",
        again.body
    );

    // The service logs a demonstration person in with it, end to end.
    let service = TestClient {
        id: client_id.clone(),
        secret: Some(secret.clone()),
    };
    let login = demo_login(&app, &service, "marie", &[]).await;
    let t = token(&app, &service, &login).await;
    assert_eq!(t.status(), 200);
    let t: Value = t.json().await.unwrap();
    let ui = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(ui.status(), 200);
    let ui: Value = ui.json().await.unwrap();
    assert!(ui["given_name"].is_string(), "{ui}");
    crate::support::gateway::find_entry(&app, "validation with its client", |e| {
        e["details"]["action"] == "validate" && e["details"]["client_id"] == client_id.as_str()
    })
    .await;
    crate::support::gateway::find_entry(&app, "secret issued", |e| {
        e["details"]["action"] == "issue_secret" && e["details"]["client_id"] == client_id.as_str()
    })
    .await;

    // Renewed with a grace period: both secrets work meanwhile.
    let page = dev.get(&url).await;
    let r = dev
        .post(
            &format!("{url}/secret"),
            &[("csrf", &hidden(&page.body, "csrf")), ("grace", "3600")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, renewed) = shown_secret(&r.body, "nouveau secret : ");
    assert_ne!(renewed, secret);
    for s in [&secret, &renewed] {
        let c = TestClient {
            id: client_id.clone(),
            secret: Some(s.clone()),
        };
        let login = demo_login(&app, &c, "marie", &[]).await;
        assert_eq!(token(&app, &c, &login).await.status(), 200);
    }
    // A grace period that is not offered changes nothing.
    let r = dev
        .post(
            &format!("{url}/secret"),
            &[("csrf", &hidden(&page.body, "csrf")), ("grace", "99999999")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // Editing the addresses is a new request, validated again; the client keeps its
    // identifier and secret, the old request is archived.
    let page = dev.get(&url).await;
    let r = dev
        .post(
            &format!("{url}/reouvrir"),
            &[("csrf", &hidden(&page.body, "csrf"))],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let edit_url = r.location.unwrap();
    let url2 = edit_url.trim_end_matches("/modifier").to_string();
    let more = format!("{REDIRECT}\nhttp://127.0.0.1:9/autre-retour");
    let fields = integration_fields(&csrf, &more, true);
    assert_eq!(edit(&mut dev, &url2, &fields).await.status, 303);
    // Not in force before validation.
    let me = client_of(&clients(&app).await, &client_id);
    assert_eq!(me["redirect_uris"].as_array().unwrap().len(), 1);
    assert_eq!(act(&mut dev, &url2, "submit", "").await.status, 303);
    assert_eq!(act(&mut inst, &url2, "validate", "").await.status, 303);
    let me = client_of(&clients(&app).await, &client_id);
    assert_eq!(
        me["redirect_uris"],
        serde_json::json!([REDIRECT, "http://127.0.0.1:9/autre-retour"]),
        "{me}"
    );
    assert!(dev.get(&url).await.body.contains("Archivée"));
    let c = TestClient {
        id: client_id.clone(),
        secret: Some(renewed.clone()),
    };
    let login = demo_login(&app, &c, "marie", &[]).await;
    assert_eq!(token(&app, &c, &login).await.status(), 200, "same secret");

    // Production: a second request, which needs the accreditation, then a second
    // validation; a new client, the sandbox one kept.
    let page = dev.get(&url2).await;
    assert!(page.body.contains("Demander le passage en production"));
    let r = dev
        .post(
            &format!("{url2}/production"),
            &[("csrf", &hidden(&page.body, "csrf"))],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let url3 = r
        .location
        .unwrap()
        .trim_end_matches("/modifier")
        .to_string();
    let r = act(&mut dev, &url3, "submit", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("accreditation"), "{}", r.body);
    let mut fields = integration_fields(&csrf, REDIRECT, true);
    for (k, v) in fields.iter_mut() {
        match k.as_str() {
            "acc_authority" => *v = "Maire de Démoville".into(),
            "acc_start" => *v = "2026-01-01".into(),
            "acc_end" => *v = "2029-01-01".into(),
            _ => {}
        }
    }
    assert_eq!(edit(&mut dev, &url3, &fields).await.status, 303);
    assert_eq!(act(&mut dev, &url3, "submit", "").await.status, 303);
    assert!(
        inst.get(&url3)
            .await
            .body
            .contains("Intégration en production")
    );
    assert_eq!(act(&mut inst, &url3, "validate", "").await.status, 303);
    let listed = clients(&app).await;
    assert_eq!(listed.len(), before + 2);
    let production = listed
        .iter()
        .find(|c| {
            c["client_id"] != client_id.as_str() && c["name"] == "Portail famille de Démoville"
        })
        .unwrap();
    assert_eq!(production["sandbox"], false, "{production}");
    assert_eq!(client_of(&listed, &client_id)["sandbox"], true);
    assert!(
        dev.get(&url2).await.body.contains("Validée"),
        "sandbox kept"
    );

    // Revoking the sandbox integration disables its client: no more tokens.
    assert_eq!(
        act(&mut inst, &url2, "revoke", "Bac à sable plus utilisé.")
            .await
            .status,
        303
    );
    assert_eq!(
        client_of(&clients(&app).await, &client_id)["disabled"],
        true
    );
}

on_both_stores!(a_service_onboards_itself_from_the_partner_space);

/// The same workflow through the JSON API, and its refusals: nothing changes on a
/// mistake, and each gets a clear error.
async fn integration_requests_through_the_json_api(backend: Backend) {
    use crate::support::back_office::{Call, complete_form, sign_in};
    use serde_json::json;
    let app = identity_app(backend).await;
    publish(&app).await;
    user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
    user(&app, "partenaires@dinum.fr", PLATFORM, Role::Instructor).await;
    user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
    let dev = Call {
        app: &app,
        token: sign_in(&app, "dev@demoville.fr").await,
    };
    let inst = Call {
        app: &app,
        token: sign_in(&app, "partenaires@dinum.fr").await,
    };
    let caf = Call {
        app: &app,
        token: sign_in(&app, "instructeur@caf.fr").await,
    };
    let form = json!({
        "title": "Portail famille", "purpose": "Identifier les familles qui inscrivent leurs enfants.",
        "legal_basis": {"nature": "mission d’intérêt public", "text": "Code de l’éducation, L. 551-1"},
        "scopes": ["openid", "identite_pivot"],
        "controller": {"name": "Maire", "email": "maire@demoville.fr"},
        "dpo": {"name": "DPD", "email": "dpd@demoville.fr"},
        "technical_contact": {"name": "DSI", "email": "dsi@demoville.fr"},
        "integration": {"service_url": "https://famille.demoville.example.fr",
            "redirect_uris": ["javascript:alert(1)"], "eidas_level": 2, "profile": "franceconnect",
            "justifications": {"identite_pivot": "Rattacher l’inscription au bon enfant."},
            "production": true}
    });
    // An API request cannot carry an integration part.
    let mut api_form = complete_form();
    api_form["integration"] = json!({});
    let (s, e) = dev
        .post(
            "/api/v1/habilitations",
            json!({"api": "quotient-familial", "form": api_form}),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("integration"), "{e}");
    // The stage is not the requester's to choose: a new request is a sandbox one.
    let (s, h) = dev
        .post(
            "/api/v1/habilitations",
            json!({"api": "identite", "form": form}),
        )
        .await;
    assert_eq!(s, 201, "{h}");
    assert_eq!(h["form"]["integration"]["production"], false, "{h}");
    assert_eq!(h["producer"], PLATFORM);
    let id = h["id"].as_str().unwrap().to_string();
    // A redirect address the federation would refuse is refused at submission.
    let (s, e) = dev.act(&id, "submit", None).await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("javascript:alert(1)"),
        "{e}"
    );
    let mut fixed = form.clone();
    fixed["integration"]["redirect_uris"] = json!([REDIRECT]);
    let (s, e) = dev
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/habilitations/{id}"),
            Some(fixed),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(dev.act(&id, "submit", None).await.0, 200);
    // Production before the sandbox is validated: refused.
    let (s, e) = dev
        .post(&format!("/api/v1/habilitations/{id}/production"), json!({}))
        .await;
    assert_eq!(s, 409, "{e}");
    // Only the platform's organisation instructs it.
    assert_eq!(caf.act(&id, "validate", None).await.0, 404);
    let (s, h) = inst.act(&id, "validate", None).await;
    assert_eq!(s, 200, "{h}");
    let client_id = h["client_id"].as_str().unwrap().to_string();
    let me = client_of(&clients(&app).await, &client_id);
    assert_eq!(me["profile"], "franceconnect");
    assert_eq!(me["eidas_level"], 2);
    assert_eq!(me["sandbox"], true);
    // The instructor gets no secret; the developer gets it once.
    assert_eq!(
        inst.get(&format!("/api/v1/habilitations/{id}/credentials"))
            .await
            .0,
        403
    );
    let (s, c) = dev
        .get(&format!("/api/v1/habilitations/{id}/credentials"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["client_id"], client_id.as_str());
    assert!(c["client_secret"].as_str().unwrap().len() >= 32);
    let (_, c) = dev
        .get(&format!("/api/v1/habilitations/{id}/credentials"))
        .await;
    assert!(c.get("client_secret").is_none(), "{c}");
    // A grace period out of range: refused, the secret unchanged.
    let renew = format!("/api/v1/habilitations/{id}/credentials/renew");
    let (s, e) = dev.post(&renew, json!({"grace_seconds": -1})).await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = dev.post(&renew, json!({"grace_seconds": "long"})).await;
    assert_eq!(s, 400, "{e}");
    let (s, c) = dev.post(&renew, json!({"grace_seconds": 60})).await;
    assert_eq!(s, 200, "{c}");
    assert!(c["client_secret"].is_string());
    // Production is a new draft, at the production stage.
    let (s, p) = dev
        .post(&format!("/api/v1/habilitations/{id}/production"), json!({}))
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["form"]["integration"]["production"], true);
    assert_eq!(p["reopens"], id.as_str());
    let pid = p["id"].as_str().unwrap().to_string();
    // One follow-up at a time: a second production request, or an edit, while this
    // one is open, is refused (two requests would race for one client).
    for path in ["production", "reopen"] {
        let (s, e) = dev
            .post(&format!("/api/v1/habilitations/{id}/{path}"), json!({}))
            .await;
        assert_eq!(s, 409, "{path}: {e}");
    }
    let mut prod = p["form"].clone();
    prod["accreditation"] =
        json!({"authority": "Maire", "start": "2026-01-01", "end": "2027-06-30"});
    let (s, e) = dev
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/habilitations/{pid}"),
            Some(prod),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(dev.act(&pid, "submit", None).await.0, 200);
    let (s, h) = inst.act(&pid, "validate", None).await;
    assert_eq!(s, 200, "{h}");
    let production_id = h["client_id"].as_str().unwrap().to_string();
    assert_ne!(production_id, client_id);
    // Production in force: not asked for twice.
    let (s, e) = dev
        .post(&format!("/api/v1/habilitations/{id}/production"), json!({}))
        .await;
    assert_eq!(s, 409, "{e}");

    // An edit of the production integration, pending while the accreditation ends:
    // the expiry disables the client; the edit, validated later, gets a client of its
    // own rather than the disabled one. The sandbox never expires.
    let (s, edit) = dev
        .post(&format!("/api/v1/habilitations/{pid}/reopen"), json!({}))
        .await;
    assert_eq!(s, 201, "{edit}");
    let eid = edit["id"].as_str().unwrap().to_string();
    let mut renewed = edit["form"].clone();
    renewed["accreditation"]["end"] = json!("2030-06-30");
    let (s, e) = dev
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/habilitations/{eid}"),
            Some(renewed),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(dev.act(&eid, "submit", None).await.0, 200);
    let office = socle_catalogue::BackOffice::new(app.store.clone(), app.journal.clone().unwrap());
    assert_eq!(office.expire_due("2027-07-02").await.unwrap(), 1);
    let listed = clients(&app).await;
    assert_eq!(client_of(&listed, &production_id)["disabled"], true);
    assert_eq!(
        client_of(&listed, &client_id)["disabled"],
        false,
        "sandbox kept"
    );
    let (s, h) = inst.act(&eid, "validate", None).await;
    assert_eq!(s, 200, "{h}");
    let fresh = h["client_id"].as_str().unwrap();
    assert_ne!(fresh, production_id);
    let me = client_of(&clients(&app).await, fresh);
    assert_eq!(
        (me["disabled"].clone(), me["sandbox"].clone()),
        (json!(false), json!(false))
    );

    // An operator's disabling meanwhile is a change: a step that read the client
    // enabled writes nothing (it would have enabled it again).
    let stored = app.store.client(&client_id).await.unwrap().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/api/admin/clients/{client_id}/disable")))
        .bearer_auth(crate::support::identity::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let commit = socle_store::HabilitationCommit {
        clients: vec![socle_store::ClientWrite {
            client_id: client_id.clone(),
            doc: stored.doc.clone(),
            expected: Some((stored.doc, false)),
            disabled: false,
        }],
        ..Default::default()
    };
    use socle_store::{BackOfficeStore, IdentityStore};
    assert!(!app.store.commit_habilitations(&commit, 0).await.unwrap());
    assert!(
        app.store
            .client(&client_id)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );

    // The identity federation's name is no API's.
    let (s, e) = crate::catalogue::post(
        &app,
        "/api/admin/apis",
        json!({"slug": "identite", "organisation": PRODUCER, "title": "X", "description": "X",
               "openapi": "{}", "upstream_url": "https://x.example.fr", "access_mode": "open",
               "contact": "x@example.fr", "scopes": []}),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("reserved"), "{e}");
}

on_both_stores!(integration_requests_through_the_json_api);
