//! One call through the gateway, as named steps. [`Gateway::call`] reads top to
//! bottom: **ready** (the snapshot is fresh, the journal records) → **resolve** (the
//! API, its version, the operation the path reaches) → **authenticate** (the token's
//! caller) → **authorise** (habilitation, eIDAS level, scopes, purpose, consent, whose
//! data) → **admit** (rate limit, then quota) → **forward** (to the provider, with the
//! request's hash and the caller assertion) → **minimise** (what the scopes release,
//! and the person the answer is about) → **journal** (durably, before anything is
//! released) → **deliver** (the answer and its headers).
//!
//! Refusals up to `admit` change nothing and reach no provider; from `forward` on,
//! an exchange is journaled whatever its outcome, and nothing is released unjournaled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use socle_catalogue::SubjectMode;
use socle_store::GatewayStore;

use super::{
    Call, Caller, Delivered, Exchange, FORWARDED, Gateway, PASSED_BACK, bearer, deliverable, now,
    pivot_subject, provider_subject, rate_headers, seconds_to_midnight, sha256_hex, split_query,
    today,
};
use crate::error::{GatewayError, Result};
use crate::limits::RateState;
use crate::policy::{self, Grant, Operation, Purpose, Route, Snapshot};

/// Where a call goes, as `resolve` found it in the snapshot.
pub(super) struct Resolved<'r> {
    pub(super) route: &'r Route,
    pub(super) operation: &'r Operation,
    /// The normalised path that is authorised and forwarded.
    pub(super) path: String,
    /// The purpose parameters taken out of the query.
    pub(super) params: HashMap<String, String>,
    /// The query forwarded to the provider (without the purpose parameters).
    pub(super) query: String,
    /// The providing organisation's name, given with every refusal (`meta.provider`).
    pub(super) provider: String,
}

impl Resolved<'_> {
    /// The error, naming the provider.
    fn named(&self, e: GatewayError) -> GatewayError {
        e.provider(&self.provider)
    }

    fn open(&self) -> bool {
        self.route.api.access_mode == "open"
    }
}

/// What a call may do, as `authorise` decided.
pub(super) struct Permit {
    pub(super) grant: Option<Arc<Grant>>,
    pub(super) caller: Option<Caller>,
    /// The scopes granted for this call.
    pub(super) granted: Vec<String>,
    pub(super) purpose: Option<Purpose>,
    /// The person's consent the exchange rests on.
    pub(super) consent: Option<String>,
    /// The identity hash of the person a machine call names by its pivot.
    pub(super) subject: Option<String>,
}

impl Permit {
    /// A call without the person's token: a machine's, or an anonymous one.
    fn machine(&self) -> bool {
        !matches!(self.caller, Some(Caller::Person { .. }))
    }
}

/// What `forward` sent and the provider answered.
pub(super) struct Sent {
    pub(super) request_hash: String,
    /// Hex of the exchange's 32 random bytes that key the journal's hashes.
    pub(super) journal_key: String,
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// What `minimise` lets out.
pub(super) struct Released {
    pub(super) status: u16,
    pub(super) content_type: Option<HeaderValue>,
    pub(super) body: Bytes,
    pub(super) response_hash: String,
    /// The person the provider says its answer is about, when the call did not know.
    pub(super) named: Option<String>,
}

impl Gateway {
    /// Handles one call end to end.
    pub async fn call(&self, call: Call) -> Result<Delivered> {
        let started = Instant::now();
        self.ready()?;
        let snapshot = self.snapshot();
        let route = snapshot
            .route(&call.organisation, &call.api)
            .ok_or_else(|| {
                GatewayError::not_found(
                    "unknown_api",
                    format!(
                        "no API {:?} is published by organisation {:?}",
                        call.api, call.organisation
                    ),
                )
            })?;
        let at = resolve(&snapshot, &route, &call)?;
        let caller = authenticate(self, &at, &call).await?;
        let permit = self.authorise(&snapshot, &at, &call, caller).await?;
        let rate = self.admit(&at, &permit, &call).await?;
        let sent = self.forward(&at, &permit, &call, started).await?;
        let (sent, released) = self.minimise(&at, &permit, &call, started, sent).await?;
        let ex = exchange(
            &call,
            &at,
            &permit,
            &sent,
            started,
            released.named.as_deref(),
        );
        self.journal(&ex, Some(&released.response_hash), released.status)
            .await?;
        self.deliver(&at, &permit, &call, started, &sent, released, rate)
    }

