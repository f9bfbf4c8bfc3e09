-- Read models of alerting (projection_worker) and the alert engine's own state (alert_worker).
CREATE TABLE telemetry.alert_rules (
    rule_id        text PRIMARY KEY,
    name           text        NOT NULL,
    metric_name    text        NOT NULL,
    level          text        NOT NULL,
    enabled        boolean     NOT NULL,
    spec           json        NOT NULL,   -- the RuleSpec as last created/updated (enabled kept in sync)
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    created_by     text        NOT NULL,
    total_triggers bigint      NOT NULL DEFAULT 0,
    last_triggered timestamptz
);
CREATE INDEX alert_rules_filters ON telemetry.alert_rules (metric_name, level, enabled);

CREATE TABLE telemetry.alerts (
    alert_id              text PRIMARY KEY,
    rule_id               text        NOT NULL,
    rule_name             text        NOT NULL,
    device_id             text        NOT NULL,
    metric_name           text        NOT NULL,
    level                 text        NOT NULL,
    status                text        NOT NULL,
    kind                  text        NOT NULL,
    message               text        NOT NULL,
    current_value         json,
    threshold_value       json,
    triggered_at          timestamptz NOT NULL,
    auto_resolve_at       timestamptz,
    acknowledged_at       timestamptz,
    acknowledged_by       text,
    acknowledgement_note  text,
    resolved_at           timestamptz,
    resolved_by           text,
    resolution_note       text,
    notification_channels jsonb       NOT NULL DEFAULT '[]'
);
CREATE INDEX alerts_newest ON telemetry.alerts (triggered_at DESC);
CREATE INDEX alerts_by_status ON telemetry.alerts (status, level);
CREATE INDEX alerts_by_rule ON telemetry.alerts (rule_id, triggered_at DESC);
CREATE INDEX alerts_by_device ON telemetry.alerts (device_id, triggered_at DESC);

-- The alert engine's state machines, per device partition; written in the same transaction as the
-- engine's checkpoint row in projection_checkpoints (projection = the engine's consumer name).
CREATE TABLE telemetry.alert_machines (
    partition  text NOT NULL,
    rule_id    text NOT NULL,
    device_id  text NOT NULL,
    state      json NOT NULL,
    PRIMARY KEY (partition, rule_id, device_id)
);

-- Heartbeats of running engine copies: which rule events each has applied (for read-your-writes of
-- rule changes) and when it last looked at the clock (for /health/detailed).
CREATE TABLE telemetry.alert_engines (
    partition    text PRIMARY KEY,
    rules_seq    bigint      NOT NULL DEFAULT 0,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    late_points  bigint      NOT NULL DEFAULT 0
);
