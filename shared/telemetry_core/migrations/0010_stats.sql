-- Statistics (E6-US1/US2): read models kept by the device_stats and dead_letter_stats projections.
--
-- Exactness comes from the write: the ingest worker knows, per row, whether its upsert inserted the
-- point or overwrote one, and its PointsStored notice carries the number of *new* points per metric
-- and hour. first_seq is the POINTS sequence of the message that first inserted a row (never updated
-- by an overwrite), so a message redelivered after a crash between commit and notice still reports its
-- own inserts (its notice has the same Nats-Msg-Id, so a notice already published is dropped).
-- Nullable without default: adding it rewrites nothing; rows from before it count as "not inserted now".
ALTER TABLE telemetry.points ADD COLUMN IF NOT EXISTS first_seq bigint;

-- One row per (device, metric) ever stored.
CREATE TABLE telemetry.stats_series (
    device_id      text        NOT NULL,
    metric_name    text        NOT NULL,
    points         bigint      NOT NULL,   -- distinct stored points: inserts count, overwrites do not
    last_time      timestamptz NOT NULL,   -- newest point timestamp
    last_stored_at timestamptz NOT NULL,   -- when a point of the series was last written (insert or overwrite)
    PRIMARY KEY (device_id, metric_name)
);
CREATE INDEX stats_series_stored ON telemetry.stats_series (last_stored_at);
CREATE INDEX stats_series_metric ON telemetry.stats_series (metric_name);

-- Distinct points per (device, metric) and UTC hour of the point's timestamp.
CREATE TABLE telemetry.stats_hour (
    device_id   text        NOT NULL,
    metric_name text        NOT NULL,
    hour        timestamptz NOT NULL,
    points      bigint      NOT NULL,
    PRIMARY KEY (device_id, metric_name, hour)
);

-- The same per hour for the whole service (so service stats read 24 rows, not one per series and hour).
CREATE TABLE telemetry.stats_service_hour (
    hour   timestamptz PRIMARY KEY,
    points bigint      NOT NULL
);

-- Per UTC minute of storing: POINTS messages committed, points they wrote (overwrites included), and the
-- sum of their accept -> stored latencies (JetStream acceptance to the ingest worker's commit).
CREATE TABLE telemetry.stats_ingest_minute (
    minute             timestamptz PRIMARY KEY,
    messages           bigint           NOT NULL,
    points             bigint           NOT NULL,
    latency_messages   bigint           NOT NULL,
    latency_ms_sum     double precision NOT NULL
);

-- Dead letters per UTC minute and worker (the dead_letter_stats projection's table).
CREATE TABLE telemetry.stats_dead_letter_minute (
    minute  timestamptz NOT NULL,
    worker  text        NOT NULL,
    letters bigint      NOT NULL,
    PRIMARY KEY (minute, worker)
);

-- Start from the points already stored (their notices carry no insert counts, so replaying them adds nothing).
INSERT INTO telemetry.stats_series (device_id, metric_name, points, last_time, last_stored_at)
SELECT device_id, metric_name, count(*), max(time), now() FROM telemetry.points GROUP BY 1, 2;
INSERT INTO telemetry.stats_hour (device_id, metric_name, hour, points)
SELECT device_id, metric_name, date_trunc('hour', time, 'UTC'), count(*) FROM telemetry.points GROUP BY 1, 2, 3;
INSERT INTO telemetry.stats_service_hour (hour, points)
SELECT date_trunc('hour', time, 'UTC'), count(*) FROM telemetry.points GROUP BY 1;
