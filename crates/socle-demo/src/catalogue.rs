//! The demonstration catalogue of `socle demo`: three fictitious administrations (a tax
//! office, a family-benefits fund, a town hall) and the platform's operator, a small
//! data dictionary, and two APIs with their OpenAPI documents and scopes.

use serde_json::json;
use socle_catalogue::{ApiInput, Catalogue, DataItem, OrganisationInput, Scope};

pub const TAX_OFFICE: &str = "99001001900018";
pub const BENEFITS_FUND: &str = "99002002600011";
pub const TOWN_HALL: &str = "99003003300015";
pub const OPERATOR: &str = "13002526500013";

fn org(siret: &str, name: &str, acronym: Option<&str>, kind: &str) -> OrganisationInput {
    OrganisationInput {
        siret: siret.into(),
        name: name.into(),
        acronym: acronym.map(str::to_string),
        kind: kind.into(),
    }
}

fn item(
    id: &str,
    name: &str,
    meaning: &str,
    kind: &str,
    unit: Option<&str>,
    producer: &str,
    law: &str,
) -> DataItem {
    DataItem {
        id: id.into(),
        name: name.into(),
        meaning: meaning.into(),
        kind: kind.into(),
        format: None,
        unit: unit.map(str::to_string),
        producer: producer.into(),
        legal_source: law.into(),
        personal: true,
    }
}

/// The impôt API's pivot identity parameters (as API Particulier's identity-based
/// calls name them).
const PIVOT_PARAMETERS: [(&str, &str); 6] = [
    ("prenoms", "Prénoms, séparés par des espaces"),
    ("nomNaissance", "Nom de naissance"),
    ("dateNaissance", "Date de naissance, AAAA-MM-JJ"),
    ("sexe", "male ou female"),
    (
        "codeLieuNaissance",
        "Code INSEE de la commune de naissance (vide si né à l’étranger)",
    ),
    (
        "codePaysNaissance",
        "Code INSEE du pays de naissance (99100 : France)",
    ),
];

fn scope(name: &str, description: &str, fields: &[&str], items: &[&str]) -> Scope {
    Scope {
        name: name.into(),
        description: description.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        data_items: items.iter().map(|s| s.to_string()).collect(),
    }
}

fn openapi(
    title: &str,
    path: &str,
    summary: &str,
    description: &str,
    parameters: serde_json::Value,
    properties: serde_json::Value,
) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1.0.0"},
        "paths": {path: {"get": {
            "summary": summary,
            "description": description,
            "parameters": parameters,
            "responses": {"200": {"description": "Trouvé", "content": {"application/json": {"schema": {"type": "object", "properties": properties}}}},
                          "404": {"description": "Inconnu"}}
        }}}
    })
    .to_string()
}

