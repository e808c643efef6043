-- Each stored entry and queued leaf carries a MAC under a key the database does not
-- hold (sealed under the master key): the sequencer integrates and signs only what it
-- or the platform wrote (socle-journal, docs/JOURNAL.md "Entries the sequencer wrote").
-- Rows from before this migration have none; the journal adopts those once, when it
-- creates the key.
ALTER TABLE journal_entries ADD COLUMN mac BYTEA;
ALTER TABLE journal_queue ADD COLUMN mac BYTEA;