    /// Ready: a snapshot that could not be rebuilt for a while may still hold a revoked
    /// habilitation, and an exchange that could not be recorded must not happen.
    fn ready(&self) -> Result<()> {
        let age = now()
            - self
                .inner
                .snapshot_at
                .load(std::sync::atomic::Ordering::Relaxed);
        if age > self.inner.config.stale_after {
            return Err(GatewayError::unavailable(
                "gateway_stale",
                "the platform cannot read the habilitations in force right now; nothing was sent to the provider",
            ));
        }
        self.inner.journal.sequencing().map_err(|e| {
            tracing::error!(error = %e, "gateway: exchange refused, the journal is not sequencing");
            GatewayError::unavailable(
                "journal_unavailable",
                "the journal is not recording exchanges right now, so nothing was sent to the provider; retry later",
            )
        })
    }

    /// Authorise: the caller's habilitation for the API, the eIDAS level the provider
    /// requires, the scopes the operation needs, the purpose, the person's consent
    /// when the habilitation rests on it, and whose data a call without the person's
    /// token is about.
    async fn authorise(
        &self,
        snapshot: &Snapshot,
        at: &Resolved<'_>,
        call: &Call,
        caller: Option<Caller>,
    ) -> Result<Permit> {
        let route = at.route;
        let (grant, granted) = match &caller {
            // Anonymous, on an open API (`authenticate` let nobody else through).
            None => (
                None,
                route.api.scopes.iter().map(|s| s.name.clone()).collect(),
            ),
            Some(c) => {
                let (g, granted) = self
                    .habilitation(snapshot, route, c)
                    .map_err(|e| at.named(e))?;
                (Some(g), granted)
            }
        };
        if let (Some(min), Some(Caller::Person { acr, .. })) =
            (route.api.person_eidas_level, &caller)
            && acr.0 < min
        {
            let need = socle_identity::Eidas(min);
            return Err(at.named(GatewayError::forbidden(
                "insufficient_eidas_level",
                format!(
                    "this API requires a login at eIDAS level {} ({}) for calls on a person's \
                     behalf; the person logged in at {}: ask for acr_values={} at login",
                    need.acr(),
                    need.label(),
                    acr.acr(),
                    need.acr()
                ),
            )));
        }
        if !policy::covers(at.operation, &granted) {
            return Err(at.named(GatewayError::forbidden(
                "scope_not_granted",
                "the scopes granted do not cover this operation",
            )));
        }
        let purpose = if at.open() && caller.is_none() {
            None
        } else {
            let header = |n: &str| call.headers.get(n).and_then(|v| v.to_str().ok());
            let pick = |name: &str, h: &str| at.params.get(name).map(String::as_str).or(header(h));
            Some(
                policy::purpose(
                    pick("context", "x-socle-context"),
                    pick("recipient", "x-socle-recipient"),
                    pick("object", "x-socle-object"),
                )
                .map_err(|d| at.named(GatewayError::bad_request("missing_purpose", d)))?,
            )
        };
        let consent = self.consent(at, &grant, &caller).await?;
        let mut permit = Permit {
            grant,
            caller,
            granted,
            purpose,
            consent,
            subject: None,
        };
        permit.subject = whose_data(at, &permit, call)?;
        Ok(permit)
    }

    /// The person's consent, when the habilitation rests on it.
    async fn consent(
        &self,
        at: &Resolved<'_>,
        grant: &Option<Arc<Grant>>,
        caller: &Option<Caller>,
    ) -> Result<Option<String>> {
        let Some(g) = grant.as_ref().filter(|g| g.consent_based) else {
            return Ok(None);
        };
        let Some(Caller::Person { identity_hash, .. }) = caller else {
            return Err(at.named(GatewayError::forbidden(
                "consent_required",
                "this habilitation rests on the person's consent: call with the person's access token",
            )));
        };
        let pseudonym = self.inner.journal.pseudonym(identity_hash);
        match self
            .inner
            .store
            .active_consent(&pseudonym, &g.id, now())
            .await?
        {
            Some(c) => Ok(Some(c.id)),
            None => Err(at.named(GatewayError::forbidden(
                "consent_required",
                "the person has not consented to this exchange, or withdrew or let expire their consent",
            ))),
        }
    }