/// Seeds the demonstration catalogue (idempotent: records are replaced).
pub async fn seed(c: &Catalogue, public_url: &str) -> Result<(), socle_catalogue::CatalogueError> {
    for o in [
        org(
            OPERATOR,
            "Direction interministérielle du numérique",
            Some("DINUM"),
            "ministry",
        ),
        org(
            TAX_OFFICE,
            "Centre des finances publiques de démonstration",
            Some("CFP démo"),
            "operator",
        ),
        org(
            BENEFITS_FUND,
            "Caisse d’allocations familiales de démonstration",
            Some("CAF démo"),
            "operator",
        ),
        org(TOWN_HALL, "Mairie de Démoville", None, "local_authority"),
    ] {
        c.put_organisation(o, None).await?;
    }
    for i in [
        item(
            "revenu-fiscal-de-reference",
            "Revenu fiscal de référence",
            "Le revenu du foyer fiscal qui sert au calcul de nombreux droits et tarifs.",
            "integer",
            Some("euros"),
            TAX_OFFICE,
            "Code général des impôts, article 1417",
        ),
        item(
            "nombre-de-parts",
            "Nombre de parts fiscales",
            "Le quotient familial fiscal du foyer, en parts.",
            "number",
            None,
            TAX_OFFICE,
            "Code général des impôts, article 194",
        ),
        item(
            "quotient-familial",
            "Quotient familial CAF",
            "Les ressources mensuelles du foyer rapportées au nombre de parts, selon la CAF.",
            "integer",
            Some("euros"),
            BENEFITS_FUND,
            "Code de la sécurité sociale, article L. 521-1",
        ),
        item(
            "composition-familiale",
            "Composition familiale",
            "Les allocataires et les enfants à charge du foyer.",
            "object",
            None,
            BENEFITS_FUND,
            "Code de la sécurité sociale, article L. 512-3",
        ),
    ] {
        c.put_data_item(i, None).await?;
    }
    let base = public_url.trim_end_matches('/');
    c.put_api(ApiInput {
        slug: "impot-particulier".into(),
        organisation: TAX_OFFICE.into(),
        title: "API Impôt particulier (démonstration)".into(),
        description: "Le revenu fiscal de référence et le nombre de parts d’un foyer, pour calculer un tarif ou un droit sans demander l’avis d’imposition.".into(),
        themes: vec!["Fiscalité".into(), "Tarification sociale".into()],
        openapi: openapi("API Impôt particulier (démonstration)", "/foyers-fiscaux", "Situation fiscale d’un foyer",
            "Appelé au nom d’une personne connectée (son jeton d’accès), ou de machine à machine avec son identité pivot : la personne retrouve l’échange dans son espace.",
            json!(PIVOT_PARAMETERS.iter().map(|(name, what)| json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}})).collect::<Vec<_>>()),
            json!({"revenuFiscalReference": {"type": "integer"}, "nombreParts": {"type": "number"}})),
        upstream_url: format!("{base}/demo/fd/impots"),
        allow_private_upstream: true,
        access_mode: "habilitation".into(),
        rate_limit: Some(50),
        sla: "Disponibilité 99,5 % en heures ouvrées (démonstration)".into(),
        contact: "api-impots@demo.example.fr".into(),
        documentation: vec![format!("{base}/catalogue/impot-particulier")],
        scopes: vec![
            scope("revenu_fiscal_de_reference", "Le revenu fiscal de référence du foyer", &["/revenuFiscalReference"], &["revenu-fiscal-de-reference"]),
            scope("nombre_de_parts", "Le nombre de parts fiscales", &["/nombreParts"], &["nombre-de-parts"]),
        ],
        person_eidas_level: None,
        subject: socle_catalogue::Subject {
            mode: socle_catalogue::SubjectMode::Pivot,
            pivot: Some(socle_catalogue::PivotFields {
                source: None,
                given_name: "prenoms".into(),
                family_name: "nomNaissance".into(),
                birthdate: "dateNaissance".into(),
                gender: "sexe".into(),
                birthplace: "codeLieuNaissance".into(),
                birthcountry: "codePaysNaissance".into(),
            }),
        },
    }, None)
    .await?;
    c.put_api(ApiInput {
        slug: "quotient-familial".into(),
        organisation: BENEFITS_FUND.into(),
        title: "API Quotient familial (démonstration)".into(),
        description: "Le quotient familial et la composition du foyer d’un allocataire, pour la tarification de la cantine, de la crèche ou du centre de loisirs.".into(),
        themes: vec!["Famille".into(), "Tarification sociale".into()],
        openapi: openapi("API Quotient familial (démonstration)", "/quotient-familial", "Quotient familial d’un allocataire",
            "Appelé au nom d’une personne connectée (son jeton d’accès), ou de machine à machine avec le numéro d’allocataire : la caisse dit de qui il s’agit (en-tête Socle-Subject) et la personne retrouve l’échange dans son espace.",
            json!([{"name": "identifiant", "in": "query", "required": false, "description": "Numéro d’allocataire (appels de machine à machine)", "schema": {"type": "string"}}]),
            json!({"quotientFamilial": {"type": "integer"}, "allocataires": {"type": "array"}, "enfants": {"type": "array"}})),
        upstream_url: format!("{base}/demo/fd/caf"),
        allow_private_upstream: true,
        access_mode: "habilitation".into(),
        rate_limit: Some(20),
        sla: String::new(),
        contact: "api-qf@demo.example.fr".into(),
        documentation: vec![],
        scopes: vec![
            scope("quotient_familial", "Le quotient familial du mois", &["/quotientFamilial"], &["quotient-familial"]),
            scope("composition_familiale", "Les allocataires et les enfants", &["/allocataires", "/enfants"], &["composition-familiale"]),
        ],
        person_eidas_level: None,
        subject: socle_catalogue::Subject {
            mode: socle_catalogue::SubjectMode::Provider,
            pivot: None,
        },
    }, None)
    .await?;
    Ok(())
}

