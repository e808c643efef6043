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
    }
}

fn scope(name: &str, description: &str, fields: &[&str], items: &[&str]) -> Scope {
    Scope {
        name: name.into(),
        description: description.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        data_items: items.iter().map(|s| s.to_string()).collect(),
    }
}

fn openapi(title: &str, path: &str, summary: &str, properties: serde_json::Value) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1.0.0"},
        "paths": {path: {"get": {
            "summary": summary,
            "parameters": [{"name": "identifiant", "in": "query", "required": true, "schema": {"type": "string"}}],
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
        c.put_organisation(o).await?;
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
        c.put_data_item(i).await?;
    }
    let base = public_url.trim_end_matches('/');
    c.put_api(ApiInput {
        slug: "impot-particulier".into(),
        organisation: TAX_OFFICE.into(),
        title: "API Impôt particulier (démonstration)".into(),
        description: "Le revenu fiscal de référence et le nombre de parts d’un foyer, pour calculer un tarif ou un droit sans demander l’avis d’imposition.".into(),
        themes: vec!["Fiscalité".into(), "Tarification sociale".into()],
        openapi: openapi("API Impôt particulier (démonstration)", "/foyers-fiscaux", "Situation fiscale d’un foyer",
            json!({"revenuFiscalReference": {"type": "integer"}, "nombreParts": {"type": "number"}})),
        upstream_url: format!("{base}/demo/upstream/impots"),
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
    })
    .await?;
    c.put_api(ApiInput {
        slug: "quotient-familial".into(),
        organisation: BENEFITS_FUND.into(),
        title: "API Quotient familial (démonstration)".into(),
        description: "Le quotient familial et la composition du foyer d’un allocataire, pour la tarification de la cantine, de la crèche ou du centre de loisirs.".into(),
        themes: vec!["Famille".into(), "Tarification sociale".into()],
        openapi: openapi("API Quotient familial (démonstration)", "/quotient-familial", "Quotient familial d’un allocataire",
            json!({"quotientFamilial": {"type": "integer"}, "allocataires": {"type": "array"}, "enfants": {"type": "array"}})),
        upstream_url: format!("{base}/demo/upstream/caf"),
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
    })
    .await?;
    Ok(())
}
