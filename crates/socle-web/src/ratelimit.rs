//! The per-client rate limit of the public, unauthenticated read endpoints (the
//! journal's): the platform's one token bucket (`socle_core::rate`), bursts of twice
//! the rate.

use std::net::IpAddr;
use std::time::Duration;

use socle_core::rate::TokenBuckets;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    buckets: TokenBuckets<IpAddr>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            buckets: TokenBuckets::new(50_000),
        }
    }

    /// Takes one token for `ip`; on refusal, says how long until the next one.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let burst = self.per_second.saturating_mul(2);
        self.buckets
            .take(&ip, self.per_second, burst)
            .map(|_| ())
            .map_err(|(_, wait)| Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_then_refills() {
        let rl = RateLimiter::new(5);
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..10 {
            assert!(rl.check(ip).is_ok());
        }
        let wait = rl.check(ip).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(
            rl.check([127, 0, 0, 2].into()).is_ok(),
            "other clients are not affected"
        );
    }
}
