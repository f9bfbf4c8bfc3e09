-- Online replay (projection_worker/online_replay.py) builds a read model's new tables here, beside the live
-- ones, then swaps them in with ALTER TABLE ... SET SCHEMA in one transaction. Empty between replays.
CREATE SCHEMA IF NOT EXISTS telemetry_replay;