/// Demonstration accounts (fictitious; the password is printed by `socle demo`).
pub const DEMO_PASSWORD: &str = "demonstration-socle";
pub const DEMO_DEVELOPER: &str = "developpeur@demoville.demo";
pub const DEMO_INSTRUCTOR_CAF: &str = "instructeur@caf.demo";
pub const DEMO_INSTRUCTOR_TAX: &str = "instructeur@impots.demo";
/// Instructs integration requests (the partner space), for the platform's operator.
pub const DEMO_INSTRUCTOR_PARTNERS: &str = "partenaires@plateforme.demo";

fn form(title: &str, scopes: &[&str]) -> socle_catalogue::habilitation::Form {
    use socle_catalogue::habilitation::{Accreditation, Contact, Form, LegalBasis};
    let contact = |name: &str, email: &str| Contact {
        name: name.into(),
        email: email.into(),
    };
    Form {
        title: title.into(),
        purpose: "Calculer les tarifs municipaux (cantine, centre de loisirs) selon les ressources du foyer, sans demander de justificatif.".into(),
        legal_basis: LegalBasis {
            nature: "mission d’intérêt public".into(),
            text: "Code général des collectivités territoriales, article L. 2121-29".into(),
            url: Some("https://www.legifrance.gouv.fr/".into()),
            consent: false,
        },
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        retention_months: 12,
        retention_justification: None,
        recipients: vec!["Service enfance de la mairie".into()],
        controller: contact("Maire de Démoville", "maire@demoville.demo"),
        dpo: contact("Délégué à la protection des données", "dpd@demoville.demo"),
        technical_contact: contact("Service informatique", "dsi@demoville.demo"),
        accreditation: Accreditation {
            authority: "Maire de Démoville".into(),
            start: "2026-01-01".into(),
            end: "2029-01-01".into(),
        },
        expected_volume: 200,
        go_live: "2027-01-04".into(),
        visible_after: None,
        integration: None,
    }
}

