//! The back office over the store: accounts and sign-in, and habilitation requests
//! moved through their states by people allowed to (rules in [`crate::habilitation`]),
//! each step recorded in the request's history and in the journal (under the agent's
//! pseudonym). A concurrent change to the same request is detected and refused, and a
//! step — the change, a habilitation it supersedes, their journal entries and the
//! provider's notifications — is written in one transaction: whole or not at all.

use std::time::Instant;

use socle_journal::{Entry, EntryKind, Journal};
use socle_store::{
    BackOfficeStore, ClientWrite, HabilitationCommit, HabilitationRow, IdentityStore, NewMail,
    Store, StoredDelivery,
};

use crate::habilitation::{self, Action, Event, Form, Habilitation, IDENTITY, Side, State};
use crate::people::{self, Actor, Role, User};
use crate::service::Catalogue;
use crate::throttle::SignInThrottle;
use crate::{CatalogueError, Result, now, now_rfc3339, random, sha256_hex};

/// Lifetime of a sign-in token.
const TOKEN_TTL: i64 = 8 * 3600;

/// What one step of the back office writes, whole or not at all.
#[derive(Default)]
struct Step<'a> {
    inserts: Vec<&'a Habilitation>,
    updates: Vec<(&'a Habilitation, i64)>,
    entries: Vec<Entry>,
    notifications: (Vec<StoredDelivery>, Vec<NewMail>),
    clients: Vec<ClientWrite>,
}

fn row<'a>(h: &'a Habilitation, doc: &'a str) -> HabilitationRow<'a> {
    HabilitationRow {
        id: &h.id,
        requester: &h.requester,
        producer: &h.producer,
        api_id: &h.api,
        state: h.state.as_str(),
        doc,
    }
}

fn forbidden(m: &str) -> CatalogueError {
    CatalogueError::Forbidden(m.to_string())
}

/// Creates a local account (`socle admin user create`): checked, the password kept
/// only as its argon2id hash; journaled as by `by` in the same transaction (`None`:
/// journaled otherwise, as the demonstration's seeding is).
pub async fn create_user(
    store: &Store,
    email: &str,
    name: &str,
    organisation: &str,
    roles: Vec<Role>,
    password: &str,
    by: Option<&str>,
) -> Result<()> {
    let mut problems = Vec::new();
    if !email.contains('@') || email.contains(' ') {
        problems.push(format!("{email:?} is not an e-mail address"));
    }
    if name.trim().is_empty() {
        problems.push("name is required".into());
    }
    if password.chars().count() < 12 {
        problems.push("the password must have at least 12 characters".into());
    }
    if roles.is_empty() {
        problems.push("give at least one role".into());
    }
    if Catalogue::new(store.clone())
        .organisation(organisation)
        .await?
        .is_none()
    {
        problems.push(format!("organisation {organisation} is not registered"));
    }
    if !problems.is_empty() {
        return Err(CatalogueError::Invalid(problems.join("; ")));
    }
    let user = User {
        email: email.to_lowercase(),
        name: name.trim().to_string(),
        organisation: organisation.to_string(),
        roles,
        password_hash: people::hash_password(password).map_err(CatalogueError::Invalid)?,
    };
    let doc = serde_json::to_string(&user).map_err(|e| CatalogueError::Invalid(e.to_string()))?;
    // The entry names the organisation, not the person.
    let journal =
        crate::service::admin_entry(by, "user.created", "organisation", &user.organisation)?;
    store
        .insert_user(&user.email, &doc, now(), &journal)
        .await?;
    Ok(())
}

/// Accounts, sign-in and habilitation requests.
#[derive(Clone)]
pub struct BackOffice {
    store: Store,
    catalogue: Catalogue,
    journal: Journal,
    /// Password checks (Argon2: 19 MiB and a few milliseconds each) run off the async
    /// workers, two at a time: a burst of sign-ins cannot stall the gateway or logins.
    hashing: std::sync::Arc<tokio::sync::Semaphore>,
    /// Failed sign-ins per account (in memory, per node).
    throttle: std::sync::Arc<SignInThrottle>,
    /// SIRET of the organisation operating the platform: its instructors instruct
    /// integration requests (empty: the platform's operators only).
    platform: String,
}

