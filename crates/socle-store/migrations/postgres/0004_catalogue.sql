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
