-- Identity federation (issue 4). Times are Unix seconds. Secrets and tokens are
-- stored only as SHA-256 hashes; private keys only sealed under the master key.

-- Service providers (FS) registered as OpenID Connect clients; `doc` is the
-- registration as JSON (with the secret's hash, never the secret).
CREATE TABLE oidc_clients (
    client_id  TEXT    PRIMARY KEY,
    doc        TEXT    NOT NULL,
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- Token signing keys. `sealed` is a compact JWE (dir, A256GCM) of the private JWK.
CREATE TABLE oidc_keys (
    kid           TEXT   PRIMARY KEY,
    alg           TEXT   NOT NULL,
    sealed        TEXT   NOT NULL,
    public_jwk    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT,
    publish_until BIGINT
);

-- Browser sessions (cookie value hashed).
CREATE TABLE oidc_sessions (
    id         TEXT   PRIMARY KEY,
    doc        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_sessions_expiry ON oidc_sessions (expires_at);

-- Login interactions in progress (authorize → identity provider → consent).
CREATE TABLE oidc_interactions (
    id         TEXT   PRIMARY KEY,
    session_id TEXT   NOT NULL,
    fi_state   TEXT   UNIQUE,
    doc        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_interactions_expiry ON oidc_interactions (expires_at);

-- Grants: an authorization code (hashed; single use, short-lived) and the access token
-- issued for it (hashed), in one row so the exchange is one write. A replayed code
-- marks the row revoked, which revokes its token.
CREATE TABLE oidc_grants (
    code_hash        TEXT    PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    doc              TEXT    NOT NULL,
    expires_at       BIGINT  NOT NULL,
    used_at          BIGINT,
    token_hash       TEXT    UNIQUE,
    token_expires_at BIGINT,
    revoked          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oidc_grants_expiry ON oidc_grants (expires_at);

-- Client assertion identifiers already used (private_key_jwt replay protection).
CREATE TABLE oidc_assertions (
    client_id  TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
