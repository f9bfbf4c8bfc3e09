-- `count` counts every point, whatever its value's type (E3-US1 AC4, E3-US5).
--
-- The rollups hold numeric points only (count / sum / min / max / sketch), so a `count` answered from them
-- left out every string, boolean, JSON and geolocation point: a door sensor's `door_open` events counted to
-- no buckets at all. A count now adds to the rollups' numeric count the non-numeric points of the same range,
-- read from telemetry.points through these partial indexes (gateway/views/aggregates.py). They hold only the
-- non-numeric rows, so a numeric series (nearly every series) pays one empty index descent per partition on
-- read and nothing on write: the predicate is false for every numeric point the ingest transaction inserts.
--
-- Two key orders, as the rollups have: one series (and named devices) by (device, metric, time), every device
-- of a metric by (metric, time). The predicate is written as the queries write it, so that PostgreSQL proves
-- the index usable for them (also in a generic plan: it is a constant).
CREATE INDEX IF NOT EXISTS points_other_values ON telemetry.points (device_id, metric_name, time)
    WHERE value_type NOT IN (0, 1);
CREATE INDEX IF NOT EXISTS points_other_values_by_metric ON telemetry.points (metric_name, time)
    WHERE value_type NOT IN (0, 1);
