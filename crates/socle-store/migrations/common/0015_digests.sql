-- The opt-in digest of new exchanges (issue 32): a person asks for an e-mail, at most
-- daily, when exchanges about them happened. Stored under their pseudonym (the
-- journal's index key) with the address their identity provider gave; withdrawn by
-- deleting the row. `since_index`: the journal size the last digest covered.
CREATE TABLE citizen_digests (
    pseudonym    TEXT   PRIMARY KEY,
    email        TEXT   NOT NULL,
    since_index  BIGINT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
