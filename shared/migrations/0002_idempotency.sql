-- Idempotency-Key: the first answer to a POST, replayed for a retry with the same key and body.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,  -- SHA-256 of the API key: keys never cross tenants
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer,               -- null while the first request is still running
    body         bytea,
    content_type text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
