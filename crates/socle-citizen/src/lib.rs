//! The citizen space's domain: what a person sees of the platform's use of their data.
//!
//! Everything is read from the journal's per-pseudonym index — the exchanges that
//! concern the person (with the catalogue's names for organisations, APIs and data
//! items), their logins, their consent events — and from the consent store, so the
//! list is the journal's own: each exchange comes with a proof bundle (inclusion proof
//! against the latest signed checkpoint) that anyone can check offline. Habilitations
//! with deferred visibility hold back their exchanges until a date; the space says how
//! many and until when. The crate has no HTTP and no SQL: `socle-web` renders the pages
//! (the person logs in through identity federation like at any service), `socle-store`
//! and `socle-journal` keep the records.

pub mod contest;
pub mod digest;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde::Serialize;
use socle_catalogue::habilitation::Habilitation;
use socle_catalogue::{Catalogue, Search};
use socle_gateway::{Consent, Consents, Gateway};
use socle_journal::{Entry, EntryKind, Journal, PROOF_FORMAT, ProofBundle};
use socle_store::{BackOfficeStore, Store};

/// What went wrong, for the web layer to map once.
#[derive(Debug, thiserror::Error)]
pub enum CitizenError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, CitizenError>;

fn unavailable(e: impl std::fmt::Display) -> CitizenError {
    tracing::error!(error = %e, "citizen space: a record cannot be read");
    CitizenError::Unavailable(e.to_string())
}

/// The person, as the space knows them: the key behind their pseudonym.
#[derive(Debug, Clone)]
pub struct Person {
    pub identity_hash: String,
}

/// One exchange that concerns the person.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeView {
    /// The entry's index in the journal (the proof's subject).
    pub index: u64,
    /// RFC 3339 UTC.
    pub time: String,
    pub service: String,
    pub service_name: String,
    pub provider: String,
    pub provider_name: String,
    pub api: String,
    pub api_title: String,
    /// Names from the data dictionary.
    pub data_items: Vec<String>,
    /// `context / object`.
    pub purpose: String,
    /// Who receives the data, as the caller declared it (the purpose's recipient;
    /// an organisation's name when it is a known SIRET).
    pub recipient: String,
    pub legal_basis: String,
    /// `ok` or `error`.
    pub outcome: String,
    pub habilitation: String,
}

/// A page of exchanges.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangePage {
    pub items: Vec<ExchangeView>,
    /// Exchanges matching the filter, all pages.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    /// Exchanges held back by deferred visibility, and the last date until which some are.
    pub withheld: usize,
    pub withheld_until: Option<String>,
    /// Organisations (SIRET, name) appearing in the person's exchanges, for the filter.
    pub organisations: Vec<(String, String)>,
    /// APIs (identifier, title) appearing in the person's exchanges, for the filter.
    pub apis: Vec<(String, String)>,
}

/// Filters of "Mes données"; dates are `YYYY-MM-DD`, inclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub organisation: Option<String>,
    pub api: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One pseudonym's entries, read newest first in batches of [`BATCH`] (a keyset walk:
/// each batch below the last index read), so that a person's exchanges are listed
/// whole, however many, without holding them all.
struct Stream {
    subject: String,
    /// Exclusive: the next batch is below it.
    before: u64,
    buf: std::collections::VecDeque<(u64, Entry)>,
    done: bool,
}

impl Stream {
    fn new(subject: String) -> Stream {
        Stream {
            subject,
            before: u64::MAX,
            buf: Default::default(),
            done: false,
        }
    }
}

const BATCH: usize = 500;

/// One login.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub time: String,
    pub service: String,
    pub provider: String,
    /// `eidas1`…
    pub acr: String,
}

/// A consent, with names.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorisationView {
    #[serde(flatten)]
    pub consent: Consent,
    pub service_name: String,
    pub provider_name: String,
    pub api_title: String,
    pub data_item_names: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
}

/// A habilitation that used the person's data on a legal basis other than consent.
#[derive(Debug, Clone, Serialize)]
pub struct LegalBasisView {
    pub habilitation: String,
    pub service_name: String,
    pub api_title: String,
    pub purpose: String,
    pub nature: String,
    pub text: String,
    pub url: Option<String>,
}

pub const PAGE_SIZE: usize = 20;
/// How far back the per-person index is read (newest first).
const MAX_ENTRIES: usize = 2000;

