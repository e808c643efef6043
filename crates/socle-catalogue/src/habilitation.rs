//! Habilitations (the DataPass model): one request by a service organisation for one
//! API, its states, who may move it from one to the next, and what a complete request
//! says. Pure rules: the store keeps the records, the service applies these rules.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::people::{Actor, Role};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Submitted,
    ChangesRequested,
    Validated,
    Refused,
    Revoked,
    Expired,
    Archived,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Submitted => "submitted",
            State::ChangesRequested => "changes_requested",
            State::Validated => "validated",
            State::Refused => "refused",
            State::Revoked => "revoked",
            State::Expired => "expired",
            State::Archived => "archived",
        }
    }

    pub const ALL: [State; 8] = [
        State::Draft,
        State::Submitted,
        State::ChangesRequested,
        State::Validated,
        State::Refused,
        State::Revoked,
        State::Expired,
        State::Archived,
    ];

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What someone does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The service sends its request for review.
    Submit,
    /// The provider asks for changes.
    RequestChanges,
    Validate,
    Refuse,
    /// The provider withdraws a validated habilitation.
    Revoke,
    /// Either side files a decided request away.
    Archive,
    /// The end date passed (the platform itself).
    Expire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::RequestChanges => "request_changes",
            Action::Validate => "validate",
            Action::Refuse => "refuse",
            Action::Revoke => "revoke",
            Action::Archive => "archive",
            Action::Expire => "expire",
        }
    }

    pub const ALL: [Action; 7] = [
        Action::Submit,
        Action::RequestChanges,
        Action::Validate,
        Action::Refuse,
        Action::Revoke,
        Action::Archive,
        Action::Expire,
    ];

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The state an action leads to from `from`, if it is allowed there.
    pub fn from(self, from: State) -> Option<State> {
        use State::*;
        match (self, from) {
            (Action::Submit, Draft | ChangesRequested) => Some(Submitted),
            (Action::RequestChanges, Submitted) => Some(ChangesRequested),
            (Action::Validate, Submitted) => Some(Validated),
            (Action::Refuse, Submitted) => Some(Refused),
            (Action::Revoke, Validated) => Some(Revoked),
            (Action::Expire, Validated) => Some(Expired),
            (Action::Archive, Validated | Refused | Revoked | Expired) => Some(Archived),
            _ => None,
        }
    }

    /// Actions whose comment is required (the other side must know why).
    pub fn needs_comment(self) -> bool {
        matches!(
            self,
            Action::RequestChanges | Action::Refuse | Action::Revoke
        )
    }
}

/// Which side of a request an actor is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The organisation asking for access.
    Requester,
    /// The organisation producing the API.
    Provider,
    /// The platform's operator.
    Operator,
    None,
}

/// The actor's side for a request by `requester` to an API of `producer`.
pub fn side(actor: &Actor, requester: &str, producer: &str) -> Side {
    if actor.roles.contains(&Role::Operator) {
        Side::Operator
    } else if actor.organisation == producer
        && (actor.roles.contains(&Role::Instructor) || actor.roles.contains(&Role::OrgAdmin))
    {
        Side::Provider
    } else if actor.organisation == requester
        && (actor.roles.contains(&Role::Developer) || actor.roles.contains(&Role::OrgAdmin))
    {
        Side::Requester
    } else {
        Side::None
    }
}

/// May `side` perform `action`? (The state is checked apart.)
pub fn may(side: Side, action: Action) -> bool {
    match action {
        Action::Submit => side == Side::Requester,
        Action::RequestChanges | Action::Validate | Action::Refuse | Action::Revoke => {
            matches!(side, Side::Provider | Side::Operator)
        }
        Action::Archive => side != Side::None,
        // Only the platform expires habilitations (end date).
        Action::Expire => false,
    }
}

/// May `side` see a request in `state`? Drafts stay with the requester.
pub fn may_see(side: Side, state: State) -> bool {
    match side {
        Side::Requester | Side::Operator => true,
        Side::Provider => state != State::Draft,
        Side::None => false,
    }
}

/// May `side` edit a request in `state`?
pub fn may_edit(side: Side, state: State) -> bool {
    side == Side::Requester && matches!(state, State::Draft | State::ChangesRequested)
}

