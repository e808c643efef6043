//! Contests of exchanges ("Je conteste cet accès"): the rows of `citizen_contests`,
//! written with their journal entries and the notifications they cause in one
//! transaction. What a contest says is the citizen crate's.

use crate::catalogue::{INSERT_DELIVERY, INSERT_MAIL};
use crate::error::StoreError;
use crate::{Backend, Journaled, NewMail, Result, Store, StoredDelivery, on_pool};

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

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_runtime(e)
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
                for d in deliveries {
                    sqlx::query(INSERT_DELIVERY)
                        .bind(&d.id)
                        .bind(&d.webhook_id)
                        .bind(&d.event)
                        .bind(&d.body)
                        .bind(&d.state)
                        .bind(d.next_at)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                for m in mails {
                    sqlx::query(INSERT_MAIL)
                        .bind(&m.id)
                        .bind(&m.recipient)
                        .bind(&m.subject)
                        .bind(&m.body)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                crate::queue_leaves!(self, tx, journal)?;
                tx.commit().await?;
                Ok(())
            }
            .await
        });
        match r {
            Ok(()) => Ok(true),
            Err(e) if crate::identity::is_unique_violation(&e) => Ok(false),
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
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT pseudonym FROM citizen_contests WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(|r| r.0))
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
            for d in deliveries {
                sqlx::query(INSERT_DELIVERY)
                    .bind(&d.id)
                    .bind(&d.webhook_id)
                    .bind(&d.event)
                    .bind(&d.body)
                    .bind(&d.state)
                    .bind(d.next_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            for m in mails {
                sqlx::query(INSERT_MAIL)
                    .bind(&m.id)
                    .bind(&m.recipient)
                    .bind(&m.subject)
                    .bind(&m.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            true
        })
        .map_err(err)
    }
}
