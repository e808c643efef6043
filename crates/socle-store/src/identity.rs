//! Identity federation tables: clients, signing keys, browser sessions, login
//! interactions, authorization codes, access tokens and client-assertion ids.
//!
//! Records are JSON documents owned by `socle-identity`; this module only stores them,
//! finds them by key and makes the few state changes that must be atomic (a code is
//! consumed once, a grant's tokens are revoked together, a jti is accepted once).

use crate::error::{StoreError, err};
use rusqlite::OptionalExtension;

use crate::{Backend, Journaled, Result, Store, journaled, on_pool};

/// A registered client (service provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub doc: String,
    pub disabled: bool,
    pub created_at: i64,
}

/// A token signing key, its private half sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed: String,
    pub public_jwk: String,
    pub created_at: i64,
    /// Set when a newer key took over signing.
    pub retired_at: Option<i64>,
    /// A retired key stays published until then.
    pub publish_until: Option<i64>,
}

/// What exchanging a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    /// First use: the code's document; the access token is now bound to it.
    Fresh {
        client_id: String,
        doc: String,
        expires_at: i64,
    },
    /// The code was already used: the grant, and so its token, is now revoked.
    Replayed {
        client_id: String,
    },
    Unknown,
}

/// An access token, as found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub client_id: String,
    pub doc: String,
    pub expires_at: i64,
    pub revoked: bool,
}

/// `(interaction id, session_id, interaction doc, session doc if the session is live)`.
pub type FiStateMatch = (String, String, String, Option<String>);

