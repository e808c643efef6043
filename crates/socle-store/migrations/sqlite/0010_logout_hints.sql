-- Nothing here on SQLite: the logins in progress live in their own file, whose schema
-- (sql/sqlite_logins.sql, applied at every start) has the table. The migration keeps
-- the two stores' version numbers together.
SELECT 1;
