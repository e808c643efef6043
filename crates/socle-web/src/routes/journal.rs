//! The journal's public, read-only endpoints: the signed checkpoint, the verifier key,
//! entries, and inclusion and consistency proofs. Anyone may check the log; requests
//! are rate-limited per client.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socle_journal::Entry;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, ClientIp};

/// Most entries returned by one call of `/journal/entries`.
pub const MAX_PAGE: u64 = 1000;

/// Per-client rate limit of the journal endpoints.
pub async fn rate_limit(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    if let Some(ip) = client
        && let Err(wait) = state.journal_limiter.check(ip)
    {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            "this client sends journal requests too fast; slow down and retry after the delay given",
        )
        .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
        .into_response();
    }
    next.run(req).await
}

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The latest signed checkpoint (C2SP tlog-checkpoint in a signed note).
#[utoipa::path(get, path = "/journal/checkpoint", tag = "journal",
    responses(
        (status = 200, description = "The signed note: origin, size, base64 root, blank line, signature", content_type = "text/plain"),
        (status = 404, description = "Nothing published yet", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(state.journal.latest_checkpoint().await?.note))
}

/// The checkpoint verifier key, in note-verifier form `name+hash+base64(0x01‖key)`.
#[utoipa::path(get, path = "/journal/key", tag = "journal",
    responses((status = 200, description = "The verifier key and a newline", content_type = "text/plain")))]
pub async fn key(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(format!("{}\n", state.journal.verifier_key())))
}

