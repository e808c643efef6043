-- A login gives the browser a new session; the session's other logins in progress
-- follow it (socle-store/src/identity.rs, `SessionWrite`): found by their session.
CREATE INDEX oidc_interactions_session ON oidc_interactions (session_id);
