"""`telemetry replay points --since <time|seq>`: re-persist points from POINTS, e.g. after a database restore.

Reads POINTS from the given stream sequence or time with an ephemeral consumer (the ingest worker's durable
consumer is not touched, so the service keeps running) and writes every admitted (signed) message's points
with the ingest worker's own upsert: a point is only replaced by a write from later in the stream
(``src_seq``), so replaying is idempotent and later-wins holds whatever else is being written meanwhile.
Unsigned messages are skipped: the ingest worker admitted them by re-publishing their good points signed,
and those copies are in the stream too.

Notices are published for what was written (under fresh message ids, so JetStream's de-duplication of the
originals does not drop them): latest values and rollups catch up as they would live. The statistics are
not changed (the notices carry no new-point counts): after a restore, `telemetry replay device_stats`
recounts them from NOTICES.

The horizon is the POINTS stream's max age (``TELEMETRY_POINTS_MAX_AGE``, 7 days by default): points older
than that are only in the database and its backups.
"""

import asyncio
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import psycopg
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ingest_worker.notices import build_notice, publish_notices
from ingest_worker.rows import RowSet
from ingest_worker.storing import announce_storing
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_conn import connect
from telemetry_core.points_validator import Accepted, consumer_validator
from telemetry_core.settings import Settings
from telemetry_core.topology import POINTS_ALL, POINTS_STREAM

FETCH = 500
# How many of a batch's (device, metric, time) keys the database already has (the rest were missing).
_EXISTING = """
SELECT count(*) FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS k(d, m, t)
JOIN telemetry.points p ON p.device_id = k.d AND p.metric_name = k.m AND p.time = k.t
"""
PROGRESS_EVERY_S = 2.0


@dataclass
class PointsReplay:
    """What a points replay did."""

    messages: int = 0
    skipped: int = 0  # unsigned or unreadable messages
    points: int = 0
    inserted: int = 0  # of those, points the database did not have
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        rate = self.points / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replay points: {self.points} point(s) from {self.messages} message(s) re-persisted "
            f"({self.inserted} were missing, {self.skipped} unsigned message(s) skipped) in {self.seconds:.2f} s "
            f"({rate:,.0f} points/s)"
        )


def parse_since(text: str) -> tuple[int | None, datetime | None]:
    """``--since``: a stream sequence (digits) or an RFC 3339 time with zone."""
    if re.fullmatch(r"[0-9]+", text):
        return max(1, int(text)), None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"--since {text!r}: give a POINTS sequence number or an RFC 3339 time") from None
    if at.tzinfo is None:
        raise ConfigurationError(f"--since {text!r}: the time needs a zone (Z or +hh:mm)")
    return None, at


async def replay_points(settings: Settings, since: str, *, out: TextIO | None = sys.stderr) -> PointsReplay:
    """Re-persist POINTS from ``since`` up to the stream's end as it was when this started."""
    nats_url, database_url = settings.require_servers()
    seq, at = parse_since(since)
    nc = await connect(nats_url, "telemetry-replay-points", structlog.get_logger(), max_wait_s=5)
    js = nc.jetstream()
    result, started, last_report = PointsReplay(), time.monotonic(), time.monotonic()
    validator = consumer_validator(settings.require_signing_key())
    run = secrets.token_hex(4)
    name = f"replay_points_{run}"
    try:
        end = (await js.stream_info(POINTS_STREAM)).state.last_seq
        config = ConsumerConfig(
            name=name, filter_subject=POINTS_ALL, ack_policy=AckPolicy.NONE, inactive_threshold=120.0,
            mem_storage=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE if seq else DeliverPolicy.BY_START_TIME,
            opt_start_seq=seq, opt_start_time=at,
        )  # fmt: skip
        await js.add_consumer(POINTS_STREAM, config)
        sub = await js.pull_subscribe_bind(consumer=name, stream=POINTS_STREAM)
        partitions = PartitionCache()
        done = False
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while not done:
                try:
                    msgs = await sub.fetch(FETCH, timeout=1.0)
                except TimeoutError:
                    break
                rows, stored = RowSet(), []
                for msg in msgs:
                    s = msg.metadata.sequence.stream
                    if s > end:
                        done = True
                        break
                    result.messages += 1
                    verdict = validator.accepted(msg)
                    if not isinstance(verdict, Accepted) or not verdict.points:
                        result.skipped += verdict is None
                        continue
                    for point in verdict.points:
                        rows.add(verdict.device_id, point, s)
                    stored.append((verdict.device_id, s, verdict.points))
                    done = done or s >= end
                if len(rows):
                    await partitions.ensure(conn, rows.days())
                    batch = rows.latest()  # one row per key: _EXISTING and the counts below count keys
                    await announce_storing(nc, stored)  # the gateways' query caches, before the commit
                    async with conn.transaction():
                        cur = await conn.execute(_EXISTING, [list(c) for c in list(zip(*batch, strict=True))[:3]])
                        existing = (await cur.fetchone() or (0,))[0]
                        await write_rows(conn, batch)
                    result.points += len(batch)
                    result.inserted += len(batch) - int(existing)
                    # Without new-point counts: the statistics are left as they are (the upsert cannot tell a
                    # replayed point from a new one); `telemetry replay device_stats` recounts from NOTICES.
                    # write_rows merged the rollups in that transaction, as the ingest worker's does.
                    notices = [build_notice(d, s, pts, rollups_applied=True) for d, s, pts in stored]
                    await publish_notices(js, notices, id_prefix=f"replayed:{run}")
                if out is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    out.write(f"replay points: {result.messages} message(s), {result.points} point(s) …\n")
                    out.flush()
                done = done or msgs[-1].metadata.num_pending == 0
        await sub.unsubscribe()
        await js.delete_consumer(POINTS_STREAM, name)
    finally:
        await nc.close()
    result.seconds = time.monotonic() - started
    return result


def main(since: str) -> None:
    """Entry point."""
    print(asyncio.run(replay_points(Settings.from_env(os.environ), since)).summary())
