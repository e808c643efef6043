//! The scripted browser of `scripts/bench-identity`: complete OpenID Connect login flows
//! per second (authorize → identity provider → callback → token → userinfo, each
//! simulated person with their own cookies) and token-endpoint exchanges per second,
//! against Socle and against npm oidc-provider, with the same client code, in one run.
//!
//! It replaces, by default, a Node.js client (`tests/interop/bench.mjs`, still run by
//! `BENCH_CLIENT=node scripts/bench-identity`) that took about as much CPU per flow as
//! the servers under test, on the same two cores: it capped every target at the
//! client's own speed and squeezed the ratios toward 1. This one runs on one thread (tokio's current-thread
//! runtime) and reads, for each target, the CPU time the server process and the client
//! used (`/proc/<pid>/stat`), so that the figures say what each server costs per flow.
//!
//! Targets (each `--target` is `KIND,BASE_URL,CLIENT_ID,SECRET,PID`):
//! - `socle-direct`: Socle, the service names the provider (`idp_hint=demo`) and is
//!   exempt from consent: authorize → demo FI page → its POST → callback → code;
//! - `socle`: Socle's full journey: choice page, FI page, consent page;
//! - `op`: oidc-provider finishing its interaction at once (no page);
//! - `op-pages`: oidc-provider's built-in login and consent pages.
//!
//!   flowgen --target … [--target …] [--seconds S] [--concurrency C] [--rounds N]

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Digest;
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
type Http = Client<HttpConnector, Full<Bytes>>;
type Res<T> = Result<T, String>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    SocleDirect,
    Socle,
    Op,
    OpPages,
}

struct Target {
    kind: Kind,
    name: String,
    base: String,
    client_id: String,
    secret: String,
    pid: u32,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

/// One simulated person's browser: a cookie jar over the shared connection pool.
struct Browser {
    http: Http,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(http: &Http) -> Self {
        Self {
            http: http.clone(),
            cookies: HashMap::new(),
        }
    }

