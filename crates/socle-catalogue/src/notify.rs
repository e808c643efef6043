//! Notifications of habilitation events: webhooks signed with HMAC-SHA256 (GitHub's
//! `X-Hub-Signature-256: sha256=<hex>` convention), delivered with retries and
//! exponential backoff, given up after [`MAX_ATTEMPTS`] and the webhook disabled after
//! [`DISABLE_AFTER`] consecutive give-ups; and e-mails placed in an outbox.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use socle_store::{
    BackOfficeStore, HabilitationCommit, NewMail, NotificationStore, Store, StoredDelivery,
    StoredWebhook,
};

use crate::{CatalogueError, Result, now, random};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 8;
/// Consecutive given-up deliveries that disable a webhook.
pub const DISABLE_AFTER: i64 = 3;
/// How long a delivery taken for an attempt is left to it (the attempt's timeout is 5 s).
const CLAIM_SECONDS: i64 = 60;

/// `sha256=` and the hex HMAC-SHA256 of the body under the webhook's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length: the error branch cannot be taken.
    match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::from("sha256="),
    }
}

/// Seconds before attempt `n + 1` (after `n` failed attempts): 1, 2, 4… capped at
/// 2,048 s.
pub fn backoff(attempts: i64) -> i64 {
    1_i64 << attempts.clamp(0, 12).saturating_sub(1).min(11)
}

/// The client that delivers webhooks: no redirects followed, and host names resolved
/// to public addresses only (a name pointing at 127.0.0.1 or the cloud metadata
/// address gets nothing). A private target, allowed at registration for a
/// demonstration, is written as a literal address, which is not resolved.
/// No proxy from the environment either (`HTTPS_PROXY` would resolve the name itself,
/// around the check). `None` when the client cannot be built: then nothing is sent,
/// rather than through a client without these rules.
pub fn delivery_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(PublicDns))
        .build()
        .inspect_err(|e| tracing::error!(error = %e, "webhook client not built: no delivery"))
        .ok()
}

struct PublicDns;

