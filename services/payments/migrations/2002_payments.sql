-- Payments' own state. Payments themselves are event streams (events table, stream type
-- 'payment'); these tables are read models, work queues and provider configuration.

-- The invoice snapshot from billing.invoices (docs/events.md) and the fields collection uses.
ALTER TABLE payable_invoices
    ADD COLUMN snapshot               jsonb,
    ADD COLUMN allow_partial_payments boolean NOT NULL DEFAULT false,
    ADD COLUMN auto_collection        boolean NOT NULL DEFAULT false;

-- Our payments that invoicing has counted (invoice.payment_received carries the paymentId):
-- the remaining balance is the snapshot's amountDue less our payments not counted yet.
CREATE TABLE invoice_payment_acks (
    invoice_id text NOT NULL,
    payment_id text NOT NULL,
    PRIMARY KEY (invoice_id, payment_id)
);

-- Every payment of an invoice with its current status, written in the same transaction as the
-- payment's events (not a lagging projection): what is paid or in flight when deciding how much
-- more can be collected.
CREATE TABLE invoice_payments (
    payment_id text PRIMARY KEY,
    invoice_id text        NOT NULL,
    tenant_id  text        NOT NULL,
    amount     bigint      NOT NULL,
    status     text        NOT NULL
);
CREATE INDEX invoice_payments_invoice_idx ON invoice_payments (invoice_id);

-- Read model behind GET /api/payments (projections/payment_list.py).
CREATE TABLE payment_list (
    payment_id  text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    invoice_id  text        NOT NULL,
    customer_id text,
    status      text        NOT NULL,
    provider    text        NOT NULL,
    amount      bigint      NOT NULL,
    currency    text        NOT NULL,
    version     integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    view        jsonb       NOT NULL
);
CREATE INDEX payment_list_tenant_created_idx ON payment_list (tenant_id, created_at DESC, payment_id DESC);
CREATE INDEX payment_list_invoice_idx ON payment_list (invoice_id);

-- A tenant's accounts at payment providers; credentials encrypted (Fernet) with the
-- service's key. `currencies` empty = any currency; lower priority wins.
CREATE TABLE provider_accounts (
    account_id  text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    provider    text        NOT NULL,
    currencies  text[]      NOT NULL DEFAULT '{}',
    priority    integer     NOT NULL DEFAULT 100,
    credentials bytea       NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_accounts_tenant_idx ON provider_accounts (tenant_id, provider);

-- Saved payment methods: the provider's reusable token, encrypted.
CREATE TABLE payment_methods (
    method_id   text PRIMARY KEY,
    tenant_id   text        NOT NULL,
    customer_id text        NOT NULL,
    provider    text        NOT NULL,
    type        text        NOT NULL,
    label       text        NOT NULL,
    token       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    detached_at timestamptz
);
CREATE INDEX payment_methods_customer_idx ON payment_methods (tenant_id, customer_id, created_at DESC);

-- Charges to send to a provider, written with payment.created. The worker sends each with the
-- same idempotency key until the provider answers, so a crash or timeout never charges twice.
CREATE TABLE charge_jobs (
    payment_id      text PRIMARY KEY,
    tenant_id       text        NOT NULL,
    account_id      text,
    method_id       text,
    instrument      bytea,
    idempotency_key text        NOT NULL,
    provider_reference text,  -- once the provider took the charge: later runs only look it up
    done            boolean     NOT NULL DEFAULT false,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charge_jobs_due_idx ON charge_jobs (next_attempt_at) WHERE NOT done;

-- Provider webhook events already applied: a redelivered callback is a no-op.
CREATE TABLE provider_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    payment_id  text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Hosted checkout links (/pay/{token}).
CREATE TABLE checkout_sessions (
    session_id text PRIMARY KEY,
    token      text        NOT NULL UNIQUE,
    tenant_id  text        NOT NULL,
    invoice_id text        NOT NULL,
    return_url text,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The sandbox provider's own ledger (it stands in for a provider's systems; see providers/sandbox_server.py).
CREATE TABLE sandbox_charges (
    charge_id       text PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    reference       text        NOT NULL,
    amount          bigint      NOT NULL,
    currency        text        NOT NULL,
    instrument_type text        NOT NULL,
    instrument      text        NOT NULL,
    outcome         text        NOT NULL,  -- succeeded | failed, known once settles_at passes
    failure_code    text,
    settles_at      timestamptz NOT NULL,
    amount_refunded bigint      NOT NULL DEFAULT 0,
    callback_url    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_charges_instrument_idx ON sandbox_charges (instrument, reference);
CREATE TABLE sandbox_refunds (
    refund_id       text PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    charge_id       text        NOT NULL,
    amount          bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sandbox_callbacks (
    id           bigserial PRIMARY KEY,
    url          text        NOT NULL,
    body         bytea       NOT NULL,
    due_at       timestamptz NOT NULL,
    delivered_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX sandbox_callbacks_due_idx ON sandbox_callbacks (due_at) WHERE delivered_at IS NULL;
