"""Retention: remove raw points older than their metric's ``retention_days`` and rollups older than theirs.

Points live in one partition per UTC day (migration 0001). A partition whose last instant is older than the
*longest* retention in force (every defined metric's ``retention_days`` and, for metrics without a
definition, ``TELEMETRY_RETENTION_DEFAULT_DAYS``) holds only expired points whatever metrics it has, so it is
dropped whole: no row is read. Otherwise each group of metrics sharing a cutoff is deleted from each
partition that starts before that cutoff, in chunks of ``TELEMETRY_RETENTION_CHUNK`` rows, each chunk its own
transaction (short locks, bounded WAL), walking the primary key so the whole pass reads each row once.

Rollups (``rollup_minute``, ``rollup_hour`` and the hours' pending sketches, ``rollup_hour_pending``) have their
own retention, ``TELEMETRY_ROLLUP_RETENTION_DAYS`` (730 by default: longer than the raw default, so long ranges keep
answering from rollups after raw points are gone). Read models built from notices are not touched:
``latest_values`` keeps a device's last known value after its points expire (it is a summary of what was received,
like the stats counters, and a replay from NOTICES rebuilds it the same), and the statistics count points
received, not points still stored.

The job is idempotent (it removes what is expired now; a second run finds nothing) and safe on several
workers at once: a run holds a session advisory lock for its whole length and a run that cannot take it
returns at once with ``skipped=True``. Each run that did anything is logged, counted on /metrics and
recorded in ``telemetry.retention_runs``.
"""

import re
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import Counter
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from telemetry_core.metrics import WORKER_REGISTRY
from telemetry_core.settings import Settings

# Any fixed number, distinct from the migration (7218001) and partition (7218002) locks.
RETENTION_LOCK = 7_218_015
_PARTITION_NAME = re.compile(r"^points_p(\d{8})$")
# A partition DROP needs a short exclusive lock on the parent; never queue behind a long query for it.
_LOCK_TIMEOUT = "5s"

RETENTION_POINTS = Counter(
    "telemetry_retention_points_deleted",
    "Raw points removed by the retention job, by how: partition (dropped whole) or chunk (deleted rows).",
    ["how"],
    registry=WORKER_REGISTRY,
)
RETENTION_PARTITIONS = Counter(
    "telemetry_retention_partitions_dropped", "Day partitions of points dropped whole.", registry=WORKER_REGISTRY
)
RETENTION_ROLLUPS = Counter(
    "telemetry_retention_rollup_rows_deleted", "Rollup rows removed by the retention job.", registry=WORKER_REGISTRY
)
RETENTION_RUNS = Counter(
    "telemetry_retention_runs", "Retention runs, by outcome: done, skipped (lock held elsewhere).",
    ["outcome"], registry=WORKER_REGISTRY,
)  # fmt: skip


@dataclass
class RetentionReport:
    """What one run removed (or, dry, would remove)."""

    dry_run: bool = False
    skipped: bool = False
    partitions_dropped: list[str] = field(default_factory=list)
    points_in_dropped: int = 0
    points_deleted_in_chunks: int = 0
    rollup_rows_deleted: int = 0
    chunks: int = 0
    seconds: float = 0.0

    @property
    def points_removed(self) -> int:
        """Raw points removed either way."""
        return self.points_in_dropped + self.points_deleted_in_chunks

    def summary(self) -> str:
        """One line for the terminal."""
        if self.skipped:
            return "retention: another worker holds the retention lock; nothing done"
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"retention {verb} {self.points_removed} point(s) ({len(self.partitions_dropped)} partition(s) "
            f"dropped whole with {self.points_in_dropped}, {self.points_deleted_in_chunks} deleted in "
            f"{self.chunks} chunk(s)) and {self.rollup_rows_deleted} rollup row(s) in {self.seconds:.2f} s"
        )


@dataclass(frozen=True)
class CutoffGroup:
    """Metrics whose points older than ``cutoff`` are expired; ``others`` means every metric not in ``defined``."""

    cutoff: datetime
    metrics: tuple[str, ...]
    others: bool = False


def cutoff_groups(retentions: dict[str, int], default_days: int, now: datetime) -> list[CutoffGroup]:
    """Group metrics by retention: one DELETE pass per distinct cutoff, and one for undefined metrics."""
    by_days: dict[int, list[str]] = defaultdict(list)
    for name, days in retentions.items():
        by_days[days].append(name)
    groups = [CutoffGroup(now - timedelta(days=d), tuple(sorted(names))) for d, names in sorted(by_days.items())]
    groups.append(CutoffGroup(now - timedelta(days=default_days), tuple(sorted(retentions)), others=True))
    return groups


def partition_day(name: str) -> date | None:
    """The UTC day a ``points_pYYYYMMDD`` partition holds (None for any other name)."""
    m = _PARTITION_NAME.match(name)
    return None if m is None else datetime.strptime(m.group(1), "%Y%m%d").date()


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'telemetry.points'::regclass ORDER BY c.relname
"""
_RETENTIONS = "SELECT name, retention_days FROM telemetry.metric_definitions"
_RECORD = """
INSERT INTO telemetry.retention_runs (started_at, finished_at, dry_run, partitions_dropped, points_deleted,
    rollup_rows_deleted, host)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


def _metric_filter(group: CutoffGroup) -> sql.Composable:
    # Undefined metrics: every name not among the definitions (an empty list matches every name).
    if group.others:
        return sql.SQL("NOT (metric_name = ANY({}))").format(sql.Literal(list(group.metrics)))
    return sql.SQL("metric_name = ANY({})").format(sql.Literal(list(group.metrics)))


