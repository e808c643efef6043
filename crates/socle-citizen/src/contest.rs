//! "Je conteste cet accès": a person contests an exchange about them; the
//! organisations concerned (the calling service and the provider) are told through
//! their webhooks and their data protection contacts' e-mail, take it in hand and
//! answer from the Espace agent; the person follows it in their space. Every step is
//! journaled (`contest` entries) under the person's keyed subject — never the person's
//! words, which stay in the record the two organisations read.

use serde::{Deserialize, Serialize};
use socle_catalogue::people::{Actor, Role};
use socle_journal::{Entry, EntryKind};

use crate::{CitizenError, Person, Result, Space, unavailable};

/// Why a person contests, as the form offers it.
pub const REASONS: &[(&str, &str)] = &[
    ("not_me", "Cet échange ne me concerne pas"),
    (
        "no_procedure",
        "Je n’ai fait aucune démarche auprès de cet organisme",
    ),
    (
        "too_much",
        "Les données obtenues dépassent ce qui était nécessaire",
    ),
    ("other", "Une autre raison"),
];

/// The longest text a person may add.
pub const MAX_TEXT: usize = 2000;

/// Where a contest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContestState {
    /// Received, not yet taken in hand.
    Received,
    /// An organisation examines it.
    InReview,
    /// Answered and closed.
    Closed,
}

impl ContestState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContestState::Received => "received",
            ContestState::InReview => "in_review",
            ContestState::Closed => "closed",
        }
    }

    /// In French, for the pages.
    pub fn label(self) -> &'static str {
        match self {
            ContestState::Received => "Reçue",
            ContestState::InReview => "En cours d’examen",
            ContestState::Closed => "Close",
        }
    }
}

/// One step of a contest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContestEvent {
    /// RFC 3339.
    pub at: String,
    /// `person`, or the SIRET of the organisation whose agent acted.
    pub by: String,
    pub state: ContestState,
}

/// A contest, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contest {
    pub id: String,
    /// The contested exchange's index in the journal.
    pub index: u64,
    /// When the exchange happened (RFC 3339).
    pub exchange_time: String,
    pub service: String,
    pub provider: String,
    pub api: String,
    pub purpose: String,
    /// One of [`REASONS`].
    pub reason: String,
    /// The person's own words, for the two organisations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub state: ContestState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The SIRET of the organisation that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    pub history: Vec<ContestEvent>,
}

impl Contest {
    pub fn reason_label(&self) -> &'static str {
        REASONS
            .iter()
            .find(|(k, _)| *k == self.reason)
            .map_or("", |(_, l)| l)
    }
}

/// What an organisation does with a contest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContestAction {
    /// Takes it in hand.
    Review,
    /// Answers and closes it.
    Answer,
}

use socle_core::clock::now_rfc3339;

fn decode(doc: &str) -> Result<Contest> {
    serde_json::from_str(doc).map_err(unavailable)
}

