-- Refunds to send to a provider, written before the call: a crash between the provider's refund
-- and payment.refunded is finished by the worker with the same idempotency key, and amounts
-- still in flight count against what can be refunded.
CREATE TABLE refund_jobs (
    refund_id       text PRIMARY KEY,
    payment_id      text        NOT NULL,
    tenant_id       text        NOT NULL,
    amount          bigint      NOT NULL,
    reason          text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending',  -- pending | succeeded | refused
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_jobs_payment_idx ON refund_jobs (payment_id);
CREATE INDEX refund_jobs_due_idx ON refund_jobs (next_attempt_at) WHERE state = 'pending';
