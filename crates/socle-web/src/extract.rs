//! Extractors whose rejections use the public error shape, and the client address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::serve::{IncomingStream, Listener};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Query<T>` answering malformed query strings with a 400 in the error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// The peer address of a connection, for rate limiting (plain TCP or TLS listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    pub fn ip(&self) -> IpAddr {
        self.0.ip()
    }
}

/// Listeners whose peer address is a socket address (plain TCP here, TLS in the binary).
pub trait PeerListener: Listener<Addr = SocketAddr> {}

impl PeerListener for tokio::net::TcpListener {}

impl<L: PeerListener> Connected<IncomingStream<'_, L>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, L>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
