-- Idempotency claims are short leases, renewed while the request runs, so a claim dies with its
-- process; `committed` is set in the transaction that commits the request's work, so a retry
-- never runs work twice. `claim` names the holder, so a slow holder cannot overwrite a takeover.
-- Scope is now tenant and key mode (not the key's hash): replays need a valid key of that tenant.
ALTER TABLE idempotency_keys
    ADD COLUMN claim       uuid,
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT now(),  -- existing claims: expired at once
    ADD COLUMN committed   boolean     NOT NULL DEFAULT false;
