-- The catalogue (issue 5): organisations, the data dictionary, published APIs and the
-- OpenAPI document of each version. Records are JSON documents owned by
-- socle-catalogue; times are Unix seconds.
CREATE TABLE catalogue_organisations (
    siret      TEXT   PRIMARY KEY,
    doc        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE catalogue_data_items (
    id         TEXT   PRIMARY KEY,
    doc        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE catalogue_apis (
    id           TEXT   PRIMARY KEY,
    organisation TEXT   NOT NULL REFERENCES catalogue_organisations (siret),
    doc          TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE catalogue_api_versions (
    api_id     TEXT   NOT NULL REFERENCES catalogue_apis (id),
    version    TEXT   NOT NULL,
    openapi    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (api_id, version)
);

-- Back-office accounts (local until agents log in through identity federation) and
-- their bearer tokens (hashed).
CREATE TABLE catalogue_users (
    email      TEXT   PRIMARY KEY,
    doc        TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE catalogue_user_tokens (
    token_hash TEXT   PRIMARY KEY,
    email      TEXT   NOT NULL REFERENCES catalogue_users (email),
    expires_at BIGINT NOT NULL
);

-- Habilitation requests; `version` guards concurrent transitions (a stale write
-- changes nothing).
CREATE TABLE catalogue_habilitations (
    id         TEXT    PRIMARY KEY,
    requester  TEXT    NOT NULL,
    producer   TEXT    NOT NULL,
    api_id     TEXT    NOT NULL REFERENCES catalogue_apis (id),
    state      TEXT    NOT NULL,
    doc        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX catalogue_habilitations_requester ON catalogue_habilitations (requester);
CREATE INDEX catalogue_habilitations_producer ON catalogue_habilitations (producer);

-- Webhooks of organisations (HMAC-SHA256 signed notifications), their deliveries with
-- retries, and the e-mail outbox.
CREATE TABLE catalogue_webhooks (
    id           TEXT    PRIMARY KEY,
    organisation TEXT    NOT NULL REFERENCES catalogue_organisations (siret),
    url          TEXT    NOT NULL,
    secret       TEXT    NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    failures     INTEGER NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE catalogue_deliveries (
    id          TEXT    PRIMARY KEY,
    webhook_id  TEXT    NOT NULL REFERENCES catalogue_webhooks (id),
    event       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT  NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX catalogue_deliveries_due ON catalogue_deliveries (state, next_at);

CREATE TABLE catalogue_outbox (
    id         TEXT   PRIMARY KEY,
    recipient  TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at    BIGINT
);