/// The citizen space over the journal, catalogue and consents.
#[derive(Clone)]
pub struct Space {
    store: Store,
    journal: Journal,
    catalogue: Catalogue,
    consents: Consents,
    gateway: Gateway,
}

/// Names from the catalogue, read once per page.
struct Names {
    organisations: HashMap<String, String>,
    apis: HashMap<String, String>,
    items: HashMap<String, String>,
}

impl Names {
    fn organisation(&self, siret: &str) -> String {
        self.organisations
            .get(siret)
            .cloned()
            .unwrap_or_else(|| format!("organisation {siret}"))
    }
}

use socle_core::clock::today;

impl Space {
    pub fn new(
        store: Store,
        journal: Journal,
        catalogue: Catalogue,
        consents: Consents,
        gateway: Gateway,
    ) -> Space {
        Space {
            store,
            journal,
            catalogue,
            consents,
            gateway,
        }
    }

    /// The size of the latest signed checkpoint: the entries the space can prove.
    async fn proven_size(&self) -> Result<u64> {
        match self.journal.latest_checkpoint().await {
            Ok(c) => Ok(c.size),
            Err(socle_journal::JournalError::NoCheckpoint) => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub fn consents(&self) -> &Consents {
        &self.consents
    }

    fn pseudonym(&self, p: &Person) -> String {
        self.journal.pseudonym(&p.identity_hash)
    }

    async fn names(&self) -> Result<Names> {
        let organisations = self
            .catalogue
            .organisations()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|o| (o.siret, o.name))
            .collect();
        let apis = self
            .catalogue
            .search(&Search::default())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|l| (l.api.id, l.api.title))
            .collect();
        let items = self
            .catalogue
            .data_items()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|i| (i.id, i.name))
            .collect();
        Ok(Names {
            organisations,
            apis,
            items,
        })
    }

    /// The person's journal entries of `kinds` under their usual pseudonym, newest
    /// first (with their indices).
    async fn entries(&self, p: &Person, kinds: &[EntryKind]) -> Result<Vec<(u64, Entry)>> {
        self.entries_of(&self.pseudonym(p), kinds).await
    }

    /// The entries of `kinds` indexed under `subject`, newest first, among those
    /// already covered by a signed checkpoint (they can be proven; a newer one appears
    /// within a second).
    async fn entries_of(&self, subject: &str, kinds: &[EntryKind]) -> Result<Vec<(u64, Entry)>> {
        let mut out = Vec::new();
        let theirs = self.journal.matcher(subject);
        for e in self
            .journal
            .subject_entries(subject, MAX_ENTRIES)
            .await
            .map_err(unavailable)?
        {
            let entry = Entry::decode(&e.leaf).map_err(unavailable)?;
            // The index is by pseudonym; the entry's blinded subject must say so too.
            if entry.subject.as_deref().is_some_and(|s| theirs.matches(s))
                && kinds.contains(&entry.kind)
            {
                out.push((e.index, entry));
            }
        }
        Ok(out)
    }

    /// Reads `s`'s next batch if its buffer is empty: the exchanges among them whose
    /// blinded subject the pseudonym's key recognises (the index is by pseudonym; the
    /// entry must say so too).
    async fn fill(&self, s: &mut Stream) -> Result<()> {
        while s.buf.is_empty() && !s.done {
            let rows = self
                .journal
                .subject_entries_before(&s.subject, s.before, BATCH)
                .await
                .map_err(unavailable)?;
            s.done = rows.len() < BATCH;
            let theirs = self.journal.matcher(&s.subject);
            for e in rows {
                s.before = s.before.min(e.index);
                let entry = Entry::decode(&e.leaf).map_err(unavailable)?;
                if entry.subject.as_deref().is_some_and(|x| theirs.matches(x))
                    && entry.kind == EntryKind::Exchange
                {
                    s.buf.push_back((e.index, entry));
                }
            }
        }
        Ok(())
    }

    /// The newest exchange left among `streams`.
    async fn next_exchange(&self, streams: &mut [Stream]) -> Result<Option<(u64, Entry)>> {
        for s in streams.iter_mut() {
            self.fill(s).await?;
        }
        let newest = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.buf.front().map(|e| (e.0, i)))
            .max();
        Ok(newest.and_then(|(_, i)| streams[i].buf.pop_front()))
    }

    /// How many exchanges a pseudonym holds (read through, not kept).
    async fn count_exchanges(&self, subject: String) -> Result<usize> {
        let mut streams = [Stream::new(subject)];
        let mut n = 0;
        while self.next_exchange(&mut streams).await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// The person's pseudonym for exchanges under a deferred habilitation.
    fn deferred_pseudonym(&self, p: &Person, habilitation: &str) -> String {
        self.journal
            .pseudonym(&socle_gateway::policy::deferred_person_key(
                habilitation,
                &p.identity_hash,
            ))
    }

    /// Habilitations with deferred visibility: (id, date).
    async fn deferred(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for doc in self.store.habilitations(None).await.map_err(unavailable)? {
            if let Ok(h) = serde_json::from_str::<Habilitation>(&doc)
                && let Some(d) = h.form.visible_after
            {
                out.push((h.id, d));
            }
        }
        Ok(out)
    }

    /// The streams of exchanges the person may see now — their usual pseudonym's, and
    /// that of each deferred habilitation whose date has passed — with the count of
    /// exchanges still withheld and the last date until which some are.
    async fn exchange_streams(&self, p: &Person) -> Result<(Vec<Stream>, usize, Option<String>)> {
        let today = today();
        let mut streams = vec![Stream::new(self.pseudonym(p))];
        let mut withheld = 0;
        let mut until: Option<String> = None;
        for (hab, date) in self.deferred().await? {
            let subject = self.deferred_pseudonym(p, &hab);
            if date > today {
                let n = self.count_exchanges(subject).await?;
                if n > 0 {
                    withheld += n;
                    if until.as_ref().is_none_or(|u| &date > u) {
                        until = Some(date);
                    }
                }
            } else {
                streams.push(Stream::new(subject));
            }
        }
        Ok((streams, withheld, until))
    }

    async fn habilitation(
        &self,
        id: &str,
        cache: &mut HashMap<String, Option<Habilitation>>,
    ) -> Option<Habilitation> {
        if let Some(h) = cache.get(id) {
            return h.clone();
        }
        let h = match self.store.habilitation(id).await {
            Ok(Some(s)) => serde_json::from_str(&s.doc).ok(),
            _ => None,
        };
        cache.insert(id.to_string(), h.clone());
        h
    }

    /// "Mes données": the exchanges concerning the person, newest first, a page.
    pub async fn exchanges(
        &self,
        p: &Person,
        filter: &Filter,
        page: usize,
    ) -> Result<ExchangePage> {
        let page = page.max(1);
        let mut all = self
            .all_exchanges(
                p,
                filter,
                Some(((page - 1).saturating_mul(PAGE_SIZE), PAGE_SIZE)),
            )
            .await?;
        all.pages = all.total.div_ceil(PAGE_SIZE).max(1);
        all.page = page;
        // Past the last page: the last page.
        if page > all.pages {
            let last = all.pages;
            all = self
                .all_exchanges(p, filter, Some(((last - 1) * PAGE_SIZE, PAGE_SIZE)))
                .await?;
            all.pages = last;
            all.page = last;
        }
        Ok(all)
    }

    /// The exchanges the person may see now matching `filter`, newest first, read
    /// through whole (no cap): those of `window` (skip, take) only, or all; `total`
    /// counts every match.
    async fn all_exchanges(
        &self,
        p: &Person,
        filter: &Filter,
        window: Option<(usize, usize)>,
    ) -> Result<ExchangePage> {
        let names = self.names().await?;
        let today = today();
        let mut habs = HashMap::new();
        let mut visible = Vec::new();
        let (mut streams, mut withheld, mut withheld_until) = self.exchange_streams(p).await?;
        let mut organisations: HashMap<String, String> = HashMap::new();
        let mut apis: HashMap<String, String> = HashMap::new();
        let mut matched = 0usize;
        while let Some((index, e)) = self.next_exchange(&mut streams).await? {
            let d = |k: &str| e.details.get(k).cloned().unwrap_or_default();
            let hab_id = d("habilitation");
            // Entries journaled before their habilitation was given a visibility date.
            if let Some(h) = self.habilitation(&hab_id, &mut habs).await
                && let Some(after) = &h.form.visible_after
                && after.as_str() > today.as_str()
            {
                withheld += 1;
                if withheld_until.as_ref().is_none_or(|u| after > u) {
                    withheld_until = Some(after.clone());
                }
                continue;
            }
            let service = d("service");
            let provider = d("provider");
            let api = d("api");
            let api_title = names.apis.get(&api).cloned().unwrap_or_else(|| api.clone());
            organisations.insert(service.clone(), names.organisation(&service));
            organisations.insert(provider.clone(), names.organisation(&provider));
            apis.insert(api.clone(), api_title.clone());
            let day = e.time.get(..10).unwrap_or_default().to_string();
            if filter
                .organisation
                .as_ref()
                .is_some_and(|o| !o.is_empty() && *o != service && *o != provider)
                || filter
                    .api
                    .as_ref()
                    .is_some_and(|a| !a.is_empty() && *a != api)
                || filter
                    .from
                    .as_ref()
                    .is_some_and(|f| !f.is_empty() && day < *f)
                || filter
                    .to
                    .as_ref()
                    .is_some_and(|t| !t.is_empty() && day > *t)
            {
                continue;
            }
            matched += 1;
            if let Some((skip, take)) = window
                && (matched <= skip || matched > skip.saturating_add(take))
            {
                continue;
            }
            visible.push(ExchangeView {
                index,
                time: e.time.clone(),
                service_name: names.organisation(&service),
                service,
                provider_name: names.organisation(&provider),
                provider,
                api_title,
                api,
                data_items: Some(d("data_items"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| d("scopes"))
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|i| names.items.get(i).cloned().unwrap_or_else(|| i.to_string()))
                    .collect(),
                purpose: e.purpose.clone().unwrap_or_default(),
                recipient: {
                    let r = d("recipient");
                    names.organisations.get(&r).cloned().unwrap_or(r)
                },
                legal_basis: e.legal_basis.clone().unwrap_or_default(),
                outcome: e.outcome.clone(),
                habilitation: hab_id,
            });
        }
        let mut organisations: Vec<(String, String)> = organisations.into_iter().collect();
        organisations.sort_by(|a, b| a.1.cmp(&b.1));
        let mut apis: Vec<(String, String)> = apis.into_iter().collect();
        apis.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(ExchangePage {
            total: matched,
            items: visible,
            page: 1,
            pages: 1,
            withheld,
            withheld_until,
            organisations,
            apis,
        })
    }

    /// "Mes connexions": the person's logins, newest first.
    pub async fn connections(&self, p: &Person) -> Result<Vec<ConnectionView>> {
        Ok(self
            .entries(p, &[EntryKind::Login])
            .await?
            .into_iter()
            .map(|(_, e)| {
                let d = |k: &str| e.details.get(k).cloned().unwrap_or_default();
                ConnectionView {
                    time: e.time.clone(),
                    service: d("client_name"),
                    provider: d("provider"),
                    acr: d("acr"),
                }
            })
            .collect())
    }

    /// "Mes autorisations": the person's consents, and the habilitations that used
    /// their data on another legal basis (listed, not revocable).
    pub async fn authorisations(
        &self,
        p: &Person,
    ) -> Result<(Vec<AuthorisationView>, Vec<LegalBasisView>)> {
        let names = self.names().await?;
        let now = socle_core::clock::now();
        let consents = self
            .consents
            .list(&p.identity_hash)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|c| {
                let status = if c.revoked_at.is_some() {
                    "revoked"
                } else if c.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                AuthorisationView {
                    service_name: names.organisation(&c.terms.service),
                    provider_name: names.organisation(&c.terms.provider),
                    api_title: names
                        .apis
                        .get(&c.terms.api)
                        .cloned()
                        .unwrap_or_else(|| c.terms.api.clone()),
                    data_item_names: c
                        .terms
                        .data_items
                        .iter()
                        .map(|i| names.items.get(i).cloned().unwrap_or_else(|| i.clone()))
                        .collect(),
                    consent: c,
                    status,
                }
            })
            .collect();
        let mut habs = HashMap::new();
        let mut seen = Vec::new();
        let mut others = Vec::new();
        let mut streams = self.exchange_streams(p).await?.0;
        while let Some((_, e)) = self.next_exchange(&mut streams).await? {
            let Some(id) = e.details.get("habilitation").cloned() else {
                continue;
            };
            if seen.contains(&id) {
                continue;
            }
            seen.push(id.clone());
            let Some(h) = self.habilitation(&id, &mut habs).await else {
                continue;
            };
            // Consents are listed above; a habilitation whose exchanges are still
            // withheld is not revealed here either.
            if h.form.legal_basis.is_consent()
                || h.form
                    .visible_after
                    .as_ref()
                    .is_some_and(|d| d.as_str() > today().as_str())
            {
                continue;
            }
            others.push(LegalBasisView {
                habilitation: h.id.clone(),
                service_name: names.organisation(&h.requester),
                api_title: names
                    .apis
                    .get(&h.api)
                    .cloned()
                    .unwrap_or_else(|| h.api.clone()),
                purpose: h.form.title.clone(),
                nature: h.form.legal_basis.nature.clone(),
                text: h.form.legal_basis.text.clone(),
                url: h.form.legal_basis.url.clone(),
            });
        }
        Ok((consents, others))
    }

    /// What a service asks the person to authorise (a "jeton longue durée"): the
    /// preview shown before they grant or refuse.
    pub async fn request_preview(&self, habilitation: &str) -> Result<ConsentPreview> {
        let snapshot = self.gateway.snapshot();
        let grant = snapshot
            .grant(habilitation)
            .filter(|g| g.consent_based)
            .ok_or_else(|| {
                CitizenError::NotFound(
                    "aucune habilitation fondée sur le consentement ne porte cet identifiant"
                        .into(),
                )
            })?;
        let route = snapshot.route_by_id(&grant.api).ok_or_else(|| {
            CitizenError::NotFound("l’API de cette habilitation n’est plus publiée".into())
        })?;
        let names = self.names().await?;
        Ok(ConsentPreview {
            habilitation: grant.id.clone(),
            service_name: names.organisation(&grant.requester),
            provider_name: names.organisation(&grant.producer),
            api_title: route.api.title.clone(),
            purpose: grant.title.clone(),
            data_items: route
                .data_items(&grant.scopes)
                .iter()
                .map(|i| names.items.get(i).cloned().unwrap_or_else(|| i.clone()))
                .collect(),
            valid_until: grant.valid_until.clone(),
        })
    }

    /// Grants the consent previewed, until the end of `until` (`YYYY-MM-DD`, at most
    /// the habilitation's own end).
    pub async fn grant(
        &self,
        p: &Person,
        habilitation: &str,
        until: &str,
    ) -> Result<(Consent, String)> {
        let snapshot = self.gateway.snapshot();
        let (Some(grant), Some(route)) = (
            snapshot.grant(habilitation),
            snapshot
                .grant(habilitation)
                .and_then(|g| snapshot.route_by_id(&g.api)),
        ) else {
            return Err(CitizenError::NotFound("habilitation inconnue".into()));
        };
        let date = time::Date::parse(
            until,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| {
            CitizenError::Invalid("la date de fin doit être au format AAAA-MM-JJ".into())
        })?;
        if until > grant.valid_until.as_str() {
            return Err(CitizenError::Invalid(format!(
                "la date de fin ne peut dépasser celle de l’habilitation ({})",
                grant.valid_until
            )));
        }
        let expires = date
            .next_day()
            .unwrap_or(date)
            .midnight()
            .assume_utc()
            .unix_timestamp();
        if expires <= socle_core::clock::now() {
            return Err(CitizenError::Invalid(
                "la date de fin ne peut être passée : choisissez aujourd’hui ou une date à venir"
                    .into(),
            ));
        }
        self.consents
            .grant(&p.identity_hash, &grant, &route, expires)
            .await
            .map_err(|e| match e.status {
                // The gateway's own wording is for integrators, not for the person.
                400 => CitizenError::Invalid(
                    "cette autorisation ne peut pas être accordée telle quelle".into(),
                ),
                _ => CitizenError::Unavailable(e.detail),
            })
    }

    /// Withdraws a consent: the service's next call is refused.
    pub async fn revoke(&self, p: &Person, id: &str) -> Result<(Consent, String)> {
        self.consents
            .revoke(&p.identity_hash, id)
            .await
            .map_err(|e| match e.status {
                404 => CitizenError::NotFound(
                    "cette autorisation n’existe pas ou est déjà retirée".into(),
                ),
                _ => CitizenError::Unavailable(e.detail),
            })
    }

    /// A signed receipt of one of the person's consents (its grant, or its withdrawal
    /// once withdrawn).
    pub async fn receipt(&self, p: &Person, id: &str) -> Result<String> {
        let c = self
            .consents
            .list(&p.identity_hash)
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| CitizenError::NotFound("autorisation inconnue".into()))?;
        let event = if c.revoked_at.is_some() {
            "revoked"
        } else {
            "granted"
        };
        self.consents
            .receipt(&c, event, &self.pseudonym(p))
            .map_err(|e| CitizenError::Unavailable(e.detail))
    }

    /// The pseudonyms whose entries the person may see now: their usual one, and that
    /// of each deferred habilitation whose date has passed.
    async fn visible_pseudonyms(&self, p: &Person) -> Result<Vec<String>> {
        let mut visible = vec![self.pseudonym(p)];
        let today = today();
        for (hab, date) in self.deferred().await? {
            if date <= today {
                visible.push(self.deferred_pseudonym(p, &hab));
            }
        }
        Ok(visible)
    }

    /// The proof bundle of one of the person's entries against the latest checkpoint;
    /// another person's entry, or one still withheld, is "not found".
    pub async fn proof(&self, p: &Person, index: u64) -> Result<ProofBundle> {
        let checkpoint = self
            .journal
            .latest_checkpoint()
            .await
            .map_err(unavailable)?;
        let (_, e) = self.own_entry(p, index, checkpoint.size).await?;
        let proof = self
            .journal
            .inclusion_proof(index, checkpoint.size)
            .await
            .map_err(unavailable)?;
        Ok(ProofBundle {
            format: PROOF_FORMAT.into(),
            key: self.journal.verifier_key(),
            checkpoint: checkpoint.note,
            index,
            leaf: B64.encode(&e.leaf),
            hashes: proof.hashes.iter().map(|h| B64.encode(h)).collect(),
        })
    }

    /// One of the person's entries, below `size` (covered by a checkpoint): another
    /// person's, or one still withheld, is "not found".
    async fn own_entry(
        &self,
        p: &Person,
        index: u64,
        size: u64,
    ) -> Result<(Entry, socle_store::StoredEntry)> {
        let unknown = || CitizenError::NotFound("entrée inconnue".into());
        if index >= size {
            return Err(unknown());
        }
        let (_, got) = self.journal.entries(index, 1).await.map_err(unavailable)?;
        let e = got.into_iter().next().ok_or_else(unknown)?;
        let entry = Entry::decode(&e.leaf).map_err(unavailable)?;
        let allowed = self.visible_pseudonyms(p).await?;
        let today = today();
        if !entry
            .subject
            .as_deref()
            .is_some_and(|s| allowed.iter().any(|p| self.journal.is_subject(p, s)))
        {
            return Err(unknown());
        }
        if let Some(hab) = entry.details.get("habilitation")
            && let Some(h) = self.habilitation(hab, &mut HashMap::new()).await
            && h.form
                .visible_after
                .as_ref()
                .is_some_and(|d| d.as_str() > today.as_str())
        {
            return Err(unknown());
        }
        Ok((entry, e))
    }

    /// Everything above as one JSON document (GDPR articles 15 and 20).
    pub async fn export(&self, p: &Person) -> Result<serde_json::Value> {
        let all = self.all_exchanges(p, &Filter::default(), None).await?;
        let (consents, other_bases) = self.authorisations(p).await?;
        let subject_keys: Vec<String> = self
            .visible_pseudonyms(p)
            .await?
            .iter()
            .map(|s| B64URL.encode(self.journal.subject_key(s)))
            .collect();
        Ok(serde_json::json!({
            "format": "socle-citizen-export/1",
            "generated_at": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "journal_key": self.journal.verifier_key(),
            // With them, the person finds their own entries in the public log: each
            // entry's `subject` is a nonce and its HMAC under one of these keys.
            "subject_keys": subject_keys,
            "exchanges": all.items,
            "withheld_exchanges": {"count": all.withheld, "until": all.withheld_until},
            "connections": self.connections(p).await?,
            "consents": consents,
            "other_legal_bases": other_bases,
        }))
    }
}

/// What the person is asked to authorise.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentPreview {
    pub habilitation: String,
    pub service_name: String,
    pub provider_name: String,
    pub api_title: String,
    pub purpose: String,
    pub data_items: Vec<String>,
    /// The habilitation's own end (`YYYY-MM-DD`): no consent may outlast it.
    pub valid_until: String,
}