impl reqwest::dns::Resolve for PublicDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| crate::model::public_ip(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Registers a webhook for `organisation`, journaled as by `by` in the same
/// transaction; returns `(id, secret)`, the secret shown once.
pub async fn add_webhook(
    store: &Store,
    organisation: &str,
    url: &str,
    allow_private: bool,
    by: &str,
) -> Result<(String, String)> {
    if let Some(p) = crate::model::upstream_problem(url, allow_private) {
        return Err(CatalogueError::Invalid(p.replace("upstream_url", "url")));
    }
    let w = StoredWebhook {
        id: random(9),
        organisation: organisation.to_string(),
        url: url.to_string(),
        secret: random(32),
        enabled: true,
        failures: 0,
    };
    let journal =
        crate::service::admin_entry(Some(by), "webhook.registered", "organisation", organisation)?;
    store.insert_webhook(&w, now(), &journal).await?;
    Ok((w.id, w.secret))
}

/// Queues `event` (a JSON body) for every enabled webhook of `organisation`, and an
/// e-mail to `mail_to` in the outbox.
pub async fn notify(
    store: &Store,
    organisation: &str,
    event: &str,
    body: &serde_json::Value,
    mail_to: &str,
    subject: &str,
) -> Result<()> {
    let (deliveries, mails) =
        notifications(store, organisation, event, body, mail_to, subject).await?;
    let queued = HabilitationCommit {
        deliveries,
        mails,
        ..HabilitationCommit::default()
    };
    store.commit_habilitations(&queued, now()).await?;
    Ok(())
}

/// What [`notify`] queues, for a caller that writes it in the transaction of the
/// change it announces (`socle_store::HabilitationCommit`).
pub async fn notifications(
    store: &Store,
    organisation: &str,
    event: &str,
    body: &serde_json::Value,
    mail_to: &str,
    subject: &str,
) -> Result<(Vec<StoredDelivery>, Vec<NewMail>)> {
    let text = body.to_string();
    let t = now();
    let deliveries = store
        .webhooks(organisation)
        .await?
        .into_iter()
        .filter(|w| w.enabled)
        .map(|w| StoredDelivery {
            id: random(12),
            webhook_id: w.id,
            event: event.to_string(),
            body: text.clone(),
            state: "pending".into(),
            attempts: 0,
            next_at: t,
            last_status: None,
            last_error: None,
            created_at: t,
        })
        .collect();
    let mut mails = Vec::new();
    if mail_to.contains('@') {
        mails.push(NewMail {
            id: random(12),
            recipient: mail_to.to_string(),
            subject: subject.to_string(),
            body: format!(
                "{subject}\n\n{}\n\n-- \nCe message est envoyé par la plateforme Socle.",
                serde_json::to_string_pretty(body).unwrap_or_default()
            ),
        });
    }
    Ok((deliveries, mails))
}

/// Delivers what is due; returns how many attempts were made.
pub async fn deliver_due(store: &Store, http: &reqwest::Client) -> Result<usize> {
    let due = store.due_deliveries(now(), 50).await?;
    let mut n = 0;
    for mut d in due {
        let Some(w) = store.webhook(&d.webhook_id).await? else {
            continue;
        };
        if !w.enabled {
            d.state = "failed".into();
            d.last_error = Some("webhook disabled".into());
            store.update_delivery(&d, now()).await?;
            continue;
        }
        // One attempt at a time, whichever node or loop gets there first: the claim
        // makes the delivery due again only after the attempt's longest possible time
        // (if this node stops mid-attempt, another sends it then: at least once).
        let t = now();
        if !store
            .claim_delivery(&d.id, d.attempts, t + CLAIM_SECONDS, t)
            .await?
        {
            continue;
        }
        n += 1;
        d.attempts += 1;
        let result = http
            .post(&w.url)
            .timeout(Duration::from_secs(5))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature(&w.secret, d.body.as_bytes()),
            )
            .header("x-socle-event", &d.event)
            .header("x-socle-delivery", &d.id)
            .body(d.body.clone())
            .send()
            .await;
        // The webhook's health is written after the delivery's outcome: if that write
        // failed, a delivered event would be sent again.
        let mut health = None;
        match result {
            Ok(r) if r.status().is_success() => {
                d.state = "delivered".into();
                d.last_status = Some(i64::from(r.status().as_u16()));
                d.last_error = None;
                health = Some((0, false));
            }
            other => {
                match other {
                    Ok(r) => {
                        d.last_status = Some(i64::from(r.status().as_u16()));
                        d.last_error = Some(format!("HTTP {}", r.status().as_u16()));
                    }
                    Err(e) => {
                        d.last_status = None;
                        d.last_error = Some(if e.is_timeout() {
                            "no answer within 5 s".into()
                        } else {
                            "connection failed".into()
                        });
                    }
                }
                if d.attempts >= MAX_ATTEMPTS {
                    d.state = "failed".into();
                    let failures = w.failures + 1;
                    health = Some((failures, failures >= DISABLE_AFTER));
                    tracing::warn!(webhook = %w.id, "webhook delivery given up");
                } else {
                    d.next_at = now() + backoff(d.attempts);
                }
            }
        }
        store.update_delivery(&d, now()).await?;
        if let Some((failures, disable)) = health {
            store.set_webhook_health(&w.id, failures, disable).await?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_style_computation() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a
        // well-known test value.
        assert_eq!(
            signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(
            (1..=5).map(backoff).collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16]
        );
        assert_eq!(backoff(100), 2048);
    }

    #[tokio::test]
    async fn deliveries_never_reach_a_name_that_resolves_to_a_private_address() {
        // A server on the loopback: reachable by its literal address, not by a name.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 1024];
                let _ = s.read(&mut request).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let http = delivery_client().unwrap();
        let literal = http.get(format!("http://127.0.0.1:{port}/")).send().await;
        assert_eq!(literal.unwrap().status(), 204);
        let named = http
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        let mut chain = format!("{named}");
        let mut source = std::error::Error::source(&named);
        while let Some(e) = source {
            chain.push_str(&format!(": {e}"));
            source = e.source();
        }
        assert!(chain.contains("no public address"), "{chain}");
    }
}
