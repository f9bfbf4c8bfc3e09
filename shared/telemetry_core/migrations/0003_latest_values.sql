-- Read model: the newest point per (device, metric), and so the device's metric list.
CREATE TABLE telemetry.latest_values (
    device_id   text        NOT NULL,
    metric_name text        NOT NULL,
    time        timestamptz NOT NULL,
    value_type  smallint    NOT NULL,
    value_num   double precision,
    value_text  text,
    value_bool  boolean,
    value_json  json,      -- json, not jsonb: kept verbatim, so numbers read back as written
    unit        text,
    tags        jsonb,
    metadata    json,
    src_seq     bigint      NOT NULL,   -- POINTS sequence of the point, breaks ties of equal time
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, metric_name)
);
