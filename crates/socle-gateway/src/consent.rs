//! People's consents for habilitations whose legal basis is consent: grant, revoke,
//! expiry, each with a signed receipt (a JWT verifiable with the platform JWKS) and a
//! journal entry under the person's pseudonym. The gateway reads the store at every
//! call, so a revocation stops the very next one.

use serde::{Deserialize, Serialize};
use serde_json::json;
use socle_identity::KeyRing;
use socle_journal::{Entry, EntryKind, Journal};
use socle_store::{GatewayStore, Store, StoredConsent};

use crate::error::{GatewayError, Result};
use crate::jwt;
use crate::policy::{Grant, Route};

/// What a consent covers, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentTerms {
    /// SIRET of the service organisation (the controller).
    pub service: String,
    pub habilitation: String,
    /// The habilitation's title (the procedure).
    pub purpose: String,
    pub api: String,
    /// SIRET of the providing organisation.
    pub provider: String,
    pub scopes: Vec<String>,
    pub data_items: Vec<String>,
}

/// A consent as shown to its person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    pub id: String,
    #[serde(flatten)]
    pub terms: ConsentTerms,
    /// Unix seconds.
    pub granted_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl Consent {
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// The consent store, with receipts and journaling.
#[derive(Clone)]
pub struct Consents {
    store: Store,
    journal: Journal,
    keys: KeyRing,
    issuer: String,
}

use socle_core::clock::now;

fn read(c: StoredConsent) -> Result<Consent> {
    let terms: ConsentTerms = serde_json::from_str(&c.doc).map_err(|e| {
        tracing::error!(error = %e, "unreadable consent record");
        GatewayError::unavailable("store_unavailable", "a consent record cannot be read")
    })?;
    Ok(Consent {
        id: c.id,
        terms,
        granted_at: c.granted_at,
        expires_at: c.expires_at,
        revoked_at: c.revoked_at,
    })
}

impl Consents {
    pub fn new(store: Store, journal: Journal, keys: KeyRing, issuer: &str) -> Consents {
        Consents {
            store,
            journal,
            keys,
            issuer: issuer.trim_end_matches('/').to_string(),
        }
    }

    /// Records the person's consent to `grant` until `expires_at`; returns it with
    /// its signed receipt.
    pub async fn grant(
        &self,
        identity_hash: &str,
        grant: &Grant,
        route: &Route,
        expires_at: i64,
    ) -> Result<(Consent, String)> {
        if !grant.consent_based {
            return Err(GatewayError::bad_request(
                "not_consent_based",
                "this habilitation does not rest on consent: there is nothing to grant",
            ));
        }
        let t = now();
        if expires_at <= t {
            return Err(GatewayError::bad_request(
                "invalid_expiry",
                "a consent must end in the future",
            ));
        }
        let terms = ConsentTerms {
            service: grant.requester.clone(),
            habilitation: grant.id.clone(),
            purpose: grant.title.clone(),
            api: grant.api.clone(),
            provider: grant.producer.clone(),
            scopes: grant.scopes.clone(),
            data_items: route.data_items(&grant.scopes),
        };
        let subject = self.journal.pseudonym(identity_hash);
        let stored = StoredConsent {
            id: format!("cons-{}", socle_identity::random_token(12)),
            subject: subject.clone(),
            habilitation_id: grant.id.clone(),
            doc: serde_json::to_string(&terms)
                .map_err(|e| GatewayError::unavailable("store_unavailable", e.to_string()))?,
            granted_at: t,
            expires_at,
            revoked_at: None,
        };
        let consent = read(stored.clone())?;
        let receipt = self.receipt(&consent, "granted", &subject)?;
        // One consent per person and habilitation: a new grant replaces the active one
        // (in the same transaction, a unique index behind it), so that withdrawing the
        // one the person sees stops the service. The entry names the one it replaces.
        let replaces = self
            .store
            .active_consent(&subject, &grant.id, t)
            .await?
            .map(|c| c.id);
        // The consent and its entry in one transaction (through the journal's durable
        // queue): none without the other.
        let entry = self.entry(&consent, "granted", &subject, replaces);
        self.sequencing()?;
        self.store.replace_consent(&stored, &encode(entry)?).await?;
        Ok((consent, receipt))
    }

    /// Withdraws one of the person's consents; the next gateway call is refused.
    pub async fn revoke(&self, identity_hash: &str, id: &str) -> Result<(Consent, String)> {
        let subject = self.journal.pseudonym(identity_hash);
        let t = now();
        let unknown = || {
            GatewayError::not_found(
                "unknown_consent",
                "no active consent of yours has this identifier",
            )
        };
        let mut consent = self
            .list(identity_hash)
            .await?
            .into_iter()
            .find(|c| c.id == id && c.revoked_at.is_none())
            .ok_or_else(unknown)?;
        consent.revoked_at = Some(t);
        // The withdrawal and its entry in one transaction, as a grant.
        let entry = self.entry(&consent, "revoked", &subject, None);
        if !self
            .store
            .revoke_consent(id, &subject, t, &encode(entry)?)
            .await?
        {
            // Withdrawn meanwhile (another tab): that withdrawal has its entry.
            return Err(unknown());
        }
        let receipt = self.receipt(&consent, "revoked", &subject)?;
        Ok((consent, receipt))
    }

    /// The person's consents, newest first.
    pub async fn list(&self, identity_hash: &str) -> Result<Vec<Consent>> {
        let subject = self.journal.pseudonym(identity_hash);
        self.store
            .consents_of(&subject)
            .await?
            .into_iter()
            .map(read)
            .collect()
    }

    /// A signed receipt of a grant or revocation (in the spirit of the Kantara
    /// consent receipt: controller, service, purposes, data items, timestamps, legal
    /// basis).
    pub fn receipt(&self, c: &Consent, event: &str, subject: &str) -> Result<String> {
        let claims = vec![
            ("iss", json!(self.issuer)),
            // Not the journal pseudonym: a receipt is made to be shown.
            ("sub", json!(self.journal.receipt_subject(subject, &c.id))),
            ("iat", json!(now())),
            ("jti", json!(socle_identity::random_token(16))),
            ("event", json!(event)),
            ("consent_id", json!(c.id)),
            ("controller", json!(c.terms.service)),
            (
                "service",
                json!({"habilitation": c.terms.habilitation, "api": c.terms.api, "provider": c.terms.provider}),
            ),
            ("purposes", json!([c.terms.purpose])),
            ("data_items", json!(c.terms.data_items)),
            ("legal_basis", json!("consent")),
            (
                "timestamps",
                json!({"granted_at": c.granted_at, "expires_at": c.expires_at, "revoked_at": c.revoked_at}),
            ),
        ];
        jwt::sign(&self.keys, "socle-consent-receipt+jwt", claims)
    }

    /// The journal entry of a grant or withdrawal.
    fn entry(&self, c: &Consent, event: &str, subject: &str, replaces: Option<String>) -> Entry {
        // The consent's id (and the one it replaces) would chain the person's grants,
        // withdrawals and exchanges together in the public log: published keyed to
        // this entry's subject (docs/JOURNAL.md).
        let person = self.journal.subject_of(subject);
        let mut e = Entry::new(EntryKind::Consent, "person", event)
            .organisation(c.terms.service.clone())
            .organisation(c.terms.provider.clone())
            .detail("consent_ref", person.keyed(&c.id))
            .detail("habilitation", c.terms.habilitation.clone())
            .detail("api", c.terms.api.clone())
            .detail("data_items", c.terms.data_items.join(","))
            .detail("expires_at", c.expires_at.to_string());
        if let Some(previous) = replaces {
            e = e.detail("replaces_ref", person.keyed(&previous));
        }
        e = e.subject(person);
        e.legal_basis = Some("consentement".into());
        e.purpose = Some(c.terms.purpose.clone());
        e
    }
}

/// An entry as the journal's queue takes it.
impl Consents {
    /// A consent is recorded or not given: none while the journal is not sequencing.
    fn sequencing(&self) -> Result<()> {
        self.journal.sequencing().map_err(|err| {
            tracing::error!(error = %err, "consent refused: the journal is not sequencing");
            GatewayError::unavailable(
                "journal_unavailable",
                "the journal is not recording right now, so nothing was changed; retry later",
            )
        })
    }
}

fn encode(e: Entry) -> Result<Vec<socle_journal::Leaf>> {
    socle_journal::encode(vec![e]).map_err(|err| {
        tracing::error!(error = %err, "consent entry refused by the journal");
        GatewayError::unavailable(
            "journal_unavailable",
            "the journal refused this consent's entry; nothing was changed",
        )
    })
}
