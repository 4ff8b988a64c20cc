-- Provider callbacks are deduplicated per account: two accounts' event ids can collide (Paystack's
-- are built from its transaction id and our reference), and an event verified by one account
-- must never hide another account's. Rows from before are credited to the account their payment
-- was charged through (none recorded: the installation's sandbox), so a callback redelivered after
-- the upgrade is still a duplicate; rows for no charge of ours get '' (such callbacks are ignored).
ALTER TABLE provider_events ADD COLUMN IF NOT EXISTS account_id text;
UPDATE provider_events e SET account_id = coalesce(c.account_id, 'default:sandbox')
  FROM charge_jobs c WHERE e.account_id IS NULL AND c.payment_id = e.payment_id;
UPDATE provider_events SET account_id = '' WHERE account_id IS NULL;
ALTER TABLE provider_events ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE provider_events DROP CONSTRAINT IF EXISTS provider_events_pkey;
ALTER TABLE provider_events ADD PRIMARY KEY (provider, account_id, event_id);