    /// Admit: the rate limit, then the quota (only accepted calls count).
    async fn admit(&self, at: &Resolved<'_>, permit: &Permit, call: &Call) -> Result<RateState> {
        let limit = at.route.api.rate_limit;
        let rate = match &permit.grant {
            Some(g) => self.inner.rates.take(&g.id, limit),
            None => self.inner.rates.take(
                &format!("{}|{}", at.route.api.id, call.client_ip),
                self.inner.config.open_rate.min(limit.max(1)),
            ),
        };
        let rate = rate.map_err(|(s, wait)| at.named(rate_limited(s, wait)))?;
        if let Some(g) = &permit.grant
            && g.daily_quota > 0
            && self
                .inner
                .quotas
                .take(&self.inner.store, &g.id, &today(), g.daily_quota)
                .await?
                .is_none()
        {
            return Err(at.named(
                GatewayError::new(
                    429,
                    "quota_exceeded",
                    "Quota exceeded",
                    format!(
                        "the habilitation's {} calls for today are used",
                        g.daily_quota
                    ),
                )
                .header("retry-after", seconds_to_midnight().to_string()),
            ));
        }
        Ok(rate)
    }

    /// Forward: the request to the provider, with its hash, the key of the journal's
    /// hashes and the caller assertion; the answer read within the memory budget. A
    /// provider that cannot be reached is an exchange too: journaled, then refused.
    async fn forward(
        &self,
        at: &Resolved<'_>,
        permit: &Permit,
        call: &Call,
        started: Instant,
    ) -> Result<Sent> {
        let request_hash = request_hash(call, &at.path, &at.query);
        // The journal is public: it holds the hashes keyed by a secret of this exchange
        // alone, given to the caller and the provider, never the plain ones — the
        // plain hash of `{"quotientFamilial":640}` or of `?identifiant=…` is found by
        // trying the few values possible.
        let journal_key = hex::encode(rand::random::<[u8; 32]>());
        let assertion = match (&permit.grant, &permit.caller, &permit.purpose) {
            (Some(g), Some(c), Some(p)) => Some(self.assertion(g, c, p, &permit.granted)?),
            _ => None,
        };
        let uri = target(at.route, &at.path, &at.query).map_err(|e| at.named(e))?;
        let mut headers = HeaderMap::new();
        for name in FORWARDED {
            for value in call.headers.get_all(name) {
                headers.append(HeaderName::from_static(name), value.clone());
            }
        }
        set(&mut headers, "x-socle-request-id", &call.request_id);
        set(&mut headers, "x-socle-request-hash", &request_hash);
        set(&mut headers, "x-socle-journal-key", &journal_key);
        if let Some(a) = &assertion {
            set(&mut headers, "x-socle-assertion", a);
        }
        let mut sent = Sent {
            request_hash,
            journal_key,
            status: 0,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        match self.send(call, at.route, headers, uri).await {
            Ok((status, headers, body)) => {
                sent.status = status;
                sent.headers = headers;
                sent.body = body;
                Ok(sent)
            }
            Err(e) => Err(self.failed(call, at, permit, &sent, started, e).await),
        }
    }

    /// Minimise: what the granted scopes release of the answer (the provider's own
    /// errors become the platform's, without their body), and the person the answer
    /// is about (`Socle-Subject`): an answer about someone else than the call's person,
    /// or about nobody when the API says the provider names them, is withheld.
    async fn minimise(
        &self,
        at: &Resolved<'_>,
        permit: &Permit,
        call: &Call,
        started: Instant,
        mut sent: Sent,
    ) -> Result<(Sent, Released)> {
        let body = std::mem::take(&mut sent.body);
        let (status, content_type, body) =
            match deliverable(at.route, &permit.granted, sent.status, &sent.headers, body) {
                Ok(x) => x,
                Err(e) => return Err(self.failed(call, at, permit, &sent, started, e).await),
            };
        let response_hash = sha256_hex(&body);
        let told: Vec<&HeaderValue> = sent.headers.get_all("socle-subject").iter().collect();
        let known = match &permit.caller {
            Some(Caller::Person { identity_hash, .. }) => Some(identity_hash.as_str()),
            _ => permit.subject.as_deref(),
        };
        let required = permit.machine() && at.route.api.subject.mode == SubjectMode::Provider;
        let named = match subject_verdict(&told, known, required) {
            Ok(named) => named,
            Err((code, reason)) => {
                metrics::counter!("socle_gateway_subject_unknown_total", "api" => at.route.api.id.clone())
                    .increment(1);
                tracing::warn!(api = %at.route.api.id, %reason, "gateway: answer withheld, person unknown");
                let ex = exchange(call, at, permit, &sent, started, None);
                self.journal(&ex, None, 502).await?;
                self.record(at.route, &permit.grant, true, micros(started));
                return Err(with_exchange(
                    at.named(GatewayError::new(
                        502,
                        code,
                        "Person unknown",
                        format!(
                            "the provider did not say whom its answer is about, or named someone else ({reason}): it is not released, so that no exchange about a person escapes them"
                        ),
                    )),
                    call,
                    &sent,
                ));
            }
        };
        Ok((
            sent,
            Released {
                status,
                content_type,
                body,
                response_hash,
                named,
            },
        ))
    }

    /// A forwarded exchange that failed (the provider unreachable, or its answer not
    /// releasable) is journaled like any other; the provider's own answer is never
    /// passed on.
    async fn failed(
        &self,
        call: &Call,
        at: &Resolved<'_>,
        permit: &Permit,
        sent: &Sent,
        started: Instant,
        e: GatewayError,
    ) -> GatewayError {
        let ex = exchange(call, at, permit, sent, started, None);
        if let Err(journal) = self.journal(&ex, None, e.status).await {
            return journal;
        }
        self.record(at.route, &permit.grant, true, micros(started));
        with_exchange(at.named(e), call, sent)
    }

    /// Deliver: the released answer with the exchange's identifiers and hashes, the
    /// rate limit's state, and the platform's signature when asked for.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        at: &Resolved<'_>,
        permit: &Permit,
        call: &Call,
        started: Instant,
        sent: &Sent,
        released: Released,
        rate: RateState,
    ) -> Result<Delivered> {
        let mut out = HeaderMap::new();
        for name in PASSED_BACK {
            if name == "content-type" {
                continue;
            }
            if let Some(v) = sent.headers.get(name) {
                out.insert(HeaderName::from_static(name), v.clone());
            }
        }
        if let Some(ct) = released.content_type {
            out.insert(http::header::CONTENT_TYPE, ct);
        }
        out.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        set(&mut out, "x-socle-request-id", &call.request_id);
        set(&mut out, "x-socle-request-hash", &sent.request_hash);
        set(&mut out, "x-socle-response-hash", &released.response_hash);
        set(&mut out, "x-socle-journal-key", &sent.journal_key);
        for (k, v) in rate_headers(rate) {
            set(&mut out, k, &v);
        }
        if call.headers.contains_key("x-socle-sign") {
            let sig = self.signature(
                &call.request_id,
                &sent.request_hash,
                &released.response_hash,
                &permit.grant,
            )?;
            set(&mut out, "x-socle-signature", &sig);
        }
        self.record(
            at.route,
            &permit.grant,
            released.status >= 400,
            micros(started),
        );
        Ok(Delivered {
            status: released.status,
            headers: out,
            body: released.body,
        })
    }
}

/// Resolve: the API's version, the normalised path, the method (case-sensitive, RFC
/// 9110 §9.1: `Get` is not `GET`, and what is forwarded is what was matched), the
/// operation the path reaches in the API's OpenAPI document, and the purpose
/// parameters split from the query.
fn resolve<'r>(snapshot: &Snapshot, route: &'r Route, call: &Call) -> Result<Resolved<'r>> {
    let provider = snapshot.provider_name(&route.api.organisation);
    let named = |e: GatewayError| e.provider(&provider);
    if call.version.strip_prefix('v') != Some(route.major.as_str()) {
        return Err(named(GatewayError::not_found(
            "unknown_version",
            format!(
                "version {:?} is not served; the current major version is v{}",
                call.version, route.major
            ),
        )));
    }
    let path = policy::normalise_path(&call.path)
        .map_err(|d| named(GatewayError::bad_request("invalid_path", d)))?;
    let method = call.method.as_str();
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(named(GatewayError::not_found(
            "unknown_operation",
            format!("the method {method:?} is not one of this API's operations"),
        )));
    }
    let operation = route
        .operation(&method.to_ascii_lowercase(), &path)
        .map_err(|d| named(GatewayError::bad_request("invalid_path", d)))?
        .ok_or_else(|| {
            named(GatewayError::not_found(
                "unknown_operation",
                format!(
                    "{} /{} is not an operation of this API's OpenAPI document",
                    call.method, path
                ),
            ))
        })?;
    let (params, query) = split_query(call.query.as_deref());
    Ok(Resolved {
        route,
        operation,
        path,
        params,
        query,
        provider,
    })
}

