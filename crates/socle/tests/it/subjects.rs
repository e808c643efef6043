//! Issue 32: every exchange about a person reaches that person, machine calls
//! included. An API says how its calls name their person (`pivot`: the request carries
//! the pivot identity; `provider`: the provider's answer names them); the gateway keys
//! the journal entry to that person exactly as for calls with their login, and an
//! exchange whose person cannot be determined is not released.

use serde_json::{Value, json};

use crate::citizen::{recognised_by_python, space_login};
use crate::on_both_stores;
use crate::support::Backend;
use crate::support::back_office::{PRODUCER, admin, complete_form};
use crate::support::gateway::{Env, PURPOSE, journal_entries, refused};

/// The federation's identity hash of a demonstration person, computed here from the
/// pivot fields by Python's standard library (FranceConnect's rule: base64 SHA-256 of
/// the fields concatenated, the birthplace only for people born in France).
fn identity_hash_by_python(login: &str) -> String {
    let person = socle_demo::fi::people()
        .into_iter()
        .find(|p| p.login == login)
        .unwrap();
    let script = r#"
import base64, hashlib, json, sys
c = json.loads(sys.argv[1])
place = c["birthplace"] if c["birthcountry"] == "99100" else ""
serial = c["given_name"] + c["family_name"] + c["birthdate"] + c["gender"] + place + c["birthcountry"]
print(base64.b64encode(hashlib.sha256(serial.encode()).digest()).decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &person.claims.to_string()])
        .output()
        .expect("python3 runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn pivot_query(login: &str) -> String {
    let p = socle_demo::fi::people()
        .into_iter()
        .find(|p| p.login == login)
        .unwrap()
        .claims;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, field) in [
        ("prenoms", "given_name"),
        ("nom", "family_name"),
        ("naissance", "birthdate"),
        ("sexe", "gender"),
        ("lieu", "birthplace"),
        ("pays", "birthcountry"),
    ] {
        q.append_pair(name, p[field].as_str().unwrap());
    }
    q.finish()
}

