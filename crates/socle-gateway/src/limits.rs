//! Rate limits and quotas. Rates are token buckets in memory, per habilitation (or per
//! client address for open APIs). Daily quotas count accepted calls in memory and add
//! them to the store every second (`flush`), reading back the total of every node:
//! a restart loses at most the last second's count, and with N nodes a quota can be
//! overrun by at most N × (calls per second per node) × 1 s.

use std::collections::HashMap;
use std::sync::Mutex;

use socle_store::{GatewayStore, Store};

pub use socle_core::rate::RateState;
use socle_core::rate::TokenBuckets;

/// The gateway's rate limits: one token bucket per key (`socle_core::rate`), bursts
/// of one second's calls.
#[derive(Debug)]
pub struct RateLimits {
    buckets: TokenBuckets<String>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            buckets: TokenBuckets::new(100_000),
        }
    }
}

impl RateLimits {
    /// Takes a token from `key`'s bucket (`rate` per second, bursts of `rate`); on
    /// refusal, the seconds to wait.
    pub fn take(&self, key: &str, rate: u32) -> Result<RateState, (RateState, f64)> {
        self.buckets.take(&key.to_string(), rate, rate)
    }
}

#[derive(Debug, Default)]
struct Counter {
    day: String,
    /// The total the store last returned (every node).
    known: i64,
    /// Accepted here since the last flush.
    pending: i64,
}

#[derive(Debug, Default)]
pub struct Quotas {
    counters: Mutex<HashMap<String, Counter>>,
}

impl Quotas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counter>> {
        match self.counters.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        }
    }

    /// Counts one call of `habilitation` on `day` if it stays within `quota`; returns
    /// the calls used (this one included) or `None` when the quota is spent.
    pub async fn take(
        &self,
        store: &Store,
        habilitation: &str,
        day: &str,
        quota: u64,
    ) -> Result<Option<i64>, socle_store::StoreError> {
        let fresh = {
            let c = self.lock();
            !matches!(c.get(habilitation), Some(x) if x.day == day)
        };
        if fresh {
            // First call of the day on this node: read the shared total.
            let known = store.add_quota_use(habilitation, day, 0).await?;
            let mut c = self.lock();
            let e = c.entry(habilitation.to_string()).or_default();
            if e.day != day {
                *e = Counter {
                    day: day.to_string(),
                    known,
                    pending: 0,
                };
            }
        }
        let mut c = self.lock();
        let Some(e) = c.get_mut(habilitation) else {
            return Ok(None);
        };
        let used = e.known + e.pending;
        if quota > 0 && used >= quota as i64 {
            return Ok(None);
        }
        e.pending += 1;
        Ok(Some(used + 1))
    }

    /// Adds the pending counts to the store and reads back the totals.
    pub async fn flush(&self, store: &Store) -> Result<(), socle_store::StoreError> {
        let pending: Vec<(String, String, i64)> = {
            let mut c = self.lock();
            c.iter_mut()
                .filter(|(_, v)| v.pending > 0)
                .map(|(k, v)| {
                    let n = v.pending;
                    v.pending = 0;
                    v.known += n;
                    (k.clone(), v.day.clone(), n)
                })
                .collect()
        };
        let mut failed = None;
        for (hab, day, n) in pending {
            match store.add_quota_use(&hab, &day, n).await {
                Ok(total) => {
                    let mut c = self.lock();
                    if let Some(e) = c.get_mut(&hab)
                        && e.day == day
                    {
                        e.known = total;
                    }
                }
                Err(err) => {
                    // Put the count back: it is added at the next flush.
                    let mut c = self.lock();
                    if let Some(e) = c.get_mut(&hab)
                        && e.day == day
                    {
                        e.pending += n;
                        e.known -= n;
                    }
                    failed = Some(err);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_its_rate() {
        let r = RateLimits::default();
        for i in 0..5 {
            let s = r.take("h", 5).unwrap();
            assert_eq!(s.remaining, 4 - i);
            assert_eq!(s.limit, 5);
        }
        let (s, wait) = r.take("h", 5).unwrap_err();
        assert_eq!(s.remaining, 0);
        assert!(wait > 0.0 && wait <= 0.2, "{wait}");
        assert!(r.take("other", 5).is_ok());
    }
}
