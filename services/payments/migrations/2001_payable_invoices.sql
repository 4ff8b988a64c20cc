-- The invoices payments can collect, projected from billing.invoices (never from invoicing's
-- database). `version` is the invoice event's stream sequence: older or repeated events lose.
CREATE TABLE payable_invoices (
    invoice_id  text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    customer_id text        NOT NULL,
    status      text        NOT NULL,
    currency    text        NOT NULL,
    total       bigint      NOT NULL,
    amount_due  bigint      NOT NULL,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX payable_invoices_tenant_idx ON payable_invoices (tenant_id, invoice_id);
