-- Delivery lanes (services/webhooks/app/delivery.py): claims take a few due deliveries of each
-- endpoint in turn, an endpoint's attempts in flight are capped across every replica, and an
-- endpoint that keeps failing backs off as a whole.

-- Set while an attempt runs, cleared when it is recorded: the unexpired leases of an endpoint's
-- deliveries are its attempts in flight, whichever process runs them.
ALTER TABLE webhook_deliveries ADD COLUMN leased_until timestamptz;
CREATE INDEX webhook_deliveries_leased_idx ON webhook_deliveries (endpoint_id, leased_until)
    WHERE leased_until IS NOT NULL;
-- Each endpoint's pending deliveries, oldest due first: a claim reads a few per endpoint. It
-- replaces the global due index, which made a claim rank every due row of every endpoint.
CREATE INDEX webhook_deliveries_lane_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
DROP INDEX webhook_deliveries_due_idx;

-- The attempts failed in a row since failing_since (re-enabling an endpoint clears
-- failing_since, and with it the streak). Past a threshold the endpoint is not tried before
-- next_attempt_at, then one delivery at a time until one succeeds.
ALTER TABLE webhook_endpoints
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at      timestamptz;
