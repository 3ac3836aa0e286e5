-- Ingestion looks up end users and their open tickets by platform user id for every batch. DuckDB
-- uses an index only for constant filters, so ingestion filters on literal lists of these ids.
CREATE INDEX identities_platform_user ON identities (platform_user_id);
CREATE INDEX tickets_recipient ON tickets (recipient);
