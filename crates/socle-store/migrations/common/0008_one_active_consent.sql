-- At most one active consent per person and habilitation, so that withdrawing the one
-- the person sees stops the service. Two grants at once (a double click) could leave two
-- before: the older of any such pair is revoked when the newer was granted.
UPDATE consents SET revoked_at = (
    SELECT MAX(n.granted_at) FROM consents n
    WHERE n.subject = consents.subject AND n.habilitation_id = consents.habilitation_id
      AND n.revoked_at IS NULL AND (n.granted_at, n.id) > (consents.granted_at, consents.id)
)
WHERE revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM consents n
    WHERE n.subject = consents.subject AND n.habilitation_id = consents.habilitation_id
      AND n.revoked_at IS NULL AND (n.granted_at, n.id) > (consents.granted_at, consents.id)
);
CREATE UNIQUE INDEX consents_one_active ON consents (subject, habilitation_id)
    WHERE revoked_at IS NULL;
