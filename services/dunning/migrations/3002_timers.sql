-- Durable timers, tenant policies and sandbox test clocks.

-- A payment event can reach dunning before the invoice's own events: the row then starts as a
-- placeholder (status UNKNOWN, version 0) that the first invoice snapshot fills in. It is also
-- the per-invoice lock that serialises consumers, the API and the timer engine.
ALTER TABLE invoice_schedule ALTER COLUMN due_date DROP NOT NULL;
ALTER TABLE invoice_schedule ADD COLUMN paid_in_full boolean NOT NULL DEFAULT false;

-- One row per timer. (invoice_id, key) is unique, so a timer that fired never fires again,
-- whatever is redelivered or replanned. Pending = neither fired nor cancelled.
CREATE TABLE timers (
    id             bigserial PRIMARY KEY,
    tenant_id      text        NOT NULL,
    invoice_id     text        NOT NULL REFERENCES invoice_schedule (invoice_id),
    kind           text        NOT NULL CHECK (kind IN ('overdue', 'retry', 'reminder')),
    key            text        NOT NULL,
    priority       smallint    NOT NULL,
    fire_at        timestamptz NOT NULL,
    payload        jsonb       NOT NULL DEFAULT '{}',
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    fired_at       timestamptz,
    cancelled_at   timestamptz,
    UNIQUE (invoice_id, key)
);
CREATE INDEX timers_pending_idx ON timers (fire_at, priority, id)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX timers_tenant_pending_idx ON timers (tenant_id, fire_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;

CREATE TABLE dunning_policies (
    tenant_id  text PRIMARY KEY,
    policy     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A sandbox tenant with a test clock lives at frozen_time instead of the real time; advancing
-- it through the API fires whatever falls due on the way.
CREATE TABLE test_clocks (
    id          text PRIMARY KEY,
    tenant_id   text        NOT NULL UNIQUE,
    name        text,
    frozen_time timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
