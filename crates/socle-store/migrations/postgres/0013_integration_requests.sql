-- Integration requests (issue 31, the partner space): a service's request to log its
-- users in through Socle goes through the habilitation workflow, but it asks for the
-- identity federation, not for an API of the catalogue — so `api_id` no longer
-- references catalogue_apis (the back office checks an API request's API itself).
ALTER TABLE catalogue_habilitations DROP CONSTRAINT IF EXISTS catalogue_habilitations_api_id_fkey;
