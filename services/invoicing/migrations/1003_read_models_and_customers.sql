-- Read models are written twice: in the command's transaction (read-your-writes) and again by
-- the projection runner, in commit order. Each row keeps the stream version it shows, so
-- whichever write comes second cannot take a row back to an older state; a deletion keeps its
-- row as a tombstone (`deleted`, hidden from the lists) for the same reason.
ALTER TABLE invoice_list ADD COLUMN version integer NOT NULL DEFAULT 0,
                         ADD COLUMN deleted boolean NOT NULL DEFAULT false;
ALTER TABLE customer_list ADD COLUMN version integer NOT NULL DEFAULT 0,
                          ADD COLUMN deleted boolean NOT NULL DEFAULT false;

-- Customers: the tenant's own id (unique per tenant, like an invoice's reference), country and
-- phone; the list filters on externalId, country and currency.
CREATE TABLE customer_external_ids (
    tenant_id   text NOT NULL,
    external_id text NOT NULL,
    customer_id text NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, external_id)
);
ALTER TABLE customer_list ADD COLUMN external_id text, ADD COLUMN country text, ADD COLUMN currency text;
UPDATE customer_list SET currency = view->>'currency';
CREATE INDEX customer_list_external_idx ON customer_list (tenant_id, external_id);

-- Offline payments (mark-paid, record-payment) and whether payments has recorded the `manual`
-- payment behind each (payment.succeeded came back): the call answers once it has, so the
-- payment list shows it right after, and deletes the row. A row left behind is a call that gave
-- up waiting (payments or Kafka away): tenant, invoice and time say which, for an operator.
CREATE TABLE offline_payments (
    payment_id  text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    invoice_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    recorded_at timestamptz
);
