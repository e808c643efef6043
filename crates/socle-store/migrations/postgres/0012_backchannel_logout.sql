-- OpenID Connect Back-Channel Logout: the logout tokens owed to services when a
-- browser session ends, delivered with retries from this durable outbox (any node
-- takes a due one by advancing its attempts; see socle-identity's backchannel module).
-- `id` is the token's jti; `doc` what the token says (service URI, sub, sid) and the
-- journal pseudonym its outcome is recorded under.
CREATE TABLE oidc_backchannel (
    id         TEXT    PRIMARY KEY,
    client_id  TEXT    NOT NULL,
    doc        TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    attempts   BIGINT  NOT NULL DEFAULT 0,
    next_at    BIGINT  NOT NULL,
    last_error TEXT,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX oidc_backchannel_due ON oidc_backchannel (state, next_at);
