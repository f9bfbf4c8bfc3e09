-- What each retention run removed (telemetry_core/retention.py): the job's report, besides its log line and
-- the /metrics counters, so an operator can see when it last ran and what it did. One row per run that held
-- the retention lock; a run that found the lock taken by another worker records nothing.
CREATE TABLE telemetry.retention_runs (
    run_id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL,
    dry_run            boolean     NOT NULL,
    partitions_dropped integer     NOT NULL,
    points_deleted     bigint      NOT NULL,   -- rows of dropped partitions plus rows deleted in chunks
    rollup_rows_deleted bigint     NOT NULL,
    host               text        NOT NULL
);
CREATE INDEX retention_runs_newest ON telemetry.retention_runs (started_at DESC);