/// A contact of the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// The legal basis of the processing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LegalBasis {
    /// e.g. "obligation légale", "mission d'intérêt public".
    pub nature: String,
    /// The text (law, decree, deliberation) and article.
    pub text: String,
    #[serde(default)]
    pub url: Option<String>,
    /// The processing rests on the person's consent (GDPR art. 6(1)(a)): every
    /// gateway call under the habilitation needs that person's consent. (A nature
    /// naming consent counts too.)
    #[serde(default)]
    pub consent: bool,
}

impl LegalBasis {
    /// Whether exchanges need the person's consent: the flag, or a nature that names
    /// consent ("consentement de la personne") — the stricter reading wins.
    pub fn is_consent(&self) -> bool {
        self.consent || self.nature.to_lowercase().contains("consent")
    }
}

/// A security accreditation (homologation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accreditation {
    pub authority: String,
    /// `YYYY-MM-DD`.
    pub start: String,
    /// `YYYY-MM-DD`.
    pub end: String,
}

/// What the requester writes; may be incomplete while a draft.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Form {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub legal_basis: LegalBasis,
    /// Scopes of the API requested (hence data items).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub retention_months: u32,
    /// Required when retention exceeds 36 months.
    #[serde(default)]
    pub retention_justification: Option<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub controller: Contact,
    #[serde(default)]
    pub dpo: Contact,
    #[serde(default)]
    pub technical_contact: Contact,
    #[serde(default)]
    pub accreditation: Accreditation,
    /// Expected calls per day.
    #[serde(default)]
    pub expected_volume: u64,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub go_live: String,
    /// Deferred visibility: the exchanges under this habilitation are shown to the people
    /// concerned only from this date (`YYYY-MM-DD`, e.g. during an investigation); until
    /// then the citizen space says how many are withheld and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_after: Option<String>,
    /// An integration request's own part (the request's `api` is [`IDENTITY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// The `api` of an integration request: a service asks to log its users in through
/// the platform's identity federation, instructed by the platform's organisation.
pub const IDENTITY: &str = "identite";

/// What an integration request says besides the common form (FranceConnect's DataPass
/// form: the service, its addresses, the scopes and why, the eIDAS level).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// The service's public address.
    #[serde(default)]
    pub service_url: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// Why each requested scope (`Form::scopes`) is needed.
    #[serde(default)]
    pub justifications: std::collections::BTreeMap<String, String>,
    /// The lowest eIDAS level the service accepts: 1, 2 or 3.
    #[serde(default)]
    pub eidas_level: u8,
    /// `standard` (OpenID Connect's rules) or `franceconnect` (FranceConnect's
    /// stricter ones).
    #[serde(default)]
    pub profile: String,
    /// `false`: a sandbox client (the demonstration identity provider only);
    /// `true`: production, asked for once the sandbox works.
    #[serde(default)]
    pub production: bool,
}

/// The identity scopes an integration may request, and what each releases (in French,
/// for the form and the instructor).
pub const IDENTITY_SCOPES: &[(&str, &str)] = &[
    (
        "identite_pivot",
        "Identité pivot : nom, prénoms, sexe, date et lieu de naissance",
    ),
    ("given_name", "Prénoms"),
    ("family_name", "Nom de naissance"),
    ("birthdate", "Date de naissance"),
    ("gender", "Sexe"),
    ("birthplace", "Lieu de naissance"),
    ("birthcountry", "Pays de naissance"),
    ("email", "Adresse électronique"),
    ("preferred_username", "Nom d’usage"),
];

/// A calendar date written `YYYY-MM-DD` (2024-13-45 is not one).
fn date_ok(s: &str) -> bool {
    s.len() == 10
        && time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
}

fn email_ok(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !s.contains(' '))
}

impl Form {
    /// Every problem that prevents submitting, against the API's scopes.
    pub fn problems(&self, api_scopes: &[String]) -> Vec<String> {
        let mut p = Vec::new();
        if self.title.trim().is_empty() {
            p.push("title is required".to_string());
        }
        self.purpose_and_people_problems(&mut p);
        if self.scopes.is_empty() {
            p.push("scopes: request at least one".into());
        }
        for s in &self.scopes {
            if !api_scopes.contains(s) {
                p.push(format!("scope {s:?} is not a scope of this API"));
            }
        }
        if self.retention_months == 0 {
            p.push("retention_months is required".into());
        } else if self.retention_months > 36
            && self
                .retention_justification
                .as_deref()
                .is_none_or(|j| j.trim().is_empty())
        {
            p.push("retention over 36 months needs retention_justification".into());
        }
        if self.recipients.is_empty() {
            p.push("recipients: name who receives the data".into());
        }
        self.accreditation_problems(&mut p);
        if self.expected_volume == 0 {
            p.push("expected_volume (calls per day) is required".into());
        }
        if !date_ok(&self.go_live) {
            p.push("go_live must be a date YYYY-MM-DD".into());
        }
        if self.visible_after.as_deref().is_some_and(|d| !date_ok(d)) {
            p.push("visible_after must be a date YYYY-MM-DD".into());
        }
        p
    }
}

