-- What dunning knows of each invoice's timing, projected from billing.invoices.
-- `version` is the invoice event's stream sequence: older or repeated events lose.
CREATE TABLE invoice_schedule (
    invoice_id text PRIMARY KEY,
    tenant_id  text        NOT NULL,
    status     text        NOT NULL,
    due_date   date        NOT NULL,
    amount_due bigint      NOT NULL,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX invoice_schedule_due_idx ON invoice_schedule (due_date) WHERE amount_due > 0;
