-- The records of logins in progress (sessions, interactions, codes and tokens, client
-- assertions) moved to a file of their own beside the database, `socle.logins.db`
-- (crates/socle-store/sql/sqlite_logins.sql), so that their commits and the journal's
-- never wait for each other on one write-ahead log. Logins in progress at the upgrade
-- are lost: the people concerned log in again.
DROP TABLE oidc_sessions;
DROP TABLE oidc_interactions;
DROP TABLE oidc_grants;
DROP TABLE oidc_assertions;
