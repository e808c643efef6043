//! Test support, compiled only with the `test-hooks` feature: what an attacker with
//! write access to the database, a full disk or an operator's repair would do to the
//! journal's tables. The product never enables it (`scripts/test` checks).

#![cfg(feature = "test-hooks")]

use super::{NodeHash, to_i64};
use crate::error::StoreError;
use crate::{Backend, Result, Store, on_pool};

/// One statement with its binds, on whichever pool is open.
macro_rules! exec {
    ($store:expr, raw $sql:expr) => {
        on_pool!($store, |pool| {
            sqlx::raw_sql($sql)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    };
    ($store:expr, $sql:expr $(, $bind:expr)*) => {
        on_pool!($store, |pool| {
            sqlx::query($sql)
                $(.bind($bind))*
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    };
}

impl Store {
    /// Test support: writes an entry (and the tree nodes it completes) straight into
    /// the log, with no MAC, as an attacker with write access to the database would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_forge_entry(
        &self,
        index: u64,
        leaf: &[u8],
        leaf_hash: &[u8],
        nodes: &[(u64, NodeHash)],
    ) -> Result<()> {
        let index = to_i64(index)?;
        let nodes: Vec<(i64, &[u8])> = nodes
            .iter()
            .map(|(p, h)| Ok((to_i64(*p)?, h.as_slice())))
            .collect::<Result<_>>()?;
        on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO journal_entries (idx, leaf, leaf_hash) VALUES ($1, $2, $3)",
                )
                .bind(index)
                .bind(leaf)
                .bind(leaf_hash)
                .execute(&mut *tx)
                .await?;
                for (pos, hash) in &nodes {
                    sqlx::query("INSERT INTO journal_nodes (pos, hash) VALUES ($1, $2)")
                        .bind(*pos)
                        .bind(*hash)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
            .map_err(StoreError::from_runtime)
        })
    }

    /// Test support: queues a leaf with the given MAC (none, or a made-up one), as an
    /// attacker with write access to the database would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_forge_queued(&self, leaf: &[u8], mac: Option<&[u8]>) -> Result<()> {
        exec!(
            self,
            "INSERT INTO journal_queue (leaf, mac) VALUES ($1, $2)",
            leaf,
            mac
        )
    }

    /// Test support: makes the database look as a version from before MACs left it:
    /// no MAC on any entry or queued leaf, no marker of their adoption, and (with
    /// `and_key`) no MAC key.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_forget_macs(&self, and_key: bool) -> Result<()> {
        // The adoption marker goes in both cases: with the key in place, its absence
        // must not let rows without MAC in.
        let mut sql =
            "UPDATE journal_entries SET mac = NULL; UPDATE journal_queue SET mac = NULL; \
             DELETE FROM instance_markers WHERE name = 'journal.macs.adopted';"
                .to_string();
        if and_key {
            sql.push_str(" DELETE FROM journal_secrets WHERE name = 'entry_mac_key';");
        }
        exec!(self, raw & sql)
    }

    /// Test support: empties the journal's queue, as an operator removing a forged
    /// leaf would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_clear_queue(&self) -> Result<()> {
        exec!(self, "DELETE FROM journal_queue")
    }

    /// Test support: overwrites an entry's leaf bytes, as an attacker with write
    /// access to the database would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_tamper_entry(&self, index: u64, leaf: &[u8]) -> Result<()> {
        let index = to_i64(index)?;
        exec!(
            self,
            "UPDATE journal_entries SET leaf = $1 WHERE idx = $2",
            leaf,
            index
        )
    }

    /// Test support: makes every insert into the journal's durable queue fail (`true`),
    /// or work again (`false`), as a full disk or a broken table would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_refuse_queued_entries(&self, refuse: bool) -> Result<()> {
        self.__test_refuse_inserts("journal_queue", refuse).await
    }

    /// Test support: makes every write of journal entries fail (`true`) — into the
    /// log's tables and into the durable queue, as a full disk would — or work again.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_refuse_journal_writes(&self, refuse: bool) -> Result<()> {
        self.__test_refuse_inserts("journal_queue", refuse).await?;
        self.__test_refuse_inserts("journal_entries", refuse).await
    }

    #[cfg(feature = "test-hooks")]
    async fn __test_refuse_inserts(&self, table: &str, refuse: bool) -> Result<()> {
        let sql = match (&self.backend, refuse) {
            (Backend::Sqlite(_), true) => format!(
                "CREATE TRIGGER socle_test_refuse_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ),
            (Backend::Sqlite(_), false) => {
                format!("DROP TRIGGER IF EXISTS socle_test_refuse_{table}")
            }
            (Backend::Postgres(_), true) => format!(
                "CREATE OR REPLACE FUNCTION socle_test_refuse() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER socle_test_refuse_{table} BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION socle_test_refuse()"
            ),
            (Backend::Postgres(_), false) => {
                format!("DROP TRIGGER IF EXISTS socle_test_refuse_{table} ON {table}")
            }
        };
        exec!(self, raw & sql)
    }

    /// Test support: removes an entry, as an attacker with write access would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_delete_entry(&self, index: u64) -> Result<()> {
        let index = to_i64(index)?;
        exec!(self, "DELETE FROM journal_entries WHERE idx = $1", index)
    }

    /// Test support: overwrites a stored tree node (by storage position), as a damaged
    /// disk or an attacker would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_tamper_node(&self, position: u64, hash: &[u8]) -> Result<()> {
        let position = to_i64(position)?;
        exec!(
            self,
            "UPDATE journal_nodes SET hash = $1 WHERE pos = $2",
            hash,
            position
        )
    }

    /// Test support: deletes the checkpoints of a size above `size`.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_delete_checkpoints_above(&self, size: u64) -> Result<()> {
        let size = to_i64(size)?;
        exec!(
            self,
            "DELETE FROM journal_checkpoints WHERE size > $1",
            size
        )
    }

    /// Test support: stores a checkpoint note as is (a forged one).
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_insert_checkpoint(&self, size: u64, note: &str) -> Result<()> {
        let size = to_i64(size)?;
        exec!(
            self,
            "INSERT INTO journal_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, '')",
            size,
            [0u8; 32].as_slice(),
            note
        )
    }
}
