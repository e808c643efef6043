//! The citizen space over real HTTP, on both stores: a person logs in through identity
//! federation, sees the exchange a service just made about them (and that another
//! one is withheld until a date), downloads its proof, which verifies here and with
//! `socle journal verify --proof`; sees their logins; grants a consent from a
//! service's request, downloads its signed receipt, withdraws it — and the service's
//! next call is refused; exports everything as JSON. Another person sees none of it.

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::back_office::{PRODUCER, REQUESTER, complete_form};
use crate::support::gateway::journal_entries;
use crate::support::gateway::{Env, PURPOSE, qf, refused};
use crate::support::identity::{Browser, Resp, between, csrf, jwks, login_via, query, verify};
use crate::support::{Backend, run_binary};

/// Logs `person` in to "Mon espace" in a fresh browser.
pub(crate) async fn space_login(env: &Env, person: &str) -> Browser {
    let mut b = Browser::new(&env.app);
    let r = b.get("/mon-espace/donnees").await;
    assert_eq!(r.status, 303, "not logged in: to the login");
    let start = r.location.unwrap();
    assert!(
        start.starts_with("/mon-espace/connexion?retour="),
        "{start}"
    );
    let r = b.get(&start).await;
    assert_eq!(r.status, 303);
    let authorize = r.location.unwrap();
    assert!(authorize.contains("client_id=espace-usager"), "{authorize}");
    let back = login_via(&mut b, &authorize, "demo", person).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let r = b.get(back.location.as_deref().unwrap()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/mon-espace/donnees"));
    b
}

/// The indices of the entries of `kind` whose `subject` one of `keys` recognises
/// (docs/JOURNAL.md: `nonce "." HMAC-SHA256(key, nonce)`, base64url), computed by
/// python3's standard library.
pub(crate) fn recognised_by_python(keys: &Value, entries: &Value, kind: &str) -> Vec<u64> {
    const SCRIPT: &str = r#"
import base64, hashlib, hmac, json, sys
keys, entries, kind = json.loads(sys.argv[1]), json.load(sys.stdin), sys.argv[2]
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
found = []
for e in entries:
    s = e.get("subject", "")
    if e["kind"] != kind or "." not in s:
        continue
    nonce, tag = s.split(".", 1)
    if any(hmac.compare_digest(hmac.new(d(k), d(nonce), hashlib.sha256).digest(), d(tag)) for k in keys):
        found.append(e["index"])
print(json.dumps(sorted(found)))
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &keys.to_string(), kind])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(entries.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Marie's exchanges: the town hall's service with three habilitations (a public
/// interest one, a deferred one, a consent-based one), the calls it made on her
/// behalf, and her browser logged in to "Mon espace".
struct Marie {
    env: Env,
    consent_hab: String,
    marie_token: String,
    consent_call: String,
    b: Browser,
}

async fn marie(backend: Backend) -> Marie {
    let env = Env::new(backend, true).await;
    let client = env.service("Cantine de Démoville", REQUESTER).await;
    env.habilitation("quotient-familial", complete_form()).await;
    let mut deferred = complete_form();
    deferred["title"] = json!("Contrôle en cours");
    deferred["visible_after"] = json!("2099-01-01");
    env.habilitation("differee", deferred).await;
    let mut consent_form = complete_form();
    consent_form["title"] = json!("Centre de loisirs");
    consent_form["legal_basis"] = json!({"nature": "consentement de la personne",
        "text": "RGPD, article 6, paragraphe 1, point a)"});
    let (consent_hab, _, _) = env.habilitation("limitee", consent_form).await;

    // The service obtains data about Marie on her behalf, twice (one deferred).
    let marie_token = env.person_token(&client, "marie", &[]).await;
    assert_eq!(
        env.call(&qf("/quotient-familial"), Some(&marie_token))
            .await
            .status(),
        200
    );
    let deferred_call = format!("/gateway/{PRODUCER}/differee/v1/quotient-familial?{PURPOSE}");
    assert_eq!(
        env.call(&deferred_call, Some(&marie_token)).await.status(),
        200
    );
    let consent_call = format!("/gateway/{PRODUCER}/limitee/v1/quotient-familial?{PURPOSE}");
    refused(
        env.call(&consent_call, Some(&marie_token)).await,
        403,
        "consent_required",
    )
    .await;
    let b = space_login(&env, "marie").await;
    Marie {
        env,
        consent_hab,
        marie_token,
        consent_call,
        b,
    }
}

/// "Mes données" once both exchanges are covered by a checkpoint (one is signed at
/// most every 500 ms: the first may be covered before the second).
async fn covered(b: &mut Browser) -> Resp {
    let mut page = b.get("/mon-espace/donnees").await;
    for _ in 0..30 {
        if page.body.contains("data-proof=") && page.body.contains("visibilité différée") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = b.get("/mon-espace/donnees").await;
    }
    page
}

/// "Mes données": each exchange with its proof (checked in process and by the command
/// line), the withheld one announced under another pseudonym; another person sees none.
async fn mes_donnees_shows_each_exchange_with_its_proof(backend: Backend) {
    let Marie { env, mut b, .. } = marie(backend).await;
    let app = &env.app;
    // "Mes données": the exchange, the withheld one announced, the proof.
    let page = covered(&mut b).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Mairie de Démoville a obtenu"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Cantine 2027 / dossier-42"));
    assert!(page.body.contains("mission d’intérêt public"));
    assert!(
        page.body.contains("1 échange à visibilité différée") && page.body.contains("01/01/2099"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Contrôle en cours"));
    let proof_url = between(&page.body, "data-proof=\"", "\"")
        .unwrap()
        .to_string();
    let r = b.get(&proof_url).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let bundle: socle_journal::ProofBundle = serde_json::from_str(&r.body).unwrap();
    let key = app.get("/journal/key").await.text().await.unwrap();
    let (checkpoint, entry) = bundle.verify(Some(key.trim())).unwrap();
    assert_eq!(entry.kind, socle_journal::EntryKind::Exchange);
    assert!(checkpoint.size > bundle.index);
    // The same bundle, checked by the command line; a tampered one is caught.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("preuve.json");
    std::fs::write(&file, &r.body).unwrap();
    let f = file.display().to_string();
    let (code, out, err) = run_binary(
        &["journal", "verify", "--proof", &f, "--key", key.trim()],
        &[],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: entry"), "{out}");
    let mut forged: Value = serde_json::from_str(&r.body).unwrap();
    forged["index"] = json!(bundle.index + 1);
    std::fs::write(&file, forged.to_string()).unwrap();
    let (code, out, _) = run_binary(&["journal", "verify", "--proof", &f], &[], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("TAMPERED"), "{out}");

    // The withheld exchange is under another pseudonym in the public journal, and its
    // proof is refused until the date.
    let hidden = journal_entries(app)
        .await
        .into_iter()
        .find(|e| e["kind"] == "exchange" && e["details"]["api"] == "differee")
        .expect("the deferred exchange is journaled");
    let journal = app.journal.as_ref().unwrap();
    let usual = journal.pseudonym(&crate::support::demo_identity("marie").identity_hash());
    assert!(journal.is_subject(&usual, entry.subject.as_deref().unwrap()));
    assert!(
        !journal.is_subject(&usual, hidden["subject"].as_str().unwrap()),
        "the usual key does not find the withheld exchange"
    );
    let r = b
        .get(&format!("/mon-espace/donnees/{}/preuve", hidden["index"]))
        .await;
    assert_eq!(r.status, 404, "no proof of a withheld exchange");
    assert_eq!(b.get("/mon-espace/donnees/999999/preuve").await.status, 404);
    for bad in ["abc", "99999999999999999999999", "-1"] {
        let r = b.get(&format!("/mon-espace/donnees/{bad}/preuve")).await;
        assert_eq!(r.status, 404, "{bad}");
        assert!(r.body.contains("Page non trouvée"), "a page: {}", r.body);
    }

    // Another person sees none of it, not even the proof.
    let mut jean = space_login(&env, "jean").await;
    let theirs = jean.get("/mon-espace/donnees").await;
    assert!(
        theirs.body.contains("Aucun échange ne correspond"),
        "{}",
        theirs.body
    );
    assert_eq!(jean.get(&proof_url).await.status, 404);
}

/// The space's session: a new one at each login, single sign-on, a repeated field
/// refused, the filters, "Mes connexions", a return address that cannot be a header,
/// and the logout.
async fn the_space_session_filters_and_connections(backend: Backend) {
    let Marie { env, mut b, .. } = marie(backend).await;
    let app = &env.app;
    covered(&mut b).await;
    // Logging in again starts a fresh session (one planted in the browser never
    // survives a login): the old one ends at once, the new one after the login.
    let before = b.cookies["socle_espace"].clone();
    let r = b
        .get("/mon-espace/connexion?retour=/mon-espace/connexions")
        .await;
    assert_eq!(r.status, 303);
    let authorize = r.location.unwrap();
    assert!(authorize.contains("client_id=espace-usager"), "{authorize}");
    assert_ne!(b.cookies["socle_espace"], before);
    let mut old = Browser::new(&env.app);
    old.cookies.insert("socle_espace".into(), before);
    assert_eq!(old.get("/mon-espace/donnees").await.status, 303);
    // Single sign-on: Marie logged in through the platform in this browser, so no
    // identity provider is asked again; straight back with a code.
    let back = b.get(&authorize).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let r = b.get(back.location.as_deref().unwrap()).await;
    assert_eq!(r.location.as_deref(), Some("/mon-espace/connexions"));
    assert_eq!(b.get("/mon-espace/donnees").await.status, 200);
    // A repeated query field is refused, not guessed.
    let r = b
        .get("/mon-espace/donnees?du=2020-01-01&du=2099-01-01")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("est répété"), "{}", r.body);

    // Filters: by organisation and period.
    let none = b.get("/mon-espace/donnees?du=2099-01-01").await;
    assert!(none.body.contains("Aucun échange ne correspond"));
    let by_org = b
        .get(&format!("/mon-espace/donnees?organisation={PRODUCER}"))
        .await;
    assert!(by_org.body.contains("data-proof="));

    // "Mes connexions".
    let c = b.get("/mon-espace/connexions").await;
    assert_eq!(c.status, 200);
    assert!(
        c.body.contains("Cantine de Démoville") && c.body.contains("eidas1"),
        "{}",
        c.body
    );

    // A return address that cannot be a Location header (a line break) is replaced by
    // the space's home, after a login that works.
    let mut other = Browser::new(app);
    let r = other
        .get("/mon-espace/connexion?retour=/mon-espace/%0Aevil")
        .await;
    assert_eq!(r.status, 303);
    let back = login_via(&mut other, r.location.as_deref().unwrap(), "demo", "jean").await;
    let r = other.get(back.location.as_deref().unwrap()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/mon-espace/"));

    // Logging out ends the space's session and the platform's.
    let home = b.get("/mon-espace/").await;
    let r = b
        .post("/mon-espace/deconnexion", &[("csrf", &csrf(&home.body))])
        .await;
    assert_eq!(r.status, 303);
    assert!(r.location.unwrap().contains("/api/v2/session/end"));
    assert_eq!(b.get("/mon-espace/donnees").await.status, 303);
}

/// Authorisations: a service's request, Marie's grant, refusal, withdrawal (each
/// journaled or not made), the receipts; then the GDPR export and its subject keys.
async fn authorisations_and_the_export(backend: Backend) {
    let Marie {
        env,
        mut b,
        consent_hab,
        marie_token,
        consent_call,
    } = marie(backend).await;
    let app = &env.app;
    covered(&mut b).await;
    let hidden = journal_entries(app)
        .await
        .into_iter()
        .find(|e| e["kind"] == "exchange" && e["details"]["api"] == "differee")
        .expect("the deferred exchange is journaled");
    // A service asks for a long-lived authorisation; Marie sees what and grants it.
    let req = b
        .get(&format!(
            "/mon-espace/autorisations/demande?habilitation={consent_hab}&jusqu_au=2028-12-31"
        ))
        .await;
    assert_eq!(req.status, 200, "{}", req.body);
    assert!(req.body.contains("Centre de loisirs") && req.body.contains("Mairie de Démoville"));
    let token = csrf(&req.body);
    // The answers refused: a forged CSRF token, a date beyond the habilitation, a date
    // already past (in French).
    for (csrf_value, until, status, says) in [
        ("forged", "2028-12-31", 403, ""),
        (token.as_str(), "2031-01-01", 422, "ne peut dépasser"),
        (token.as_str(), "2020-01-01", 422, "ne peut être passée"),
    ] {
        let form = [
            ("csrf", csrf_value),
            ("habilitation", consent_hab.as_str()),
            ("jusqu_au", until),
            ("decision", "accorder"),
        ];
        let r = b.post("/mon-espace/autorisations/demande", &form).await;
        assert_eq!(r.status, status, "{until}: {}", r.body);
        assert!(r.body.contains(says), "{until}: {}", r.body);
    }
    assert!(
        req.body.contains("min=\""),
        "the form says the first date it accepts"
    );
    // Two decisions in one form: refused, and nothing granted.
    let r = b
        .post(
            "/mon-espace/autorisations/demande",
            &[
                ("csrf", &token),
                ("habilitation", &consent_hab),
                ("jusqu_au", "2028-12-31"),
                ("decision", "refuser"),
                ("decision", "accorder"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    refused(
        env.call(&consent_call, Some(&marie_token)).await,
        403,
        "consent_required",
    )
    .await;
    // « Je refuse »: back to the list, which says so; nothing granted.
    let r = b
        .post(
            "/mon-espace/autorisations/demande",
            &[
                ("csrf", &token),
                ("habilitation", &consent_hab),
                ("decision", "refuser"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let done = r.location.unwrap();
    assert!(
        done.starts_with("/mon-espace/autorisations?fait=refus&jeton="),
        "{done}"
    );
    let r = b.get(&done).await;
    assert!(r.body.contains("Vous avez refusé"), "{}", r.body);
    // The same address without its token (a link from elsewhere) claims nothing.
    let r = b.get("/mon-espace/autorisations?fait=refus").await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("Vous avez refusé"), "{}", r.body);
    refused(
        env.call(&consent_call, Some(&marie_token)).await,
        403,
        "consent_required",
    )
    .await;
    let grant_form = [
        ("csrf", token.as_str()),
        ("habilitation", consent_hab.as_str()),
        ("jusqu_au", "2028-12-31"),
        ("decision", "accorder"),
    ];
    // A grant whose journal entry cannot be written is not made.
    app.store.__test_refuse_queued_entries(true).await.unwrap();
    let r = b
        .post("/mon-espace/autorisations/demande", &grant_form)
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.body);
    app.store.__test_refuse_queued_entries(false).await.unwrap();
    refused(
        env.call(&consent_call, Some(&marie_token)).await,
        403,
        "consent_required",
    )
    .await;
    // The form's answer is a redirect to the list (reloading it sends nothing again),
    // which says what was done and names the receipt.
    let r = b
        .post("/mon-espace/autorisations/demande", &grant_form)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let done = r.location.unwrap();
    assert!(
        done.starts_with("/mon-espace/autorisations?fait=accord&recu=cons-"),
        "{done}"
    );
    let r = b.get(&done).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Autorisation accordée"));
    assert!(r.body.contains("31/12/2028"), "until the chosen date");
    let receipt_id = query(&format!("http://x{done}"))["recu"].clone();
    assert!(r.body.contains(&format!("({receipt_id})")), "{}", r.body);
    // An address written elsewhere, or altered, makes the page claim nothing.
    for forged in [
        "/mon-espace/autorisations?fait=accord&recu=Appelez-le-0800000000".to_string(),
        done.replace(&receipt_id, "cons-autre"),
        done.replace("fait=accord", "fait=retrait"),
    ] {
        let r = b.get(&forged).await;
        assert_eq!(r.status, 200, "{forged}");
        assert!(
            !r.body.contains("Autorisation accordée")
                && !r.body.contains("Autorisation retirée")
                && !r.body.contains("0800000000"),
            "{forged}: {}",
            r.body
        );
    }
    assert_eq!(
        env.call(&consent_call, Some(&marie_token)).await.status(),
        200
    );
    // Granting again replaces the first consent (one withdrawal must be enough).
    let again = b
        .post("/mon-espace/autorisations/demande", &grant_form)
        .await;
    assert_eq!(again.status, 303);
    let again = b.get(&again.location.unwrap()).await;
    assert_eq!(
        again.body.matches("/retrait\"").count(),
        1,
        "one active consent"
    );
    // A double click: two grants at once leave one active consent, and the journal
    // says which one each replaced.
    let mut twin = b.clone();
    let (one, two) = tokio::join!(
        b.post("/mon-espace/autorisations/demande", &grant_form),
        twin.post("/mon-espace/autorisations/demande", &grant_form)
    );
    assert_eq!(
        (one.status, two.status),
        (303, 303),
        "{}{}",
        one.body,
        two.body
    );
    let r = b.get("/mon-espace/autorisations").await;
    assert_eq!(
        r.body.matches("/retrait\"").count(),
        1,
        "one active consent"
    );
    let mut replaced = 0;
    for _ in 0..30 {
        replaced = journal_entries(app)
            .await
            .iter()
            .filter(|e| e["kind"] == "consent" && e["details"]["replaces_ref"].is_string())
            .count();
        if replaced >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        replaced >= 2,
        "grants name the consent they replace: {replaced}"
    );
    let _ = again;
    // The receipt is signed by the platform.
    let end = r.body.find("/retrait\"").unwrap();
    let consent_id = r.body[..end].rsplit('/').next().unwrap().to_string();
    assert!(consent_id.starts_with("cons-"), "{consent_id}");
    let receipt = b
        .get(&format!("/mon-espace/autorisations/{consent_id}/recu"))
        .await;
    assert_eq!(receipt.status, 200);
    let claims = verify(receipt.body.trim(), &jwks(app).await);
    assert_eq!(claims["event"], "granted");
    assert_eq!(claims["legal_basis"], "consent");
    assert_eq!(claims["controller"], REQUESTER);
    // Neither the receipt nor the public log link the person's consents and exchanges:
    // no pseudonym in the receipt, no consent id in clear in the log.
    let journal = app.journal.as_ref().unwrap();
    let usual = journal.pseudonym(&crate::support::demo_identity("marie").identity_hash());
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|s| s.len() == 43 && s != usual)
    );
    let public = serde_json::to_string(&journal_entries(app).await).unwrap();
    assert!(!public.contains(&consent_id) && !public.contains(&usual));
    assert!(public.contains("consent_ref"));
    // The public-interest habilitation is listed, with its text, and not revocable.
    let list = b.get("/mon-espace/autorisations").await;
    assert!(
        list.body.contains("Échanges prévus par la loi")
            && list.body.contains("Code de l’éducation"),
        "{}",
        list.body
    );
    assert_eq!(
        list.body.matches("/retrait\"").count(),
        1,
        "only the consent can be withdrawn"
    );
    assert!(
        !list.body.contains("Contrôle en cours"),
        "a withheld habilitation is not revealed"
    );

    // A withdrawal whose journal entry cannot be written is not made either.
    app.store.__test_refuse_queued_entries(true).await.unwrap();
    let r = b
        .post(
            &format!("/mon-espace/autorisations/{consent_id}/retrait"),
            &[("csrf", &token)],
        )
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.body);
    app.store.__test_refuse_queued_entries(false).await.unwrap();
    assert_eq!(
        env.call(&consent_call, Some(&marie_token)).await.status(),
        200,
        "still in force"
    );
    // Withdrawn: the service's very next call is refused.
    let r = b
        .post(
            &format!("/mon-espace/autorisations/{consent_id}/retrait"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b.get(&r.location.unwrap()).await;
    assert!(r.body.contains("Autorisation retirée"));
    assert!(r.body.contains(&consent_id), "names the receipt");
    refused(
        env.call(&consent_call, Some(&marie_token)).await,
        403,
        "consent_required",
    )
    .await;
    let receipt = b
        .get(&format!("/mon-espace/autorisations/{consent_id}/recu"))
        .await;
    assert_eq!(
        verify(receipt.body.trim(), &jwks(app).await)["event"],
        "revoked"
    );

    // Export (GDPR articles 15 and 20).
    let r = b.get("/mon-espace/export").await;
    assert_eq!(r.status, 200);
    let export: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(export["format"], "socle-citizen-export/1");
    assert!(!export["exchanges"].as_array().unwrap().is_empty());
    assert_eq!(export["withheld_exchanges"]["count"], 1);
    assert!(!export["connections"].as_array().unwrap().is_empty());
    assert_eq!(export["consents"][0]["status"], "revoked");
    // With the export's subject keys, the person finds their exchanges in the public
    // log and nothing else: checked by Python's own HMAC, not this code base's.
    let mut exported: Vec<u64> = export["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    exported.sort();
    let public = Value::Array(journal_entries(app).await);
    let found = recognised_by_python(&export["subject_keys"], &public, "exchange");
    assert_eq!(
        found, exported,
        "the keys find exactly the exported exchanges"
    );
    assert!(!found.contains(&hidden["index"].as_u64().unwrap()));
    assert!(
        recognised_by_python(&export["subject_keys"], &public, "login").len()
            >= export["connections"].as_array().unwrap().len()
    );

    let mut jean = space_login(&env, "jean").await;
    assert_eq!(
        jean.get(&format!("/mon-espace/autorisations/{consent_id}/recu"))
            .await
            .status,
        404
    );
}

on_both_stores!(
    mes_donnees_shows_each_exchange_with_its_proof,
    the_space_session_filters_and_connections,
    authorisations_and_the_export
);
