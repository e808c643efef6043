-- A row the journal's SQLite connection rewrites to make everything committed before
-- durable (socle-store/src/journal.rs, `in_transaction`): its other commits run with
-- `synchronous = NORMAL`, the redo log carrying their durability, and a commit with
-- `synchronous = FULL` syncs the write-ahead log only if it writes something.
CREATE TABLE journal_log_syncs (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO journal_log_syncs (id, n) VALUES (1, 0);
