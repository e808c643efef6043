-- Nothing changes on PostgreSQL: appends are committed durably there, with no redo log
-- in front (see migrations/sqlite/0007_journal_log_syncs.sql).
SELECT 1;