impl BackOffice {
    pub fn new(store: Store, journal: Journal) -> Self {
        BackOffice {
            catalogue: Catalogue::new(store.clone()),
            store,
            journal,
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(2)),
            throttle: std::sync::Arc::default(),
            platform: String::new(),
        }
    }

    /// Names the organisation operating the platform, whose instructors instruct the
    /// integration requests (the partner space).
    pub fn with_platform(mut self, siret: impl Into<String>) -> Self {
        self.platform = siret.into();
        self
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        match self.store.user(&email.to_lowercase()).await? {
            Some(doc) => Ok(Some(serde_json::from_str(&doc).map_err(|e| {
                CatalogueError::Invalid(format!("stored account unreadable: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Signs in: a bearer token valid 8 hours, or `None` for wrong credentials;
    /// [`CatalogueError::Throttled`] after repeated failures on this e-mail address or
    /// from this client address (`from`; [`crate::throttle`]), without checking the
    /// password.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Option<String>> {
        // The throttle's key: the address as typed (an e-mail is at most 254
        // characters), whether an account has it or not.
        let account: String = email.to_lowercase().chars().take(254).collect();
        if let Err(wait) = self.throttle.attempt(&account, from, Instant::now()) {
            metrics::counter!("socle_sign_in_throttled_total").increment(1);
            return Err(CatalogueError::Throttled {
                // Whole seconds, rounded up: waiting that long is always enough.
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let user = self.user(email).await?;
        // Same work either way: no timing hint that the account exists.
        let hash = user.as_ref().map_or(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            |u| u.password_hash.as_str(),
        );
        let right = self.check_password(password, hash).await;
        // The attempt was counted before the check; a success clears the account's
        // count and takes the address's attempt back.
        let Some(user) = user.filter(|_| right) else {
            self.throttle.failed(from, Instant::now());
            return Ok(None);
        };
        self.throttle.succeeded(&account, from);
        let token = random(32);
        self.store
            .insert_user_token(&sha256_hex(&token), &user.email, now() + TOKEN_TTL)
            .await?;
        Ok(Some(token))
    }

    async fn check_password(&self, password: &str, hash: &str) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (password, hash) = (password.to_string(), hash.to_string());
        tokio::task::spawn_blocking(move || people::verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// Ends a sign-in: the token stops working at once (page and JSON API alike).
    pub async fn sign_out(&self, token: &str) -> Result<()> {
        Ok(self.store.delete_user_token(&sha256_hex(token)).await?)
    }

    /// The person behind a bearer token.
    pub async fn actor(&self, token: &str) -> Result<Option<Actor>> {
        let Some(email) = self.store.user_by_token(&sha256_hex(token), now()).await? else {
            return Ok(None);
        };
        Ok(self.user(&email).await?.map(|u| u.actor()))
    }

    fn pseudonym(&self, actor: &Actor) -> String {
        format!(
            "agent:{}",
            self.journal.pseudonym(&format!("agent:{}", actor.email))
        )
    }

    /// The journal entry of a step.
    fn entry(actor: &str, h: &Habilitation, action: &str) -> Entry {
        Entry::new(EntryKind::Habilitation, actor, "ok")
            .organisation(h.requester.clone())
            .organisation(h.producer.clone())
            .detail("habilitation", h.id.clone())
            .detail("api", h.api.clone())
            .detail("action", action)
            .detail("state", h.state.as_str())
            .detail("scopes", h.form.scopes.join(","))
    }

    async fn load(&self, id: &str) -> Result<(Habilitation, i64)> {
        let stored = self
            .store
            .habilitation(id)
            .await?
            .ok_or_else(|| CatalogueError::NotFound(format!("no habilitation {id:?}")))?;
        let h: Habilitation = serde_json::from_str(&stored.doc)
            .map_err(|e| CatalogueError::Invalid(format!("stored habilitation unreadable: {e}")))?;
        Ok((h, stored.version))
    }

    /// Writes a step whole, in one transaction: the new and changed requests (each
    /// change at the version read), their journal entries and the notifications they
    /// cause. A request changed meanwhile writes nothing.
    async fn commit(&self, step: Step<'_>) -> Result<()> {
        let doc = |h: &Habilitation| {
            serde_json::to_string(h).map_err(|e| CatalogueError::Invalid(e.to_string()))
        };
        let inserts: Vec<(&Habilitation, String)> = step
            .inserts
            .iter()
            .map(|h| Ok((*h, doc(h)?)))
            .collect::<Result<_>>()?;
        let updates: Vec<(&Habilitation, String, i64)> = step
            .updates
            .iter()
            .map(|(h, v)| Ok((*h, doc(h)?, *v)))
            .collect::<Result<_>>()?;
        let (deliveries, mails) = step.notifications;
        let commit = HabilitationCommit {
            inserts: inserts.iter().map(|(h, d)| row(h, d)).collect(),
            updates: updates.iter().map(|(h, d, v)| (row(h, d), *v)).collect(),
            journal: socle_journal::encode(step.entries)
                .map_err(|e| CatalogueError::Invalid(format!("journal entry refused: {e}")))?,
            deliveries,
            mails,
            clients: step.clients,
        };
        if self.store.commit_habilitations(&commit, now()).await? {
            Ok(())
        } else {
            Err(CatalogueError::Conflict(
                "the request changed meanwhile: reload it and try again".into(),
            ))
        }
    }

    /// A change of one request alone (no entry, no notification).
    async fn save(&self, h: &Habilitation, expected: i64) -> Result<()> {
        self.commit(Step {
            updates: vec![(h, expected)],
            ..Step::default()
        })
        .await
    }

    /// A new draft by the actor's organisation for `api`.
    pub async fn create(&self, actor: &Actor, api: &str, form: Form) -> Result<Habilitation> {
        self.create_reopening(actor, api, form, None, false).await
    }

    /// A new draft, reopening the validated habilitation `reopens` if given (an
    /// integration's at the stage `production`).
    async fn create_reopening(
        &self,
        actor: &Actor,
        api: &str,
        form: Form,
        reopens: Option<String>,
        production: bool,
    ) -> Result<Habilitation> {
        // An integration asks for the identity federation, instructed by the platform's
        // organisation (whose own services may ask too); an API request, for an API of
        // another organisation.
        let (api, producer) = if api == IDENTITY {
            (IDENTITY.to_string(), self.platform.clone())
        } else {
            let listed = self.catalogue.api(api).await?;
            (listed.api.id, listed.api.organisation)
        };
        let integration = api == IDENTITY;
        if habilitation::side(actor, &actor.organisation, &producer) != Side::Requester
            || (!integration && actor.organisation == producer)
        {
            return Err(forbidden(
                "only a developer or administrator of the requesting organisation writes a request",
            ));
        }
        let mut form = form;
        integration_part(integration, &mut form, production)?;
        let h = Habilitation {
            id: random(12),
            requester: actor.organisation.clone(),
            api,
            producer,
            state: State::Draft,
            form,
            reopens,
            client_id: None,
            secret_hash: None,
            history: vec![Event {
                at: now_rfc3339(),
                actor: actor.email.clone(),
                action: "create".into(),
                from: None,
                to: State::Draft,
                comment: None,
            }],
        };
        self.commit(Step {
            inserts: vec![&h],
            entries: vec![Self::entry(&self.pseudonym(actor), &h, "create")],
            ..Step::default()
        })
        .await?;
        Ok(h)
    }

    /// A request the actor may see.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Habilitation> {
        let (h, _) = self.load(id).await?;
        if !habilitation::may_see(
            habilitation::side(actor, &h.requester, &h.producer),
            h.state,
        ) {
            // Not even its existence is revealed.
            return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
        }
        Ok(h)
    }

    /// Every request the actor may see, most recently changed first.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Habilitation>> {
        let scope = (!actor.roles.contains(&Role::Operator)).then_some(actor.organisation.as_str());
        let mut out = Vec::new();
        for doc in self.store.habilitations(scope).await? {
            let h: Habilitation = serde_json::from_str(&doc).map_err(|e| {
                CatalogueError::Invalid(format!("stored habilitation unreadable: {e}"))
            })?;
            if habilitation::may_see(
                habilitation::side(actor, &h.requester, &h.producer),
                h.state,
            ) {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Replaces the form of a draft (or of a request sent back for changes).
    /// `seen`: the revision the person edited, if known; a request changed since is
    /// refused ([`CatalogueError::Stale`]) rather than overwritten.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        form: Form,
        seen: Option<usize>,
    ) -> Result<Habilitation> {
        let (mut h, version) = self.load(id).await?;
        let side = habilitation::side(actor, &h.requester, &h.producer);
        if !habilitation::may_see(side, h.state) {
            return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
        }
        fresh(&h, seen)?;
        if !habilitation::may_edit(side, h.state) {
            return Err(forbidden(
                "only the requesting organisation edits its request, while a draft or sent back for changes",
            ));
        }
        let mut form = form;
        // The stage is the request's, not the form's: production is asked for apart.
        let production = h.form.integration.as_ref().is_some_and(|i| i.production);
        integration_part(h.is_integration(), &mut form, production)?;
        h.form = form;
        h.history.push(Event {
            at: now_rfc3339(),
            actor: actor.email.clone(),
            action: "update".into(),
            from: Some(h.state),
            to: h.state,
            comment: None,
        });
        self.commit(Step {
            updates: vec![(&h, version)],
            entries: vec![Self::entry(&self.pseudonym(actor), &h, "update")],
            ..Step::default()
        })
        .await?;
        Ok(h)
    }

    /// Moves a request on: checks the state, the actor's side, the comment and, to
    /// submit, the form; on validation creates the credentials. `seen`: the revision the
    /// person read — an instructor must not validate a form changed since they read it.
    pub async fn act(
        &self,
        actor: &Actor,
        id: &str,
        action: Action,
        comment: Option<String>,
        seen: Option<usize>,
    ) -> Result<Habilitation> {
        let (mut h, version) = self.load(id).await?;
        let side = habilitation::side(actor, &h.requester, &h.producer);
        if !habilitation::may_see(side, h.state) {
            return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
        }
        fresh(&h, seen)?;
        if !habilitation::may(side, action) {
            return Err(forbidden(&format!(
                "you may not {} this request",
                action.as_str().replace('_', " ")
            )));
        }
        let Some(to) = action.from(h.state) else {
            return Err(CatalogueError::Conflict(format!(
                "a request in state {} cannot be {}",
                h.state.as_str(),
                action.as_str()
            )));
        };
        let comment = comment.filter(|c| !c.trim().is_empty());
        // Archiving a validated habilitation ends access as a revocation does: only its
        // requester (giving the access up) may do so without saying why.
        let ends_access = action == Action::Archive
            && h.state == State::Validated
            && side != habilitation::Side::Requester;
        if (action.needs_comment() || ends_access) && comment.is_none() {
            return Err(CatalogueError::Invalid(format!(
                "say why: a comment is required to {}",
                action.as_str().replace('_', " ")
            )));
        }
        if action == Action::Submit && h.is_integration() {
            let mut problems = h
                .form
                .integration_problems(socle_identity::client::valid_redirect_uri);
            // What the identity federation would refuse at validation, said now.
            if problems.is_empty()
                && let Err(e) = client_input(&h).into_client()
            {
                problems.push(e.to_string());
            }
            if !problems.is_empty() {
                return Err(CatalogueError::Invalid(format!(
                    "the request is incomplete: {}",
                    problems.join("; ")
                )));
            }
        } else if action == Action::Submit {
            let api = self.catalogue.api(&h.api).await?;
            let scopes: Vec<String> = api.api.scopes.iter().map(|s| s.name.clone()).collect();
            let problems = h.form.problems(&scopes);
            if !problems.is_empty() {
                return Err(CatalogueError::Invalid(format!(
                    "the request is incomplete: {}",
                    problems.join("; ")
                )));
            }
        }
        let mut clients = Vec::new();
        if action == Action::Validate && h.is_integration() {
            // The identity client: created (sandbox, then production), or the one a
            // reopened request carries, reconfigured — in the validation's transaction.
            clients.push(self.integration_client(&mut h).await?);
        } else if action == Action::Validate {
            h.client_id = Some(format!("hab-{}", random(12)));
        }
        // Revoking or archiving a validated integration disables its client.
        if h.is_integration()
            && h.state == State::Validated
            && matches!(action, Action::Revoke | Action::Archive)
        {
            clients.extend(self.disabled_client(&h).await?);
        }
        h.history.push(Event {
            at: now_rfc3339(),
            actor: actor.email.clone(),
            action: action.as_str().into(),
            from: Some(h.state),
            to,
            comment,
        });
        h.state = to;
        // The step, the habilitation it supersedes (a reopened one, once validated),
        // their entries and the provider's notifications: one transaction.
        let superseded = match action {
            Action::Validate => self.superseded(&h).await?,
            _ => None,
        };
        let mut entry = Self::entry(&self.pseudonym(actor), &h, action.as_str());
        if let (true, Some(c)) = (h.is_integration(), &h.client_id) {
            entry = entry.detail("client_id", c.clone());
        }
        let mut step = Step {
            updates: vec![(&h, version)],
            entries: vec![entry],
            notifications: self.notifications(&h, action).await?,
            clients,
            ..Step::default()
        };
        if let Some((old, old_version)) = &superseded {
            step.updates.push((old, *old_version));
            step.entries.push(Self::entry("system", old, "superseded"));
        }
        self.commit(step).await?;
        Ok(h)
    }

    /// What tells the provider: signed webhook(s) and an e-mail to the API's contact.
    async fn notifications(
        &self,
        h: &Habilitation,
        action: Action,
    ) -> Result<(Vec<StoredDelivery>, Vec<NewMail>)> {
        let contact = self
            .catalogue
            .api(&h.api)
            .await
            .map(|l| l.api.contact)
            .unwrap_or_default();
        let event = format!("habilitation.{}", action.as_str());
        let body = serde_json::json!({
            "event": event,
            "at": now_rfc3339(),
            "habilitation": {
                "id": h.id, "api": h.api, "requester": h.requester, "producer": h.producer,
                "state": h.state, "scopes": h.form.scopes, "title": h.form.title,
            },
        });
        let subject = format!(
            "Habilitation « {} » pour {} : {}",
            h.form.title,
            h.api,
            h.state.as_str()
        );
        crate::notify::notifications(&self.store, &h.producer, &event, &body, &contact, &subject)
            .await
    }

    /// Reopens a validated habilitation: a new draft with the same form, which replaces
    /// the old one only when it is validated (the old one stays valid meanwhile; if the
    /// new one is refused, the old one simply stays).
    pub async fn reopen(&self, actor: &Actor, id: &str) -> Result<Habilitation> {
        let (old, _) = self.load(id).await?;
        let side = habilitation::side(actor, &old.requester, &old.producer);
        if !habilitation::may_see(side, old.state) {
            return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
        }
        if side != Side::Requester {
            return Err(forbidden(
                "only the requesting organisation reopens its habilitation",
            ));
        }
        if old.state != State::Validated {
            return Err(CatalogueError::Conflict(format!(
                "only a validated habilitation is reopened (this one is {})",
                old.state.as_str()
            )));
        }
        if old.is_integration() {
            self.no_open_successor(&old, None).await?;
        }
        let production = old.form.integration.as_ref().is_some_and(|i| i.production);
        self.create_reopening(
            actor,
            &old.api,
            old.form.clone(),
            Some(old.id.clone()),
            production,
        )
        .await
    }

    /// When a reopened request is validated, the habilitation it replaces is archived
    /// (in the validation's transaction): that habilitation, changed, at the version read.
    async fn superseded(&self, h: &Habilitation) -> Result<Option<(Habilitation, i64)>> {
        let Some(old_id) = &h.reopens else {
            return Ok(None);
        };
        let (mut old, version) = self.load(old_id).await?;
        if old.state != State::Validated {
            return Ok(None);
        }
        // Production, once validated, does not end the sandbox: both clients live on.
        if old.form.integration.as_ref().map(|i| i.production)
            != h.form.integration.as_ref().map(|i| i.production)
        {
            return Ok(None);
        }
        old.history.push(Event {
            at: now_rfc3339(),
            actor: "system".into(),
            action: "superseded".into(),
            from: Some(old.state),
            to: State::Archived,
            comment: Some(format!("remplacée par la demande {}", h.id)),
        });
        old.state = State::Archived;
        Ok(Some((old, version)))
    }

    /// Expires the validated habilitations whose accreditation ended before `today`
    /// (`YYYY-MM-DD`); returns how many.
    pub async fn expire_due(&self, today: &str) -> Result<usize> {
        let mut n = 0;
        for doc in self.store.habilitations(None).await? {
            let h: Habilitation = serde_json::from_str(&doc).map_err(|e| {
                CatalogueError::Invalid(format!("stored habilitation unreadable: {e}"))
            })?;
            // (A sandbox integration sees fictitious people only: it does not expire.)
            let sandbox = h.form.integration.as_ref().is_some_and(|i| !i.production);
            if h.state != State::Validated
                || sandbox
                || h.form.accreditation.end.is_empty()
                || h.form.accreditation.end.as_str() >= today
            {
                continue;
            }
            let (mut h, version) = self.load(&h.id).await?;
            h.history.push(Event {
                at: now_rfc3339(),
                actor: "system".into(),
                action: Action::Expire.as_str().into(),
                from: Some(h.state),
                to: State::Expired,
                comment: Some(format!(
                    "homologation échue le {}",
                    h.form.accreditation.end
                )),
            });
            let clients = match h.is_integration() {
                true => self.disabled_client(&h).await?.into_iter().collect(),
                false => Vec::new(),
            };
            h.state = State::Expired;
            self.commit(Step {
                updates: vec![(&h, version)],
                entries: vec![Self::entry("system", &h, Action::Expire.as_str())],
                notifications: self.notifications(&h, Action::Expire).await?,
                clients,
                ..Step::default()
            })
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// The credentials of a validated request, to the requesting organisation: the
    /// first time `(client_id, Some(secret))` — the secret is generated now and only its
    /// hash kept — afterwards `(client_id, None)`.
    pub async fn credentials(&self, actor: &Actor, id: &str) -> Result<(String, Option<String>)> {
        let (mut h, version) = self.load(id).await?;
        requester_only(actor, &h, id)?;
        let Some(client_id) = h.client_id.clone() else {
            return Err(CatalogueError::Conflict(
                "the request is not validated".into(),
            ));
        };
        if h.state != State::Validated {
            return Err(CatalogueError::Conflict(format!(
                "the habilitation is {}",
                h.state.as_str()
            )));
        }
        if h.is_integration() {
            return self.integration_secret(actor, h, version, None).await;
        }
        if h.secret_hash.is_some() {
            return Ok((client_id, None));
        }
        let secret = random(32);
        h.secret_hash = Some(sha256_hex(&secret));
        self.save(&h, version).await?;
        Ok((client_id, Some(secret)))
    }

    /// Replaces the secret of a validated habilitation (a lost or leaked secret): the
    /// old one stops working as soon as the gateway reloads (within a second); tokens
    /// already issued with it stay valid until they expire.
    pub async fn renew_secret(&self, actor: &Actor, id: &str) -> Result<(String, String)> {
        self.renew_secret_with_grace(actor, id, 0).await
    }

    /// Replaces the secret of a validated habilitation; for an integration, the old
    /// secret stays valid `grace` seconds (at most 30 days) — the developers' choice,
    /// to deploy the new one without an outage. (An API habilitation's old secret
    /// stops at once: `grace` must be 0.)
    pub async fn renew_secret_with_grace(
        &self,
        actor: &Actor,
        id: &str,
        grace: i64,
    ) -> Result<(String, String)> {
        let (mut h, version) = self.load(id).await?;
        requester_only(actor, &h, id)?;
        let (Some(client_id), State::Validated) = (h.client_id.clone(), h.state) else {
            return Err(CatalogueError::Conflict(format!(
                "the habilitation is {}",
                h.state.as_str()
            )));
        };
        if h.is_integration() {
            return match self
                .integration_secret(actor, h, version, Some(grace))
                .await?
            {
                (id, Some(secret)) => Ok((id, secret)),
                (_, None) => Err(CatalogueError::Conflict(
                    "the client authenticates without a secret".into(),
                )),
            };
        }
        if grace != 0 {
            return Err(CatalogueError::Invalid(
                "an API habilitation's secret is replaced at once (grace 0)".into(),
            ));
        }
        let secret = random(32);
        h.secret_hash = Some(sha256_hex(&secret));
        self.commit(Step {
            updates: vec![(&h, version)],
            entries: vec![Self::entry(&self.pseudonym(actor), &h, "renew_secret")],
            ..Step::default()
        })
        .await?;
        Ok((client_id, secret))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_now_has_the_right_shape() {
        let s = crate::now_rfc3339();
        assert_eq!(s.len(), 20);
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }

    #[test]
    fn the_register_csv_cannot_carry_a_formula() {
        let p = super::Processing {
            habilitation: "h1".into(),
            name: "=HYPERLINK(\"https://evil\")".into(),
            purpose: "Un \"vrai\" motif".into(),
            legal_basis: "+33".into(),
            data: vec!["-1".into()],
            source: "@api".into(),
            recipients: vec![],
            retention_months: 12,
            controller: "c".into(),
            dpo: "d".into(),
            security: "s".into(),
            since: "2026-01-01".into(),
        };
        let csv = super::register_csv(&[p]);
        let row = csv.lines().nth(1).unwrap();
        assert!(
            row.contains("\"'=HYPERLINK(\"\"https://evil\"\")\""),
            "{row}"
        );
        assert!(row.contains("\"'+33\"") && row.contains("\"'-1\"") && row.contains("\"'@api\""));
        assert!(row.contains("\"Un \"\"vrai\"\" motif\""), "{row}");
    }
}

impl BackOffice {
    /// Asks for production: a new request (a draft with the same form, to complete
    /// with the production addresses and the accreditation) for a validated sandbox
    /// integration. Validated, it creates the production client; the sandbox one
    /// stays.
    pub async fn ask_production(&self, actor: &Actor, id: &str) -> Result<Habilitation> {
        let (old, _) = self.load(id).await?;
        let side = habilitation::side(actor, &old.requester, &old.producer);
        if !habilitation::may_see(side, old.state) {
            return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
        }
        if side != Side::Requester {
            return Err(forbidden(
                "only the requesting organisation asks for production",
            ));
        }
        if !old.may_ask_production() {
            return Err(CatalogueError::Conflict(
                "only a validated sandbox integration asks for production".into(),
            ));
        }
        self.no_open_successor(&old, Some(true)).await?;
        self.create_reopening(
            actor,
            IDENTITY,
            old.form.clone(),
            Some(old.id.clone()),
            true,
        )
        .await
    }

    /// Refuses a second request from the same integration while one is open (two
    /// edits would race for one client), and — `production` — a second production
    /// while one is in force (edit that one instead).
    async fn no_open_successor(&self, old: &Habilitation, production: Option<bool>) -> Result<()> {
        for doc in self.store.habilitations(Some(&old.requester)).await? {
            let h: Habilitation = serde_json::from_str(&doc).map_err(|e| {
                CatalogueError::Invalid(format!("stored habilitation unreadable: {e}"))
            })?;
            if h.reopens.as_deref() != Some(old.id.as_str()) {
                continue;
            }
            let open = matches!(
                h.state,
                State::Draft | State::Submitted | State::ChangesRequested
            );
            let in_force = h.state == State::Validated
                && production.is_some()
                && h.form.integration.as_ref().map(|i| i.production) == production;
            if open || in_force {
                return Err(CatalogueError::Conflict(format!(
                    "request {} already follows this one ({}): continue it instead",
                    h.id,
                    h.state.as_str()
                )));
            }
        }
        Ok(())
    }

    /// The identity client a validated integration request gets: a reopened
    /// request's own one (same stage), reconfigured from the new form; otherwise a new
    /// one, without a secret until its developers ask for it (shown to them once).
    async fn integration_client(&self, h: &mut Habilitation) -> Result<ClientWrite> {
        let i = h.form.integration.clone().unwrap_or_default();
        let input = client_input(h);
        let carried = match &h.reopens {
            Some(old) => {
                let (old, _) = self.load(old).await?;
                // Only a request still in force hands its client on: one that ended
                // meanwhile (revoked, expired, replaced) left a disabled client or
                // another request's, and this one gets a client of its own.
                let same_stage = old.is_integration()
                    && old.state == State::Validated
                    && old.form.integration.as_ref().map(|o| o.production) == Some(i.production);
                old.client_id.filter(|_| same_stage)
            }
            None => None,
        };
        let write = match carried {
            Some(client_id) => {
                let stored = self.store.client(&client_id).await?.ok_or_else(|| {
                    CatalogueError::NotFound(format!("client {client_id} of the request"))
                })?;
                let client = stored_client(&stored.doc)?
                    .reconfigured(input)
                    .map_err(identity_error)?;
                ClientWrite {
                    client_id,
                    doc: client_doc(&client)?,
                    expected: Some((stored.doc, stored.disabled)),
                    disabled: stored.disabled,
                }
            }
            None => {
                let (mut client, _) = input.into_client().map_err(identity_error)?;
                client.secret_hash = None;
                ClientWrite {
                    client_id: client.client_id.clone(),
                    doc: client_doc(&client)?,
                    expected: None,
                    disabled: false,
                }
            }
        };
        h.client_id = Some(write.client_id.clone());
        Ok(write)
    }

    /// The write that disables an integration's client, if it has one.
    async fn disabled_client(&self, h: &Habilitation) -> Result<Option<ClientWrite>> {
        let Some(client_id) = &h.client_id else {
            return Ok(None);
        };
        let Some(stored) = self.store.client(client_id).await? else {
            return Ok(None);
        };
        Ok(Some(ClientWrite {
            client_id: client_id.clone(),
            doc: stored.doc.clone(),
            expected: Some((stored.doc, stored.disabled)),
            disabled: true,
        }))
    }

    /// An integration's secret: issued the first time it is asked for (`grace`
    /// `None`), or renewed with the old one valid `grace` seconds; returned to show
    /// once, with the step in the request's history and the journal.
    async fn integration_secret(
        &self,
        actor: &Actor,
        mut h: Habilitation,
        version: i64,
        grace: Option<i64>,
    ) -> Result<(String, Option<String>)> {
        let client_id = h
            .client_id
            .clone()
            .ok_or_else(|| CatalogueError::Conflict("the request is not validated".into()))?;
        let stored = self
            .store
            .client(&client_id)
            .await?
            .ok_or_else(|| CatalogueError::NotFound(format!("client {client_id}")))?;
        let mut client = stored_client(&stored.doc)?;
        let (secret, action) = match grace {
            None => (client.issue_secret(), "issue_secret"),
            Some(g) => (
                Some(client.renew_secret(g).map_err(identity_error)?),
                "renew_secret",
            ),
        };
        if secret.is_none() {
            return Ok((client_id, None));
        }
        h.history.push(Event {
            at: now_rfc3339(),
            actor: actor.email.clone(),
            action: action.into(),
            from: Some(h.state),
            to: h.state,
            comment: grace.map(|g| format!("ancien secret valable encore {g} s")),
        });
        let mut entry =
            Self::entry(&self.pseudonym(actor), &h, action).detail("client_id", client_id.clone());
        if let Some(g) = grace {
            entry = entry.detail("grace_seconds", g.to_string());
        }
        self.commit(Step {
            updates: vec![(&h, version)],
            entries: vec![entry],
            clients: vec![ClientWrite {
                client_id: client_id.clone(),
                doc: client_doc(&client)?,
                expected: Some((stored.doc, stored.disabled)),
                disabled: stored.disabled,
            }],
            ..Step::default()
        })
        .await?;
        Ok((client_id, secret))
    }

    /// The identity client of a validated integration, as its developers see it.
    pub async fn integration_client_view(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Option<socle_identity::Client>> {
        let h = self.get(actor, id).await?;
        let integration = h.is_integration();
        let Some(client_id) = h.client_id.filter(|_| integration) else {
            return Ok(None);
        };
        match self.store.client(&client_id).await? {
            Some(stored) => {
                let mut c = stored_client(&stored.doc)?;
                c.disabled = stored.disabled;
                c.secret_hash = None;
                c.previous_secret_hash = None;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }
}

/// One processing of the register (GDPR article 30), from a validated habilitation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Processing {
    pub habilitation: String,
    pub name: String,
    pub purpose: String,
    pub legal_basis: String,
    /// The data items received (names from the dictionary, else the scopes).
    pub data: Vec<String>,
    /// Where the data come from: the API and its producer.
    pub source: String,
    pub recipients: Vec<String>,
    pub retention_months: u32,
    pub controller: String,
    pub dpo: String,
    pub security: String,
    /// When the habilitation was validated.
    pub since: String,
}

impl BackOffice {
    /// The register of processing of `organisation`: its validated habilitations.
    pub async fn register(&self, organisation: &str) -> Result<Vec<Processing>> {
        let items = self.catalogue.data_items().await?;
        let mut out = Vec::new();
        for doc in self.store.habilitations(Some(organisation)).await? {
            let h: Habilitation = serde_json::from_str(&doc).map_err(|e| {
                CatalogueError::Invalid(format!("stored habilitation unreadable: {e}"))
            })?;
            if h.requester != organisation || h.state != State::Validated {
                continue;
            }
            if h.is_integration() {
                // A sandbox sees only fictitious people: not a processing.
                if let Some(p) = integration_processing(&h) {
                    out.push(p);
                }
                continue;
            }
            let api = self.catalogue.api(&h.api).await?;
            let mut data: Vec<String> = api
                .api
                .scopes
                .iter()
                .filter(|s| h.form.scopes.contains(&s.name))
                .flat_map(|s| {
                    if s.data_items.is_empty() {
                        vec![s.name.clone()]
                    } else {
                        s.data_items
                            .iter()
                            .map(|d| {
                                items
                                    .iter()
                                    .find(|i| &i.id == d)
                                    .map_or(d.clone(), |i| i.name.clone())
                            })
                            .collect()
                    }
                })
                .collect();
            data.dedup();
            out.push(processing(
                &h,
                data,
                format!("{} ({})", api.api.title, api.producer.name),
            ));
        }
        Ok(out)
    }
}

/// A production integration as a processing: the identity data it receives.
fn integration_processing(h: &Habilitation) -> Option<Processing> {
    let i = h.form.integration.as_ref().filter(|i| i.production)?;
    let data = h
        .form
        .scopes
        .iter()
        .filter_map(|s| {
            habilitation::IDENTITY_SCOPES
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, d)| d.to_string())
        })
        .collect();
    let source = format!(
        "Fédération d’identité de la plateforme (niveau eIDAS {})",
        i.eidas_level
    );
    Some(processing(h, data, source))
}

/// A validated habilitation as a processing: what it says, the data and their source.
fn processing(h: &Habilitation, data: Vec<String>, source: String) -> Processing {
    let f = &h.form;
    Processing {
        habilitation: h.id.clone(),
        name: f.title.clone(),
        purpose: f.purpose.clone(),
        legal_basis: format!("{} — {}", f.legal_basis.nature, f.legal_basis.text),
        data,
        source,
        recipients: f.recipients.clone(),
        retention_months: f.retention_months,
        controller: format!("{} <{}>", f.controller.name, f.controller.email),
        dpo: format!("{} <{}>", f.dpo.name, f.dpo.email),
        security: format!(
            "homologation par {} du {} au {}",
            f.accreditation.authority, f.accreditation.start, f.accreditation.end
        ),
        since: h
            .history
            .iter()
            .rev()
            .find(|e| e.action == "validate")
            .map(|e| e.at.clone())
            .unwrap_or_default(),
    }
}

/// The register as CSV (RFC 4180: fields quoted, quotes doubled; lists joined by " | ").
/// A field a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage
/// return first: OWASP's CSV injection) is prefixed with `'`, shown as text.
pub fn register_csv(entries: &[Processing]) -> String {
    fn field(s: &str) -> String {
        let quote = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            "'"
        } else {
            ""
        };
        format!("\"{quote}{}\"", s.replace('"', "\"\""))
    }
    let mut out = String::from(
        "habilitation,traitement,finalite,base_legale,donnees,source,destinataires,conservation_mois,responsable,dpd,securite,depuis\r\n",
    );
    for p in entries {
        let row = [
            field(&p.habilitation),
            field(&p.name),
            field(&p.purpose),
            field(&p.legal_basis),
            field(&p.data.join(" | ")),
            field(&p.source),
            field(&p.recipients.join(" | ")),
            p.retention_months.to_string(),
            field(&p.controller),
            field(&p.dpo),
            field(&p.security),
            field(&p.since),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Refuses to act on a request changed since the revision the person saw.
fn fresh(h: &Habilitation, seen: Option<usize>) -> Result<()> {
    match seen {
        Some(seen) if seen != h.revision() => Err(CatalogueError::Stale {
            seen,
            now: h.revision(),
        }),
        _ => Ok(()),
    }
}

/// The identity client an integration request describes.
fn client_input(h: &Habilitation) -> socle_identity::ClientInput {
    let i = h.form.integration.clone().unwrap_or_default();
    socle_identity::ClientInput {
        name: h.form.title.clone(),
        organisation: h.requester.clone(),
        profile: Some(match i.profile.as_str() {
            "franceconnect" => socle_identity::ClientProfile::Franceconnect,
            _ => socle_identity::ClientProfile::Standard,
        }),
        sandbox: !i.production,
        redirect_uris: i.redirect_uris,
        post_logout_redirect_uris: i.post_logout_redirect_uris,
        backchannel_logout_uri: i.backchannel_logout_uri,
        scopes: h.form.scopes.clone(),
        eidas_level: Some(i.eidas_level),
        ..Default::default()
    }
}

/// An integration request's own part: required (its stage kept as `production`) for
/// an integration, refused for an API request.
fn integration_part(integration: bool, form: &mut Form, production: bool) -> Result<()> {
    match (integration, &mut form.integration) {
        (true, part) => part.get_or_insert_default().production = production,
        (false, Some(_)) => {
            return Err(CatalogueError::Invalid(format!(
                "integration is for a request to log users in (api {IDENTITY:?})"
            )));
        }
        (false, None) => {}
    }
    Ok(())
}

fn stored_client(doc: &str) -> Result<socle_identity::Client> {
    serde_json::from_str(doc)
        .map_err(|e| CatalogueError::Invalid(format!("stored client unreadable: {e}")))
}

fn client_doc(c: &socle_identity::Client) -> Result<String> {
    serde_json::to_string(c).map_err(|e| CatalogueError::Invalid(e.to_string()))
}

fn identity_error(e: socle_identity::IdentityError) -> CatalogueError {
    use socle_identity::IdentityError as E;
    match e {
        E::NotFound(m) => CatalogueError::NotFound(m),
        E::Conflict(m) => CatalogueError::Conflict(m),
        other => CatalogueError::Invalid(other.to_string()),
    }
}

/// Credentials go to the requesting organisation only; to anyone who may not even see
/// the request, it does not exist.
fn requester_only(actor: &Actor, h: &Habilitation, id: &str) -> Result<()> {
    let side = habilitation::side(actor, &h.requester, &h.producer);
    if !habilitation::may_see(side, h.state) {
        return Err(CatalogueError::NotFound(format!("no habilitation {id:?}")));
    }
    if side != Side::Requester {
        return Err(forbidden(
            "credentials go to the requesting organisation only",
        ));
    }
    Ok(())
}
