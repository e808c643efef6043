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

-- Authorization codes (hashed): single use, short-lived.
CREATE TABLE oidc_codes (
    code_hash  TEXT   PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    grant_id   TEXT   NOT NULL,
    doc        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX oidc_codes_expiry ON oidc_codes (expires_at);

-- Access tokens (hashed), revocable per grant (a replayed code revokes them).
CREATE TABLE oidc_tokens (
    token_hash TEXT    PRIMARY KEY,
    grant_id   TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    doc        TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oidc_tokens_grant ON oidc_tokens (grant_id);
CREATE INDEX oidc_tokens_expiry ON oidc_tokens (expires_at);

-- Client assertion identifiers already used (private_key_jwt replay protection).
CREATE TABLE oidc_assertions (
    client_id  TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