impl Form {
    /// Every problem that prevents submitting an integration request. `check_uri`
    /// judges a redirect address as the identity federation will at registration.
    pub fn integration_problems(
        &self,
        check_uri: impl Fn(&str) -> std::result::Result<(), String>,
    ) -> Vec<String> {
        let mut p = Vec::new();
        if self.title.trim().is_empty() {
            p.push("title (the service's name) is required".to_string());
        }
        self.purpose_and_people_problems(&mut p);
        let Some(i) = &self.integration else {
            p.push("integration: the service's addresses and level are required".into());
            return p;
        };
        let scopes: Vec<&String> = self.scopes.iter().filter(|s| *s != "openid").collect();
        if scopes.is_empty() {
            p.push("scopes: request at least one".into());
        }
        for s in scopes {
            if !IDENTITY_SCOPES.iter().any(|(n, _)| n == s) {
                p.push(format!(
                    "scope {s:?} is not one the identity federation offers"
                ));
            } else if i.justifications.get(s).is_none_or(|j| j.trim().len() < 10) {
                p.push(format!(
                    "scope {s:?} needs its justification (at least 10 characters)"
                ));
            }
        }
        if !url::Url::parse(&i.service_url).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
            p.push("integration.service_url must be the service's https address".into());
        }
        if i.redirect_uris.is_empty() {
            p.push("integration.redirect_uris: give at least one redirect URI".into());
        }
        for u in i
            .redirect_uris
            .iter()
            .chain(&i.post_logout_redirect_uris)
            .chain(&i.backchannel_logout_uri)
        {
            if let Err(e) = check_uri(u) {
                p.push(e);
            }
        }
        if !(1..=3).contains(&i.eidas_level) {
            p.push("integration.eidas_level must be 1, 2 or 3".into());
        }
        if !matches!(i.profile.as_str(), "standard" | "franceconnect") {
            p.push("integration.profile must be \"standard\" or \"franceconnect\"".into());
        }
        if i.production {
            self.accreditation_problems(&mut p);
        }
        p
    }

    /// The purpose, the legal basis and the three contacts: what every request says.
    fn purpose_and_people_problems(&self, p: &mut Vec<String>) {
        if self.purpose.trim().len() < 20 {
            p.push("purpose must say why, in at least 20 characters".into());
        }
        if self.legal_basis.nature.trim().is_empty() || self.legal_basis.text.trim().is_empty() {
            p.push("legal_basis needs its nature and text".into());
        }
        if let Some(u) = &self.legal_basis.url
            && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
        {
            p.push("legal_basis.url must be an https (or http) address".into());
        }
        for (name, c) in [
            ("controller", &self.controller),
            ("dpo", &self.dpo),
            ("technical_contact", &self.technical_contact),
        ] {
            if c.name.trim().is_empty() || !email_ok(&c.email) {
                p.push(format!("{name} needs a name and an e-mail address"));
            }
        }
    }

    fn accreditation_problems(&self, p: &mut Vec<String>) {
        let a = &self.accreditation;
        if a.authority.trim().is_empty() || !date_ok(&a.start) || !date_ok(&a.end) {
            p.push("accreditation needs its authority, start and end dates (YYYY-MM-DD)".into());
        } else if a.end <= a.start {
            p.push("accreditation ends before it starts".into());
        }
    }
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// RFC 3339 time.
    pub at: String,
    /// The user who acted (e-mail), or `system`.
    pub actor: String,
    /// `create`, `update` or an action.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<State>,
    pub to: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A habilitation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Habilitation {
    pub id: String,
    /// SIRET of the requesting organisation.
    pub requester: String,
    pub api: String,
    /// SIRET of the organisation producing the API.
    pub producer: String,
    pub state: State,
    pub form: Form,
    /// The validated habilitation this request would replace (reopening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopens: Option<String>,
    /// Machine-to-machine credentials, once validated: the client id; the secret is
    /// generated when the requesting organisation fetches it, shown that once, and only
    /// its hash kept (cleared from every answer by [`Habilitation::public`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    pub history: Vec<Event>,
}