/// Authenticate: the caller the bearer token names (a service's credentials, or a
/// person's access token), or nobody on an open API.
async fn authenticate(gateway: &Gateway, at: &Resolved<'_>, call: &Call) -> Result<Option<Caller>> {
    match bearer(&call.headers) {
        Some(token) => Ok(Some(gateway.caller(token).await.map_err(|e| at.named(e))?)),
        None if at.open() => Ok(None),
        None => Err(at.named(GatewayError::unauthenticated(
            "missing_token",
            "send an access token: Authorization: Bearer <token> (client_credentials from /api/v2/token, or the person's access token)",
        ))),
    }
}

/// Whose data a call without the person's token is about (a machine's, or an
/// anonymous one on an open API): as the API's publication says. One by the pivot
/// that does not carry it is the caller's mistake, and nothing is sent. Fail closed:
/// an API that declares data about people (also one that said `none` before an item
/// became personal) and names its person by the person's access token only cannot be
/// called without one.
fn whose_data(at: &Resolved<'_>, permit: &Permit, call: &Call) -> Result<Option<String>> {
    if !permit.machine() {
        return Ok(None);
    }
    let subject = &at.route.api.subject;
    if at.route.personal && matches!(subject.mode, SubjectMode::PersonToken | SubjectMode::None) {
        return Err(at.named(GatewayError::forbidden(
            "person_token_required",
            "this API's data are about people and it names its person by the person's access token: call with that token (or its publication must say how machine calls name their person: pivot or provider)",
        )));
    }
    match (&subject.mode, &subject.pivot) {
        (SubjectMode::Pivot, Some(spec)) => pivot_subject(spec, &at.query, &call.body)
            .map(Some)
            .map_err(|d| {
                metrics::counter!("socle_gateway_subject_unknown_total", "api" => at.route.api.id.clone())
                    .increment(1);
                at.named(GatewayError::bad_request("subject_unknown", d))
            }),
        _ => Ok(None),
    }
}

