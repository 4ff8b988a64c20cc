-- Numbering, references, and the read models of the full invoicing API.

-- Per-tenant, per-year counters for INV-2026-000123 and CN-2026-000001 (row lock = no gaps).
CREATE TABLE document_sequences (
    tenant_id  text    NOT NULL,
    kind       text    NOT NULL,
    year       integer NOT NULL,
    last_value bigint  NOT NULL,
    PRIMARY KEY (tenant_id, kind, year)
);
-- Every number in use, assigned or imported: a duplicate is refused.
CREATE TABLE document_numbers (
    tenant_id text NOT NULL,
    number    text NOT NULL,
    PRIMARY KEY (tenant_id, number)
);
CREATE TABLE invoice_references (
    tenant_id  text NOT NULL,
    reference  text NOT NULL,
    invoice_id text NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, reference)
);

-- The list read model, now from each event's invoice snapshot (rebuilt from the store).
DROP TABLE invoice_list;
DELETE FROM projection_checkpoints WHERE name = 'invoice_list';
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE invoice_list (
    invoice_id     text PRIMARY KEY,
    tenant_id      text        NOT NULL,
    number         text,
    status         text        NOT NULL,
    customer_id    text,
    customer_name  text,
    customer_email text,
    reference      text,
    currency       text        NOT NULL,
    total          bigint      NOT NULL,
    amount_paid    bigint      NOT NULL,
    amount_due     bigint      NOT NULL,
    due_date       date,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    search         text        NOT NULL,  -- lower-cased customer name, email, number, reference
    view           jsonb       NOT NULL
);
CREATE INDEX invoice_list_created_idx ON invoice_list (tenant_id, created_at DESC, invoice_id DESC);
CREATE INDEX invoice_list_status_idx ON invoice_list (tenant_id, status, created_at DESC, invoice_id DESC);
CREATE INDEX invoice_list_customer_idx ON invoice_list (tenant_id, customer_id, created_at DESC);
CREATE INDEX invoice_list_email_idx ON invoice_list (tenant_id, customer_email);
CREATE INDEX invoice_list_due_idx ON invoice_list (tenant_id, due_date);
CREATE INDEX invoice_list_total_idx ON invoice_list (tenant_id, total);
CREATE INDEX invoice_list_search_idx ON invoice_list USING gin (search gin_trgm_ops);

CREATE TABLE customer_list (
    customer_id text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL,
    search      text        NOT NULL,
    view        jsonb       NOT NULL
);
CREATE INDEX customer_list_created_idx ON customer_list (tenant_id, created_at DESC, customer_id DESC);
CREATE INDEX customer_list_search_idx ON customer_list USING gin (search gin_trgm_ops);

CREATE TABLE credit_notes (
    credit_note_id text PRIMARY KEY,
    tenant_id      text        NOT NULL,
    invoice_id     text        NOT NULL,
    created_at     timestamptz NOT NULL,
    view           jsonb       NOT NULL
);
CREATE INDEX credit_notes_tenant_idx ON credit_notes (tenant_id, created_at DESC);
CREATE INDEX credit_notes_invoice_idx ON credit_notes (invoice_id);

-- Dunning status per invoice, from billing.dunning snapshots (newest sequence wins).
CREATE TABLE invoice_dunning (
    invoice_id    text PRIMARY KEY,
    tenant_id     text        NOT NULL,
    status        text        NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    next_retry_at text,
    version       integer     NOT NULL
);
