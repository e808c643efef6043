-- The records of logins in progress on SQLite, in a file of their own beside the
-- database (`socle.logins.db`), created on first use. The same tables as
-- migrations/postgres/0003_identity.sql, where they stay in the main database.

-- Browser sessions (cookie value hashed).
CREATE TABLE IF NOT EXISTS oidc_sessions (
    id         TEXT   PRIMARY KEY,
    doc        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS oidc_sessions_expiry ON oidc_sessions (expires_at);

-- Login interactions in progress (authorize → identity provider → consent).
CREATE TABLE IF NOT EXISTS oidc_interactions (
    id         TEXT   PRIMARY KEY,
    session_id TEXT   NOT NULL,
    fi_state   TEXT   UNIQUE,
    doc        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS oidc_interactions_expiry ON oidc_interactions (expires_at);
-- A login gives the browser a new session; the session's other logins in progress
-- follow it (socle-store/src/identity.rs, `SessionWrite`).
CREATE INDEX IF NOT EXISTS oidc_interactions_session ON oidc_interactions (session_id);

-- Grants: an authorization code (hashed; single use, short-lived) and the access token
-- issued for it (hashed), in one row so the exchange is one write. A replayed code
-- marks the row revoked, which revokes its token.
CREATE TABLE IF NOT EXISTS oidc_grants (
    code_hash        TEXT    PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    doc              TEXT    NOT NULL,
    expires_at       BIGINT  NOT NULL,
    used_at          BIGINT,
    token_hash       TEXT    UNIQUE,
    token_expires_at BIGINT,
    revoked          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS oidc_grants_expiry ON oidc_grants (expires_at);

-- Client assertion identifiers already used (private_key_jwt replay protection).
CREATE TABLE IF NOT EXISTS oidc_assertions (
    client_id  TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Encrypted ID tokens issued (which the platform cannot read back), by hash, with the
-- client and session they name: recognised as `id_token_hint` at logout.
CREATE TABLE IF NOT EXISTS oidc_logout_hints (
    hint_hash  TEXT   PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    sid        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS oidc_logout_hints_expiry ON oidc_logout_hints (expires_at);