/// The refusal of a call over the rate limit, with its `Retry-After` and `RateLimit-*`.
fn rate_limited(s: RateState, wait: f64) -> GatewayError {
    let mut e = GatewayError::new(
        429,
        "rate_limited",
        "Too many requests",
        format!("at most {} calls per second; retry later", s.limit),
    )
    .header("retry-after", (wait.ceil() as u64).max(1).to_string());
    for (k, v) in rate_headers(s) {
        e = e.header(k, v);
    }
    e
}

/// The hash that binds the provider's request: exchange id, method, path, query, body.
fn request_hash(call: &Call, path: &str, query: &str) -> String {
    sha256_hex(
        format!(
            "{}\n{}\n/{}\n{}\n{}",
            call.request_id,
            call.method,
            path,
            query,
            sha256_hex(&call.body)
        )
        .as_bytes(),
    )
}

/// The provider's URI: the API's base URL (ending in `/`), the normalised path that
/// was authorised, the query.
fn target(route: &Route, path: &str, query: &str) -> Result<http::Uri> {
    let base = &route.upstream[..url::Position::AfterPath];
    let mut target = String::with_capacity(base.len() + path.len() + query.len() + 1);
    target.push_str(base);
    target.push_str(path);
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    http::Uri::try_from(target).map_err(|_| {
        GatewayError::bad_request(
            "invalid_path",
            "the path or query cannot be forwarded as is",
        )
    })
}

