-- Additive rollups (0013) update rollup_hour rows in place in every ingest transaction, and 0013 left room
-- for it (fillfactor 70) so those updates could be HOT: no new index entries, no index bloat. 0014's
-- covering index INCLUDEd count / sum / min / max — columns every such update changes — and PostgreSQL
-- cannot make an update HOT when any indexed column, included ones too, changes: measured 0 of 58,000
-- rollup_hour updates HOT with it, 57,899 of 58,000 without it (same writes, one connection).
-- Its readers (the metric-hour recompute in the rollups projection, cross-device statements) read the
-- same rows through a plain (metric, hour) index and the heap instead.
DROP INDEX IF EXISTS telemetry.rollup_hour_by_metric_covering;
CREATE INDEX IF NOT EXISTS rollup_hour_by_metric ON telemetry.rollup_hour (metric_name, bucket);
