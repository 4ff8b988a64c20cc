-- Read model behind GET /api/invoices, maintained by projections/invoice_list.py.
CREATE TABLE invoice_list (
    invoice_id  text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    customer_id text        NOT NULL,
    status      text        NOT NULL,
    currency    text        NOT NULL,
    total       bigint      NOT NULL,
    amount_due  bigint      NOT NULL,
    due_date    date        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    view        jsonb       NOT NULL
);
CREATE INDEX invoice_list_tenant_created_idx ON invoice_list (tenant_id, created_at DESC, invoice_id DESC);
CREATE INDEX invoice_list_tenant_status_idx ON invoice_list (tenant_id, status, created_at DESC);
CREATE INDEX invoice_list_tenant_customer_idx ON invoice_list (tenant_id, customer_id, created_at DESC);
