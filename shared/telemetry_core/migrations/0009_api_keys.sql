-- Read model: API keys, built from telemetry.events.apikey.* events (projection api_keys).
-- Only the SHA-256 digest of a key is stored; gateways authenticate from their in-memory copy of the
-- same events, so this table serves `telemetry apikey list` and audits, not the request path.
CREATE TABLE telemetry.api_keys (
    key_id     text PRIMARY KEY,
    name       text        NOT NULL,
    scope      text        NOT NULL,
    digest     text        NOT NULL UNIQUE,
    devices    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    revoked_at timestamptz,
    revoked_by text
);
