-- Webhook endpoints, and every delivery with each of its attempts. A delivery row is written
-- (with the consumer's inbox row) before any attempt, so a crash loses nothing.
CREATE TABLE webhook_endpoints (
    endpoint_id    text PRIMARY KEY,
    tenant_id      text        NOT NULL,
    url            text        NOT NULL,
    secret         text        NOT NULL,
    enabled_events text[]      NOT NULL,
    description    text,
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    delivery_id     text PRIMARY KEY,
    tenant_id       text        NOT NULL,
    endpoint_id     text        NOT NULL REFERENCES webhook_endpoints,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    correlation_id  text,
    status          text        NOT NULL DEFAULT 'pending',  -- pending | succeeded | failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id  text        NOT NULL REFERENCES webhook_deliveries,
    attempt      integer     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    latency_ms   integer     NOT NULL,
    error        text,
    PRIMARY KEY (delivery_id, attempt)
);
