//! Usage statistics per API and per service: calls, errors and latency percentiles
//! (log-scale histogram, about 9 % resolution), kept in memory on each node since it
//! started; the same figures go to `/metrics` through the `metrics` facade.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

const BUCKETS: usize = 224;

fn bucket(micros: u64) -> usize {
    // 8 buckets per power of two, from 1 µs.
    let v = micros.max(1) as f64;
    ((v.log2() * 8.0) as usize).min(BUCKETS - 1)
}

fn upper(b: usize) -> f64 {
    2f64.powf((b + 1) as f64 / 8.0)
}

#[derive(Debug, Clone)]
struct Hist {
    calls: u64,
    errors: u64,
    counts: [u64; BUCKETS],
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            calls: 0,
            errors: 0,
            counts: [0; BUCKETS],
        }
    }
}

impl Hist {
    fn add(&mut self, other: &Hist) {
        self.calls += other.calls;
        self.errors += other.errors;
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (p * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank.max(1) {
                return upper(i) / 1000.0;
            }
        }
        upper(BUCKETS - 1) / 1000.0
    }
}

/// Figures of one API, or of one service on one API.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub calls: u64,
    pub errors: u64,
    /// Latency percentiles in milliseconds (upper bound of the histogram bucket).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Default)]
pub struct Stats {
    by_pair: Mutex<BTreeMap<(String, String), Hist>>,
}

impl Stats {
    pub fn record(&self, api: &str, service: &str, error: bool, micros: u64) {
        let mut m = match self.by_pair.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let h = m.entry((api.to_string(), service.to_string())).or_default();
        h.calls += 1;
        if error {
            h.errors += 1;
        }
        h.counts[bucket(micros)] += 1;
    }

    fn usage(h: &Hist) -> Usage {
        Usage {
            calls: h.calls,
            errors: h.errors,
            p50_ms: h.percentile(0.50),
            p99_ms: h.percentile(0.99),
        }
    }

    /// The API's figures in all, and per service (SIRET).
    pub fn for_api(&self, api: &str) -> (Usage, Vec<(String, Usage)>) {
        let m = match self.by_pair.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut all = Hist::default();
        let mut per = Vec::new();
        for ((a, s), h) in m.iter() {
            if a == api {
                all.add(h);
                per.push((s.clone(), Self::usage(h)));
            }
        }
        (Self::usage(&all), per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_resolution() {
        let s = Stats::default();
        for i in 1..=100u64 {
            s.record("api", "svc", i == 100, i * 1000);
        }
        s.record("other", "svc", false, 5);
        let (all, per) = s.for_api("api");
        assert_eq!(all.calls, 100);
        assert_eq!(all.errors, 1);
        assert!((all.p50_ms - 50.0).abs() / 50.0 < 0.1, "{}", all.p50_ms);
        assert!((all.p99_ms - 99.0).abs() / 99.0 < 0.1, "{}", all.p99_ms);
        assert_eq!(per.len(), 1);
    }
}