/// The subject keys of `person`'s space (its export), and the indices of the
/// exchanges it shows.
async fn exchanges_of(env: &Env, person: &str) -> (Value, Vec<u64>) {
    let mut b = space_login(env, person).await;
    let r = b.get("/mon-espace/export").await;
    assert_eq!(r.status, 200);
    let export: Value = serde_json::from_str(&r.body).unwrap();
    let mut shown: Vec<u64> = export["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    shown.sort();
    (export["subject_keys"].clone(), shown)
}

async fn machine_calls_reach_their_person(backend: Backend) {
    let env = Env::new(backend, true).await;
    let app = &env.app;
    let openapi = json!({"openapi": "3.0.3", "info": {"title": "QF", "version": "1.0.0"},
        "paths": {"/sujet": {"get": {"responses": {"200": {"description": "ok"}}}}}})
    .to_string();
    for (slug, subject) in [
        (
            "par-pivot",
            json!({"mode": "pivot", "pivot": {"given_name": "prenoms", "family_name": "nom",
                "birthdate": "naissance", "gender": "sexe", "birthplace": "lieu",
                "birthcountry": "pays"}}),
        ),
        ("par-fournisseur", json!({"mode": "provider"})),
    ] {
        admin(app, "/api/admin/apis", json!({
            "slug": slug, "organisation": PRODUCER, "title": format!("API {slug}"),
            "description": "Le quotient familial", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "access_mode": "habilitation",
            "contact": "api@caf.example.fr", "subject": subject,
            "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"]}]
        }))
        .await;
    }
    // An API whose data are about people, naming its person by the person's token
    // only (the default): machine calls are refused, nothing sent.
    let (st, e) = crate::catalogue::post(
        app,
        "/api/admin/data-items",
        json!({"id": "quotient", "name": "Quotient familial", "meaning": "Ressources du foyer",
               "type": "integer", "producer": PRODUCER, "legal_source": "CSS L. 512-3"}),
    )
    .await;
    assert_eq!(st, 201, "{e}");
    admin(app, "/api/admin/apis", json!({
        "slug": "par-jeton", "organisation": PRODUCER, "title": "API par jeton",
        "description": "Le quotient familial", "openapi": openapi, "upstream_url": env.up.url,
        "allow_private_upstream": true, "access_mode": "habilitation",
        "contact": "api@caf.example.fr",
        "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"],
                    "data_items": ["quotient"]}]
    }))
    .await;
    let (_, client_id, secret) = env.habilitation("par-jeton", complete_form()).await;
    let (_, t) = env.token(&client_id, &secret, None).await;
    let sent = env.up.count();
    let r = env
        .call(
            &format!("/gateway/{PRODUCER}/par-jeton/v1/sujet?{PURPOSE}"),
            t["access_token"].as_str(),
        )
        .await;
    refused(r, 403, "person_token_required").await;
    assert_eq!(env.up.count(), sent);

    // The catalogue says how each names its person.
    let listed: Value = app
        .get("/api/v1/apis/par-pivot")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed.to_string().contains(r#""subject":{"mode":"pivot""#),
        "{listed}"
    );
    let mut tokens = Vec::new();
    for api in ["par-pivot", "par-fournisseur"] {
        let (_, client_id, secret) = env.habilitation(api, complete_form()).await;
        let (s, t) = env.token(&client_id, &secret, None).await;
        assert_eq!(s, 200, "{t}");
        tokens.push(t["access_token"].as_str().unwrap().to_string());
    }
    let (by_pivot, by_provider) = (&tokens[0], &tokens[1]);
    let pivot_url = |q: &str| format!("/gateway/{PRODUCER}/par-pivot/v1/sujet?{PURPOSE}&{q}");
    let provider_url =
        |q: &str| format!("/gateway/{PRODUCER}/par-fournisseur/v1/sujet?{PURPOSE}&{q}");

    // By the pivot: Marie, twice.
    for _ in 0..2 {
        let r = env
            .call(&pivot_url(&pivot_query("marie")), Some(by_pivot))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // A pivot that is missing or invalid: the caller's mistake, nothing sent.
    let sent = env.up.count();
    let incomplete = pivot_query("marie").replace("naissance=", "autre=");
    let r = env.call(&pivot_url(&incomplete), Some(by_pivot)).await;
    refused(r, 400, "subject_unknown").await;
    let invalid = pivot_query("marie").replace("1980-06-14", "1980-13-45");
    let r = env.call(&pivot_url(&invalid), Some(by_pivot)).await;
    refused(r, 400, "subject_unknown").await;
    let twice = format!("{}&nom=Martin", pivot_query("marie"));
    let r = env.call(&pivot_url(&twice), Some(by_pivot)).await;
    refused(r, 400, "subject_unknown").await;
    assert_eq!(env.up.count(), sent, "nothing reached the provider");

    // By the provider: it names Jean; a caller's own Socle-Subject (naming Marie) is
    // never forwarded, and the provider's header never passed back.
    let jean = identity_hash_by_python("jean");
    let marie = identity_hash_by_python("marie");
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sujet", &jean)
        .finish();
    let r = app
        .client
        .get(app.url(&provider_url(&q)))
        .bearer_auth(by_provider)
        .header("socle-subject", &marie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("socle-subject").is_none());
    let (_, headers) = env.up.last();
    assert!(
        !headers.iter().any(|(k, _)| k == "socle-subject"),
        "{headers:?}"
    );
    // By the pivot, but the provider says it served someone else: withheld.
    let q = url::form_urlencoded::Serializer::new(pivot_query("marie"))
        .append_pair("sujet", &jean)
        .finish();
    let r = env.call(&pivot_url(&q), Some(by_pivot)).await;
    refused(r, 502, "subject_mismatch").await;
    // The pivot in the body too (a provider merging query and body could read it):
    // refused, nothing sent.
    let sent = env.up.count();
    let r = app
        .client
        .get(app.url(&pivot_url(&pivot_query("marie"))))
        .bearer_auth(by_pivot)
        .header("content-type", "application/json")
        .body(r#"{"nom": "Martin"}"#)
        .send()
        .await
        .unwrap();
    refused(r, 400, "subject_unknown").await;
    assert_eq!(env.up.count(), sent);
    // The provider names nobody, or garbage: 502, the answer withheld.
    for q in ["", "sujet=abc", "sujet=%7B%22given_name%22%3A1%7D"] {
        let r = env.call(&provider_url(q), Some(by_provider)).await;
        let body = refused(r, 502, "subject_unknown").await;
        assert!(body.get("quotientFamilial").is_none(), "{body}");
    }
    // Anonymous calls on an open API that names its person by the provider are held
    // to it too.
    admin(app, "/api/admin/apis", json!({
        "slug": "ouverte-fournisseur", "organisation": PRODUCER, "title": "API ouverte",
        "description": "Ouverte", "openapi": openapi, "upstream_url": env.up.url,
        "allow_private_upstream": true, "access_mode": "open", "rate_limit": 1000,
        "contact": "api@caf.example.fr", "subject": {"mode": "provider"},
        "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"]}]
    }))
    .await;
    let r = env
        .call(
            &format!("/gateway/{PRODUCER}/ouverte-fournisseur/v1/sujet"),
            None,
        )
        .await;
    refused(r, 502, "subject_unknown").await;
    let (s, metrics) = (
        app.get("/metrics").await.status(),
        app.get("/metrics").await.text().await.unwrap(),
    );
    assert_eq!(s, 200);
    assert!(
        metrics.contains("socle_gateway_subject_unknown_total"),
        "{metrics}"
    );

    // Each person finds exactly their exchanges; the public entries carry no stable
    // identifier (two exchanges about Marie do not share a subject).
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let public = Value::Array(journal_entries(app).await);
    let exchanges: Vec<&Value> = public
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "exchange")
        .collect();
    let (marie_keys, marie_sees) = exchanges_of(&env, "marie").await;
    let (jean_keys, jean_sees) = exchanges_of(&env, "jean").await;
    let marie_found = recognised_by_python(&marie_keys, &public, "exchange");
    let jean_found = recognised_by_python(&jean_keys, &public, "exchange");
    // Her two pivot calls, and the one whose answer was withheld (the provider
    // named someone else): it was about her.
    assert_eq!(marie_found.len(), 3, "Marie's pivot calls");
    assert_eq!(jean_found.len(), 1, "Jean's provider-named call");
    assert_eq!(marie_found, marie_sees);
    assert_eq!(jean_found, jean_sees);
    let subjects: Vec<&str> = exchanges
        .iter()
        .filter(|e| marie_found.contains(&e["index"].as_u64().unwrap()))
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_ne!(subjects[0], subjects[1]);
    // The withheld answers are journaled, without a person.
    let withheld = exchanges
        .iter()
        .filter(|e| e["details"]["status"] == "502" && e["details"]["api"] == "par-fournisseur")
        .count();
    assert_eq!(withheld, 3);
    assert!(
        exchanges
            .iter()
            .filter(|e| e["details"]["status"] == "502" && e["details"]["api"] != "par-pivot")
            .all(|e| e.get("subject").is_none_or(Value::is_null))
    );
}

