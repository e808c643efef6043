-- The instance: one row, created on first start.
CREATE TABLE instance (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    instance_id TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    created_at  TEXT        NOT NULL
);