/// The person the provider says its answer is about (`Socle-Subject`, once at most),
/// against the person the call is `known` to be about: `Ok(Some(hash))` when the
/// provider names them and the call did not know, `Ok(None)` when there is nothing to
/// credit, `Err((code, reason))` when the answer must be withheld. A provider that
/// names its person (`required`: its API's mode, on a machine call) must name them;
/// whenever the gateway already knows the person, a provider naming another one
/// withholds the answer: the exchange must not be credited to someone else than the
/// person it served.
fn subject_verdict(
    told: &[&HeaderValue],
    known: Option<&str>,
    required: bool,
) -> std::result::Result<Option<String>, (&'static str, String)> {
    let told = match told {
        [] => None,
        [one] => Some(provider_subject(one.as_bytes())),
        _ => Some(Err("Socle-Subject is given more than once".to_string())),
    };
    match (told, known, required) {
        (None, _, true) => Err((
            "subject_unknown",
            "the provider's answer names no person (Socle-Subject)".into(),
        )),
        (Some(Err(reason)), _, _) => Err(("subject_unknown", reason)),
        (Some(Ok(named)), Some(k), _) if named != k => Err((
            "subject_mismatch",
            "the provider names another person than the one the call is about".into(),
        )),
        // Named by the provider (its mode, or of its own accord): credited.
        (Some(Ok(named)), None, _) => Ok(Some(named)),
        _ => Ok(None),
    }
}

/// The exchange as journaled.
fn exchange<'a>(
    call: &'a Call,
    at: &'a Resolved<'_>,
    permit: &'a Permit,
    sent: &'a Sent,
    started: Instant,
    named: Option<&'a str>,
) -> Exchange<'a> {
    Exchange {
        call,
        route: at.route,
        operation: at.operation,
        grant: &permit.grant,
        caller: &permit.caller,
        purpose: &permit.purpose,
        granted: &permit.granted,
        request_hash: &sent.request_hash,
        journal_key: &sent.journal_key,
        started,
        consent: permit.consent.as_deref(),
        subject: named.or(permit.subject.as_deref()),
    }
}

/// A refusal after forwarding carries the exchange's identifiers, to find it in the
/// journal.
fn with_exchange(e: GatewayError, call: &Call, sent: &Sent) -> GatewayError {
    e.header("x-socle-request-id", call.request_id.clone())
        .header("x-socle-request-hash", sent.request_hash.clone())
        .header("x-socle-journal-key", sent.journal_key.clone())
}

fn set(h: &mut HeaderMap, n: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(HeaderName::from_static(n), v);
    }
}

