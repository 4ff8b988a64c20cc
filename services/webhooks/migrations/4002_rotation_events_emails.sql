-- Secret rotation, automatic disabling, replay, and customer e-mails.

-- The previous secret stays valid (deliveries are signed with both) until it expires.
-- failing_since is when the current run of failed attempts began; a success clears it.
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret            text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN failing_since              timestamptz,
    ADD COLUMN disabled_at                timestamptz,
    ADD COLUMN disabled_reason            text,
    ADD COLUMN updated_at                 timestamptz NOT NULL DEFAULT now();

-- A manual retry or resend starts the retry schedule again from this attempt count.
ALTER TABLE webhook_deliveries ADD COLUMN schedule_start integer NOT NULL DEFAULT 0;
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (tenant_id, event_id);

ALTER TABLE webhook_attempts ADD COLUMN response_body text;

-- Every public event received, as subscribers get it, so it can be resent later.
CREATE TABLE webhook_events (
    event_id       text PRIMARY KEY,
    tenant_id      text        NOT NULL,
    event_type     text        NOT NULL,
    payload        text        NOT NULL,
    correlation_id text,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_tenant_idx ON webhook_events (tenant_id, occurred_at DESC);

-- The latest invoice snapshot seen on billing.invoices (for dunning reminders, which carry
-- only the invoice id). version = the event's sequence, so older or repeated events lose.
CREATE TABLE invoice_snapshots (
    invoice_id text PRIMARY KEY,
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL,
    snapshot   jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Customer e-mails: rendered and recorded in the consumer's transaction, sent by the mailer.
CREATE TABLE customer_emails (
    email_id        text PRIMARY KEY,
    tenant_id       text        NOT NULL,
    event_id        text        NOT NULL,
    kind            text        NOT NULL,
    invoice_id      text,
    recipient       text        NOT NULL,
    sender          text        NOT NULL,
    subject         text        NOT NULL,
    text_body       text        NOT NULL,
    html_body       text        NOT NULL,
    attachment_url  text,
    attachment_name text,
    correlation_id  text,
    status          text        NOT NULL DEFAULT 'pending',  -- pending | sent | failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (event_id, kind)
);
CREATE INDEX customer_emails_due_idx ON customer_emails (next_attempt_at) WHERE status = 'pending';
CREATE INDEX customer_emails_invoice_idx ON customer_emails (tenant_id, invoice_id);