/// Persistence of the identity federation, in its own terms.
pub trait IdentityStore {
    /// Registers a client, with the journal entries recording it, in one transaction.
    fn insert_client(
        &self,
        client_id: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Replaces a client's document — only if it is still `expected`, when given — with
    /// the journal entries recording it, in one transaction; false (and nothing
    /// written) if there is no such client or it changed meanwhile.
    fn update_client(
        &self,
        client_id: &str,
        doc: &str,
        now: i64,
        expected: Option<&str>,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Disables or enables a client, with the journal entries recording it, in one
    /// transaction; false (and nothing written) if there is no such client.
    fn set_client_disabled(
        &self,
        client_id: &str,
        disabled: bool,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn client(&self, client_id: &str) -> impl Future<Output = Result<Option<StoredClient>>> + Send;
    fn clients(&self) -> impl Future<Output = Result<Vec<StoredClient>>> + Send;

    fn insert_key(&self, key: &StoredKey) -> impl Future<Output = Result<()>> + Send;
    /// A rotation: inserts `key` and retires the other current keys of its algorithm
    /// (published until `publish_until`), with the journal entries recording it, in one
    /// transaction.
    fn rotate_key(
        &self,
        key: &StoredKey,
        publish_until: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every key not yet past its publication end, newest first.
    fn keys(&self, now: i64) -> impl Future<Output = Result<Vec<StoredKey>>> + Send;
    /// Retires the current key(s) of `alg` other than `except`.
    fn retire_keys(
        &self,
        alg: &str,
        except: &str,
        now: i64,
        publish_until: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    fn put_session(
        &self,
        id: &str,
        doc: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn session(&self, id: &str, now: i64) -> impl Future<Output = Result<Option<String>>> + Send;
    fn delete_session(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Saves a browser session, in one transaction with the removal of the session it
    /// replaces (`session.replaces`), whose logins in progress move to it.
    fn renew_session(&self, session: SessionWrite<'_>) -> impl Future<Output = Result<()>> + Send;
    /// Saves a browser session as [`IdentityStore::renew_session`] and, in the same
    /// transaction, one of its interactions (a login authenticated, waiting for the
    /// person's consent).
    fn save_session_and_interaction(
        &self,
        session: SessionWrite<'_>,
        interaction: NewInteraction<'_>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn put_interaction(
        &self,
        id: &str,
        session_id: &str,
        fi_state: Option<&str>,
        doc: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `(session_id, doc)` of a live interaction.
    fn interaction(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<(String, String)>>> + Send;
    /// `(session doc, interaction doc)` of a live interaction of a live session, in one
    /// query (every step of a login reads both).
    fn interaction_in_session(
        &self,
        id: &str,
        session_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<(String, String)>>> + Send;
    /// `(interaction id, session_id, doc, session doc if live)` by the state sent to
    /// the identity provider.
    fn interaction_by_fi_state(
        &self,
        fi_state: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<FiStateMatch>>> + Send;
    fn delete_interaction(&self, id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Starts a login in one transaction: in the browser session `given` if it is
    /// stored and live at `now` (it keeps its expiry), otherwise in the new session
    /// `(id, doc, expires_at)`; records the interaction there (its `session_id` is
    /// set to the session used). Returns the id of the session used.
    fn begin_login(
        &self,
        given: Option<&str>,
        new: (&str, &str, i64),
        now: i64,
        interaction: NewInteraction<'_>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Ends a login in one transaction: saves the browser session when it changed (and
    /// removes the one it replaces, as [`IdentityStore::renew_session`]), records the
    /// code and removes the interaction.
    fn complete_login(
        &self,
        session: Option<SessionWrite<'_>>,
        code: NewCode<'_>,
        interaction: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Exchanges a code for the access token `token_hash`, atomically: only one caller
    /// ever gets [`CodeUse::Fresh`]; a later one revokes the grant.
    fn exchange_code(
        &self,
        code_hash: &str,
        token_hash: &str,
        now: i64,
        token_expires_at: i64,
    ) -> impl Future<Output = Result<CodeUse>> + Send;
    fn token(&self, token_hash: &str) -> impl Future<Output = Result<Option<StoredToken>>> + Send;
    /// Revokes a grant (its code and token).
    fn revoke_code(&self, code_hash: &str) -> impl Future<Output = Result<()>> + Send;

    /// Remembers an encrypted ID token (by `hint_hash`) as naming `sid` for `client_id`,
    /// until `expires_at`.
    fn put_logout_hint(
        &self,
        hint_hash: &str,
        client_id: &str,
        sid: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `(client_id, sid)` of a remembered encrypted ID token, if live at `now`.
    fn logout_hint(
        &self,
        hint_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<(String, String)>>> + Send;

    /// Records a client assertion id; false if it was already used.
    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes expired sessions, interactions, codes, tokens, assertion ids and logout
    /// hints.
    fn purge_identity(&self, now: i64) -> impl Future<Output = Result<u64>> + Send;
}

type ClientRow = (String, String, i64, i64);

fn client_row(r: ClientRow) -> StoredClient {
    StoredClient {
        client_id: r.0,
        doc: r.1,
        disabled: r.2 != 0,
        created_at: r.3,
    }
}

type KeyRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn key_row(r: KeyRow) -> StoredKey {
    StoredKey {
        kid: r.0,
        alg: r.1,
        sealed: r.2,
        public_jwk: r.3,
        created_at: r.4,
        retired_at: r.5,
        publish_until: r.6,
    }
}

/// The insertion of a `StoredKey`, its parameters bound (either backend).
macro_rules! insert_key {
    ($key:expr) => {
        sqlx::query(
            "INSERT INTO oidc_keys (kid, alg, sealed, public_jwk, created_at, retired_at, \
             publish_until) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&$key.kid)
        .bind(&$key.alg)
        .bind(&$key.sealed)
        .bind(&$key.public_jwk)
        .bind($key.created_at)
        .bind($key.retired_at)
        .bind($key.publish_until)
    };
}

impl IdentityStore for Store {
    async fn insert_client(
        &self,
        client_id: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<()> {
        let r = journaled!(self, journal, |tx| {
            sqlx::query(
                "INSERT INTO oidc_clients (client_id, doc, disabled, created_at, updated_at) \
                 VALUES ($1, $2, 0, $3, $3)",
            )
            .bind(client_id)
            .bind(doc)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        r.map(|_| ()).map_err(|e| {
            StoreError::unique_or_runtime(e, || format!("a client {client_id:?} already exists"))
        })
    }

    async fn update_client(
        &self,
        client_id: &str,
        doc: &str,
        now: i64,
        expected: Option<&str>,
        journal: Journaled<'_>,
    ) -> Result<bool> {
        journaled!(self, journal, |tx| {
            let n = sqlx::query(
                "UPDATE oidc_clients SET doc = $1, updated_at = $2 WHERE client_id = $3 \
                 AND ($4 IS NULL OR doc = $4)",
            )
            .bind(doc)
            .bind(now)
            .bind(client_id)
            .bind(expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            true
        })
        .map_err(err)
    }

    async fn set_client_disabled(
        &self,
        client_id: &str,
        disabled: bool,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<bool> {
        journaled!(self, journal, |tx| {
            let n = sqlx::query(
                "UPDATE oidc_clients SET disabled = $1, updated_at = $2 WHERE client_id = $3",
            )
            .bind(i64::from(disabled))
            .bind(now)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            true
        })
        .map_err(err)
    }

    async fn client(&self, client_id: &str) -> Result<Option<StoredClient>> {
        let row: Option<ClientRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT client_id, doc, CAST(disabled AS BIGINT), created_at FROM oidc_clients \
                 WHERE client_id = $1",
            )
            .bind(client_id)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(client_row))
    }

    async fn clients(&self) -> Result<Vec<StoredClient>> {
        let rows: Vec<ClientRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT client_id, doc, CAST(disabled AS BIGINT), created_at FROM oidc_clients \
                 ORDER BY created_at, client_id",
            )
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        Ok(rows.into_iter().map(client_row).collect())
    }

    async fn insert_key(&self, key: &StoredKey) -> Result<()> {
        on_pool!(self, |pool| {
            insert_key!(key)
                .execute(pool)
                .await
                .map_err(err)?
                .rows_affected()
        });
        Ok(())
    }

    async fn rotate_key(
        &self,
        key: &StoredKey,
        publish_until: i64,
        journal: Journaled<'_>,
    ) -> Result<()> {
        journaled!(self, journal, |tx| {
            insert_key!(key).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE oidc_keys SET retired_at = $1, publish_until = $2 \
                 WHERE alg = $3 AND kid <> $4 AND retired_at IS NULL",
            )
            .bind(key.created_at)
            .bind(publish_until)
            .bind(&key.alg)
            .bind(&key.kid)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
        .map_err(err)?;
        Ok(())
    }

    async fn keys(&self, now: i64) -> Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT kid, alg, sealed, public_jwk, created_at, retired_at, publish_until \
                 FROM oidc_keys WHERE publish_until IS NULL OR publish_until > $1 \
                 ORDER BY created_at DESC, kid",
            )
            .bind(now)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        Ok(rows.into_iter().map(key_row).collect())
    }

    async fn retire_keys(
        &self,
        alg: &str,
        except: &str,
        now: i64,
        publish_until: i64,
    ) -> Result<u64> {
        Ok(on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE oidc_keys SET retired_at = $1, publish_until = $2 \
                 WHERE alg = $3 AND kid <> $4 AND retired_at IS NULL",
            )
            .bind(now)
            .bind(publish_until)
            .bind(alg)
            .bind(except)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        }))
    }

    async fn put_session(&self, id: &str, doc: &str, expires_at: i64) -> Result<()> {
        self.ephemeral_write(
            PUT_SESSION,
            vec![P::text(id), P::text(doc), P::Int(expires_at)],
        )
        .await
        .map(|_| ())
    }
    async fn session(&self, id: &str, now: i64) -> Result<Option<String>> {
        const SQL: &str = "SELECT doc FROM oidc_sessions WHERE id = $1 AND expires_at > $2";
        match &self.ephemeral_pg {
            None => {
                let id = id.to_string();
                self.ephemeral_run(move |c| {
                    lite(c, SQL)?.query_row((id, now), |r| r.get(0)).optional()
                })
                .await
            }
            Some(pool) => Ok(sqlx::query_as::<_, (String,)>(SQL)
                .bind(id)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(err)?
                .map(|r| r.0)),
        }
    }

    async fn renew_session(&self, session: SessionWrite<'_>) -> Result<()> {
        self.ephemeral_writes(session.statements()).await
    }

    async fn save_session_and_interaction(
        &self,
        session: SessionWrite<'_>,
        interaction: NewInteraction<'_>,
    ) -> Result<()> {
        let mut statements = session.statements();
        statements.push(interaction.owned().statement(session.id));
        self.ephemeral_writes(statements).await
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        self.ephemeral_write("DELETE FROM oidc_sessions WHERE id = $1", vec![P::text(id)])
            .await
            .map(|_| ())
    }
    async fn put_interaction(
        &self,
        id: &str,
        session_id: &str,
        fi_state: Option<&str>,
        doc: &str,
        expires_at: i64,
    ) -> Result<()> {
        let (sql, params) = NewInteraction {
            id,
            fi_state,
            doc,
            expires_at,
        }
        .owned()
        .statement(session_id);
        self.ephemeral_write(sql, params).await.map(|_| ())
    }

    async fn begin_login(
        &self,
        given: Option<&str>,
        (id, doc, expires_at): (&str, &str, i64),
        now: i64,
        interaction: NewInteraction<'_>,
    ) -> Result<String> {
        const LIVE: &str = "SELECT COUNT(*) FROM oidc_sessions WHERE id = $1 AND expires_at > $2";
        const INSERT: &str = "INSERT INTO oidc_sessions (id, doc, expires_at) VALUES ($1, $2, $3)";
        let given = given.map(str::to_string);
        let new = vec![P::text(id), P::text(doc), P::Int(expires_at)];
        let (new_id, interaction) = (id.to_string(), interaction.owned());
        match &self.ephemeral_pg {
            None => {
                self.ephemeral_run(move |c| {
                    let sp = c.savepoint()?;
                    let live = match &given {
                        Some(g) => {
                            lite(&sp, LIVE)?
                                .query_row(rusqlite::params![g, now], |r| r.get::<_, i64>(0))?
                                > 0
                        }
                        None => false,
                    };
                    let used = match given.filter(|_| live) {
                        Some(g) => g,
                        None => {
                            lite(&sp, INSERT)?.execute(rusqlite::params_from_iter(new.iter()))?;
                            new_id
                        }
                    };
                    let (sql, params) = interaction.statement(&used);
                    lite(&sp, sql)?.execute(rusqlite::params_from_iter(params.iter()))?;
                    sp.commit()?;
                    Ok(used)
                })
                .await
            }
            Some(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                let live = match &given {
                    Some(g) => {
                        let (n,): (i64,) = sqlx::query_as(LIVE)
                            .bind(g)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(err)?;
                        n > 0
                    }
                    None => false,
                };
                let used = match given.filter(|_| live) {
                    Some(g) => g,
                    None => {
                        bind(INSERT, new).execute(&mut *tx).await.map_err(err)?;
                        new_id
                    }
                };
                let (sql, params) = interaction.statement(&used);
                bind(sql, params).execute(&mut *tx).await.map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(used)
            }
        }
    }
    async fn interaction(&self, id: &str, now: i64) -> Result<Option<(String, String)>> {
        const SQL: &str =
            "SELECT session_id, doc FROM oidc_interactions WHERE id = $1 AND expires_at > $2";
        self.ephemeral_texts(SQL, vec![P::text(id), P::Int(now)])
            .await
    }

    async fn interaction_in_session(
        &self,
        id: &str,
        session_id: &str,
        now: i64,
    ) -> Result<Option<(String, String)>> {
        const SQL: &str = "SELECT s.doc, i.doc FROM oidc_interactions i \
             JOIN oidc_sessions s ON s.id = i.session_id \
             WHERE i.id = $1 AND i.session_id = $2 AND i.expires_at > $3 AND s.expires_at > $3";
        self.ephemeral_texts(SQL, vec![P::text(id), P::text(session_id), P::Int(now)])
            .await
    }

    async fn interaction_by_fi_state(
        &self,
        fi_state: &str,
        now: i64,
    ) -> Result<Option<FiStateMatch>> {
        const SQL: &str = "SELECT i.id, i.session_id, i.doc, s.doc FROM oidc_interactions i \
             LEFT JOIN oidc_sessions s ON s.id = i.session_id AND s.expires_at > $2 \
             WHERE i.fi_state = $1 AND i.expires_at > $2";
        match &self.ephemeral_pg {
            None => {
                let fi_state = fi_state.to_string();
                self.ephemeral_run(move |c| {
                    lite(c, SQL)?
                        .query_row((fi_state, now), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()
                })
                .await
            }
            Some(pool) => sqlx::query_as(SQL)
                .bind(fi_state)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(err),
        }
    }

    async fn delete_interaction(&self, id: &str) -> Result<()> {
        self.ephemeral_write(DELETE_INTERACTION, vec![P::text(id)])
            .await
            .map(|_| ())
    }
    async fn complete_login(
        &self,
        session: Option<SessionWrite<'_>>,
        code: NewCode<'_>,
        interaction: &str,
    ) -> Result<()> {
        let mut statements = Vec::with_capacity(5);
        if let Some(session) = session {
            statements.extend(session.statements());
        }
        statements.push(code.statement());
        statements.push((DELETE_INTERACTION, vec![P::text(interaction)]));
        self.ephemeral_writes(statements).await
    }
    async fn exchange_code(
        &self,
        code_hash: &str,
        token_hash: &str,
        now: i64,
        token_expires_at: i64,
    ) -> Result<CodeUse> {
        const FRESH: &str = "UPDATE oidc_grants SET used_at = $1, token_hash = $2, \
             token_expires_at = $3 WHERE code_hash = $4 AND used_at IS NULL \
             RETURNING client_id, doc, expires_at";
        const REPLAYED: &str =
            "UPDATE oidc_grants SET revoked = 1 WHERE code_hash = $1 RETURNING client_id";
        let (fresh, replayed): (Option<(String, String, i64)>, Option<String>) =
            match &self.ephemeral_pg {
                None => {
                    let (code_hash, token_hash) = (code_hash.to_string(), token_hash.to_string());
                    // One job: both statements, the second only if the first matched nothing.
                    self.ephemeral_run(move |c| {
                        let fresh = lite(c, FRESH)?
                            .query_row((now, &token_hash, token_expires_at, &code_hash), |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                            })
                            .optional()?;
                        if fresh.is_some() {
                            return Ok((fresh, None));
                        }
                        let replayed = lite(c, REPLAYED)?
                            .query_row([&code_hash], |r| r.get(0))
                            .optional()?;
                        Ok((None, replayed))
                    })
                    .await?
                }
                Some(pool) => {
                    let fresh = sqlx::query_as(FRESH)
                        .bind(now)
                        .bind(token_hash)
                        .bind(token_expires_at)
                        .bind(code_hash)
                        .fetch_optional(pool)
                        .await
                        .map_err(err)?;
                    let replayed = if fresh.is_some() {
                        None
                    } else {
                        sqlx::query_as::<_, (String,)>(REPLAYED)
                            .bind(code_hash)
                            .fetch_optional(pool)
                            .await
                            .map_err(err)?
                            .map(|r| r.0)
                    };
                    (fresh, replayed)
                }
            };
        Ok(match (fresh, replayed) {
            (Some((client_id, doc, expires_at)), _) => CodeUse::Fresh {
                client_id,
                doc,
                expires_at,
            },
            (None, Some(client_id)) => CodeUse::Replayed { client_id },
            (None, None) => CodeUse::Unknown,
        })
    }

    async fn token(&self, token_hash: &str) -> Result<Option<StoredToken>> {
        const SQL: &str = "SELECT client_id, doc, token_expires_at, CAST(revoked AS BIGINT) \
             FROM oidc_grants WHERE token_hash = $1";
        let row: Option<(String, String, i64, i64)> = match &self.ephemeral_pg {
            None => {
                let token_hash = token_hash.to_string();
                self.ephemeral_run(move |c| {
                    lite(c, SQL)?
                        .query_row([token_hash], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()
                })
                .await?
            }
            Some(pool) => sqlx::query_as(SQL)
                .bind(token_hash)
                .fetch_optional(pool)
                .await
                .map_err(err)?,
        };
        Ok(row.map(|r| StoredToken {
            client_id: r.0,
            doc: r.1,
            expires_at: r.2,
            revoked: r.3 != 0,
        }))
    }

    async fn revoke_code(&self, code_hash: &str) -> Result<()> {
        self.ephemeral_write(
            "UPDATE oidc_grants SET revoked = 1 WHERE code_hash = $1",
            vec![P::text(code_hash)],
        )
        .await
        .map(|_| ())
    }
    async fn put_logout_hint(
        &self,
        hint_hash: &str,
        client_id: &str,
        sid: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.ephemeral_write(
            "INSERT INTO oidc_logout_hints (hint_hash, client_id, sid, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (hint_hash) DO NOTHING",
            vec![
                P::text(hint_hash),
                P::text(client_id),
                P::text(sid),
                P::Int(expires_at),
            ],
        )
        .await
        .map(|_| ())
    }
    async fn logout_hint(&self, hint_hash: &str, now: i64) -> Result<Option<(String, String)>> {
        const SQL: &str = "SELECT client_id, sid FROM oidc_logout_hints \
             WHERE hint_hash = $1 AND expires_at > $2";
        self.ephemeral_texts(SQL, vec![P::text(hint_hash), P::Int(now)])
            .await
    }
    async fn use_assertion(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool> {
        let n = self
            .ephemeral_write(
                "INSERT INTO oidc_assertions (client_id, jti, expires_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING",
                vec![P::text(client_id), P::text(jti), P::Int(expires_at)],
            )
            .await?;
        Ok(n == 1)
    }
    async fn purge_identity(&self, now: i64) -> Result<u64> {
        let mut total = 0;
        for sql in [
            "DELETE FROM oidc_sessions WHERE expires_at <= $1",
            "DELETE FROM oidc_interactions WHERE expires_at <= $1",
            // Used or not, a code is kept a while after expiry so a late replay is still
            // recognised (and revokes its tokens) rather than reported unknown.
            "DELETE FROM oidc_grants WHERE expires_at <= $1 - 3600 \
             AND (token_expires_at IS NULL OR token_expires_at <= $1)",
            "DELETE FROM oidc_assertions WHERE expires_at <= $1",
            "DELETE FROM oidc_logout_hints WHERE expires_at <= $1",
        ] {
            total += self.ephemeral_write(sql, vec![P::Int(now)]).await?;
        }
        Ok(total)
    }
}

/// A parameter of a statement on the ephemeral records, bound on either backend.
enum P {
    Text(String),
    Maybe(Option<String>),
    Int(i64),
}

impl P {
    fn text(s: &str) -> P {
        P::Text(s.to_string())
    }
}

impl rusqlite::ToSql for P {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            P::Text(s) => s.to_sql(),
            P::Maybe(s) => s.to_sql(),
            P::Int(i) => i.to_sql(),
        }
    }
}

const PUT_SESSION: &str = "INSERT INTO oidc_sessions (id, doc, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at";
const UPDATE_SESSION: &str = "UPDATE oidc_sessions SET doc = $2, expires_at = $3 WHERE id = $1";
const DELETE_INTERACTION: &str = "DELETE FROM oidc_interactions WHERE id = $1";

/// A browser session to save: its id (the cookie's hash), document and expiry, and the
/// id of the stored session it replaces when a login gave the browser a new cookie.
#[derive(Debug, Clone, Copy)]
pub struct SessionWrite<'a> {
    pub id: &'a str,
    pub doc: &'a str,
    pub expires_at: i64,
    pub replaces: Option<&'a str>,
}

impl SessionWrite<'_> {
    /// A renewed session is written anew (and the one it replaces removed); an
    /// existing one is only updated, so that a session ended meanwhile (a logout
    /// while a login completed) is not brought back.
    fn statements(&self) -> Vec<(&'static str, Vec<P>)> {
        let row = vec![P::text(self.id), P::text(self.doc), P::Int(self.expires_at)];
        let mut out = vec![match self.replaces {
            Some(_) => (PUT_SESSION, row),
            None => (UPDATE_SESSION, row),
        }];
        if let Some(old) = self.replaces.filter(|old| *old != self.id) {
            out.push((
                "UPDATE oidc_interactions SET session_id = $1 WHERE session_id = $2",
                vec![P::text(self.id), P::text(old)],
            ));
            out.push((
                "DELETE FROM oidc_sessions WHERE id = $1",
                vec![P::text(old)],
            ));
        }
        out
    }
}

/// An interaction to record (or replace), in a browser session given apart.
#[derive(Debug, Clone, Copy)]
pub struct NewInteraction<'a> {
    pub id: &'a str,
    /// The state sent to the identity provider, once the person chose one.
    pub fi_state: Option<&'a str>,
    pub doc: &'a str,
    pub expires_at: i64,
}

impl NewInteraction<'_> {
    fn owned(&self) -> OwnedInteraction {
        OwnedInteraction {
            id: self.id.to_string(),
            fi_state: self.fi_state.map(str::to_string),
            doc: self.doc.to_string(),
            expires_at: self.expires_at,
        }
    }
}

struct OwnedInteraction {
    id: String,
    fi_state: Option<String>,
    doc: String,
    expires_at: i64,
}

impl OwnedInteraction {
    fn statement(&self, session_id: &str) -> (&'static str, Vec<P>) {
        (
            // An interaction stays in its session: only a login's renewal moves it
            // (`SessionWrite`), so a step that read the session before a renewal in
            // another tab cannot put it back under the old one.
            "INSERT INTO oidc_interactions (id, session_id, fi_state, doc, expires_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             fi_state = excluded.fi_state, doc = excluded.doc, \
             expires_at = excluded.expires_at",
            vec![
                P::text(&self.id),
                P::text(session_id),
                P::Maybe(self.fi_state.clone()),
                P::text(&self.doc),
                P::Int(self.expires_at),
            ],
        )
    }
}

/// A code to record: the hash of the code, its client, its document, its expiry.
#[derive(Debug, Clone, Copy)]
pub struct NewCode<'a> {
    pub code_hash: &'a str,
    pub client_id: &'a str,
    pub doc: &'a str,
    pub expires_at: i64,
}

impl NewCode<'_> {
    fn statement(&self) -> (&'static str, Vec<P>) {
        (
            "INSERT INTO oidc_grants (code_hash, client_id, doc, expires_at) \
             VALUES ($1, $2, $3, $4)",
            vec![
                P::text(self.code_hash),
                P::text(self.client_id),
                P::text(self.doc),
                P::Int(self.expires_at),
            ],
        )
    }
}

impl Store {
    /// Writing statements on the ephemeral records in one transaction (on SQLite, one
    /// hand-off to the logins' thread instead of one each).
    async fn ephemeral_writes(&self, statements: Vec<(&'static str, Vec<P>)>) -> Result<()> {
        match &self.ephemeral_pg {
            None => {
                self.ephemeral_run(move |c| {
                    // A savepoint: the logins' thread may already be inside a batch.
                    let sp = c.savepoint()?;
                    for (sql, params) in &statements {
                        lite(&sp, sql)?.execute(rusqlite::params_from_iter(params.iter()))?;
                    }
                    sp.commit()
                })
                .await
            }
            Some(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                for (sql, params) in statements {
                    bind(sql, params).execute(&mut *tx).await.map_err(err)?;
                }
                tx.commit().await.map_err(err)
            }
        }
    }

    /// One row of two text columns from the ephemeral records, if any.
    async fn ephemeral_texts(
        &self,
        sql: &'static str,
        params: Vec<P>,
    ) -> Result<Option<(String, String)>> {
        match &self.ephemeral_pg {
            None => {
                self.ephemeral_run(move |c| {
                    lite(c, sql)?
                        .query_row(rusqlite::params_from_iter(params.iter()), |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                })
                .await
            }
            Some(pool) => {
                use sqlx::Row;
                let row = bind(sql, params).fetch_optional(pool).await.map_err(err)?;
                row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .transpose()
                    .map_err(err)
            }
        }
    }

    /// One writing statement on the ephemeral records; rows changed.
    async fn ephemeral_write(&self, sql: &'static str, params: Vec<P>) -> Result<u64> {
        match &self.ephemeral_pg {
            None => {
                let n = self
                    .ephemeral_run(move |c| {
                        lite(c, sql)?.execute(rusqlite::params_from_iter(params.iter()))
                    })
                    .await?;
                Ok(n as u64)
            }
            Some(pool) => Ok(bind(sql, params)
                .execute(pool)
                .await
                .map_err(err)?
                .rows_affected()),
        }
    }
}

/// A PostgreSQL statement with its parameters bound.
fn bind(
    sql: &str,
    params: Vec<P>,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            P::Text(s) => q.bind(s),
            P::Maybe(s) => q.bind(s),
            P::Int(i) => q.bind(i),
        };
    }
    q
}

/// The statement for SQLite, prepared once per connection: the same text with `?N`
/// for PostgreSQL's `$N` (numbered, whatever their order in the text).
fn lite<'c>(
    c: &'c rusqlite::Connection,
    sql: &str,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    c.prepare_cached(&sql.replace('$', "?"))
}
