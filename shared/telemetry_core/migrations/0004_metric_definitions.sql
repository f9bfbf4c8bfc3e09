-- Read model: current metric definitions, built from telemetry.events.metric.* events.
CREATE TABLE telemetry.metric_definitions (
    name                 text PRIMARY KEY,
    metric_id            text        NOT NULL,
    description          text,
    data_type            text        NOT NULL,
    metric_type          text        NOT NULL,
    unit                 text,
    min_value            double precision,
    max_value            double precision,
    retention_days       integer     NOT NULL,
    aggregation_interval integer     NOT NULL,
    tags                 jsonb       NOT NULL DEFAULT '[]',
    metadata             json        NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    created_by           text        NOT NULL
);
CREATE INDEX metric_definitions_types ON telemetry.metric_definitions (data_type, metric_type);
