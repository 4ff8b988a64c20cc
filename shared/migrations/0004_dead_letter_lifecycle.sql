-- Dead letters come from consumers (a Kafka message) and from projections (a stored event), and
-- live until an operator replays or discards them (python -m services.<name> dead-letters ...).
-- `consumer` names the consumer or the projection; `topic` is null for a projection's.
ALTER TABLE dead_letters
    ADD COLUMN source      text NOT NULL DEFAULT 'consumer' CHECK (source IN ('consumer', 'projection')),
    ADD COLUMN stream_id   text,
    ADD COLUMN status      text NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'replayed', 'discarded')),
    ADD COLUMN resolved_at timestamptz,
    ALTER COLUMN topic DROP NOT NULL;

-- An event parked again (redelivered, failing the same way) updates its row instead of adding
-- one: keep only the newest of the repeats already there.
DELETE FROM dead_letters d USING dead_letters newer
WHERE d.event_id IS NOT NULL AND newer.consumer = d.consumer AND newer.event_id = d.event_id
  AND newer.id > d.id;
CREATE UNIQUE INDEX dead_letters_parked_event_idx ON dead_letters (source, consumer, event_id)
    WHERE status = 'parked';
