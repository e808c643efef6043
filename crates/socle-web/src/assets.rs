//! Static assets embedded in the binary: the vendored DSFR (unmodified, under
//! `/static/dsfr/…` with its directory layout) and Socle's own small stylesheet.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The vendored `@gouvfr/dsfr` version (see `static/dsfr/VENDORED.md`); links carry it
/// as a query string so a new version is fetched despite the year-long cache.
pub const DSFR_VERSION: &str = "1.15.3";

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub async fn dsfr(Path(path): Path<String>) -> Response {
    serve(&format!("dsfr/{path}"))
}

pub async fn socle(Path(path): Path<String>) -> Response {
    serve(&format!("socle/{path}"))
}

fn serve(path: &str) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return crate::error::ApiError::not_found("no such static file").into_response();
    }
    let Some(file) = Assets::get(path) else {
        return crate::error::ApiError::not_found("no such static file").into_response();
    };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!(
        "\"{}\"",
        hex::encode(&file.metadata.sha256_hash()[..12])
    )) {
        h.insert(header::ETAG, etag);
    }
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "webmanifest" => "application/manifest+json",
        "json" => "application/json",
        "md" => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}
