-- Sessions opened by following a signed pay link from an e-mail, reused while they are good.
ALTER TABLE checkout_sessions ADD COLUMN from_link boolean NOT NULL DEFAULT false;
CREATE INDEX checkout_sessions_invoice_idx ON checkout_sessions (invoice_id) WHERE from_link;