impl Habilitation {
    /// An integration request (a service logging its users in), not an API's.
    pub fn is_integration(&self) -> bool {
        self.api == IDENTITY
    }

    /// A validated sandbox integration, which may ask for production.
    pub fn may_ask_production(&self) -> bool {
        self.state == State::Validated
            && self
                .form
                .integration
                .as_ref()
                .is_some_and(|i| !i.production)
    }

    /// How many times the request changed (its history's length): what a person saw
    /// when they act on it, compared before the change (the JSON API's `ETag`).
    pub fn revision(&self) -> usize {
        self.history.len()
    }

    /// The request as shown to people: without the secret's hash.
    pub fn public(mut self) -> Habilitation {
        self.secret_hash = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::people::Actor;

    #[test]
    fn dates_are_calendar_dates() {
        assert!(date_ok("2028-02-29"));
        for bad in [
            "2027-02-29",
            "2024-13-45",
            "2024-1-01",
            "20240101",
            "2024-01-01x",
            "",
        ] {
            assert!(!date_ok(bad), "{bad}");
        }
    }

    fn actor(org: &str, roles: &[Role]) -> Actor {
        Actor {
            email: "x@example.fr".into(),
            organisation: org.into(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn every_transition() {
        use State::*;
        let allowed: Vec<(Action, State, State)> = Action::ALL
            .into_iter()
            .flat_map(|a| {
                State::ALL
                    .into_iter()
                    .filter_map(move |s| a.from(s).map(|t| (a, s, t)))
            })
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Action::Submit, Draft, Submitted),
                (Action::Submit, ChangesRequested, Submitted),
                (Action::RequestChanges, Submitted, ChangesRequested),
                (Action::Validate, Submitted, Validated),
                (Action::Refuse, Submitted, Refused),
                (Action::Revoke, Validated, Revoked),
                (Action::Archive, Validated, Archived),
                (Action::Archive, Refused, Archived),
                (Action::Archive, Revoked, Archived),
                (Action::Archive, Expired, Archived),
                (Action::Expire, Validated, Expired),
            ]
        );
    }

    #[test]
    fn every_permission() {
        let req = "11111111111111";
        let prod = "22222222222222";
        let dev = actor(req, &[Role::Developer]);
        let inst = actor(prod, &[Role::Instructor]);
        let stranger_inst = actor("33333333333333", &[Role::Instructor]);
        let prod_dev = actor(prod, &[Role::Developer]);
        let op = actor("44444444444444", &[Role::Operator]);
        assert_eq!(side(&dev, req, prod), Side::Requester);
        assert_eq!(side(&inst, req, prod), Side::Provider);
        assert_eq!(side(&stranger_inst, req, prod), Side::None);
        assert_eq!(
            side(&prod_dev, req, prod),
            Side::None,
            "a developer cannot instruct"
        );
        assert_eq!(side(&op, req, prod), Side::Operator);
        assert!(may(Side::Requester, Action::Submit));
        assert!(
            !may(Side::Requester, Action::Validate),
            "a service developer cannot validate"
        );
        assert!(!may(Side::Provider, Action::Submit));
        for a in [
            Action::RequestChanges,
            Action::Validate,
            Action::Refuse,
            Action::Revoke,
        ] {
            assert!(may(Side::Provider, a) && may(Side::Operator, a) && !may(Side::Requester, a));
        }
        assert!(!may(Side::None, Action::Archive));
        assert!(!may(Side::Operator, Action::Expire));
        assert!(
            !may_see(Side::Provider, State::Draft),
            "drafts stay with the requester"
        );
        assert!(may_see(Side::Provider, State::Submitted));
        assert!(!may_see(Side::None, State::Validated));
        assert!(may_edit(Side::Requester, State::ChangesRequested));
        assert!(!may_edit(Side::Requester, State::Submitted));
        assert!(!may_edit(Side::Provider, State::Draft));
    }

    #[test]
    fn complete_forms() {
        let mut f = Form::default();
        let problems = f.problems(&["rfr".into()]);
        assert!(problems.len() >= 10, "{problems:?}");
        f.retention_months = 48;
        assert!(f.problems(&[]).iter().any(|p| p.contains("36 months")));
    }
}
