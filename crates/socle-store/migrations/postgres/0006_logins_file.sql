-- Nothing changes on PostgreSQL: the records of logins in progress stay in the main
-- database, written with `synchronous_commit = off` (on SQLite they moved to a file of
-- their own; see migrations/sqlite/0006_logins_file.sql).
SELECT 1;
