-- The inbox becomes the log webhooks are acknowledged on (issue 15, warehouse/log.py): a webhook is
-- answered once its verified raw body and the deliveries parsed from it are appended here, and the
-- writer turns the log into tickets right behind, recording how far it went in `ingest_cursor` in
-- the same transaction. Rows that brought nothing (a replayed body, an import) are deleted once
-- processed, so a body is still kept once.
ALTER TABLE inbox ADD COLUMN items BLOB;                  -- the parsed deliveries (msgpack, warehouse.log)
ALTER TABLE inbox ADD COLUMN skipped INTEGER DEFAULT 0;   -- entries of the body the connector did not understand
ALTER TABLE inbox ALTER COLUMN body DROP NOT NULL;        -- imports (`socialdesk ingest`) have no raw body

CREATE TABLE ingest_cursor (
    name VARCHAR PRIMARY KEY,
    last_id BIGINT NOT NULL                               -- every inbox row up to this id is processed
);
-- What was stored before the log existed was processed when it was stored.
INSERT INTO ingest_cursor SELECT 'tickets', coalesce(max(id), 0) FROM inbox;

-- Deliveries whose processing failed, with the error and their input: the item as JSON (the raw
-- body stays in the inbox row `inbox_id`). `socialdesk dead-letters retry` processes them again.
CREATE SEQUENCE dead_letter_ids START 1;
CREATE TABLE dead_letters (
    id BIGINT PRIMARY KEY,
    inbox_id BIGINT NOT NULL,
    item_index INTEGER,                                   -- its place in the webhook; NULL: the whole entry
    channel VARCHAR NOT NULL,
    kind VARCHAR,                                         -- message, edit, withdrawal, status
    item VARCHAR,                                         -- JSON, ASCII (a lone surrogate stays a \u escape)
    error VARCHAR NOT NULL,
    failed_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    retried_at TIMESTAMP,
    resolved_at TIMESTAMP                                 -- a retry processed it
);
