//! The catalogue over the store: registering organisations, data items and APIs
//! (validated first, nothing written on a refusal), reading them back, searching.

use serde::{Deserialize, Serialize};
use socle_store::{CatalogueKind, CatalogueStore, Store};

use crate::model::{Api, ApiInput, DataItem, Organisation, OrganisationInput};
use crate::{CatalogueError, Result, now};

/// Filters of a catalogue search; all optional, combined with AND.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// Words looked for in the title, description, themes and scopes.
    pub q: Option<String>,
    /// SIRET of the producing organisation.
    pub producer: Option<String>,
    pub theme: Option<String>,
    /// Identifier of a data item the API carries.
    pub data_item: Option<String>,
}

/// An API with its producer, as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Listed {
    #[serde(flatten)]
    pub api: Api,
    pub producer: Organisation,
}

fn decode<T: for<'de> Deserialize<'de>>(doc: &str) -> Result<T> {
    serde_json::from_str(doc)
        .map_err(|e| CatalogueError::Invalid(format!("stored catalogue record is unreadable: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| CatalogueError::Invalid(e.to_string()))
}

fn folded(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            other => other,
        })
        .collect()
}

/// The data items whose name, meaning or legal source contain every word of `q`.
pub fn filter_items(items: Vec<DataItem>, q: Option<&str>) -> Vec<DataItem> {
    let words: Vec<String> = q
        .map(folded)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    items
        .into_iter()
        .filter(|i| {
            let hay = folded(&format!(
                "{} {} {} {}",
                i.id, i.name, i.meaning, i.legal_source
            ));
            words.iter().all(|w| hay.contains(w.as_str()))
        })
        .collect()
}

#[derive(Clone)]
pub struct Catalogue {
    store: Store,
}

impl Catalogue {
    pub fn new(store: Store) -> Self {
        Catalogue { store }
    }

    /// Registers or updates an organisation, journaled as by `by` in the same
    /// transaction (`None`: journaled otherwise, as the demonstration's seeding is).
    pub async fn put_organisation(
        &self,
        input: OrganisationInput,
        by: Option<&str>,
    ) -> Result<Organisation> {
        let org = input.validate()?;
        let journal = admin_entry(by, "organisation.registered", "siret", &org.siret)?;
        self.store
            .put_catalogue_doc(
                CatalogueKind::Organisation,
                &org.siret,
                &encode(&org)?,
                now(),
                &journal,
            )
            .await?;
        Ok(org)
    }

    pub async fn organisation(&self, siret: &str) -> Result<Option<Organisation>> {
        match self
            .store
            .catalogue_doc(CatalogueKind::Organisation, siret)
            .await?
        {
            Some(d) => Ok(Some(decode(&d)?)),
            None => Ok(None),
        }
    }

    pub async fn organisations(&self) -> Result<Vec<Organisation>> {
        self.store
            .catalogue_docs(CatalogueKind::Organisation)
            .await?
            .iter()
            .map(|d| decode(d))
            .collect()
    }

    /// Registers or updates a data item, journaled as [`Catalogue::put_organisation`].
    pub async fn put_data_item(&self, item: DataItem, by: Option<&str>) -> Result<DataItem> {
        let item = item.validate()?;
        if self.organisation(&item.producer).await?.is_none() {
            return Err(CatalogueError::Invalid(format!(
                "producer {} is not a registered organisation",
                item.producer
            )));
        }
        let journal = admin_entry(by, "data_item.registered", "data_item", &item.id)?;
        self.store
            .put_catalogue_doc(
                CatalogueKind::DataItem,
                &item.id,
                &encode(&item)?,
                now(),
                &journal,
            )
            .await?;
        Ok(item)
    }

    pub async fn data_items(&self) -> Result<Vec<DataItem>> {
        self.store
            .catalogue_docs(CatalogueKind::DataItem)
            .await?
            .iter()
            .map(|d| decode(d))
            .collect()
    }

    /// Publishes an API (a new version, or the same one again), journaled as
    /// [`Catalogue::put_organisation`].
    pub async fn put_api(&self, input: ApiInput, by: Option<&str>) -> Result<Api> {
        let items = self.data_items().await?;
        let known: Vec<String> = items.iter().map(|d| d.id.clone()).collect();
        let non_personal: Vec<String> = items
            .into_iter()
            .filter(|d| !d.personal)
            .map(|d| d.id)
            .collect();
        let api = input.validate(&known, &non_personal)?;
        if self.organisation(&api.organisation).await?.is_none() {
            return Err(CatalogueError::Invalid(format!(
                "organisation {} is not registered",
                api.organisation
            )));
        }
        // An API stays with the organisation that published it: its habilitations name
        // that organisation as the producer whose instructors decide, and the gateway
        // routes under its SIRET.
        if let Some(doc) = self.store.api(&api.id).await? {
            let published: Api = decode(&doc)?;
            if published.organisation != api.organisation {
                return Err(CatalogueError::Conflict(format!(
                    "the API {} is published by organisation {}; another organisation \
                     publishes its own API under another slug",
                    api.id, published.organisation
                )));
            }
        }
        let (doc, openapi) = (encode(&api)?, encode(&api.openapi)?);
        let record = socle_store::ApiRecord {
            id: &api.id,
            organisation: &api.organisation,
            doc: &doc,
            version: &api.version,
            openapi: &openapi,
        };
        let journal = admin_entry(
            by,
            "api.published",
            "api",
            &format!("{}@{}", api.id, api.version),
        )?;
        self.store.put_api(&record, now(), &journal).await?;
        Ok(api)
    }

    pub async fn api(&self, id: &str) -> Result<Listed> {
        let Some(doc) = self.store.api(id).await? else {
            return Err(CatalogueError::NotFound(format!(
                "no API {id:?} in the catalogue"
            )));
        };
        let api: Api = decode(&doc)?;
        let producer = self.organisation(&api.organisation).await?.ok_or_else(|| {
            CatalogueError::NotFound(format!("organisation {}", api.organisation))
        })?;
        Ok(Listed { api, producer })
    }

    pub async fn versions(&self, id: &str) -> Result<Vec<String>> {
        Ok(self.store.api_versions(id).await?)
    }

    /// The APIs matching every given filter, by title.
    pub async fn search(&self, s: &Search) -> Result<Vec<Listed>> {
        let orgs = self.organisations().await?;
        let words: Vec<String> =
            s.q.as_deref()
                .map(folded)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
        let mut out = Vec::new();
        for doc in self.store.apis().await? {
            let api: Api = decode(&doc)?;
            if s.producer
                .as_ref()
                .is_some_and(|p| !p.is_empty() && *p != api.organisation)
            {
                continue;
            }
            if s.theme
                .as_ref()
                .is_some_and(|t| !t.is_empty() && !api.themes.iter().any(|x| x == t))
            {
                continue;
            }
            if s.data_item.as_ref().is_some_and(|d| {
                !d.is_empty() && !api.scopes.iter().any(|sc| sc.data_items.contains(d))
            }) {
                continue;
            }
            let Some(producer) = orgs.iter().find(|o| o.siret == api.organisation).cloned() else {
                continue;
            };
            if !words.is_empty() {
                let hay = folded(&format!(
                    "{} {} {} {} {} {}",
                    api.title,
                    api.description,
                    api.themes.join(" "),
                    api.scopes
                        .iter()
                        .map(|s| format!("{} {}", s.name, s.description))
                        .collect::<Vec<_>>()
                        .join(" "),
                    producer.name,
                    producer.acronym.clone().unwrap_or_default()
                ));
                if !words.iter().all(|w| hay.contains(w.as_str())) {
                    continue;
                }
            }
            out.push(Listed { api, producer });
        }
        out.sort_by(|a, b| a.api.title.cmp(&b.api.title));
        Ok(out)
    }

    /// The catalogue as DCAT-AP style JSON-LD: one `dcat:DataService` per API, its
    /// publisher, themes, endpoint and the data items it serves.
    pub async fn dcat(&self, base_url: &str) -> Result<serde_json::Value> {
        use serde_json::json;
        let items = self.data_items().await?;
        let services: Vec<serde_json::Value> = self
            .search(&Search::default())
            .await?
            .into_iter()
            .map(|l| {
                let served: Vec<serde_json::Value> = l
                    .api
                    .scopes
                    .iter()
                    .flat_map(|s| s.data_items.iter())
                    .filter_map(|d| items.iter().find(|i| &i.id == d))
                    .map(|i| json!({"@id": format!("{base_url}/api/v1/data-items#{}", i.id), "dct:title": i.name}))
                    .collect();
                json!({
                    "@type": "dcat:DataService",
                    "@id": format!("{base_url}/catalogue/{}", l.api.id),
                    "dct:identifier": l.api.id,
                    "dct:title": l.api.title,
                    "dct:description": l.api.description,
                    "dct:publisher": {"@type": "foaf:Organization", "foaf:name": l.producer.name,
                        "dct:identifier": l.producer.siret},
                    "dcat:theme": l.api.themes,
                    "dcat:endpointDescription": format!("{base_url}/api/v1/apis/{}", l.api.id),
                    "dcat:contactPoint": l.api.contact,
                    "owl:versionInfo": l.api.version,
                    "dct:accessRights": l.api.access_mode,
                    "dcat:servesDataset": served,
                })
            })
            .collect();
        Ok(json!({
            "@context": {
                "dcat": "http://www.w3.org/ns/dcat#",
                "dct": "http://purl.org/dc/terms/",
                "foaf": "http://xmlns.com/foaf/0.1/",
                "owl": "http://www.w3.org/2002/07/owl#"
            },
            "@type": "dcat:Catalog",
            "@id": format!("{base_url}/catalogue"),
            "dct:title": "Catalogue des API",
            "dcat:service": services,
        }))
    }
}

/// The journal entry of an administrative change (none when `by` is `None`), encoded
/// for the store, which writes it in the change's transaction.
pub(crate) fn admin_entry(
    by: Option<&str>,
    action: &str,
    key: &str,
    value: &str,
) -> Result<Vec<socle_journal::Leaf>> {
    let Some(by) = by else {
        return Ok(Vec::new());
    };
    socle_journal::encode(vec![
        socle_journal::Entry::new(socle_journal::EntryKind::Admin, by, "ok")
            .detail("action", action)
            .detail(key, value),
    ])
    .map_err(|e| CatalogueError::Invalid(format!("journal entry refused: {e}")))
}
