//! OpenID Connect Back-Channel Logout 1.0: when a browser session ends, every service
//! it logged in to that registered a `backchannel_logout_uri` is owed a logout token
//! (`iss`, `aud`, `iat`, `exp`, `jti`, `events`, `sid`, and its pairwise `sub`), POSTed
//! as `logout_token` from a durable outbox with retries and exponential backoff.
//!
//! A row is queued per service before the session is deleted; whichever node (or
//! loop) advances a due row's attempts sends it, so one sends at a time, and a node
//! that dies mid-attempt leaves it due again after [`CLAIM_SECONDS`] (at least once:
//! the `jti` stays the same across attempts, for the service to drop a repeat). The
//! token is signed at each attempt (it lives [`TOKEN_SECONDS`]), with the key of the
//! service's ID tokens. Each outcome (delivered, given up) is journaled under the
//! person's pseudonym. Front-channel logout is not supported (discovery says so).

use std::time::Duration;

use josekit::jwt::JwtPayload;
use serde::{Deserialize, Serialize};
use serde_json::json;
use socle_journal::{Entry, EntryKind};
use socle_store::StoredBackchannel;

use crate::error::{IdentityError, Result};
use crate::provider::Provider;

/// Attempts before a logout is given up (the last about 2 minutes after the first).
pub const MAX_ATTEMPTS: i64 = 8;
/// How long an attempt is left to itself before another may take the row.
pub const CLAIM_SECONDS: i64 = 30;
/// Lifetime of a logout token.
pub const TOKEN_SECONDS: i64 = 120;
/// The event a logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a queued logout says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Owed {
    pub uri: String,
    pub sub: String,
    pub sid: String,
    /// The person's journal pseudonym, for the outcome's entry.
    pub subject: String,
}

/// Seconds before the attempt after `attempts` failed ones: 1, 2, 4… capped at 64.
fn backoff(attempts: i64) -> i64 {
    1_i64 << attempts.clamp(1, 7).saturating_sub(1)
}

impl Provider {
    /// Sends the logouts that are due (at most 50); returns how many were attempted.
    /// `http` is the client for calls on a service's word (no redirects, public
    /// addresses only: `socle_catalogue::notify::delivery_client`).
    pub async fn deliver_logouts(&self, http: &reqwest::Client) -> Result<usize> {
        let due = self.store.due_backchannel(crate::now(), 50).await?;
        let mut n = 0;
        for mut b in due {
            let t = crate::now();
            if !self
                .store
                .claim_backchannel(&b.id, b.attempts, t + CLAIM_SECONDS, t)
                .await?
            {
                continue;
            }
            n += 1;
            b.attempts += 1;
            let outcome = self.send_logout(http, &b).await;
            let owed: Option<Owed> = serde_json::from_str(&b.doc).ok();
            match outcome {
                Ok(()) => {
                    b.state = "delivered".into();
                    b.last_error = None;
                }
                Err(why) => {
                    tracing::info!(client_id = %b.client_id, attempts = b.attempts, reason = %why, "back-channel logout not delivered");
                    b.last_error = Some(why);
                    if b.attempts >= MAX_ATTEMPTS {
                        b.state = "failed".into();
                    } else {
                        b.next_at = crate::now() + backoff(b.attempts);
                    }
                }
            }
            // The outcome first: a delivered token is never sent again for want of its
            // journal entry.
            self.store.update_backchannel(&b, crate::now()).await?;
            if b.state != "pending"
                && let Some(owed) = owed
            {
                // The outcome is the person's: who was told they logged out.
                let recorded = self
                    .journal
                    .append(vec![
                        Entry::new(
                            EntryKind::Login,
                            format!("client:{}", b.client_id),
                            if b.state == "delivered" {
                                "ok"
                            } else {
                                "failed"
                            },
                        )
                        .subject(self.journal.subject_of(&owed.subject))
                        .detail("action", "logout.backchannel")
                        .detail("client_id", b.client_id.clone())
                        .detail("attempts", b.attempts.to_string()),
                    ])
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(error = %e, client_id = %b.client_id, "back-channel logout outcome not journaled");
                }
            }
        }
        Ok(n)
    }

    /// One attempt: the token, signed now, POSTed; why it failed.
    async fn send_logout(
        &self,
        http: &reqwest::Client,
        b: &StoredBackchannel,
    ) -> std::result::Result<(), String> {
        let owed: Owed =
            serde_json::from_str(&b.doc).map_err(|_| "unreadable outbox row".to_string())?;
        // A disabled service is still told: its sessions are ending.
        let client = self
            .clients
            .get(&b.client_id)
            .await
            .map_err(|e| format!("the service cannot be read: {e}"))?
            .ok_or_else(|| "the service is unknown".to_string())?;
        let token = self
            .logout_token(
                &client.client_id,
                &client.id_token_signed_response_alg,
                &owed,
                &b.id,
            )
            .map_err(|e| format!("token not signed: {e}"))?;
        let r = http
            .post(&owed.uri)
            .timeout(Duration::from_secs(5))
            .form(&[("logout_token", token.as_str())])
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "no answer within 5 s".to_string()
                } else {
                    "connection failed".to_string()
                }
            })?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", r.status().as_u16()))
        }
    }

    /// The logout token (Back-Channel Logout 1.0 §2.4), typed `logout+jwt`.
    fn logout_token(&self, client_id: &str, alg: &str, owed: &Owed, jti: &str) -> Result<String> {
        let now = crate::now();
        let mut p = JwtPayload::new();
        p.set_issuer(self.issuer());
        p.set_subject(&owed.sub);
        p.set_audience(vec![client_id.to_string()]);
        p.set_jwt_id(jti);
        let set = |p: &mut JwtPayload, k: &str, v: serde_json::Value| {
            p.set_claim(k, Some(v)).map_err(IdentityError::from)
        };
        set(&mut p, "iat", json!(now))?;
        set(&mut p, "exp", json!(now + TOKEN_SECONDS))?;
        set(&mut p, "sid", json!(owed.sid))?;
        set(&mut p, "events", json!({ EVENT: {} }))?;
        self.keys.sign(alg, &p, Some("logout+jwt"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<i64> = (1..=9).map(super::backoff).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
    }
}
