//! The demonstration data providers of `socle demo`, under `/demo/fd/`: the family
//! benefits fund's "quotient familial" and the tax office's "revenu fiscal de
//! référence", answering for the demonstration identity provider's people. The
//! gateway reaches them over HTTP like any external API; they behave like one: they
//! require the platform's caller assertion (`X-Socle-Assertion`, verified with the
//! platform's published JWKS fetched over HTTP, audience = their SIRET) and find the
//! person from the pivot identity it carries, or from an `identifiant` parameter for
//! machine-to-machine calls. Their answers hold more than any scope grants, so that
//! the gateway's minimisation shows.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Extension;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use josekit::jwk::JwkSet;
use serde_json::{Value, json};

use socle_web::routes::oidc::query_pairs;

use crate::service::OnDemo;

use crate::catalogue::{BENEFITS_FUND, TAX_OFFICE};

/// One fictitious household: the demo FI login it belongs to and its records.
struct Household {
    login: &'static str,
    allocataire: &'static str,
    fiscal: &'static str,
    quotient: i64,
    rfr: i64,
    parts: f64,
    children: &'static [&'static str],
}

const HOUSEHOLDS: &[Household] = &[
    Household {
        login: "marie",
        allocataire: "0000001",
        fiscal: "3000000000001",
        quotient: 640,
        rfr: 24_310,
        parts: 2.5,
        children: &["Léa", "Hugo"],
    },
    Household {
        login: "jean",
        allocataire: "0000002",
        fiscal: "3000000000002",
        quotient: 1_120,
        rfr: 41_870,
        parts: 2.0,
        children: &["Manon"],
    },
    Household {
        login: "fatou",
        allocataire: "0000003",
        fiscal: "3000000000003",
        quotient: 455,
        rfr: 16_540,
        parts: 3.0,
        children: &["Aïssata", "Moussa", "Ibrahima"],
    },
    Household {
        login: "lucas",
        allocataire: "0000004",
        fiscal: "3000000000004",
        quotient: 980,
        rfr: 27_900,
        parts: 1.0,
        children: &[],
    },
];

/// Verification keys of the platform, fetched over HTTP and cached five minutes.
#[derive(Default)]
pub struct DemoFd {
    jwks: Mutex<Option<(JwkSet, Instant)>>,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({"erreur": detail}))).into_response()
}

impl DemoFd {
    async fn keys(
        &self,
        http: &reqwest::Client,
        public_url: &str,
        fresh: bool,
    ) -> Result<JwkSet, String> {
        if !fresh
            && let Ok(c) = self.jwks.lock()
            && let Some((k, at)) = c.as_ref()
            && at.elapsed() < Duration::from_secs(300)
        {
            return Ok(k.clone());
        }
        let set = crate::service::platform_jwks(http, public_url).await?;
        if let Ok(mut c) = self.jwks.lock() {
            *c = Some((set.clone(), Instant::now()));
        }
        Ok(set)
    }
}

/// Checks the caller assertion as an external provider would.
async fn assertion(
    d: &crate::Demo,
    headers: &HeaderMap,
    audience: &str,
) -> Result<serde_json::Map<String, Value>, Response> {
    let Some(jwt) = headers
        .get("x-socle-assertion")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "assertion de la plateforme absente",
        ));
    };
    let http = &d.fs.http;
    let base = &d.fs.public_url;
    let mut claims = None;
    for fresh in [false, true] {
        let keys = d.fd.keys(http, base, fresh).await.map_err(|e| {
            tracing::warn!(error = %e, "demo provider: platform keys unavailable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "clés de la plateforme indisponibles",
            )
        })?;
        if let Ok(c) = crate::service::verify(jwt, &keys) {
            claims = Some(c);
            break;
        }
    }
    let Some(claims) = claims else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "assertion non signée par la plateforme",
        ));
    };
    let now = socle_identity::now();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok
        || claims.get("iss").and_then(Value::as_str) != Some(format!("{base}/api/v2").as_str())
        || claims.get("exp").and_then(Value::as_i64).unwrap_or(0) <= now
    {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "assertion expirée ou destinée à un autre fournisseur",
        ));
    }
    Ok(claims)
}