/// Seeds demonstration accounts and habilitations in several states (once).
pub async fn seed_back_office(
    store: &socle_store::Store,
    office: &socle_catalogue::BackOffice,
) -> Result<(), socle_catalogue::CatalogueError> {
    use socle_catalogue::habilitation::Action;
    use socle_catalogue::people::{Actor, Role};
    for (email, name, org, role) in [
        (
            DEMO_DEVELOPER,
            "Développeur de la mairie",
            TOWN_HALL,
            Role::Developer,
        ),
        (
            DEMO_INSTRUCTOR_CAF,
            "Instructrice CAF",
            BENEFITS_FUND,
            Role::Instructor,
        ),
        (
            DEMO_INSTRUCTOR_TAX,
            "Instructeur impôts",
            TAX_OFFICE,
            Role::Instructor,
        ),
        (
            DEMO_INSTRUCTOR_PARTNERS,
            "Instructrice des partenaires",
            OPERATOR,
            Role::Instructor,
        ),
    ] {
        socle_catalogue::back_office::create_user(
            store,
            email,
            name,
            org,
            vec![role],
            DEMO_PASSWORD,
            None,
        )
        .await?;
    }
    let dev = Actor {
        email: DEMO_DEVELOPER.into(),
        organisation: TOWN_HALL.into(),
        roles: vec![Role::Developer],
    };
    let caf = Actor {
        email: DEMO_INSTRUCTOR_CAF.into(),
        organisation: BENEFITS_FUND.into(),
        roles: vec![Role::Instructor],
    };
    let tax = Actor {
        email: DEMO_INSTRUCTOR_TAX.into(),
        organisation: TAX_OFFICE.into(),
        roles: vec![Role::Instructor],
    };
    // Validated: the canteen's family quotient.
    let h = office
        .create(
            &dev,
            "quotient-familial",
            form("Tarification de la cantine", &["quotient_familial"]),
        )
        .await?;
    office.act(&dev, &h.id, Action::Submit, None, None).await?;
    office
        .act(&caf, &h.id, Action::Validate, None, None)
        .await?;
    // Validated, on the person's consent: the tax data for the holiday centre, which
    // the demonstration service may only obtain once the person has agreed.
    let mut f = form(
        "Tarifs du centre de loisirs (avec votre accord)",
        &["revenu_fiscal_de_reference"],
    );
    f.legal_basis = socle_catalogue::habilitation::LegalBasis {
        nature: "consentement de la personne".into(),
        text: "Règlement (UE) 2016/679, article 6, paragraphe 1, point a)".into(),
        url: Some("https://eur-lex.europa.eu/eli/reg/2016/679/oj".into()),
        consent: true,
    };
    let h = office.create(&dev, "impot-particulier", f).await?;
    office.act(&dev, &h.id, Action::Submit, None, None).await?;
    office
        .act(&tax, &h.id, Action::Validate, None, None)
        .await?;
    // Sent back for changes: the tax data.
    let h = office
        .create(
            &dev,
            "impot-particulier",
            form(
                "Tarifs du centre de loisirs",
                &["revenu_fiscal_de_reference", "nombre_de_parts"],
            ),
        )
        .await?;
    office.act(&dev, &h.id, Action::Submit, None, None).await?;
    office
        .act(
            &tax,
            &h.id,
            Action::RequestChanges,
            Some("Le nombre de parts est-il nécessaire au calcul du tarif ?".into()),
            None,
        )
        .await?;
    // Submitted, waiting for review.
    let h = office
        .create(
            &dev,
            "quotient-familial",
            form(
                "Aide aux vacances",
                &["quotient_familial", "composition_familiale"],
            ),
        )
        .await?;
    office.act(&dev, &h.id, Action::Submit, None, None).await?;
    // A draft.
    office
        .create(
            &dev,
            "impot-particulier",
            form("Brouillon : tarifs du conservatoire", &[]),
        )
        .await?;
    Ok(())
}

/// What `socle demo` writes to `<data-dir>/demo.json`: the demonstration service's
/// machine-to-machine credentials (a fresh secret at each start) and a ready-to-run
/// gateway call.
pub async fn credentials_file(
    office: &socle_catalogue::BackOffice,
    public_url: &str,
) -> Result<serde_json::Value, socle_catalogue::CatalogueError> {
    use socle_catalogue::habilitation::State;
    use socle_catalogue::people::{Actor, Role};
    let dev = Actor {
        email: DEMO_DEVELOPER.into(),
        organisation: TOWN_HALL.into(),
        roles: vec![Role::Developer],
    };
    let h = office
        .list(&dev)
        .await?
        .into_iter()
        .find(|h| {
            h.api == "quotient-familial"
                && h.state == State::Validated
                && h.form.title == "Tarification de la cantine"
        })
        .ok_or_else(|| {
            socle_catalogue::CatalogueError::NotFound(
                "the demonstration habilitation is missing (run socle demo --reset)".into(),
            )
        })?;
    let (client_id, client_secret) = office.renew_secret(&dev, &h.id).await?;
    let base = public_url.trim_end_matches('/');
    let url = format!(
        "{base}/gateway/{BENEFITS_FUND}/quotient-familial/v1/quotient-familial?identifiant=0000001&context=Tarification%20cantine%202027&recipient={TOWN_HALL}&object=dossier-demo-0001"
    );
    Ok(json!({
        "habilitation": h.id,
        "client_id": client_id,
        "client_secret": client_secret,
        "token_endpoint": format!("{base}/api/v2/token"),
        "scope": h.form.scopes.join(" "),
        "example_call": {
            "method": "GET",
            "url": url,
            "headers": {"Accept": "application/json"},
        },
    }))
}
