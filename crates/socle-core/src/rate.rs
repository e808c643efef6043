//! One token bucket per key, for every rate limit of the platform: the gateway's (per
//! habilitation, or per client address on an open API) and the public journal
//! endpoints' (per client address).
//!
//! A bucket holds at most `burst` tokens and refills at `rate` per second; a call
//! takes one. Buckets live in memory, per node; when there are more than `max_keys`,
//! those that have refilled are forgotten (their clients lose nothing).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// What the `RateLimit-*` headers say after a take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateState {
    /// Calls per second.
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn refilled(&self, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst)
    }
}

/// Token buckets by key.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
    max_keys: usize,
}

impl<K: Eq + Hash + Clone> TokenBuckets<K> {
    pub fn new(max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// Takes a token from `key`'s bucket (`rate` per second, at most `burst` at once);
    /// on refusal, the state and the seconds to wait for the next token.
    pub fn take(&self, key: &K, rate: u32, burst: u32) -> Result<RateState, (RateState, f64)> {
        let now = Instant::now();
        let (rate, burst) = (rate.max(1), burst.max(1));
        let (rate_f, burst_f) = (f64::from(rate), f64::from(burst));
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if buckets.len() > self.max_keys {
            buckets.retain(|_, b| b.refilled(now) < b.burst);
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst_f,
            at: now,
            rate: rate_f,
            burst: burst_f,
        });
        // The key's limit may have changed (an API's rate edited): the new one applies.
        b.rate = rate_f;
        b.burst = burst_f;
        b.tokens = b.refilled(now);
        b.at = now;
        let state = |t: f64| RateState {
            limit: rate,
            remaining: t.max(0.0).floor() as u32,
            reset: ((burst_f - t) / rate_f).ceil().max(0.0) as u64,
        };
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(state(b.tokens))
        } else {
            Err((state(b.tokens), (1.0 - b.tokens) / rate_f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_then_refills_per_key() {
        let b = TokenBuckets::new(10);
        for i in 0..10 {
            let s = b.take(&"a", 5, 10).expect("within the burst");
            assert_eq!((s.limit, s.remaining), (5, 9 - i));
        }
        let (s, wait) = b.take(&"a", 5, 10).expect_err("past the burst");
        assert_eq!(s.remaining, 0);
        assert!(wait > 0.0 && wait <= 0.2, "{wait}");
        assert!(b.take(&"b", 5, 10).is_ok(), "other keys are not affected");
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(b.take(&"a", 5, 10).is_ok(), "refilled");
    }

    #[test]
    fn refilled_buckets_are_forgotten_past_the_key_limit() {
        let b = TokenBuckets::new(2);
        for k in 0..3 {
            b.take(&k, 1000, 1).expect("first call");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        b.take(&3, 1000, 1).expect("first call");
        let kept = b.buckets.lock().expect("lock").len();
        assert!(kept <= 2, "{kept} buckets kept");
    }
}
