//! Sign-in attempts per account and per client address, kept in memory, so that nobody
//! can try passwords against one agent's account at the speed of the server (NIST SP
//! 800-63B § 5.2.2: limit consecutive failed attempts on a single account), nor one
//! common password against every account from one address ("password spraying", which
//! a per-account limit alone never notices).
//!
//! Every attempt counts until it succeeds — it is counted *before* its password is
//! checked, so attempts sent all at once are held like attempts sent one after the
//! other. Per account, the first [`FREE`] go through; each one after that must wait
//! before it is even checked: 2 s after the previous, then twice as long each time, up
//! to [`MAX_WAIT`]. A successful sign-in clears the account's count; an hour without an
//! attempt also does. The key is whatever e-mail address was typed, whether an account
//! has it or not, so the answers say nothing about which accounts exist.
//!
//! Per client address (the connection's, or the one a trusted proxy forwards; IPv6 per
//! /64), the same waits start after [`FREE_PER_ADDRESS`] failures within an hour of the
//! address's first attempt (then counting starts again): a success only takes its own
//! attempt back and leaves the wait the last failure called for (an attacker's own
//! account can neither clear the address nor end its wait), so the agents of a whole
//! office behind one address are not held by each other's sign-ins, only by more typing
//! mistakes than that in an hour.
//!
//! Someone failing on purpose slows the agent down as much as themselves: by trying as
//! each wait ends they can keep the account waiting (up to 15 minutes between attempts);
//! the refusals are counted in `socle_sign_in_throttled_total` for the operator.
//!
//! Per node: with several nodes each keeps its own counts, so an attacker spreading
//! attempts over N nodes gets N times the attempts (still a few per hour and node once
//! throttled).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts on one account without a success that go through without a wait.
pub const FREE: u32 = 5;
/// Failed attempts from one client address that go through without a wait.
pub const FREE_PER_ADDRESS: u32 = 30;
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
const FORGET: Duration = Duration::from_secs(3600);
/// Keys tracked at most (per kind); beyond, those not waiting are forgotten first.
const CAP: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// The first attempt counted (the window's start).
    since: Instant,
    last: Instant,
    /// The last attempt whose password was wrong.
    failed_at: Option<Instant>,
    /// No attempt is checked before this.
    until: Option<Instant>,
}

/// When a key's count starts again from zero.
#[derive(Debug, Clone, Copy)]
enum Forget {
    /// An hour without any attempt (accounts: a success clears the count anyway).
    Idle,
    /// An hour after the first attempt counted (addresses: successes keep coming from
    /// a busy office, so an idle hour may never come).
    Window,
}

/// Attempt counts for one kind of key, with its free allowance.
#[derive(Debug)]
struct Counts<K> {
    free: u32,
    forget: Forget,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new(free: u32, forget: Forget) -> Self {
        Counts {
            free,
            forget,
            map: HashMap::new(),
        }
    }