/// The household of the person named by the assertion or the `identifiant` parameter.
fn household(
    claims: &serde_json::Map<String, Value>,
    uri: &Uri,
    key: fn(&Household) -> &str,
) -> Option<&'static Household> {
    if let Some(person) = claims.get("person") {
        let people = crate::fi::people();
        let same = |a: &Value, k: &str| a.get(k) == person.get(k);
        let login = people
            .iter()
            .find(|p| {
                same(&p.claims, "family_name")
                    && same(&p.claims, "given_name")
                    && same(&p.claims, "birthdate")
            })?
            .login;
        return HOUSEHOLDS.iter().find(|h| h.login == login);
    }
    let q = query_pairs(uri);
    let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // A call by the pivot identity (the impôt API's machine calls): the person is
    // the one whose six pivot fields are those sent, exactly — the fields the
    // gateway hashes to credit the exchange (docs/GATEWAY.md, "Whose data").
    if param("nomNaissance").is_some() || param("prenoms").is_some() {
        let login = crate::fi::people()
            .into_iter()
            .find(|p| {
                let same = |claim: &str, name: &str| {
                    p.claims
                        .get(claim)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        == param(name).unwrap_or_default()
                };
                same("family_name", "nomNaissance")
                    && same("given_name", "prenoms")
                    && same("birthdate", "dateNaissance")
                    && same("gender", "sexe")
                    && same("birthplace", "codeLieuNaissance")
                    && same("birthcountry", "codePaysNaissance")
            })?
            .login;
        return HOUSEHOLDS.iter().find(|h| h.login == login);
    }
    let id = param("identifiant")?;
    HOUSEHOLDS.iter().find(|h| key(h) == id)
}

/// `GET /demo/fd/caf/quotient-familial`
pub async fn caf(Extension(d): OnDemo, headers: HeaderMap, uri: Uri) -> Response {
    let claims = match assertion(&d, &headers, BENEFITS_FUND).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(h) = household(&claims, &uri, |h| h.allocataire) else {
        return problem(StatusCode::NOT_FOUND, "aucun allocataire ne correspond");
    };
    let person = crate::fi::people()
        .into_iter()
        .find(|p| p.login == h.login)
        .map(|p| p.claims)
        .unwrap_or(Value::Null);
    // The fund names the person its answer is about (the API's subject mode is
    // `provider`): the federation's identity hash of the allocataire.
    let subject = person
        .as_object()
        .and_then(|c| socle_identity::Identity::from_claims(c).ok())
        .map(|i| i.identity_hash());
    let mut answer = axum::Json(json!({
        "numeroAllocataire": h.allocataire,
        "quotientFamilial": h.quotient,
        "mois": 10,
        "annee": 2026,
        "allocataires": [{
            "nomNaissance": person.get("family_name"),
            "prenoms": person.get("given_name"),
            "dateDeNaissance": person.get("birthdate"),
        }],
        "enfants": h.children.iter().map(|c| json!({"prenoms": c})).collect::<Vec<_>>(),
        "adresse": {"ligne": "1 place de la Mairie", "codePostal": "99000", "ville": "Démoville"},
        "situationProfessionnelle": "donnée interne de la caisse, jamais transmise",
    }))
    .into_response();
    if let Some(v) = subject.and_then(|s| axum::http::HeaderValue::from_str(&s).ok()) {
        answer.headers_mut().insert("socle-subject", v);
    }
    answer
}

/// `GET /demo/fd/impots/foyers-fiscaux`
pub async fn impots(Extension(d): OnDemo, headers: HeaderMap, uri: Uri) -> Response {
    let claims = match assertion(&d, &headers, TAX_OFFICE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(h) = household(&claims, &uri, |h| h.fiscal) else {
        return problem(StatusCode::NOT_FOUND, "aucun foyer fiscal ne correspond");
    };
    axum::Json(json!({
        "numeroFiscal": h.fiscal,
        "revenuFiscalReference": h.rfr,
        "nombreParts": h.parts,
        "anneeImpots": 2026,
        "anneeRevenus": 2025,
        "situationFamiliale": "donnée non couverte par les habilitations de démonstration",
    }))
    .into_response()
}
