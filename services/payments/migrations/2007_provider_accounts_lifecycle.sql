-- Provider accounts can be changed and deleted over the API. A deleted account leaves routing and
-- the API for good, but its row (and sealed credentials) stays: the payments made through it can
-- still be refunded and their late callbacks verified.
ALTER TABLE provider_accounts ADD COLUMN IF NOT EXISTS updated_at timestamptz;
ALTER TABLE provider_accounts ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
CREATE INDEX IF NOT EXISTS payment_methods_tenant_idx ON payment_methods (tenant_id, created_at DESC);
-- A confirmed callback's charge must be no other payment's (app/webhooks_in.py).
CREATE INDEX IF NOT EXISTS charge_jobs_provider_reference_idx ON charge_jobs (provider_reference)
    WHERE provider_reference IS NOT NULL AND provider_reference <> '';
