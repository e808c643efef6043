//! The opt-in notice of new exchanges: a person asks for an e-mail, at most daily,
//! when exchanges about them happened — to the address their identity provider gave.
//! The choice is stored under their pseudonym and withdrawn by a click. The e-mail
//! says how many exchanges and which organisations, and sends the person to "Mes
//! données"; it names no data.

use crate::{CitizenError, Person, Result, Space, Stream, unavailable};

/// At most one digest a day.
pub const DIGEST_PERIOD: i64 = 86_400;

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

impl Space {
    /// The address the person's digest goes to, if they asked for one.
    pub async fn digest(&self, p: &Person) -> Result<Option<String>> {
        Ok(self
            .store
            .digest(&self.pseudonym(p))
            .await
            .map_err(unavailable)?
            .map(|d| d.email))
    }

    /// Asks for the digest, to `email` (the identity provider's), of the exchanges
    /// from now on.
    pub async fn subscribe(&self, p: &Person, email: Option<&str>, now: i64) -> Result<()> {
        let Some(email) = email.filter(|e| socle_identity::pivot::valid_email(e)) else {
            return Err(CitizenError::Invalid(
                "Votre fournisseur d’identité n’a pas transmis d’adresse électronique : le résumé ne peut pas vous être envoyé.".into(),
            ));
        };
        let size = self.proven_size().await?;
        self.store
            .set_digest(&self.pseudonym(p), email, size, now)
            .await
            .map_err(unavailable)
    }

    /// Withdraws the digest.
    pub async fn unsubscribe(&self, p: &Person) -> Result<()> {
        self.store
            .remove_digest(&self.pseudonym(p))
            .await
            .map_err(unavailable)
    }

    /// Sends the digests due (none in the last [`DIGEST_PERIOD`]) that have new
    /// exchanges: one e-mail each, queued in the outbox with the subscription's new
    /// start in one transaction. Returns how many were sent. Safe on several nodes:
    /// a subscription another node moved meanwhile is left to it.
    pub async fn send_digests(&self, now: i64, base_url: &str) -> Result<usize> {
        let size = self.proven_size().await?;
        let names = self.names().await?;
        let today = crate::today();
        let mut habilitations = std::collections::HashMap::new();
        let mut sent = 0;
        // Every due subscription, 500 at a time (by pseudonym: one without news does
        // not keep the others waiting).
        let mut after = String::new();
        loop {
            let due = self
                .store
                .due_digests(now - DIGEST_PERIOD, &after, 500)
                .await
                .map_err(unavailable)?;
            let Some(last) = due.last() else { break };
            after = last.pseudonym.clone();
            for d in due {
                // The person's exchanges since the last digest, newest first.
                let mut streams = [Stream::new(d.pseudonym.clone())];
                streams[0].before = size;
                let mut count = 0usize;
                let mut organisations = std::collections::BTreeSet::new();
                while let Some((index, e)) = self.next_exchange(&mut streams).await? {
                    if index < d.since_index {
                        break;
                    }
                    // Withheld by a visibility date set after it was journaled: not
                    // announced (Mes données does not show it either).
                    if let Some(h) = e.details.get("habilitation")
                        && let Some(h) = self.habilitation(h, &mut habilitations).await
                        && h.form
                            .visible_after
                            .as_ref()
                            .is_some_and(|v| v.as_str() > today.as_str())
                    {
                        continue;
                    }
                    count += 1;
                    if let Some(s) = e.details.get("service") {
                        organisations.insert(names.organisation(s));
                    }
                }
                let mail = (count > 0).then(|| socle_store::NewMail {
                id: random_id(),
                recipient: d.email.clone(),
                subject: format!(
                    "{count} nouvel{} échange{} de données vous concernant",
                    if count > 1 { "s" } else { "" },
                    if count > 1 { "s" } else { "" }
                ),
                body: format!(
                    "Bonjour,\n\n{count} échange{} de données vous concernant {} eu lieu depuis le dernier résumé, à la demande de : {}.\n\nConsultez-les, avec leurs preuves, dans votre espace : {}/mon-espace/donnees\n\nPour ne plus recevoir ce résumé : {}/mon-espace/donnees (« Ne plus recevoir le résumé »).\n",
                    if count > 1 { "s" } else { "" },
                    if count > 1 { "ont" } else { "a" },
                    organisations.into_iter().collect::<Vec<_>>().join(", "),
                    base_url.trim_end_matches('/'),
                    base_url.trim_end_matches('/'),
                ),
            });
                if self
                    .store
                    .digest_sent(&d, size, mail.as_ref(), now)
                    .await
                    .map_err(unavailable)?
                    && mail.is_some()
                {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }
}
