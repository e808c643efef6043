-- "Je conteste cet accès" (issue 32): a person contests an exchange about them. One
-- contest per exchange and person (`pseudonym`, the journal's index key; the entry's
-- index); the organisations concerned (the calling service, the provider) follow and
-- answer it from the Espace agent. `doc` is the citizen crate's record (reason, text,
-- history, answer); `version` guards concurrent changes.
CREATE TABLE citizen_contests (
    id          TEXT    PRIMARY KEY,
    pseudonym   TEXT    NOT NULL,
    entry_index BIGINT  NOT NULL,
    service     TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    doc         TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX citizen_contests_one ON citizen_contests (pseudonym, entry_index);
CREATE INDEX citizen_contests_service ON citizen_contests (service);
CREATE INDEX citizen_contests_provider ON citizen_contests (provider);