/// Refuses a parameter outside what the OpenAPI document declares (400
/// `invalid_range`), rather than clamping it silently.
fn within(name: &str, value: Option<u64>, min: u64, max: u64) -> Result<(), ApiError> {
    match value {
        Some(v) if v < min || v > max => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "Invalid range",
            format!("{name} must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

/// The largest index or size the document declares (a signed 64-bit integer).
const MAX_INDEX: u64 = i64::MAX as u64;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// Only checkpoints of a size larger than this (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
    /// At most this many (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    /// The signed note.
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointView>,
}

/// Every signed checkpoint, by increasing size (verifiers check all of them).
#[utoipa::path(get, path = "/journal/checkpoints", tag = "journal", params(CheckpointsQuery),
    responses((status = 200, description = "Signed checkpoints", body = CheckpointList)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CheckpointsQuery>,
) -> Result<Json<CheckpointList>, ApiError> {
    within("after", q.after, 0, MAX_INDEX)?;
    within("limit", q.limit, 1, MAX_PAGE)?;
    let limit = q.limit.unwrap_or(MAX_PAGE) as usize;
    let list = state
        .journal
        .checkpoints(q.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(CheckpointList {
        checkpoints: list
            .into_iter()
            .map(|c| CheckpointView {
                size: c.size,
                root: B64.encode(c.root),
                note: c.note,
                created_at: c.created_at,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// First index (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub start: Option<u64>,
    /// How many (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub count: Option<u64>,
}

/// A page of entries: each has `index`, `leaf` (base64 of the exact leaf bytes),
/// `leaf_hash` (base64 of the stored leaf hash) and the decoded fields.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntriesPage {
    /// Size of the latest checkpoint: entries beyond it are not served yet.
    pub size: u64,
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
}

/// Journal entries covered by the latest checkpoint.
#[utoipa::path(get, path = "/journal/entries", tag = "journal", params(EntriesQuery),
    responses(
        (status = 200, description = "Entries", body = EntriesPage),
        (status = 400, description = "Invalid range", body = ErrorBody),
    ))]
pub async fn entries(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<Json<EntriesPage>, ApiError> {
    within("start", q.start, 0, MAX_INDEX)?;
    within("count", q.count, 1, MAX_PAGE)?;
    let count = q.count.unwrap_or(MAX_PAGE);
    let (size, rows) = state.journal.entries(q.start.unwrap_or(0), count).await?;
    let entries = rows
        .into_iter()
        .map(|e| {
            let mut object = match Entry::decode(&e.leaf)
                .ok()
                .and_then(|d| serde_json::to_value(d).ok())
            {
                Some(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            object.insert("index".into(), e.index.into());
            object.insert("leaf".into(), B64.encode(&e.leaf).into());
            object.insert("leaf_hash".into(), B64.encode(e.leaf_hash).into());
            Value::Object(object)
        })
        .collect();
    Ok(Json(EntriesPage { size, entries }))
}

/// The stored tree nodes of a page of entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodesPage {
    pub nodes: Vec<NodeView>,
}

/// One perfect-subtree hash: over entries `index × 2^level` to `(index + 1) × 2^level − 1`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub level: u8,
    pub index: u64,
    /// Base64 hash.
    pub hash: String,
}

/// The stored tree nodes (above the leaves) that entries `start` to `start + count − 1`
/// complete — what inclusion and consistency proofs are read from — so that a verifier
/// recomputing them from the entries (`socle journal verify`) finds a damaged node.
#[utoipa::path(get, path = "/journal/nodes", tag = "journal", params(EntriesQuery),
    responses((status = 200, description = "Nodes", body = NodesPage)))]
pub async fn nodes(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<Json<NodesPage>, ApiError> {
    within("start", q.start, 0, MAX_INDEX)?;
    within("count", q.count, 1, MAX_PAGE)?;
    let j = &state.journal;
    let size = j.latest_checkpoint().await.map(|c| c.size).unwrap_or(0);
    let start = q.start.unwrap_or(0).min(size);
    let end = start.saturating_add(q.count.unwrap_or(MAX_PAGE)).min(size);
    let nodes = j.stored_nodes(start, end).await?;
    Ok(Json(NodesPage {
        nodes: nodes
            .into_iter()
            .map(|(id, h)| NodeView {
                level: id.level,
                index: id.index,
                hash: B64.encode(h),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// Index of the entry (below `size`).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub index: u64,
    /// Size of the tree (at most the latest checkpoint's).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    pub index: u64,
    pub size: u64,
    /// Base64 root of the tree of `size` entries.
    pub root: String,
    /// Base64 hashes of the audit path (RFC 9162 §2.1.3), bottom up.
    pub hashes: Vec<String>,
}

/// Inclusion proof of an entry in the tree of a given size.
#[utoipa::path(get, path = "/journal/proof/inclusion", tag = "journal", params(InclusionQuery),
    responses(
        (status = 200, description = "The proof", body = InclusionProofView),
        (status = 400, description = "index ≥ size, or size beyond the latest checkpoint", body = ErrorBody),
    ))]
pub async fn inclusion(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    within("index", Some(q.index), 0, MAX_INDEX)?;
    within("size", Some(q.size), 1, MAX_INDEX)?;
    let p = state.journal.inclusion_proof(q.index, q.size).await?;
    Ok(Json(InclusionProofView {
        index: p.index,
        size: p.size,
        root: B64.encode(p.root),
        hashes: p.hashes.iter().map(|h| B64.encode(h)).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree's size (at least 1, at most `to`).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub from: u64,
    /// At most the latest checkpoint's size.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub to: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProofView {
    pub from: u64,
    pub to: u64,
    /// Base64 hashes of the consistency proof (RFC 9162 §2.1.4).
    pub hashes: Vec<String>,
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/journal/proof/consistency", tag = "journal", params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProofView),
        (status = 400, description = "from > to, or to beyond the latest checkpoint", body = ErrorBody),
    ))]
pub async fn consistency(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    within("from", Some(q.from), 1, MAX_INDEX)?;
    within("to", Some(q.to), 1, MAX_INDEX)?;
    let p = state.journal.consistency_proof(q.from, q.to).await?;
    Ok(Json(ConsistencyProofView {
        from: p.from,
        to: p.to,
        hashes: p.hashes.iter().map(|h| B64.encode(h)).collect(),
    }))
}
