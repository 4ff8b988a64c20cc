-- Durable timers, in each service's own database (shared/timers.py). A key names a timer for
-- good: scheduling it again moves it while pending and does nothing once it fired, so a
-- redelivered event or a replayed command never fires the same thing twice.
CREATE TABLE durable_timers (
    key          text PRIMARY KEY,
    tenant_id    text        NOT NULL,
    kind         text        NOT NULL,
    subject      text        NOT NULL,  -- the aggregate it acts on
    fire_at      timestamptz NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}',
    attempts     integer     NOT NULL DEFAULT 0,
    retry_at     timestamptz,  -- after a failure: not before this (real time)
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_at     timestamptz,
    cancelled_at timestamptz
);
CREATE INDEX durable_timers_due_idx ON durable_timers (fire_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX durable_timers_subject_idx ON durable_timers (subject, fire_at, key)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX durable_timers_tenant_idx ON durable_timers (tenant_id, fire_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- A test world with a test clock lives at frozen_time instead of the real time, in every service:
-- each keeps this row from the clock's events on billing.tenants. `version` orders them.
CREATE TABLE tenant_clocks (
    tenant_id   text PRIMARY KEY,
    frozen_time timestamptz NOT NULL,
    version     bigint      NOT NULL
);
