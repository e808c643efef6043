-- The gateway (issue 6): daily quota counters per habilitation (only accepted calls
-- count; nodes add their deltas) and the consents of people for consent-based
-- habilitations (grant, revocation, expiry). Times are Unix seconds.
CREATE TABLE gateway_quotas (
    habilitation_id TEXT   NOT NULL,
    day             TEXT   NOT NULL,
    used            BIGINT NOT NULL,
    PRIMARY KEY (habilitation_id, day)
);

CREATE TABLE consents (
    id              TEXT   PRIMARY KEY,
    subject         TEXT   NOT NULL,
    habilitation_id TEXT   NOT NULL,
    doc             TEXT   NOT NULL,
    granted_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX consents_subject ON consents (subject, habilitation_id);
