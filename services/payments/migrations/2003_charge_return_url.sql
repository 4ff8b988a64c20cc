-- Where a provider with its own hosted form sends the customer back (the hosted page's status URL).
ALTER TABLE charge_jobs ADD COLUMN return_url text;
