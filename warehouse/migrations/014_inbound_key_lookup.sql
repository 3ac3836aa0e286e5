-- Replays are found by message id (issue 15). DuckDB plans INSERT ... ON CONFLICT on inbound_keys as a
-- join against a scan of the whole table, and uses neither the composite primary key nor any index for
-- its lookups: at 2.7 million keys that was 70 ms a batch, growing with the store. An IN list on one
-- indexed column is an index lookup (2 ms for 240 ids); ingest then inserts only the keys not found.
CREATE INDEX inbound_keys_message ON inbound_keys (message_id);
