//! The client toward providers' APIs: hyper's pooled keep-alive HTTP/1.1 client over
//! rustls, with a connect timeout, a total timeout covering the whole answer, a bound
//! on the answer's size, no redirect ever followed (hyper follows none), and a DNS
//! resolver that refuses private answers.
//!
//! It replaced reqwest on the gateway's hot path: the same crates underneath, without
//! reqwest's per-request layers (URL re-parsing, redirect and timeout wrappers), which
//! took about 8 % of the gateway's CPU.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why a provider's answer could not be obtained.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No complete answer within the timeout (connecting included).
    Timeout,
    /// Not reachable, refused or reset before answering (the reason, for logs).
    Unreachable(String),
    /// The answer began and was cut off (the reason, for logs).
    CutOff(String),
    /// The answer is larger than the bound.
    TooLarge(usize),
    /// The answers being read together already hold the gateway's whole budget.
    Busy,
}

/// A provider's answer: status, headers, whole body.
pub(crate) type Answer = (u16, HeaderMap, Bytes);

pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector<PublicOnly>>, Full<Bytes>>,
    timeout: Duration,
    max_response: usize,
    /// KiB of answers held at once, across every call: what bounds the gateway's
    /// memory whatever the providers send (each answer may be up to `max_response`,
    /// and the minimised copy and the JSON tree come on top).
    budget: Arc<tokio::sync::Semaphore>,
}

/// Granularity of the answers' memory budget.
const KIB: usize = 1024;

impl Upstream {
    pub(crate) fn new(
        connect_timeout: Duration,
        timeout: Duration,
        max_response: usize,
        memory: usize,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new_with_resolver(PublicOnly);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                // Without the system's roots no HTTPS provider can be verified: such
                // calls then fail (502) rather than go unverified.
                tracing::error!(error = %e, "gateway: no system CA certificates; HTTPS providers unreachable");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
        Ok(Upstream {
            client,
            timeout,
            max_response,
            budget: Arc::new(tokio::sync::Semaphore::new(
                (memory / KIB).clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
        })
    }

    /// Sends one request and reads the whole answer, within the total timeout.
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| classify(&e))?;
            let (parts, mut body) = resp.into_parts();
            // A declared length over the bound is refused before a byte is read.
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > self.max_response) {
                return Err(Failure::TooLarge(self.max_response));
            }
            // Memory is taken from the budget as the answer arrives (all of it at once
            // when its length is declared), and given back once it is read.
            let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
            let mut reserve = |bytes: usize| -> Result<(), Failure> {
                let have = held.as_ref().map_or(0, |p| p.num_permits());
                let need = bytes.div_ceil(KIB).saturating_sub(have);
                if need == 0 {
                    return Ok(());
                }
                let more = u32::try_from(need)
                    .ok()
                    .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
                    .ok_or(Failure::Busy)?;
                match held.as_mut() {
                    Some(p) => p.merge(more),
                    None => held = Some(more),
                }
                Ok(())
            };
            reserve(declared.unwrap_or(0))?;
            // The frames are kept as they come (no buffer that grows by doubling and
            // copies itself), and joined once, at their exact size, when complete.
            let mut frames: Vec<Bytes> = Vec::new();
            let mut len = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::CutOff(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    if len + data.len() > self.max_response {
                        return Err(Failure::TooLarge(self.max_response));
                    }
                    reserve(len + data.len())?;
                    len += data.len();
                    frames.push(data);
                }
            }
            let body = if frames.len() == 1 {
                frames.pop().unwrap_or_default()
            } else {
                let mut out = BytesMut::with_capacity(len);
                for f in frames {
                    out.extend_from_slice(&f);
                }
                out.freeze()
            };
            Ok((parts.status.as_u16(), parts.headers, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }
}

/// A timed-out connection attempt is a timeout; anything else, unreachable.
fn classify(e: &(dyn std::error::Error + 'static)) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Failure::Timeout;
        }
        source = s.source();
    }
    Failure::Unreachable(e.to_string())
}

/// A DNS resolver that refuses private, loopback and link-local answers, so that an
/// upstream host name cannot be pointed at the platform's own network (addresses
/// written literally were checked when the API was published; `localhost` is only
/// accepted there for demonstrations).
#[derive(Clone, Copy)]
pub(crate) struct PublicOnly;

/// One rule for the catalogue's registration check and this resolver.
pub(crate) fn public_ip(ip: IpAddr) -> bool {
    socle_catalogue::model::public_ip(ip)
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| host == "localhost" || public_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{host} resolves to no public address"
                )));
            }
            Ok(addrs.into_iter())
        })
    }
}