fn micros(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use http::Method;
    use serde_json::json;

    use super::*;

    fn snapshot() -> Snapshot {
        let org: socle_catalogue::Organisation = serde_json::from_value(json!({
            "siret": "13000000000011", "siren": "130000000", "name": "Caisse de démonstration",
            "acronym": "CAF", "kind": "operator"
        }))
        .expect("organisation");
        let api: socle_catalogue::Api = serde_json::from_value(json!({
            "id": "quotient", "organisation": "13000000000011", "title": "Quotient familial",
            "description": "Le quotient familial.", "version": "2.1.0", "themes": [],
            "contact": "api@caf.example",
            "upstream_url": "http://provider.example/base",
            "access_mode": "habilitation", "rate_limit": 10,
            "openapi": {"openapi": "3.1.0", "paths": {
                "/foyers/{id}": {"get": {}},
                "/foyers/recherche": {"get": {}}
            }},
            "scopes": [{"name": "qf", "description": "QF", "fields": ["/qf"]}]
        }))
        .expect("api");
        Snapshot::build(vec![api], vec![org], Vec::new(), &BTreeSet::new()).0
    }

    fn call(method: Method, version: &str, path: &str, query: Option<&str>) -> Call {
        Call {
            method,
            organisation: "caf".into(),
            api: "quotient".into(),
            version: version.into(),
            path: path.into(),
            query: query.map(str::to_string),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            request_id: "r1".into(),
        }
    }

    #[test]
    fn resolve_finds_the_operation_and_names_the_provider_in_refusals() {
        let s = snapshot();
        let route = s.route("caf", "quotient").expect("route by acronym");
        let c = call(
            Method::GET,
            "v2",
            "foyers/%72echerche",
            Some("context=aide&x=1&object=dossier-1"),
        );
        let at = resolve(&s, &route, &c).expect("resolved");
        assert_eq!(at.path, "foyers/recherche");
        assert_eq!(at.operation.template, "/foyers/recherche");
        assert_eq!(at.query, "x=1");
        assert_eq!(at.params["context"], "aide");
        assert_eq!(at.provider, "CAF");
        for (c, code) in [
            (call(Method::GET, "v1", "foyers/1", None), "unknown_version"),
            (call(Method::GET, "v2", "foyers/../x", None), "invalid_path"),
            (
                call(Method::POST, "v2", "foyers/1", None),
                "unknown_operation",
            ),
            (
                call(
                    Method::from_bytes(b"Get").expect("method"),
                    "v2",
                    "foyers/1",
                    None,
                ),
                "unknown_operation",
            ),
        ] {
            let e = resolve(&s, &route, &c).err().expect("refused");
            assert_eq!(e.code, code);
            assert_eq!(e.provider.as_deref(), Some("CAF"));
        }
    }

    #[test]
    fn the_forwarded_target_keeps_the_base_path() {
        let s = snapshot();
        let route = s.route("caf", "quotient").expect("route");
        let uri = target(&route, "foyers/1", "x=1").expect("uri");
        assert_eq!(uri.to_string(), "http://provider.example/base/foyers/1?x=1");
        let uri = target(&route, "foyers/1", "").expect("uri");
        assert_eq!(uri.to_string(), "http://provider.example/base/foyers/1");
        assert!(target(&route, "a b", "").is_err());
    }

    #[test]
    fn the_request_hash_binds_method_path_query_and_body() {
        let c = call(Method::GET, "v2", "foyers/1", None);
        let h = request_hash(&c, "foyers/1", "x=1");
        assert_ne!(h, request_hash(&c, "foyers/2", "x=1"));
        assert_ne!(h, request_hash(&c, "foyers/1", "x=2"));
        let mut other = c.clone();
        other.body = Bytes::from_static(b"{\"a\":1}");
        assert_ne!(h, request_hash(&other, "foyers/1", "x=1"));
        other = c.clone();
        other.method = Method::POST;
        assert_ne!(h, request_hash(&other, "foyers/1", "x=1"));
    }

    #[test]
    fn the_person_an_answer_is_about() {
        use base64::Engine;
        // Identity hashes as the federation writes them: base64 of 32 bytes.
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let (hash, other) = (b64(1), b64(2));
        let v = |s: &str| HeaderValue::from_str(s).expect("header");
        let (mine, theirs, junk) = (v(&hash), v(&other), v("not a person"));
        // Nothing said, nothing required: nothing to credit.
        assert_eq!(subject_verdict(&[], None, false), Ok(None));
        assert_eq!(subject_verdict(&[], Some(&hash), false), Ok(None));
        // The provider's mode: it must say.
        assert_eq!(
            subject_verdict(&[], None, true).map_err(|e| e.0),
            Err("subject_unknown")
        );
        // Named, and the call did not know: credited.
        assert_eq!(
            subject_verdict(&[&mine], None, true),
            Ok(Some(hash.clone()))
        );
        // The same person as the call's: nothing more to credit.
        assert_eq!(subject_verdict(&[&mine], Some(&hash), false), Ok(None));
        // Someone else, garbage, or twice: withheld.
        assert_eq!(
            subject_verdict(&[&theirs], Some(&hash), false).map_err(|e| e.0),
            Err("subject_mismatch")
        );
        assert_eq!(
            subject_verdict(&[&junk], None, false).map_err(|e| e.0),
            Err("subject_unknown")
        );
        assert_eq!(
            subject_verdict(&[&mine, &mine], None, false).map_err(|e| e.0),
            Err("subject_unknown")
        );
    }

    #[test]
    fn a_call_over_the_rate_limit_says_when_to_retry() {
        let e = rate_limited(
            RateState {
                limit: 10,
                remaining: 0,
                reset: 1,
            },
            0.2,
        );
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        let h: HashMap<_, _> = e.headers.iter().cloned().collect();
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-limit"], "10");
        assert_eq!(h["ratelimit-remaining"], "0");
    }
}