    /// How long `key` must still wait, if at all.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.map.get(key)?.until?;
        (until > now).then(|| until - now)
    }

    /// Counts an attempt on `key`.
    fn count(&mut self, key: &K, now: Instant) {
        if self.map.len() >= CAP && !self.map.contains_key(key) {
            let free = self.free;
            self.map
                .retain(|_, f| now.duration_since(f.last) < FORGET && f.count >= free);
            if self.map.len() >= CAP {
                // Only waiting keys left: the least-tried half goes (by rank, so that
                // equal counts do not empty the table).
                let mut counts: Vec<u32> = self.map.values().map(|f| f.count).collect();
                counts.sort_unstable();
                let keep_above = counts[counts.len() / 2];
                let mut dropped = 0;
                let target = self.map.len() / 2;
                self.map.retain(|_, f| {
                    if f.count <= keep_above && dropped < target {
                        dropped += 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        let f = self.map.entry(key.clone()).or_insert(Failures {
            count: 0,
            since: now,
            last: now,
            failed_at: None,
            until: None,
        });
        let start = match self.forget {
            Forget::Idle => f.last,
            Forget::Window => f.since,
        };
        if now.duration_since(start) >= FORGET {
            *f = Failures {
                count: 0,
                since: now,
                last: now,
                failed_at: None,
                until: None,
            };
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        // Set before the password is checked, so that attempts sent at once are held.
        f.until = wait_after(f.count, self.free).map(|w| now + w);
    }

    /// The attempt just counted for `key` had a wrong password.
    fn failed(&mut self, key: &K, now: Instant) {
        if let Some(f) = self.map.get_mut(key) {
            f.failed_at = Some(now);
        }
    }

    /// Takes one attempt of `key` back (it succeeded): the wait is again the one the
    /// last failure calls for, so a success neither adds a wait nor shortens one.
    fn refund(&mut self, key: &K) {
        if let Some(f) = self.map.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            let free = self.free;
            f.until = f
                .failed_at
                .and_then(|at| wait_after(f.count, free).map(|w| at + w));
        }
    }
}

#[derive(Debug)]
struct Tables {
    accounts: Counts<String>,
    addresses: Counts<IpAddr>,
}

#[derive(Debug)]
pub struct SignInThrottle {
    tables: Mutex<Tables>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        SignInThrottle {
            tables: Mutex::new(Tables {
                accounts: Counts::new(FREE, Forget::Idle),
                addresses: Counts::new(FREE_PER_ADDRESS, Forget::Window),
            }),
        }
    }
}

impl SignInThrottle {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The maps stay consistent whatever a panicking holder did: keep using them.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt on `account` from `address` before its password is checked;
    /// `Err(wait)` when the account or the address must wait first (the attempt is
    /// then not counted).
    pub fn attempt(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut t = self.tables();
        let account = account.to_string();
        let waits = [
            t.accounts.wait(&account, now),
            address.and_then(|a| t.addresses.wait(&a, now)),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        t.accounts.count(&account, now);
        if let Some(a) = address {
            t.addresses.count(&a, now);
        }
        Ok(())
    }

    /// A wrong password on an attempt from `address` (its wait then follows from this
    /// failure).
    pub fn failed(&self, address: Option<IpAddr>, now: Instant) {
        if let Some(a) = address {
            self.tables().addresses.failed(&a, now);
        }
    }

    /// A successful sign-in: the account's attempts are forgotten, the address's
    /// attempt taken back.
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>) {
        let mut t = self.tables();
        t.accounts.map.remove(account);
        if let Some(a) = address {
            t.addresses.refund(&a);
        }
    }
}

/// The wait after the `count`-th attempt without a success, `free` going through.
fn wait_after(count: u32, free: u32) -> Option<Duration> {
    if count < free {
        return None;
    }
    let doublings = (count - free).min(16);
    Some(Duration::from_secs(2u64 << doublings).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_attempts_and_stop_at_the_maximum() {
        let waits: Vec<u64> = (1..=16)
            .map(|n| wait_after(n, FREE).map_or(0, |w| w.as_secs()))
            .collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900
            ]
        );
        assert_eq!(wait_after(u32::MAX, FREE), Some(MAX_WAIT));
    }

    #[test]
    fn an_account_waits_success_clears_and_an_hour_forgets() {
        let t = SignInThrottle::default();
        let start = Instant::now();
        // All at once, as parallel requests would: FREE go through, then a wait.
        for _ in 0..FREE {
            assert!(t.attempt("a@x.fr", None, start).is_ok());
        }
        assert_eq!(
            t.attempt("a@x.fr", None, start),
            Err(Duration::from_secs(2))
        );
        assert_eq!(
            t.attempt("a@x.fr", None, start),
            Err(Duration::from_secs(2)),
            "a refusal is not counted"
        );
        assert!(
            t.attempt("b@x.fr", None, start).is_ok(),
            "other accounts unaffected"
        );
        let later = start + Duration::from_secs(2);
        assert!(t.attempt("a@x.fr", None, later).is_ok(), "the wait is over");
        assert_eq!(
            t.attempt("a@x.fr", None, later),
            Err(Duration::from_secs(4))
        );
        t.succeeded("a@x.fr", None);
        assert!(
            t.attempt("a@x.fr", None, later).is_ok(),
            "counting starts again"
        );

        for _ in 0..FREE {
            let _ = t.attempt("c@x.fr", None, start);
        }
        let next_hour = start + FORGET;
        assert!(t.attempt("c@x.fr", None, next_hour).is_ok());
        assert!(
            t.attempt("c@x.fr", None, next_hour).is_ok(),
            "old attempts forgotten"
        );
    }

    #[test]
    fn one_address_spraying_many_accounts_waits_and_others_do_not() {
        let t = SignInThrottle::default();
        let now = Instant::now();
        let sprayer = Some("203.0.113.9".parse().unwrap());
        let office = Some("198.51.100.1".parse().unwrap());
        for i in 0..FREE_PER_ADDRESS {
            assert!(t.attempt(&format!("agent{i}@x.fr"), sprayer, now).is_ok());
        }
        // A new account from the same address: held, though it was never tried.
        assert_eq!(
            t.attempt("agent-new@x.fr", sprayer, now),
            Err(Duration::from_secs(2))
        );
        assert!(t.attempt("agent-new@x.fr", office, now).is_ok());
        // Successes from an address take only their own attempt back: an office's
        // agents signing in all day never add up to a wait.
        for i in 0..3 * FREE_PER_ADDRESS {
            let who = format!("colleague{i}@x.fr");
            assert!(t.attempt(&who, office, now).is_ok(), "{i}");
            t.succeeded(&who, office);
        }
        // The sprayer's own account succeeding takes back its own attempt only, and
        // does not end the wait its failures called for.
        t.failed(sprayer, now);
        let later = now + Duration::from_secs(2);
        assert!(t.attempt("own@x.fr", sprayer, later).is_ok());
        t.succeeded("own@x.fr", sprayer);
        assert!(t.attempt("agent-x@x.fr", sprayer, later).is_ok());
        t.failed(sprayer, later);
        assert_eq!(
            t.attempt("own@x.fr", sprayer, later),
            Err(Duration::from_secs(4)),
            "the 31st failure: twice the first wait"
        );
        // An office whose agents sign in all day, with a few mistakes: the count starts
        // again an hour after its first attempt, successes notwithstanding.
        let busy = Some("192.0.2.10".parse().unwrap());
        let mut t0 = now;
        for hour in 0..3 {
            for i in 0..FREE_PER_ADDRESS - 1 {
                let who = format!("typo{hour}-{i}@x.fr");
                assert!(t.attempt(&who, busy, t0).is_ok(), "hour {hour}, {i}");
                t.failed(busy, t0);
                t0 += Duration::from_secs(60);
                assert!(t.attempt("chef@x.fr", busy, t0).is_ok());
                t.succeeded("chef@x.fr", busy);
            }
            t0 += Duration::from_secs(3600);
        }
    }

    #[test]
    fn a_full_table_keeps_the_waiting_accounts() {
        let t = SignInThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE + 2 {
            let _ = t.attempt("target@x.fr", None, now);
            let _ = t.attempt("target@x.fr", None, now + MAX_WAIT);
        }
        for i in 0..CAP {
            let _ = t.attempt(&format!("spray{i}@x.fr"), None, now);
        }
        assert!(t.attempt("target@x.fr", None, now).is_err());
        assert!(t.tables().accounts.map.len() <= CAP);
        // A table of waiting accounts only, all alike: half goes, not all.
        let t = SignInThrottle::default();
        for i in 0..CAP {
            for _ in 0..FREE {
                let _ = t.attempt(&format!("w{i}@x.fr"), None, now);
            }
        }
        let _ = t.attempt("new@x.fr", None, now);
        let n = t.tables().accounts.map.len();
        assert!(n > CAP / 3 && n <= CAP, "{n}");
    }
}
