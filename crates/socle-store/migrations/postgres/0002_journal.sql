-- The journal: an RFC 9162 Merkle log (see docs/JOURNAL.md).

-- One row: the log's origin, fixed at creation. (Its size is MAX(idx) + 1.)
CREATE TABLE journal_state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT    NOT NULL
);

CREATE TABLE journal_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TEXT  NOT NULL
);

CREATE TABLE journal_queue (
    seq     BIGSERIAL PRIMARY KEY,
    leaf    BYTEA NOT NULL,
    subject TEXT
);

CREATE TABLE journal_entries (
    idx       BIGINT PRIMARY KEY,
    leaf      BYTEA NOT NULL,
    -- SHA-256(0x00 || leaf): the level-0 node of the tree.
    leaf_hash BYTEA NOT NULL,
    subject   TEXT
);
-- The per-pseudonym index: a person's entries without scanning the log.
CREATE INDEX journal_entries_subject ON journal_entries (subject, idx) WHERE subject IS NOT NULL;

-- Hashes of the perfect subtrees above the leaves, keyed by their position in
-- creation order (docs/JOURNAL.md), so that every write appends at the end.
CREATE TABLE journal_nodes (
    pos  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

CREATE TABLE journal_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BYTEA NOT NULL,
    note       TEXT  NOT NULL,
    created_at TEXT  NOT NULL
);

-- One-time events of the instance (first start, demonstration data seeded…).
CREATE TABLE instance_markers (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
