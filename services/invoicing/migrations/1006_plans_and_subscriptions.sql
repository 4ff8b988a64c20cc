-- Plans (stream type "plan", published on billing.subscriptions): each tenant's plan codes are
-- unique, and the list is written in each command's transaction and again by the runner, a row
-- only moving to a later stream version (a deletion stays as a tombstone).
CREATE TABLE plan_codes (
    tenant_id text NOT NULL,
    code      text NOT NULL,
    plan_id   text NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, code)
);
CREATE TABLE plan_list (
    plan_id    text PRIMARY KEY,
    tenant_id  text        NOT NULL,
    code       text        NOT NULL,
    name       text        NOT NULL,
    interval   text        NOT NULL,
    is_active  boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    search     text        NOT NULL,
    view       jsonb       NOT NULL,
    version    integer     NOT NULL,
    deleted    boolean     NOT NULL DEFAULT false
);
CREATE INDEX plan_list_tenant_idx ON plan_list (tenant_id, created_at DESC, plan_id DESC);

-- Subscriptions, listed by status, customer and plan. A plan cannot be deleted while any
-- subscription runs on it or is to move to it (next_plan_id: a change at period end).
CREATE TABLE subscription_list (
    subscription_id    text PRIMARY KEY,
    tenant_id          text        NOT NULL,
    customer_id        text        NOT NULL,
    plan_id            text        NOT NULL,
    next_plan_id       text,
    status             text        NOT NULL,
    currency           text        NOT NULL,
    current_period_end timestamptz,
    created_at         timestamptz NOT NULL,
    view               jsonb       NOT NULL,
    version            integer     NOT NULL
);
CREATE INDEX subscription_list_tenant_idx ON subscription_list (tenant_id, created_at DESC, subscription_id DESC);
CREATE INDEX subscription_list_customer_idx ON subscription_list (tenant_id, customer_id);
CREATE INDEX subscription_list_plan_idx ON subscription_list (plan_id);
