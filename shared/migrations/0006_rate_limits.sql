-- Token buckets for rate limits, in the database so every replica of a service shares them.
-- Kept apart per service database: each service limits the requests it serves.
CREATE TABLE rate_limits (
    bucket     text             PRIMARY KEY,  -- "key:<sha256 of the API key>" or "ip:<address>"
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL
);
CREATE INDEX rate_limits_updated_idx ON rate_limits (updated_at);
