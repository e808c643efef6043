-- The journal: an RFC 9162 Merkle log (see docs/JOURNAL.md).

-- One row: the log's origin, fixed at creation. (Its size is MAX(idx) + 1.)
CREATE TABLE journal_state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT    NOT NULL
);

-- Platform secrets of the journal (signing key seed, pseudonym key), created once.
CREATE TABLE journal_secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;

-- Durable queue: an append is acknowledged once its leaves are here.
CREATE TABLE journal_queue (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    leaf    BLOB NOT NULL,
    subject TEXT
);

-- The log itself: leaf bytes by index.
CREATE TABLE journal_entries (
    idx       INTEGER PRIMARY KEY,
    leaf      BLOB NOT NULL,
    -- SHA-256(0x00 || leaf): the level-0 node of the tree.
    leaf_hash BLOB NOT NULL,
    subject   TEXT
);
-- The per-pseudonym index: a person's entries without scanning the log.
CREATE INDEX journal_entries_subject ON journal_entries (subject, idx) WHERE subject IS NOT NULL;

-- Hashes of the perfect subtrees above the leaves, keyed by their position in
-- creation order (docs/JOURNAL.md), so that every write appends at the end.
CREATE TABLE journal_nodes (
    pos  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

-- Every signed checkpoint, by tree size.
CREATE TABLE journal_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One-time events of the instance (first start, demonstration data seeded…).
CREATE TABLE instance_markers (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
