//! A bare reverse proxy on the gateway's own HTTP stack, for `scripts/bench-gateway`:
//! hyper's server in front, hyper's pooled client behind, the upstream's answer read
//! whole and passed back — no routing, no token, no habilitation, no journal, no
//! middleware. It measures what the Rust HTTP stack alone costs on the machine, beside
//! nginx, so that the gateway's own work can be told apart from the stack's.
//!
//!   bareproxy LISTEN_ADDR UPSTREAM_BASE_URL     (e.g. 127.0.0.1:8081 http://127.0.0.1:8080)

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

async fn forward(
    client: Upstream,
    base: &'static str,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let bad = |s: u16| {
        let mut r = http::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::from_u16(s).unwrap_or(http::StatusCode::BAD_GATEWAY);
        Ok(r)
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return bad(400);
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Ok(uri) = http::Uri::try_from(format!("{base}{path}")) else {
        return bad(400);
    };
    let mut up = http::Request::new(Full::new(body));
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONNECTION {
            up.headers_mut().append(k.clone(), v.clone());
        }
    }
    let Ok(resp) = client.request(up).await else {
        return bad(502);
    };
    let (parts, body) = resp.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return bad(502);
    };
    let mut out = http::Response::new(Full::new(body));
    *out.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        out.headers_mut()
            .insert(http::header::CONTENT_TYPE, ct.clone());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        return Err("usage: bareproxy LISTEN_ADDR UPSTREAM_BASE_URL".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let base: &'static str = Box::leak(base.trim_end_matches('/').to_string().into_boxed_str());
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(512)
        .build(http);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| forward(client.clone(), base, req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(sock), service)
                .await;
        });
    }
}