class RetentionJob:
    """One run over one database connection (autocommit: each chunk and each drop commits on its own)."""

    def __init__(self, conn: AsyncConnection[TupleRow], settings: Settings, *, now: datetime | None = None,
                 dry_run: bool = False) -> None:  # fmt: skip
        """``now`` is for tests and benchmarks; runs use the clock."""
        self._conn = conn
        self._settings = settings
        self._now = now or datetime.now(UTC)
        self._chunk = settings.retention_chunk_rows
        self.report = RetentionReport(dry_run=dry_run)

    async def _scalar(self, query: sql.Composed | str, params: Any = None) -> Any:
        cur = await self._conn.execute(query, params)
        row = await cur.fetchone()
        return None if row is None else row[0]

    async def _drop(self, part: str) -> None:
        ident = sql.Identifier("telemetry", part)
        count = int(await self._scalar(sql.SQL("SELECT count(*) FROM {}").format(ident)))
        if not self.report.dry_run:
            async with self._conn.transaction():
                await self._conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
                await self._conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
            RETENTION_PARTITIONS.inc()
            RETENTION_POINTS.labels("partition").inc(count)
        self.report.partitions_dropped.append(part)
        self.report.points_in_dropped += count

    async def _delete_chunks(self, part: str, group: CutoffGroup) -> None:
        """Delete the group's expired rows of one partition, ``chunk`` rows per transaction, in key order."""
        ident = sql.Identifier("telemetry", part)
        where = sql.SQL("time < {} AND {}").format(sql.Literal(group.cutoff), _metric_filter(group))
        if self.report.dry_run:
            n = int(await self._scalar(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident, where)))
            self.report.points_deleted_in_chunks += n
            return
        after: tuple[str, str, datetime] | None = None
        while True:
            keyset: sql.Composable = sql.SQL("")
            if after is not None:
                keyset = sql.SQL(" AND (device_id, metric_name, time) > ({}, {}, {})").format(*map(sql.Literal, after))
            query = sql.SQL(
                "WITH doomed AS (SELECT device_id, metric_name, time FROM {part} WHERE {where}{keyset}"
                " ORDER BY device_id, metric_name, time LIMIT {limit})"
                " DELETE FROM {part} p USING doomed d"
                " WHERE p.device_id = d.device_id AND p.metric_name = d.metric_name AND p.time = d.time"
                " RETURNING p.device_id, p.metric_name, p.time"
            ).format(part=ident, where=where, keyset=keyset, limit=sql.Literal(self._chunk))
            try:
                async with self._conn.transaction():
                    cur = await self._conn.execute(query)
                    keys = await cur.fetchall()
            except psycopg.errors.UndefinedTable:
                return  # dropped meanwhile (by another run of an older version, or by hand): nothing left
            if keys:
                self.report.chunks += 1
                self.report.points_deleted_in_chunks += len(keys)
                RETENTION_POINTS.labels("chunk").inc(len(keys))
                after = max((str(k[0]), str(k[1]), k[2]) for k in keys)
            if len(keys) < self._chunk:
                return

    async def _rollups(self) -> None:
        cutoff = self._now - timedelta(days=self._settings.rollup_retention_days)
        # Pending sketches before their hours: one written meanwhile for an expired hour waits for the next run.
        for table in ("rollup_minute", "rollup_hour_pending", "rollup_hour"):
            ident = sql.Identifier("telemetry", table)
            if self.report.dry_run:
                q = sql.SQL("SELECT count(*) FROM {} WHERE bucket < {}").format(ident, sql.Literal(cutoff))
                self.report.rollup_rows_deleted += int(await self._scalar(q))
                continue
            while True:
                query = sql.SQL(
                    "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE bucket < {c} LIMIT {n}))"
                ).format(t=ident, c=sql.Literal(cutoff), n=sql.Literal(self._chunk))
                async with self._conn.transaction():
                    cur = await self._conn.execute(query)
                n = cur.rowcount
                self.report.rollup_rows_deleted += n
                RETENTION_ROLLUPS.inc(n)
                if n < self._chunk:
                    break

    async def _points(self) -> None:
        cur = await self._conn.execute(_RETENTIONS)
        retentions = {str(name): int(days) for name, days in await cur.fetchall()}
        groups = cutoff_groups(retentions, self._settings.retention_default_days, self._now)
        longest = min(g.cutoff for g in groups)  # the earliest cutoff: before it, every metric has expired
        cur = await self._conn.execute(_PARTITIONS)
        for (part,) in await cur.fetchall():
            day = partition_day(part)
            if day is None:
                continue
            start, end = _day_start(day), _day_start(day + timedelta(days=1))
            if end <= longest:
                await self._drop(part)
                continue
            for group in groups:
                if start < group.cutoff:
                    await self._delete_chunks(part, group)

    async def run(self) -> RetentionReport:
        """Run once under the retention lock; ``skipped`` when another worker holds it."""
        started = datetime.now(UTC)
        clock = datetime.now(UTC)
        if not await self._scalar("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK,)):
            self.report.skipped = True
            RETENTION_RUNS.labels("skipped").inc()
            return self.report
        try:
            await self._points()
            await self._rollups()
            self.report.seconds = (datetime.now(UTC) - clock).total_seconds()
            r = self.report
            params = (started, datetime.now(UTC), r.dry_run, len(r.partitions_dropped), r.points_removed,
                      r.rollup_rows_deleted, socket.gethostname())  # fmt: skip
            await self._conn.execute(_RECORD, params)
            RETENTION_RUNS.labels("done").inc()
        finally:
            await self._conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
        return self.report


async def run_retention(
    database_url: str, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> RetentionReport:
    """One run on a connection of its own (the session advisory lock lives as long as it)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await RetentionJob(conn, settings, now=now, dry_run=dry_run).run()
