//! Failed sign-ins per account, kept in memory, so that nobody can try passwords
//! against one agent's account at the speed of the server (NIST SP 800-63B § 5.2.2:
//! limit consecutive failed attempts on a single account).
//!
//! The first [`FREE`] failures cost nothing (people mistype). Each failure after that
//! makes the account wait before its next attempt is even checked: 2 s, then twice as
//! long each time, up to [`MAX_WAIT`]. A successful sign-in clears the account's
//! failures; an hour without any also does. The key is whatever e-mail address was
//! typed, whether an account has it or not, so the answers say nothing about which
//! accounts exist. A throttled account can still be signed into once its wait is over:
//! someone failing on purpose slows an agent down, never locks them out for good.
//!
//! Per node: with several nodes each keeps its own counts, so an attacker spreading
//! attempts over N nodes gets N times the attempts (still a few per hour and node once
//! throttled).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before any wait.
pub const FREE: u32 = 5;
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
const FORGET: Duration = Duration::from_secs(3600);
/// Accounts tracked at most; beyond, those not waiting are forgotten first.
const CAP: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt is checked before this.
    until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct SignInThrottle {
    accounts: Mutex<HashMap<String, Failures>>,
}

impl SignInThrottle {
    /// `Err(wait)` when this account must wait before its next attempt.
    pub fn check(&self, account: &str, now: Instant) -> Result<(), Duration> {
        let Ok(accounts) = self.accounts.lock() else {
            return Ok(());
        };
        match accounts.get(account).and_then(|f| f.until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt; returns the wait it imposes, if any.
    pub fn failed(&self, account: &str, now: Instant) -> Option<Duration> {
        let Ok(mut accounts) = self.accounts.lock() else {
            return None;
        };
        if accounts.len() >= CAP && !accounts.contains_key(account) {
            accounts.retain(|_, f| now.duration_since(f.last) < FORGET && f.count >= FREE);
            if accounts.len() >= CAP {
                // Only waiting accounts left: the least-failed half goes.
                let mut counts: Vec<u32> = accounts.values().map(|f| f.count).collect();
                counts.sort_unstable();
                let median = counts[counts.len() / 2];
                accounts.retain(|_, f| f.count > median);
            }
        }
        let f = accounts.entry(account.to_string()).or_insert(Failures {
            count: 0,
            last: now,
            until: None,
        });
        if now.duration_since(f.last) >= FORGET {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let wait = wait_after(f.count);
        f.until = wait.map(|w| now + w);
        wait
    }

    /// A successful sign-in: the account's failures are forgotten.
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.remove(account);
        }
    }
}

/// The wait imposed by the `count`-th consecutive failure.
fn wait_after(count: u32) -> Option<Duration> {
    if count < FREE {
        return None;
    }
    let doublings = (count - FREE).min(16);
    Some(Duration::from_secs(2u64 << doublings).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures_and_stop_at_the_maximum() {
        let waits: Vec<u64> = (1..=16)
            .map(|n| wait_after(n).map_or(0, |w| w.as_secs()))
            .collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900
            ]
        );
        assert_eq!(wait_after(u32::MAX), Some(MAX_WAIT));
    }

    #[test]
    fn an_account_waits_success_clears_and_an_hour_forgets() {
        let t = SignInThrottle::default();
        let start = Instant::now();
        for _ in 1..FREE {
            assert_eq!(t.failed("a@x.fr", start), None);
            assert!(t.check("a@x.fr", start).is_ok());
        }
        assert_eq!(t.failed("a@x.fr", start), Some(Duration::from_secs(2)));
        assert_eq!(t.check("a@x.fr", start), Err(Duration::from_secs(2)));
        assert!(
            t.check("b@x.fr", start).is_ok(),
            "other accounts unaffected"
        );
        let later = start + Duration::from_secs(2);
        assert!(t.check("a@x.fr", later).is_ok(), "the wait is over");
        assert_eq!(t.failed("a@x.fr", later), Some(Duration::from_secs(4)));
        t.succeeded("a@x.fr");
        assert!(t.check("a@x.fr", later).is_ok());
        assert_eq!(t.failed("a@x.fr", later), None, "counting starts again");

        for _ in 0..FREE {
            t.failed("c@x.fr", start);
        }
        let next_hour = start + FORGET;
        assert_eq!(
            t.failed("c@x.fr", next_hour),
            None,
            "old failures forgotten"
        );
    }

    #[test]
    fn a_full_table_keeps_the_waiting_accounts() {
        let t = SignInThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE + 2 {
            t.failed("target@x.fr", now);
        }
        for i in 0..CAP {
            t.failed(&format!("spray{i}@x.fr"), now);
        }
        assert!(t.check("target@x.fr", now).is_err());
        assert!(t.accounts.lock().unwrap().len() <= CAP);
    }
}