    async fn go(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&[(String, String)]>,
    ) -> Res<Answer> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "text/html");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            b = b.header("cookie", jar.join("; "));
        }
        let body = match form {
            Some(f) => {
                b = b.header("content-type", "application/x-www-form-urlencoded");
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(f)
                    .finish()
            }
            None => String::new(),
        };
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        for c in res.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.insert(k.trim().to_string(), v.to_string());
            }
        }
        let location = match res.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) => Some(
                Url::parse(url)
                    .and_then(|u| u.join(l))
                    .map_err(|e| e.to_string())?
                    .to_string(),
            ),
            None => None,
        };
        let status = res.status().as_u16();
        let body = read_body(res).await?;
        Ok(Answer {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Decodes the character references the servers' templates emit in attribute values.
/// The whole body of an answer.
async fn read_body(res: hyper::Response<hyper::body::Incoming>) -> Res<Bytes> {
    Ok(res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of the `<input … name="NAME" value="…">` of a page.
fn field(html: &str, name: &str) -> Res<String> {
    let key = format!("name=\"{name}\" value=\"");
    let at = html.find(&key).ok_or(format!("no field {name}"))? + key.len();
    let end = html[at..].find('"').ok_or("unterminated value")?;
    Ok(unescape(&html[at..at + end]))
}

/// Every hidden input of a page, in order.
fn hidden(html: &str) -> Vec<(String, String)> {
    let key = "<input type=\"hidden\" name=\"";
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(key) {
        rest = &rest[i + key.len()..];
        let Some((name, after)) = rest.split_once('"') else {
            break;
        };
        let Some(after) = after.strip_prefix(" value=\"") else {
            continue;
        };
        let Some((value, _)) = after.split_once('"') else {
            break;
        };
        out.push((name.to_string(), unescape(value)));
    }
    out
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

struct Code {
    code: String,
    verifier: String,
}

/// One person's browser from the service's authorization request to the code.
async fn code(http: &Http, t: &Target) -> Res<Code> {
    let verifier = random();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &t.client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid identite_pivot email")
        .append_pair("state", &random())
        .append_pair("nonce", &random())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut b = Browser::new(http);
    let base = &t.base;
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let r = match t.kind {
        Kind::SocleDirect | Kind::Socle => {
            q.append_pair("acr_values", "eidas1");
            if t.kind == Kind::SocleDirect {
                q.append_pair("idp_hint", "demo");
            }
            let mut r = b
                .go(
                    "GET",
                    &format!("{base}/api/v2/authorize?{}", q.finish()),
                    None,
                )
                .await?;
            if t.kind == Kind::Socle {
                let choice = r.location.ok_or("no choice page")?;
                r = b.go("GET", &choice, None).await?;
                let form = [
                    pair("csrf", &field(&r.body, "csrf")?),
                    pair("provider", "demo"),
                ];
                r = b
                    .go("POST", &format!("{choice}/choice"), Some(&form))
                    .await?;
            }
            r = b
                .go("GET", &r.location.ok_or("no FI redirect")?, None)
                .await?;
            let mut form = hidden(&r.body);
            form.extend([pair("login", "jean"), pair("decision", "login")]);
            r = b
                .go("POST", &format!("{base}/demo/fi/authorize"), Some(&form))
                .await?;
            r = b.go("GET", &r.location.ok_or("no callback")?, None).await?;
            if t.kind == Kind::Socle {
                let consent = r.location.ok_or("no consent page")?;
                r = b.go("GET", &consent, None).await?;
                let form = [
                    pair("csrf", &field(&r.body, "csrf")?),
                    pair("decision", "accept"),
                ];
                r = b.go("POST", &consent, Some(&form)).await?;
            }
            r
        }
        Kind::Op | Kind::OpPages => {
            let mut r = b
                .go("GET", &format!("{base}/auth?{}", q.finish()), None)
                .await?;
            for _ in 0..12 {
                if r.location
                    .as_deref()
                    .is_some_and(|l| l.starts_with(REDIRECT))
                {
                    break;
                }
                if let Some(l) = r.location.take() {
                    r = b.go("GET", &l, None).await?;
                    continue;
                }
                let key = "<form autocomplete=\"off\" action=\"";
                let at = r.body.find(key).ok_or(format!("no form ({})", r.status))? + key.len();
                let action = &r.body[at..at + r.body[at..].find('"').ok_or("bad form")?];
                let action = Url::parse(base)
                    .and_then(|u| u.join(action))
                    .map_err(|e| e.to_string())?;
                let prompt = field(&r.body, "prompt")?;
                let mut form = vec![pair("prompt", &prompt)];
                if prompt == "login" {
                    form.extend([pair("login", "jean"), pair("password", "x")]);
                }
                r = b.go("POST", action.as_str(), Some(&form)).await?;
            }
            r
        }
    };
    let code = r
        .location
        .as_deref()
        .and_then(|l| Url::parse(l).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or(format!(
            "no code from {}: {} {:?} {:.200}",
            t.name, r.status, r.location, r.body
        ))?;
    Ok(Code { code, verifier })
}

fn endpoints(t: &Target) -> (String, String) {
    match t.kind {
        Kind::SocleDirect | Kind::Socle => (
            format!("{}/api/v2/token", t.base),
            format!("{}/api/v2/userinfo", t.base),
        ),
        Kind::Op | Kind::OpPages => (format!("{}/token", t.base), format!("{}/me", t.base)),
    }
}

async fn exchange(http: &Http, t: &Target, c: &Code) -> Res<String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        url::form_urlencoded::byte_serialize(t.client_id.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(t.secret.as_bytes()).collect::<String>()
    ));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &c.code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", &c.verifier)
        .finish();
    let req = hyper::Request::post(endpoints(t).0)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = http.request(req).await.map_err(|e| format!("token: {e}"))?;
    let status = res.status();
    let body = read_body(res).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("token: {status} {e}"))?;
    match v.get("access_token").and_then(|a| a.as_str()) {
        Some(a) if status == 200 => Ok(a.to_string()),
        _ => Err(format!("token: {status} {v}")),
    }
}

async fn userinfo(http: &Http, t: &Target, token: &str) -> Res<()> {
    let req = hyper::Request::get(endpoints(t).1)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let res = http
        .request(req)
        .await
        .map_err(|e| format!("userinfo: {e}"))?;
    let status = res.status();
    read_body(res).await?;
    if status != 200 {
        return Err(format!("userinfo: {status}"));
    }
    Ok(())
}

async fn flow(http: &Http, t: &Target) -> Res<()> {
    let c = code(http, t).await?;
    let token = exchange(http, t, &c).await?;
    userinfo(http, t, &token).await
}

/// CPU seconds (user + system) a process has used so far.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), 1-based: utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// The comparisons printed: Socle's flow without pages against oidc-provider without
/// pages, Socle's full journey against oidc-provider with its pages.
const PAIRS: [(&str, &str); 2] = [
    ("socle, no page", "oidc-provider"),
    ("socle", "oidc-provider+pages"),
];

struct Measured {
    flows_per_sec: f64,
    p50: f64,
    p99: f64,
    server_ms_per_flow: f64,
    client_ms_per_flow: f64,
    tokens_per_sec: f64,
    tokens: usize,
    server_ms_per_token: f64,
}

async fn measure(http: &Http, t: Rc<Target>, seconds: f64, concurrency: usize) -> Res<Measured> {
    for _ in 0..concurrency {
        flow(http, &t).await?; // warm-up
    }
    let me = std::process::id();
    let (s0, c0) = (cpu(t.pid), cpu(me));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, t) = (http.clone(), t.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t0 = Instant::now();
                flow(&http, &t).await?;
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (s1, c1) = (cpu(t.pid), cpu(me));
    lat.sort_by(f64::total_cmp);
    let flows = lat.len().max(1) as f64;
    // Token endpoint alone: codes collected first, then exchanged as fast as possible,
    // in rounds of 250 (oidc-provider's memory store must not grow without bound).
    let (mut token_secs, mut token_cpu, mut exchanged) = (0.0, 0.0, 0);
    for _ in 0..6 {
        let mut codes = Vec::new();
        for _ in 0..250 / concurrency + 1 {
            let batch: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (http, t) = (http.clone(), t.clone());
                    tokio::task::spawn_local(async move { code(&http, &t).await })
                })
                .collect();
            for b in batch {
                codes.push(b.await.map_err(|e| e.to_string())??);
            }
        }
        let codes = Rc::new(codes);
        let next = Rc::new(std::cell::Cell::new(0usize));
        let (t0, s0) = (Instant::now(), cpu(t.pid));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, t, codes, next) = (http.clone(), t.clone(), codes.clone(), next.clone());
                tokio::task::spawn_local(async move {
                    loop {
                        let i = next.get();
                        let Some(c) = codes.get(i) else {
                            return Ok::<_, String>(());
                        };
                        next.set(i + 1);
                        exchange(&http, &t, c).await?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.map_err(|e| e.to_string())??;
        }
        token_secs += t0.elapsed().as_secs_f64();
        token_cpu += cpu(t.pid) - s0;
        exchanged += codes.len();
    }
    let pct = |p: f64| lat[((p * lat.len() as f64) as usize).min(lat.len().saturating_sub(1))];
    Ok(Measured {
        flows_per_sec: lat.len() as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
        server_ms_per_flow: (s1 - s0) * 1000.0 / flows,
        client_ms_per_flow: (c1 - c0) * 1000.0 / flows,
        tokens_per_sec: exchanged as f64 / token_secs,
        tokens: exchanged,
        server_ms_per_token: token_cpu * 1000.0 / exchanged.max(1) as f64,
    })
}

fn args() -> Res<(Vec<Target>, f64, usize, usize)> {
    let mut it = std::env::args().skip(1);
    let (mut targets, mut seconds, mut concurrency, mut rounds) = (Vec::new(), 10.0, 16, 1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--concurrency" => concurrency = value()?.parse().map_err(|_| "bad --concurrency")?,
            "--rounds" => rounds = value()?.parse().map_err(|_| "bad --rounds")?,
            "--target" => {
                let v = value()?;
                let p: Vec<&str> = v.splitn(5, ',').collect();
                let [kind, base, client_id, secret, pid] = p[..] else {
                    return Err(format!("--target KIND,URL,CLIENT_ID,SECRET,PID: {v}"));
                };
                let (kind, name) = match kind {
                    "socle-direct" => (Kind::SocleDirect, "socle, no page"),
                    "socle" => (Kind::Socle, "socle"),
                    "op" => (Kind::Op, "oidc-provider"),
                    "op-pages" => (Kind::OpPages, "oidc-provider+pages"),
                    k => return Err(format!("unknown kind {k}")),
                };
                targets.push(Target {
                    kind,
                    name: name.to_string(),
                    base: base.trim_end_matches('/').to_string(),
                    client_id: client_id.to_string(),
                    secret: secret.to_string(),
                    pid: pid.parse().map_err(|_| "bad pid")?,
                });
            }
            x => return Err(format!("unknown argument {x}")),
        }
    }
    Ok((targets, seconds, concurrency.max(1), rounds.max(1)))
}

fn main() {
    let (targets, seconds, concurrency, rounds) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flowgen: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowgen: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, async move {
        let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
        let targets: Vec<Rc<Target>> = targets.into_iter().map(Rc::new).collect();
        // Each round measures every target in turn; the machine's speed drifts from one
        // minute to the next, so a ratio is taken within each round and the rounds'
        // median is the figure.
        let mut ratios: HashMap<&str, Vec<[f64; 3]>> = HashMap::new();
        for round in 1..=rounds {
            let mut results: HashMap<String, Measured> = HashMap::new();
            for t in &targets {
                let name = t.name.clone();
                match measure(&http, t.clone(), seconds, concurrency).await {
                    Ok(r) => {
                        println!(
                            "{}{name:<20} login flows {:>6.0}/s (p50 {:.1} ms, p99 {:.1} ms; CPU per flow: server {:.2} ms, client {:.2} ms)   token endpoint {:>6.0}/s ({} codes; server CPU {:.3} ms each)",
                            if rounds > 1 { format!("round {round}: ") } else { String::new() },
                            r.flows_per_sec,
                            r.p50,
                            r.p99,
                            r.server_ms_per_flow,
                            r.client_ms_per_flow,
                            r.tokens_per_sec,
                            r.tokens,
                            r.server_ms_per_token
                        );
                        results.insert(name, r);
                    }
                    Err(e) => {
                        eprintln!("flowgen: {name}: {e}");
                        return 1;
                    }
                }
            }
            for (mine, theirs) in PAIRS {
                if let (Some(s), Some(o)) = (results.get(mine), results.get(theirs)) {
                    ratios.entry(mine).or_default().push([
                        s.flows_per_sec / o.flows_per_sec,
                        s.tokens_per_sec / o.tokens_per_sec,
                        o.server_ms_per_flow / s.server_ms_per_flow,
                    ]);
                }
            }
        }
        for (mine, theirs) in PAIRS {
            let Some(r) = ratios.get(mine) else { continue };
            let med = |i: usize| {
                let mut v: Vec<f64> = r.iter().map(|x| x[i]).collect();
                v.sort_by(f64::total_cmp);
                let spread = if v.len() > 1 {
                    format!(" (rounds {:.2}–{:.2})", v[0], v[v.len() - 1])
                } else {
                    String::new()
                };
                let n = v.len();
                let m = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
                format!("{m:.2}x{spread}")
            };
            println!(
                "ratio {mine} / {theirs}{}: login flows {}, token endpoint {} (target 3x); server CPU per flow {} less",
                if rounds > 1 { format!(", median of {rounds} rounds") } else { String::new() },
                med(0),
                med(1),
                med(2)
            );
        }
        0
    });
    std::process::exit(code);
}
