//! Sign-in attempts per account, kept in memory, so that nobody can try passwords
//! against one agent's account at the speed of the server (NIST SP 800-63B § 5.2.2:
//! limit consecutive failed attempts on a single account).
//!
//! Every attempt counts until it succeeds — it is counted *before* its password is
//! checked, so attempts sent all at once are held like attempts sent one after the
//! other. The first [`FREE`] go through; each one after that must wait before it is
//! even checked: 2 s after the previous, then twice as long each time, up to
//! [`MAX_WAIT`]. A successful sign-in clears the account's count; an hour without an
//! attempt also does. The key is whatever e-mail address was typed, whether an account
//! has it or not, so the answers say nothing about which accounts exist.
//!
//! Someone failing on purpose slows the agent down as much as themselves: by trying as
//! each wait ends they can keep the account waiting (up to 15 minutes between attempts);
//! the refusals are counted in `socle_sign_in_throttled_total` for the operator.
//!
//! Per node: with several nodes each keeps its own counts, so an attacker spreading
//! attempts over N nodes gets N times the attempts (still a few per hour and node once
//! throttled).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts without a success that go through without a wait.
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
    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // The map stays consistent whatever a panicking holder did: keep using it.
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt on `account` before its password is checked; `Err(wait)`
    /// when the account must wait first (the attempt is then not counted).
    pub fn attempt(&self, account: &str, now: Instant) -> Result<(), Duration> {
        let mut accounts = self.accounts();
        if let Some(until) = accounts.get(account).and_then(|f| f.until)
            && until > now
        {
            return Err(until - now);
        }
        if accounts.len() >= CAP && !accounts.contains_key(account) {
            accounts.retain(|_, f| now.duration_since(f.last) < FORGET && f.count >= FREE);
            if accounts.len() >= CAP {
                // Only waiting accounts left: the least-tried half goes (by rank, so
                // that equal counts do not empty the table).
                let mut counts: Vec<u32> = accounts.values().map(|f| f.count).collect();
                counts.sort_unstable();
                let keep_above = counts[counts.len() / 2];
                let mut dropped = 0;
                let target = accounts.len() / 2;
                accounts.retain(|_, f| {
                    if f.count <= keep_above && dropped < target {
                        dropped += 1;
                        false
                    } else {
                        true
                    }
                });
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
        f.until = wait_after(f.count).map(|w| now + w);
        Ok(())
    }

    /// A successful sign-in: the account's attempts are forgotten.
    pub fn succeeded(&self, account: &str) {
        self.accounts().remove(account);
    }
}

/// The wait after the `count`-th attempt without a success.
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
    fn waits_grow_after_the_free_attempts_and_stop_at_the_maximum() {
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
        // All at once, as parallel requests would: FREE go through, then a wait.
        for _ in 0..FREE {
            assert!(t.attempt("a@x.fr", start).is_ok());
        }
        assert_eq!(t.attempt("a@x.fr", start), Err(Duration::from_secs(2)));
        assert_eq!(
            t.attempt("a@x.fr", start),
            Err(Duration::from_secs(2)),
            "a refusal is not counted"
        );
        assert!(
            t.attempt("b@x.fr", start).is_ok(),
            "other accounts unaffected"
        );
        let later = start + Duration::from_secs(2);
        assert!(t.attempt("a@x.fr", later).is_ok(), "the wait is over");
        assert_eq!(t.attempt("a@x.fr", later), Err(Duration::from_secs(4)));
        t.succeeded("a@x.fr");
        assert!(t.attempt("a@x.fr", later).is_ok(), "counting starts again");

        for _ in 0..FREE {
            let _ = t.attempt("c@x.fr", start);
        }
        let next_hour = start + FORGET;
        assert!(t.attempt("c@x.fr", next_hour).is_ok());
        assert!(
            t.attempt("c@x.fr", next_hour).is_ok(),
            "old attempts forgotten"
        );
    }

    #[test]
    fn a_full_table_keeps_the_waiting_accounts() {
        let t = SignInThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE + 2 {
            let _ = t.attempt("target@x.fr", now);
            let _ = t.attempt("target@x.fr", now + MAX_WAIT);
        }
        for i in 0..CAP {
            let _ = t.attempt(&format!("spray{i}@x.fr"), now);
        }
        assert!(t.attempt("target@x.fr", now).is_err());
        assert!(t.accounts().len() <= CAP);
        // A table of waiting accounts only, all alike: half goes, not all.
        let t = SignInThrottle::default();
        for i in 0..CAP {
            for _ in 0..FREE {
                let _ = t.attempt(&format!("w{i}@x.fr"), now);
            }
        }
        let _ = t.attempt("new@x.fr", now);
        let n = t.accounts().len();
        assert!(n > CAP / 3 && n <= CAP, "{n}");
    }
}
