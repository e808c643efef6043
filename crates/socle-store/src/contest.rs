//! Contests of exchanges ("Je conteste cet accès"): the rows of `citizen_contests`,
//! written with their journal entries and the notifications they cause in one
//! transaction. What a contest says is the citizen crate's.

use crate::catalogue::{INSERT_DELIVERY, INSERT_MAIL};
use crate::error::{StoreError, err};
use crate::{Backend, Journaled, NewMail, Result, Store, StoredDelivery, on_pool};

/// Inserts notifications — webhook deliveries and e-mails for the outbox — in the
/// open transaction `$tx`, on either backend. Evaluates to a `Result<(), sqlx::Error>`.
macro_rules! queue_notices {
    ($tx:ident, $deliveries:expr, $mails:expr, $now:expr) => {
        async {
            for d in $deliveries {
                sqlx::query(INSERT_DELIVERY)
                    .bind(&d.id)
                    .bind(&d.webhook_id)
                    .bind(&d.event)
                    .bind(&d.body)
                    .bind(&d.state)
                    .bind(d.next_at)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
            for m in $mails {
                sqlx::query(INSERT_MAIL)
                    .bind(&m.id)
                    .bind(&m.recipient)
                    .bind(&m.subject)
                    .bind(&m.body)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await
    };
}

/// A contest as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContest {
    pub id: String,
    pub doc: String,
    pub version: i64,
}

/// A new contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContest<'a> {
    pub id: &'a str,
    pub pseudonym: &'a str,
    pub entry_index: u64,
    pub service: &'a str,
    pub provider: &'a str,
    pub state: &'a str,
    pub doc: &'a str,
}

impl Store {
    /// Inserts a contest with its journal entries and notifications, in one
    /// transaction; `false` (nothing written) if the person already contested this
    /// exchange.
    pub async fn insert_contest(
        &self,
        c: &NewContest<'_>,
        journal: Journaled<'_>,
        deliveries: &[StoredDelivery],
        mails: &[NewMail],
        now: i64,
    ) -> Result<bool> {
        let index = i64::try_from(c.entry_index)
            .map_err(|_| StoreError::Conflict("entry index out of range".into()))?;
        let r: std::result::Result<(), sqlx::Error> = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO citizen_contests (id, pseudonym, entry_index, service, provider, \
                     state, doc, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
                )
                .bind(c.id)
                .bind(c.pseudonym)
                .bind(index)
                .bind(c.service)
                .bind(c.provider)
                .bind(c.state)
                .bind(c.doc)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                queue_notices!(tx, deliveries, mails, now)?;
                crate::queue_leaves!(self, tx, journal)?;
                tx.commit().await?;
                Ok(())
            }
            .await
        });
        match r {
            Ok(()) => Ok(true),
            Err(e) if crate::error::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// The contests of the person whose pseudonym is `pseudonym`, newest first.
    pub async fn contests_of(&self, pseudonym: &str) -> Result<Vec<StoredContest>> {
        self.contests_where("pseudonym = $1", pseudonym).await
    }

    /// The contests concerning `organisation` (as the calling service or the
    /// provider), newest first.
    pub async fn contests_for(&self, organisation: &str) -> Result<Vec<StoredContest>> {
        self.contests_where("(service = $1 OR provider = $1)", organisation)
            .await
    }

    async fn contests_where(&self, clause: &str, value: &str) -> Result<Vec<StoredContest>> {
        let sql = format!(
            "SELECT id, doc, CAST(version AS BIGINT) FROM citizen_contests WHERE {clause} \
             ORDER BY created_at DESC, id"
        );
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(value)
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows
            .into_iter()
            .map(|(id, doc, version)| StoredContest { id, doc, version })
            .collect())
    }

    /// The pseudonym of the person who filed a contest (the journal's index key).
    pub async fn contest_pseudonym(&self, id: &str) -> Result<Option<String>> {
        self.one_text("SELECT pseudonym FROM citizen_contests WHERE id = $1", id)
            .await
    }

    pub async fn contest(&self, id: &str) -> Result<Option<StoredContest>> {
        let row: Option<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, doc, CAST(version AS BIGINT) FROM citizen_contests WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(|(id, doc, version)| StoredContest { id, doc, version }))
    }

    /// Replaces a contest's state and record if it is still at `expected` (its
    /// version), with the step's journal entries and notifications; `false` (nothing
    /// written) if it changed meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_contest(
        &self,
        id: &str,
        state: &str,
        doc: &str,
        expected: i64,
        journal: Journaled<'_>,
        deliveries: &[StoredDelivery],
        mails: &[NewMail],
        now: i64,
    ) -> Result<bool> {
        crate::journaled!(self, journal, |tx| {
            let n = sqlx::query(
                "UPDATE citizen_contests SET state = $1, doc = $2, version = version + 1, \
                 updated_at = $3 WHERE id = $4 AND version = $5",
            )
            .bind(state)
            .bind(doc)
            .bind(now)
            .bind(id)
            .bind(expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            queue_notices!(tx, deliveries, mails, now)?;
            true
        })
        .map_err(err)
    }
}

