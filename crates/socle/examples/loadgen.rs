//! A small HTTP/1.1 load generator for `scripts/bench-gateway`: the same client for
//! every target (direct upstream, nginx, the gateway), so that ratios compare servers,
//! not clients. Keep-alive connections over raw TCP; two modes:
//!
//! - closed loop (no `--rate`): each connection sends its next request as soon as the
//!   previous answer is read — throughput at saturation;
//! - open loop (`--rate R`): request *i* is due at `start + i/R` whatever happened
//!   before; its latency is measured from that due time (coordinated-omission
//!   correction, as wrk2 and `oha --latency-correction` do). A pacer thread releases
//!   the requests at their due times with sub-millisecond precision (tokio's timers
//!   have a 1 ms granularity, which would add up to 1 ms to every latency), sleeping
//!   between them, and free connections take them in order.
//!
//! Prints one JSON object: requests, errors (non-2xx or broken), rps, latency
//! percentiles in milliseconds.
//!
//!   loadgen URL [-H 'Name: value']… [-c CONNECTIONS] [-d SECONDS] [--rate R]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    url: url::Url,
    headers: Vec<String>,
    connections: usize,
    seconds: f64,
    rate: Option<f64>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut a = Args {
        url: url::Url::parse("http://127.0.0.1/").map_err(|e| e.to_string())?,
        headers: Vec::new(),
        connections: 64,
        seconds: 10.0,
        rate: None,
    };
    while let Some(x) = it.next() {
        let mut value = || it.next().ok_or(format!("{x} needs a value"));
        match x.as_str() {
            "-H" => a.headers.push(value()?),
            "-c" => a.connections = value()?.parse().map_err(|_| "bad -c")?,
            "-d" => a.seconds = value()?.parse().map_err(|_| "bad -d")?,
            "--rate" => a.rate = Some(value()?.parse().map_err(|_| "bad --rate")?),
            u => url = Some(url::Url::parse(u).map_err(|e| format!("{u}: {e}"))?),
        }
    }
    a.url = url.ok_or("usage: loadgen URL [-H header]… [-c N] [-d S] [--rate R]")?;
    Ok(a)
}

/// Reads one response; returns its status.
async fn response(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    match (length, chunked) {
        (Some(len), _) => {
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..head_end + len);
        }
        (None, true) => loop {
            if let Some(p) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                buf.drain(..head_end + p + 5);
                break;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        },
        (None, false) => buf.drain(..head_end).for_each(drop),
    }
    Ok(status)
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let host = a.url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = a.url.port_or_known_default().unwrap_or(80);
    let target = match a.url.query() {
        Some(q) => format!("{}?{q}", a.url.path()),
        None => a.url.path().to_string(),
    };
    let mut request = format!("GET {target} HTTP/1.1\r\nhost: {host}:{port}\r\n");
    for h in &a.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = Arc::new(request.into_bytes());
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(a.seconds);
    let errors = Arc::new(AtomicU64::new(0));
    // Open loop: the pacer sends each due time when it falls due.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    if let Some(rate) = a.rate {
        std::thread::spawn(move || {
            let mut i: u64 = 0;
            loop {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= end {
                    return;
                }
                // Sleep, never spin: on a small machine a spinning pacer would take a
                // core from the server under test. The sleep's overshoot (tens of µs)
                // counts in every target's latency alike.
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.send(due).is_err() {
                    return;
                }
                i += 1;
            }
        });
    } else {
        drop(tx);
    }
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (request, errors, host, rx) =
            (request.clone(), errors.clone(), host.clone(), rx.clone());
        let rate = a.rate;
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u64> = Vec::new();
            let mut sock: Option<TcpStream> = None;
            let mut buf = Vec::new();
            tokio::time::sleep_until(start.into()).await;
            loop {
                let due = match rate {
                    Some(_) => {
                        let next = rx.lock().await.recv().await;
                        match next {
                            Some(due) => due,
                            None => break,
                        }
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                if sock.is_none() {
                    match TcpStream::connect((host.as_str(), port)).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            sock = Some(s);
                            buf.clear();
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sock.as_mut() else { continue };
                let ok = match s.write_all(&request).await {
                    Ok(()) => response(s, &mut buf).await,
                    Err(e) => Err(e),
                };
                match ok {
                    Ok(status) => {
                        if !(200..300).contains(&status) {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        lat.push(due.elapsed().as_micros() as u64);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        sock = None;
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().min(a.seconds).max(1e-9);
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"rps\": {:.0}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        all.len(),
        errors.load(Ordering::Relaxed),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
