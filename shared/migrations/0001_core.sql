-- The event-sourcing core every service database has: event store, outbox, inbox,
-- projection checkpoints, dead letters, and the API keys projected from billing.tenants.

-- Append-only event store. (stream_id, version) is unique: the optimistic concurrency guard.
-- position is assigned under an advisory lock held to commit, so it follows commit order.
CREATE TABLE events (
    position    bigserial PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE,
    stream_id   text        NOT NULL,
    stream_type text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    event_type  text        NOT NULL,
    tenant_id   text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    envelope    jsonb       NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_tenant_type_idx ON events (tenant_id, event_type);

-- Transactional outbox: written with the events, published to Kafka by the relay.
CREATE TABLE outbox (
    position     bigserial PRIMARY KEY,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (position) WHERE published_at IS NULL;

-- Consumer inbox: one row per (consumer, event) processed, written in the handler's transaction.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Messages a consumer could not accept (malformed, or failing after every retry).
CREATE TABLE dead_letters (
    id         bigserial PRIMARY KEY,
    consumer   text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer,
    "offset"   bigint,
    event_id   text,
    payload    bytea       NOT NULL,
    error      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Where each projection has read the event store up to; updated with its rows.
CREATE TABLE projection_checkpoints (
    name       text PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Tenants and API keys, projected from billing.tenants (keys only as SHA-256 hashes).
CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,
    tenant_id  text        NOT NULL,
    key_hash   text        NOT NULL UNIQUE,
    prefix     text        NOT NULL,
    mode       text        NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