fn encode(c: &Contest) -> Result<String> {
    serde_json::to_string(c).map_err(unavailable)
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

impl Space {
    /// The person contests one of their exchanges: recorded, journaled under their
    /// keyed subject, and sent to both organisations (webhooks, e-mail) in one
    /// transaction. One contest per exchange.
    pub async fn contest(
        &self,
        p: &Person,
        index: u64,
        reason: &str,
        text: Option<String>,
    ) -> Result<Contest> {
        if !REASONS.iter().any(|(k, _)| *k == reason) {
            return Err(CitizenError::Invalid(
                "Choisissez la raison de votre contestation.".into(),
            ));
        }
        let text = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(CitizenError::Invalid(format!(
                "Votre message dépasse {MAX_TEXT} caractères."
            )));
        }
        let size = self.proven_size().await?;
        let (entry, _) = self.own_entry(p, index, size).await?;
        if entry.kind != EntryKind::Exchange {
            return Err(CitizenError::NotFound("échange inconnu".into()));
        }
        let d = |k: &str| entry.details.get(k).cloned().unwrap_or_default();
        let contest = Contest {
            id: random_id(),
            index,
            exchange_time: entry.time.clone(),
            service: d("service"),
            provider: d("provider"),
            api: d("api"),
            purpose: entry.purpose.clone().unwrap_or_default(),
            reason: reason.to_string(),
            text,
            state: ContestState::Received,
            answer: None,
            answered_by: None,
            history: vec![ContestEvent {
                at: now_rfc3339(),
                by: "person".into(),
                state: ContestState::Received,
            }],
        };
        let pseudonym = self.pseudonym(p);
        let journal = self.contest_entry("person", &pseudonym, &contest, "contest.received")?;
        let (deliveries, mails) = self.contest_notices(&contest, "contest.received").await?;
        let doc = encode(&contest)?;
        let row = socle_store::NewContest {
            id: &contest.id,
            pseudonym: &pseudonym,
            entry_index: index,
            service: &contest.service,
            provider: &contest.provider,
            state: contest.state.as_str(),
            doc: &doc,
        };
        if !self
            .store
            .insert_contest(
                &row,
                &journal,
                &deliveries,
                &mails,
                socle_core::clock::now(),
            )
            .await
            .map_err(unavailable)?
        {
            return Err(CitizenError::Invalid(
                "Vous avez déjà contesté cet échange : suivez votre contestation dans « Mes contestations ».".into(),
            ));
        }
        Ok(contest)
    }

    /// The person's contests, newest first.
    pub async fn contests(&self, p: &Person) -> Result<Vec<Contest>> {
        self.store
            .contests_of(&self.pseudonym(p))
            .await
            .map_err(unavailable)?
            .iter()
            .map(|c| decode(&c.doc))
            .collect()
    }

    /// The contests concerning the agent's organisation that the agent may read,
    /// newest first.
    pub async fn contests_for(&self, actor: &Actor) -> Result<Vec<Contest>> {
        let mut out = Vec::new();
        for c in self
            .store
            .contests_for(&actor.organisation)
            .await
            .map_err(unavailable)?
        {
            let c = decode(&c.doc)?;
            if concerned(actor, &c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One contest the agent's organisation is concerned by.
    pub async fn contest_for(&self, actor: &Actor, id: &str) -> Result<Contest> {
        let stored = self.store.contest(id).await.map_err(unavailable)?;
        let c = match stored {
            Some(s) => decode(&s.doc)?,
            None => return Err(CitizenError::NotFound("contestation inconnue".into())),
        };
        if !concerned(actor, &c) {
            return Err(CitizenError::NotFound("contestation inconnue".into()));
        }
        Ok(c)
    }

    /// An organisation takes a contest in hand, or answers and closes it; journaled
    /// under the person's keyed subject (the person is told in their space).
    pub async fn act_on_contest(
        &self,
        actor: &Actor,
        id: &str,
        action: ContestAction,
        answer: Option<String>,
    ) -> Result<Contest> {
        let Some(stored) = self.store.contest(id).await.map_err(unavailable)? else {
            return Err(CitizenError::NotFound("contestation inconnue".into()));
        };
        let mut c = decode(&stored.doc)?;
        if !concerned(actor, &c) {
            return Err(CitizenError::NotFound("contestation inconnue".into()));
        }
        if !actor
            .roles
            .iter()
            .any(|r| matches!(r, Role::Instructor | Role::OrgAdmin | Role::Operator))
        {
            return Err(CitizenError::Invalid(
                "Seuls les instructeurs et les administrateurs de l’organisme répondent aux contestations.".into(),
            ));
        }
        if c.state == ContestState::Closed {
            return Err(CitizenError::Invalid(
                "Cette contestation est close.".into(),
            ));
        }
        if action == ContestAction::Review && c.state == ContestState::InReview {
            return Err(CitizenError::Invalid(
                "Cette contestation est déjà en cours d’examen.".into(),
            ));
        }
        let (state, action_name) = match action {
            ContestAction::Review => (ContestState::InReview, "contest.in_review"),
            ContestAction::Answer => {
                let text = answer
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| {
                        CitizenError::Invalid("Rédigez la réponse faite à la personne.".into())
                    })?;
                if text.chars().count() > MAX_TEXT {
                    return Err(CitizenError::Invalid(format!(
                        "La réponse dépasse {MAX_TEXT} caractères."
                    )));
                }
                c.answer = Some(text);
                c.answered_by = Some(actor.organisation.clone());
                (ContestState::Closed, "contest.answered")
            }
        };
        c.state = state;
        c.history.push(ContestEvent {
            at: now_rfc3339(),
            by: actor.organisation.clone(),
            state,
        });
        let pseudonym = self
            .store
            .contest_pseudonym(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| CitizenError::NotFound("contestation inconnue".into()))?;
        let agent = format!(
            "agent:{}",
            self.journal.pseudonym(&format!("agent:{}", actor.email))
        );
        let journal = self.contest_entry(&agent, &pseudonym, &c, action_name)?;
        let (deliveries, mails) = self.contest_notices(&c, action_name).await?;
        if !self
            .store
            .update_contest(
                id,
                state.as_str(),
                &encode(&c)?,
                stored.version,
                &journal,
                &deliveries,
                &mails,
                socle_core::clock::now(),
            )
            .await
            .map_err(unavailable)?
        {
            return Err(CitizenError::Invalid(
                "La contestation a changé entre-temps : rechargez la page.".into(),
            ));
        }
        Ok(c)
    }

    /// The journal entry of a step: under the person's keyed subject, naming both
    /// organisations, never the person's words.
    fn contest_entry(
        &self,
        actor: &str,
        pseudonym: &str,
        c: &Contest,
        action: &str,
    ) -> Result<Vec<(Vec<u8>, Option<String>)>> {
        let e = Entry::new(EntryKind::Contest, actor, "ok")
            .subject(self.journal.subject_of(pseudonym))
            .organisation(c.service.clone())
            .organisation(c.provider.clone())
            .detail("action", action)
            .detail("contest", c.id.clone())
            .detail("exchange", c.index.to_string())
            .detail("api", c.api.clone())
            .detail("reason", c.reason.clone())
            .detail("state", c.state.as_str());
        socle_journal::encode(vec![e]).map_err(unavailable)
    }

    /// The webhooks of both organisations, and e-mails to their data protection
    /// contacts (the habilitation's DPO for the service, the API's contact for the
    /// provider).
    async fn contest_notices(
        &self,
        c: &Contest,
        event: &str,
    ) -> Result<(Vec<socle_store::StoredDelivery>, Vec<socle_store::NewMail>)> {
        let body = serde_json::json!({
            "event": event,
            "at": now_rfc3339(),
            "contest": {
                "id": c.id, "exchange": c.index, "exchange_time": c.exchange_time,
                "service": c.service, "provider": c.provider, "api": c.api,
                "reason": c.reason, "state": c.state,
            },
        });
        let dpo = self
            .habilitation_of_exchange(c)
            .await
            .map(|h| h.form.dpo.email)
            .unwrap_or_default();
        let api_contact = self
            .catalogue
            .api(&c.api)
            .await
            .map(|l| l.api.contact)
            .unwrap_or_default();
        let subject = format!(
            "Contestation d’un échange ({}) : {}",
            c.api,
            c.state.label()
        );
        let (mut deliveries, mut mails) = socle_catalogue::notify::notifications(
            &self.store,
            &c.service,
            event,
            &body,
            &dpo,
            &subject,
        )
        .await
        .map_err(unavailable)?;
        if c.provider != c.service {
            let (d, m) = socle_catalogue::notify::notifications(
                &self.store,
                &c.provider,
                event,
                &body,
                &api_contact,
                &subject,
            )
            .await
            .map_err(unavailable)?;
            deliveries.extend(d);
            mails.extend(m);
        }
        Ok((deliveries, mails))
    }

    async fn habilitation_of_exchange(
        &self,
        c: &Contest,
    ) -> Option<socle_catalogue::habilitation::Habilitation> {
        let size = self.journal.latest_checkpoint().await.ok()?.size;
        if c.index >= size {
            return None;
        }
        let (_, got) = self.journal.entries(c.index, 1).await.ok()?;
        let entry = Entry::decode(&got.first()?.leaf).ok()?;
        let id = entry.details.get("habilitation")?;
        self.habilitation(id, &mut Default::default()).await
    }
}

/// Whether the agent may read the contest: an instructor or administrator of one of
/// its organisations, or the platform's operator (a developer does not read the
/// person's message).
fn concerned(actor: &Actor, c: &Contest) -> bool {
    actor.roles.contains(&Role::Operator)
        || ((actor.organisation == c.service || actor.organisation == c.provider)
            && actor
                .roles
                .iter()
                .any(|r| matches!(r, Role::Instructor | Role::OrgAdmin)))
}
