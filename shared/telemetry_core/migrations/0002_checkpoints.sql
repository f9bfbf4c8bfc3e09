-- Projection checkpoints (and, later, alert-engine state): one shape so replay treats them alike.
CREATE TABLE telemetry.projection_checkpoints (
    projection text   NOT NULL,
    stream     text   NOT NULL,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream)
);
