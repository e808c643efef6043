//! `socle admin client create|list|disable` and `socle keys rotate`: operator commands
//! that work on the store directly (a server may be running beside them). Their
//! journal entries go to the journal's durable queue in the change's own transaction,
//! integrated by the running sequencer or the next one to start.

use anyhow::Context;
use socle_identity::{ClientInput, KeyRing, ProviderConfig};

use crate::app::{master_key, open_store};
use crate::config::Config;

/// The actor of the commands' journal entries.
const CLI: &str = "operator:cli";

async fn store(config: &Config) -> anyhow::Result<socle_store::Store> {
    let store = open_store(config).await?;
    // An empty database is set up (nothing else can be using it); one in use is never
    // migrated as a side effect of an operator command: nodes of the previous version
    // may be serving from it (`socle migrate` is the deliberate step).
    if config.database.auto_migrate && store.schema_status().await?.current == 0 {
        store.migrate().await?;
    }
    let status = store.schema_status().await?;
    anyhow::ensure!(
        status.current <= status.latest,
        "the database schema (version {}) is newer than this binary (version {}): use the \
         newer binary",
        status.current,
        status.latest
    );
    anyhow::ensure!(
        status.is_current(),
        "the database schema is at version {} but this binary needs {}: run `socle migrate`",
        status.current,
        status.latest
    );
    Ok(store)
}

/// The store, able to queue journal entries (the journal's MAC key opened under the
/// master key): for the commands that change something.
async fn journaled_store(config: &Config) -> anyhow::Result<socle_store::Store> {
    let store = store(config).await?;
    socle_journal::authenticate_queue(&store, &master_key(config)?)
        .await
        .context("cannot open the journal's keys to record the change")?;
    Ok(store)
}

/// Registers a client and prints its id and secret (the only time the secret is shown).
pub async fn create_client(config: &Config, input: ClientInput) -> anyhow::Result<()> {
    let store = journaled_store(config).await?;
    let clients = socle_identity::client::Clients::new(store.clone());
    let (client, secret) = clients.create(input, CLI).await?;
    println!("client_id:     {}", secret.client_id);
    match &secret.client_secret {
        Some(s) => {
            println!("client_secret: {s}");
            println!("The secret is shown only now: Socle keeps only its hash.");
        }
        None => println!(
            "(no secret: this client authenticates with {})",
            client.token_endpoint_auth_method
        ),
    }
    store.close().await;
    Ok(())
}

/// Prints the registered clients, one per line.
pub async fn list_clients(config: &Config) -> anyhow::Result<()> {
    let store = store(config).await?;
    let clients = socle_identity::client::Clients::new(store.clone())
        .list()
        .await?;
    if clients.is_empty() {
        println!("no client registered");
    }
    for c in clients {
        println!(
            "{}  {}  {}  eidas{}  {:<13}  {}  {}",
            c.client_id,
            if c.disabled { "disabled" } else { "enabled " },
            c.organisation,
            c.eidas_level,
            c.profile.as_str(),
            c.token_endpoint_auth_method,
            c.name
        );
    }
    store.close().await;
    Ok(())
}

pub async fn disable_client(config: &Config, client_id: &str) -> anyhow::Result<()> {
    let store = journaled_store(config).await?;
    socle_identity::client::Clients::new(store.clone())
        .set_disabled(client_id, true, CLI)
        .await
        .with_context(|| format!("cannot disable client {client_id}"))?;
    println!("client {client_id} disabled");
    store.close().await;
    Ok(())
}

/// Replaces the token signing key(s); the old ones stay in the JWKS until every token
/// they signed has expired.
pub async fn rotate_keys(config: &Config, algs: &[&str]) -> anyhow::Result<()> {
    let store = journaled_store(config).await?;
    let ring = KeyRing::open(store.clone(), master_key(config)?).await?;
    let mut pc = ProviderConfig::new("http://unused");
    pc.id_token_ttl =
        i64::try_from(config.identity.id_token_lifetime.as_secs()).unwrap_or(i64::MAX);
    pc.access_token_ttl =
        i64::try_from(config.identity.access_token_lifetime.as_secs()).unwrap_or(i64::MAX);
    for alg in algs {
        let kid = ring.rotate(alg, pc.key_publication(), CLI).await?;
        println!(
            "{alg}: new signing key {kid}; the previous one stays published for {} s",
            pc.key_publication()
        );
    }
    println!("Running servers pick the new key up within 10 seconds.");
    store.close().await;
    Ok(())
}

/// Creates a back-office account.
pub async fn create_user(
    config: &Config,
    email: &str,
    name: &str,
    organisation: &str,
    roles: Vec<socle_catalogue::people::Role>,
    password: &str,
) -> anyhow::Result<()> {
    let store = journaled_store(config).await?;
    socle_catalogue::back_office::create_user(
        &store,
        email,
        name,
        organisation,
        roles,
        password,
        Some(CLI),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("account {email} created");
    store.close().await;
    Ok(())
}
