-- Integration requests (issue 31, the partner space): a service's request to log its
-- users in through Socle goes through the habilitation workflow, but it asks for the
-- identity federation, not for an API of the catalogue — so `api_id` no longer
-- references catalogue_apis (the back office checks an API request's API itself).
-- SQLite cannot drop a constraint: the table is rebuilt, rows and indexes kept.
CREATE TABLE catalogue_habilitations_new (
    id         TEXT    PRIMARY KEY,
    requester  TEXT    NOT NULL,
    producer   TEXT    NOT NULL,
    api_id     TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    doc        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at BIGINT  NOT NULL
);
INSERT INTO catalogue_habilitations_new
    SELECT id, requester, producer, api_id, state, doc, version, updated_at
    FROM catalogue_habilitations;
DROP TABLE catalogue_habilitations;
ALTER TABLE catalogue_habilitations_new RENAME TO catalogue_habilitations;
CREATE INDEX catalogue_habilitations_requester ON catalogue_habilitations (requester);
CREATE INDEX catalogue_habilitations_producer ON catalogue_habilitations (producer);