/// The publication's own rules: the pivot mode names its parameters, and an API
/// whose data are about people cannot say its calls name nobody.
async fn publications_say_how_calls_name_their_person(backend: Backend) {
    let env = Env::new(backend, false).await;
    let app = &env.app;
    let post = |subject: Value| {
        let openapi = json!({"openapi": "3.0.3", "info": {"title": "R", "version": "1.0.0"},
            "paths": {"/r": {"get": {"responses": {"200": {"description": "ok"}}}}}})
        .to_string();
        crate::catalogue::post(
            app,
            "/api/admin/apis",
            json!({"slug": "reference", "organisation": PRODUCER, "title": "Référentiel",
                "description": "D", "openapi": openapi, "upstream_url": "https://r.example.fr",
                "access_mode": "open", "contact": "r@example.fr", "subject": subject,
                "scopes": [{"name": "tout", "description": "T", "fields": ["/r"], "data_items": ["commune"]}]}),
        )
    };
    for (item, personal) in [("commune", false)] {
        let (s, e) = crate::catalogue::post(
            app,
            "/api/admin/data-items",
            json!({"id": item, "name": "Commune", "meaning": "Code officiel", "type": "string",
                   "producer": PRODUCER, "legal_source": "Décret", "personal": personal}),
        )
        .await;
        assert_eq!(s, 201, "{e}");
    }
    let (s, e) = post(json!({"mode": "pivot"})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("pivot"), "{e}");
    let (s, e) = post(
        json!({"mode": "provider", "pivot": {"given_name": "a", "family_name": "b",
        "birthdate": "c", "gender": "d", "birthplace": "e", "birthcountry": "f"}}),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = post(json!({"mode": "sometimes"})).await;
    assert!(s == 400 || s == 422, "{s} {e}");
    // Non-personal data items: `none` is accepted.
    let (s, e) = post(json!({"mode": "none"})).await;
    assert_eq!(s, 201, "{e}");
    // Personal ones: refused.
    let (s, e) = crate::catalogue::post(
        app,
        "/api/admin/data-items",
        json!({"id": "commune", "name": "Commune", "meaning": "Code officiel", "type": "string",
               "producer": PRODUCER, "legal_source": "Décret"}),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let (s, e) = post(json!({"mode": "none"})).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("none"), "{e}");
}

/// "Mes données" lists every exchange, however many (the 2,000-entry cap is gone):
/// 2,050 exchanges about Marie, newest first, 20 a page; the last page holds the
/// oldest; the API filter narrows them; another person sees none of them.
async fn mes_donnees_lists_every_exchange(backend: Backend) {
    use socle_journal::{Entry, EntryKind};
    let env = Env::new(backend, true).await;
    let journal = env.app.journal.clone().unwrap();
    let marie = identity_hash_by_python("marie");
    let mut batch = Vec::new();
    for n in 0..2050 {
        let api = if n < 5 {
            "limitee"
        } else {
            "quotient-familial"
        };
        batch.push(
            Entry::new(EntryKind::Exchange, "client:test", "ok")
                .subject(journal.subject(&marie))
                .organisation(crate::support::back_office::REQUESTER)
                .organisation(PRODUCER)
                .detail("service", crate::support::back_office::REQUESTER)
                .detail("provider", PRODUCER)
                .detail("api", api)
                .detail("habilitation", "h-test")
                .detail("object", format!("dossier-{n:04}"))
                .detail("status", "200"),
        );
        if batch.len() == 500 {
            journal.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    journal.append(batch).await.unwrap();
    // Covered by a checkpoint (the space lists what it can prove).
    let mut covered = false;
    for _ in 0..50 {
        if journal
            .latest_checkpoint()
            .await
            .is_ok_and(|c| c.size >= 2050)
        {
            covered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(covered);
    let mut b = space_login(&env, "marie").await;
    let first = b.get("/mon-espace/donnees").await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.contains("2050 échanges") && first.body.contains("page 1 sur 103"),
        "{}",
        first.body
    );
    let last = b.get("/mon-espace/donnees?page=103").await;
    assert!(last.body.contains("page 103 sur 103"), "{}", last.body);
    // The oldest ten (indices ascending from the first appended) on the last page:
    // their proofs are linked by index.
    let indices = |body: &str| -> Vec<u64> {
        body.split("data-index=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    };
    let on_last = indices(&last.body);
    let on_first = indices(&first.body);
    assert!(!on_last.is_empty() && !on_first.is_empty());
    assert!(
        on_last.iter().max() < on_first.iter().min(),
        "newest first: {on_first:?} then {on_last:?}"
    );
    let filtered = b.get("/mon-espace/donnees?api=limitee").await;
    assert!(filtered.body.contains("5 échanges"), "{}", filtered.body);
    // Another person: none of them.
    let mut other = space_login(&env, "jean").await;
    let theirs = other.get("/mon-espace/donnees").await;
    assert!(theirs.body.contains("0 échange"), "{}", theirs.body);
}

/// An API whose calls name their person by the pivot, and a service's token for it.
async fn pivot_api(env: &Env) -> String {
    let openapi = json!({"openapi": "3.0.3", "info": {"title": "QF", "version": "1.0.0"},
        "paths": {"/sujet": {"get": {"responses": {"200": {"description": "ok"}}}}}})
    .to_string();
    admin(&env.app, "/api/admin/apis", json!({
        "slug": "par-pivot", "organisation": PRODUCER, "title": "API par pivot",
        "description": "Le quotient familial", "openapi": openapi, "upstream_url": env.up.url,
        "allow_private_upstream": true, "access_mode": "habilitation",
        "contact": "api@caf.example.fr",
        "subject": {"mode": "pivot", "pivot": {"given_name": "prenoms", "family_name": "nom",
            "birthdate": "naissance", "gender": "sexe", "birthplace": "lieu", "birthcountry": "pays"}},
        "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"]}]
    }))
    .await;
    let (_, client_id, secret) = env.habilitation("par-pivot", complete_form()).await;
    let (_, t) = env.token(&client_id, &secret, None).await;
    t["access_token"].as_str().unwrap().to_string()
}

/// A machine call about `person` (by their pivot).
async fn call_about(env: &Env, token: &str, person: &str) {
    let r = env
        .call(
            &format!(
                "/gateway/{PRODUCER}/par-pivot/v1/sujet?{PURPOSE}&{}",
                pivot_query(person)
            ),
            Some(token),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// Issue 32, item 6: the opt-in digest. Marie asks for it (to the address her
/// identity provider gave); an exchange about her brings one e-mail — the count and
/// the organisation, no data — and a second exchange the same day none; withdrawn,
/// the page offers it again. Jean, who did not ask, gets nothing.
async fn the_opt_in_digest_of_new_exchanges(backend: Backend) {
    use crate::support::back_office::loop_until;
    use socle_store::NotificationStore;
    let env = Env::new_with(backend, true, |c| {
        c.citizen.digest_interval = std::time::Duration::from_secs(1)
    })
    .await;
    let token = pivot_api(&env).await;
    let mut b = space_login(&env, "marie").await;
    let page = b.get("/mon-espace/donnees").await;
    assert!(
        page.body.contains("Recevoir le résumé quotidien"),
        "{}",
        page.body
    );
    let csrf = crate::support::identity::csrf(&page.body);
    let r = b
        .post(
            "/mon-espace/resume",
            &[("csrf", &csrf), ("choix", "peut-etre")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = b
        .post("/mon-espace/resume", &[("csrf", &csrf), ("choix", "oui")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get("/mon-espace/donnees").await;
    assert!(
        page.body.contains("marie.dupont@example.fr") && page.body.contains("Ne plus recevoir"),
        "{}",
        page.body
    );
    call_about(&env, &token, "marie").await;
    call_about(&env, &token, "jean").await;
    let mail = loop_until(|| {
        let store = env.app.store.clone();
        async move {
            store
                .outbox(100)
                .await
                .unwrap()
                .into_iter()
                .find(|(to, _, _)| to == "marie.dupont@example.fr")
        }
    })
    .await;
    assert!(mail.1.contains("1 nouvel échange"), "{mail:?}");
    assert!(
        mail.2.contains("Mairie de Démoville")
            && mail.2.contains("/mon-espace/donnees")
            && !mail.2.contains("640"),
        "{mail:?}"
    );
    // At most one a day: another exchange, no second e-mail.
    call_about(&env, &token, "marie").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mails = env.app.store.outbox(100).await.unwrap();
    assert_eq!(
        mails
            .iter()
            .filter(|(to, _, _)| to == "marie.dupont@example.fr")
            .count(),
        1
    );
    assert!(
        !mails.iter().any(|(to, _, _)| to.contains("martin")),
        "Jean did not ask: {mails:?}"
    );
    let r = b
        .post("/mon-espace/resume", &[("csrf", &csrf), ("choix", "non")])
        .await;
    assert_eq!(r.status, 303);
    let page = b.get("/mon-espace/donnees").await;
    assert!(page.body.contains("Recevoir le résumé quotidien"));
}

/// Issue 32, item 5: "Je conteste cet accès". Marie contests an exchange about her;
/// it is journaled under her keyed subject (her key finds it, the entry holds neither
/// her name nor her words), delivered to the calling service's webhook, taken in hand
/// and answered by the provider's instructor from the Espace agent (journaled), and
/// she follows it in her space. Jean cannot contest her exchange; bad input changes
/// nothing.
async fn a_person_contests_an_exchange(backend: Backend) {
    use crate::support::back_office::{REQUESTER, Receiver, loop_until};
    let env = Env::new(backend, true).await;
    let app = &env.app;
    let receiver = Receiver::start().await;
    let (s, e) = crate::catalogue::post(
        app,
        &format!("/api/admin/organisations/{REQUESTER}/webhooks"),
        json!({"url": receiver.url, "allow_private": true}),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let token = pivot_api(&env).await;
    call_about(&env, &token, "marie").await;
    let mut b = space_login(&env, "marie").await;
    let index = loop_until(|| {
        let mut b = b.clone();
        async move {
            let page = b.get("/mon-espace/donnees").await;
            page.body
                .split("/contester\"")
                .next()
                .filter(|_| page.body.contains("/contester\""))
                .and_then(|s| s.rsplit("/mon-espace/donnees/").next())
                .and_then(|i| i.parse::<u64>().ok())
        }
    })
    .await;
    let form_url = format!("/mon-espace/donnees/{index}/contester");
    let form = b.get(&form_url).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = crate::support::identity::csrf(&form.body);
    // No reason, or a reason that is not offered: refused, nothing recorded.
    for reason in ["", "parce-que"] {
        let r = b
            .post(
                &form_url,
                &[("csrf", &csrf), ("raison", reason), ("message", "x")],
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
    }
    // Another person cannot contest it (it is not theirs: not even shown).
    let mut jean = space_login(&env, "jean").await;
    assert_eq!(jean.get(&form_url).await.status, 404);
    let r = b
        .post(
            &form_url,
            &[
                ("csrf", &csrf),
                ("raison", "no_procedure"),
                ("message", "Je n’ai jamais demandé de tarif de cantine."),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/mon-espace/contestations?fait=recue")
    );
    let mine = b.get("/mon-espace/contestations?fait=recue").await;
    assert!(
        mine.body.contains("Reçue") && mine.body.contains("jamais demandé"),
        "{}",
        mine.body
    );
    // Once per exchange.
    let again = b
        .post(&form_url, &[("csrf", &csrf), ("raison", "other")])
        .await;
    assert_eq!(again.status, 422, "{}", again.body);
    let data = b.get("/mon-espace/donnees").await;
    assert!(data.body.contains("Contestation : Reçue"), "{}", data.body);

    // The calling service's webhook is told (without the person's words).
    let delivered = loop_until(|| {
        let got = receiver.received.lock().unwrap().clone();
        async move {
            got.into_iter()
                .find(|(_, event, _)| event == "contest.received")
        }
    })
    .await;
    assert!(!delivered.2.contains("jamais demandé"), "{}", delivered.2);

    // The provider's instructor sees it, takes it in hand, answers.
    let mut inst = crate::partners::sign(app, "instructeur@caf.fr").await;
    let list = inst.get("/espace-agent/contestations").await;
    assert_eq!(list.status, 200);
    let id = list
        .body
        .split("/espace-agent/contestations/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let page = inst.get(&format!("/espace-agent/contestations/{id}")).await;
    assert!(page.body.contains("jamais demandé"), "{}", page.body);
    let csrf = crate::support::identity::csrf(&page.body);
    let url = format!("/espace-agent/contestations/{id}");
    let r = inst
        .post(&url, &[("csrf", &csrf), ("action", "examiner")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // An answer is required to close.
    let r = inst
        .post(
            &url,
            &[("csrf", &csrf), ("action", "repondre"), ("reponse", " ")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = inst
        .post(
            &url,
            &[
                ("csrf", &csrf),
                ("action", "repondre"),
                (
                    "reponse",
                    "Une erreur de dossier : l’échange a été signalé à la mairie.",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mine = b.get("/mon-espace/contestations").await;
    assert!(
        mine.body.contains("Close") && mine.body.contains("erreur de dossier"),
        "{}",
        mine.body
    );

    // The journal: three contest entries under Marie's keyed subject, found by her
    // key (Python's HMAC), naming neither her nor her words.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let public = Value::Array(journal_entries(app).await);
    let (keys, _) = exchanges_of(&env, "marie").await;
    let found = recognised_by_python(&keys, &public, "contest");
    assert_eq!(found.len(), 3, "received, in review, answered");
    let text = public.to_string();
    assert!(!text.contains("jamais demandé") && !text.contains("erreur de dossier"));
    let actions: Vec<String> = public
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "contest")
        .map(|e| e["details"]["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["contest.received", "contest.in_review", "contest.answered"]
    );
}

on_both_stores!(
    a_person_contests_an_exchange,
    the_opt_in_digest_of_new_exchanges,
    machine_calls_reach_their_person,
    publications_say_how_calls_name_their_person,
    mes_donnees_lists_every_exchange
);