/// A person's digest subscription, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDigest {
    pub pseudonym: String,
    pub email: String,
    pub since_index: u64,
    pub last_sent_at: i64,
}

type DigestRow = (String, String, i64, i64);

fn digest_row((pseudonym, email, since, last): DigestRow) -> StoredDigest {
    StoredDigest {
        pseudonym,
        email,
        since_index: u64::try_from(since).unwrap_or(0),
        last_sent_at: last,
    }
}

impl Store {
    /// Subscribes (or re-subscribes, with a new address) a person to the digest of
    /// their new exchanges, from `since_index` on.
    pub async fn set_digest(
        &self,
        pseudonym: &str,
        email: &str,
        since_index: u64,
        now: i64,
    ) -> Result<()> {
        let since = i64::try_from(since_index).unwrap_or(i64::MAX);
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO citizen_digests (pseudonym, email, since_index, last_sent_at, \
                 created_at) VALUES ($1, $2, $3, 0, $4) ON CONFLICT (pseudonym) DO UPDATE \
                 SET email = excluded.email",
            )
            .bind(pseudonym)
            .bind(email)
            .bind(since)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(err)?
        });
        Ok(())
    }

    /// Withdraws a person's digest.
    pub async fn remove_digest(&self, pseudonym: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM citizen_digests WHERE pseudonym = $1")
                .bind(pseudonym)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(err)?
        });
        Ok(())
    }

    pub async fn digest(&self, pseudonym: &str) -> Result<Option<StoredDigest>> {
        let row: Option<DigestRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT pseudonym, email, CAST(since_index AS BIGINT), \
                 CAST(last_sent_at AS BIGINT) FROM citizen_digests WHERE pseudonym = $1",
            )
            .bind(pseudonym)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(digest_row))
    }

    /// The subscriptions whose last digest was sent before `before`, by pseudonym
    /// after `after`, at most `limit` (a keyset walk through all of them).
    pub async fn due_digests(
        &self,
        before: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StoredDigest>> {
        let rows: Vec<DigestRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT pseudonym, email, CAST(since_index AS BIGINT), \
                 CAST(last_sent_at AS BIGINT) FROM citizen_digests WHERE last_sent_at < $1 \
                 AND pseudonym > $2 ORDER BY pseudonym LIMIT $3",
            )
            .bind(before)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        Ok(rows.into_iter().map(digest_row).collect())
    }

    /// Records a digest sent (its e-mail queued in the outbox, in the same
    /// transaction), or — without a mail — moves the digest's start on. `false` if the
    /// subscription changed meanwhile (withdrawn, or sent by another node).
    pub async fn digest_sent(
        &self,
        d: &StoredDigest,
        since_index: u64,
        mail: Option<&NewMail>,
        now: i64,
    ) -> Result<bool> {
        let since = i64::try_from(since_index).unwrap_or(i64::MAX);
        let previous = i64::try_from(d.since_index).unwrap_or(i64::MAX);
        let sent_at = if mail.is_some() { now } else { d.last_sent_at };
        on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(
                    "UPDATE citizen_digests SET since_index = $1, last_sent_at = $2 \
                     WHERE pseudonym = $3 AND since_index = $4 AND last_sent_at = $5",
                )
                .bind(since)
                .bind(sent_at)
                .bind(&d.pseudonym)
                .bind(previous)
                .bind(d.last_sent_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    tx.rollback().await?;
                    return Ok::<bool, sqlx::Error>(false);
                }
                let no_deliveries: &[StoredDelivery] = &[];
                queue_notices!(tx, no_deliveries, mail.as_slice(), now)?;
                tx.commit().await?;
                Ok(true)
            }
            .await
            .map_err(err)
        })
    }
}
