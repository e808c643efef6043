-- ID tokens encrypted to a service cannot be read back by the platform; a service
-- sends one, as it received it, as `id_token_hint` at logout. Each one issued is
-- remembered by its hash with the client and session it names, for as long as that
-- session can live (socle-identity, `Provider::end_session`).
CREATE TABLE oidc_logout_hints (
    hint_hash  TEXT   PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    sid        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_logout_hints_expiry ON oidc_logout_hints (expires_at);
