-- Readers order events by the id of the transaction that wrote them and read only transactions
-- older than every one still running (pg_snapshot_xmin), instead of appends taking one global
-- lock to commit: an event whose transaction commits late can then never be skipped, and
-- writers no longer queue behind each other's commits.
-- Events already stored get this migration's transaction id, and so do checkpoints already
-- under way, which keeps their place (same transaction id, same positions).
ALTER TABLE events ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_transaction_order_idx ON events (transaction_id, position);
ALTER TABLE projection_checkpoints ADD COLUMN transaction_id xid8 NOT NULL DEFAULT '0';
UPDATE projection_checkpoints SET transaction_id = pg_current_xact_id() WHERE position > 0;
