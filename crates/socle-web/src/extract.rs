//! Extractors whose rejections use the public error shape, and the client address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::extract::{FromRequestParts, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::serve::{IncomingStream, Listener};
use ipnet::IpNet;
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

/// The client's address as the per-client limits count it ([`client_ip`], an IPv6
/// address cut to its /64 by [`limit_key`]); `None` when the connection's own address
/// is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<crate::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<ClientAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(peer.map(|p| {
            limit_key(client_ip(
                p,
                &parts.headers,
                &state.settings.trusted_proxies,
            ))
        })))
    }
}

/// The client's address for per-client limits. The connection's peer, unless the peer
/// is one of `trusted` (`server.trusted_proxies`: the reverse proxies or load balancers
/// in front of Socle): then the right-most address of `X-Forwarded-For` that is not a
/// trusted proxy — the one the nearest untrusted hop connected from. Addresses further
/// left are whatever the client wrote and are never used; an entry that is not an
/// address stops the walk at the hop that added it. Without trusted proxies the header
/// is ignored, so a client cannot choose its own address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // IPv4 addresses written as IPv6 (`::ffff:10.0.0.5`) are compared as IPv4, on
    // both sides.
    let is_trusted = |ip: &IpAddr| {
        trusted
            .iter()
            .any(|n| n.contains(ip) || canonical_net(n).contains(ip))
    };
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Several header lines count as one list, in order (RFC 9110 § 5.3), walked from
    // the right; a line that is not text stops the walk like an entry that is not an
    // address.
    'lines: for line in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(line) = line.to_str() else {
            break;
        };
        for hop in line.split(',').rev() {
            let Some(ip) = forwarded_ip(hop) else {
                break 'lines;
            };
            client = ip;
            if !is_trusted(&ip) {
                break 'lines;
            }
        }
    }
    client
}

/// The key per-client limits count under: the address, or for IPv6 its /64 — the
/// block one subscriber is given, inside which a client can take any address.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// An IPv4 range written as IPv6 (`::ffff:10.0.0.0/104`) as the IPv4 range it is.
fn canonical_net(n: &IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(*n, IpNet::V4)
            }
            _ => *n,
        },
        IpNet::V4(_) => *n,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly bracketed or with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443`).
fn forwarded_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let bare = hop
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hop);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            limit_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            limit_key("2001:db8:1:2:ffff::9".parse().unwrap()),
            limit_key("2001:db8:1:2::1".parse().unwrap())
        );
        assert_ne!(
            limit_key("2001:db8:1:3::1".parse().unwrap()),
            limit_key("2001:db8:1:2::1".parse().unwrap())
        );
        assert_eq!(
            limit_key("192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let from = |peer: &str, xff: &[&str]| client_ip(ip(peer), &headers(xff), &trusted);
        // No trusted proxy: the peer, whatever the header says.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &headers(&["203.0.113.9"]), &[]),
            ip("10.0.0.5")
        );
        // A peer that is not a trusted proxy: its header is its own invention.
        assert_eq!(from("198.51.100.7", &["203.0.113.9"]), ip("198.51.100.7"));
        // Behind one proxy.
        assert_eq!(from("10.0.0.5", &["203.0.113.9"]), ip("203.0.113.9"));
        // The client's own entries on the left are not believed.
        assert_eq!(
            from("10.0.0.5", &["1.1.1.1, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        // Two trusted proxies in a row, the header split over two lines, ports.
        assert_eq!(
            from("10.0.0.5", &["1.1.1.1, 203.0.113.9:4711", "10.1.2.3"]),
            ip("203.0.113.9")
        );
        assert_eq!(from("::1", &["[2001:db8::7]:443"]), ip("2001:db8::7"));
        // IPv4 peers seen through an IPv6 listener.
        assert_eq!(from("::ffff:10.0.0.5", &["203.0.113.9"]), ip("203.0.113.9"));
        // Garbage stops the walk at the hop that wrote it.
        assert_eq!(from("10.0.0.5", &["203.0.113.9, nonsense"]), ip("10.0.0.5"));
        assert_eq!(
            from("10.0.0.5", &["nonsense, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A line that is not text stops the walk there: the client's own line on the
        // left is not reached.
        let mut h = headers(&["6.6.6.6"]);
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\x80, 10.2.2.2").unwrap(),
        );
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), ip("10.0.0.5"));
        // Brackets without a port; a range written as IPv4-mapped IPv6.
        assert_eq!(from("::1", &["[2001:db8::7]"]), ip("2001:db8::7"));
        let mapped: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
        assert_eq!(
            client_ip(ip("10.0.0.5"), &headers(&["203.0.113.9"]), &mapped),
            ip("203.0.113.9")
        );
        // Only trusted hops, or no header: the last one seen.
        assert_eq!(from("10.0.0.5", &["10.9.9.9"]), ip("10.9.9.9"));
        assert_eq!(from("10.0.0.5", &[]), ip("10.0.0.5"));
    }
}
