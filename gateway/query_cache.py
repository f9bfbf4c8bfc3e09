"""The gateway's cache of one-series query answers, kept until a write of the series in their range (no I/O).

Dashboards ask the same questions again and again (every viewer, every refresh): one device's metric over a
fixed range, in buckets. Such an answer depends only on that series' points inside the range; the raw rows and
rollup_minute / rollup_hour rows are written by the ingest transaction (migration 0013). Around that transaction
the gateways hear of it twice, on the same subscription connection as the latest-value cache's notices
(gateway/latest_feed.py): an announcement before it commits (ingest_worker/storing.py: core NATS, flushed, so
nats-server has routed it to every gateway before the commit can be seen) and the stored notice after.

* It only holds answers **computed from the database**, for reads of exactly one device and one metric over a
  fixed range (POST /query, GET …/range aggregated, GET /aggregated?device_id=…: gateway/views/cached_queries.py).
* An announcement drops the series' entries whose range [start, end) overlaps the announced [first, last], makes
  reads in flight over it not count, and holds the range **pending**: no read over it is kept until the stored
  notice of the same POINTS sequence ends it (or ``PENDING_S`` passes: a transaction that never committed).
* A stored notice drops overlapping entries and in-flight reads the same way (the announcement may have been
  missed) and ends its announcement.
* A read is kept only if nothing dropped the cache meanwhile (``epoch``), and never in place of the answer of a read
  that began after it (reads are numbered as they begin).
* A hit waits for the read barrier (one NATS PING on that connection, then both subscriptions' queues applied).

Hence: an answer is **never older than the database was when the request arrived**. A commit the client could
have seen was announced to this process before it happened, so by the barrier the range is pending or its
answers were read after the commit. Limits: an ingest transaction already running when this process
(re)subscribed (nothing is kept for ``STARTUP_HOLD_S`` after that; one running longer is seen with the notice's
delay, milliseconds); changes made without an announcement (retention deleting expired points, a restore) show
after ``ttl_s``. Also:

* A notice from an ingest worker older than migration 0013 (``rollups_applied`` false) leaves the rollups to be
  recomputed *after* it: no read is kept for ``ttl_s`` after one; an announcement lost (slow consumer) or
  unreadable: none for ``PENDING_S``.
* While the subscription is down the cache is emptied and does not answer.
* Entries are kept at most ``max_entries`` and ``max_points`` data points in all (least recently used out).
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from telemetry_schemas.api.queries import AggregatedDataResponse, TelemetryDataResponse

Series = tuple[str, str]  # (device_id, metric_name)
Range = tuple[datetime, datetime]  # [start, end)
Answer = TelemetryDataResponse | AggregatedDataResponse
# The data points all entries may hold together (a point is ~150 bytes in memory): ~30 MB.
MAX_POINTS = 200_000
# How long an announced transaction holds its ranges out of the cache without its stored notice: longer than any
# ingest transaction takes (the workers' statement timeout), short enough that a failed one is soon forgotten.
PENDING_S = 60.0
MAX_PENDING_SERIES = 10_000  # past this many series announced, forget the expired announcements
# After the subscription starts (or comes back), nothing is kept for this long: a transaction announced before it
# existed may still commit. Ingest transactions take milliseconds to a second; one still running past this when a
# gateway (re)subscribes is seen with the stored notice's delay, as without announcements.
STARTUP_HOLD_S = 5.0


@dataclass(slots=True, eq=False)
class Fill:
    """A database read in flight; ``finish_fill`` keeps its answer only if it is still ``valid``."""

    series: Series
    span: Range
    epoch: int
    number: int  # reads are numbered as they begin: one that began earlier never replaces a later one's answer
    valid: bool = True


@dataclass(slots=True)
class _Entry:
    series: Series
    span: Range
    answer: Answer
    points: int
    filled_at: float
    number: int


@dataclass
class QueryCache:
    """Query key → answer, for one gateway process."""

    max_entries: int
    ttl_s: float
    max_points: int = MAX_POINTS
    startup_hold_s: float = STARTUP_HOLD_S
    enabled: bool = False  # answers only while the notice subscription is live
    epoch: int = 0  # bumped whenever everything was dropped: reads begun before do not count
    _entries: OrderedDict[bytes, _Entry] = field(default_factory=OrderedDict)
    _by_series: dict[Series, set[bytes]] = field(default_factory=dict)
    _fills: dict[Series, set[Fill]] = field(default_factory=dict)
    _points: int = 0
    _hold_until: float = float("-inf")
    _begun: int = 0
    # Announced, not yet stored: series → (first, last, POINTS sequence, expiry) of transactions about to commit.
    _pending: dict[Series, list[tuple[datetime, datetime, int, float]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def points(self) -> int:
        """Data points in the answers held."""
        return self._points

    def get(self, key: bytes, now: float) -> Answer | None:
        """The kept answer if it may be given (enabled, younger than the TTL), else None (ask the database)."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None or now - entry.filled_at >= self.ttl_s:
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def begin_fill(self, series: Series, span: Range, now: float) -> Fill | None:
        """Before a database read of ``series`` over ``span``: None when its answer is not to be kept."""
        if not self.enabled or now < self._hold_until:
            return None
        pending = self._pending.get(series)
        if pending and any(expiry > now and _overlaps(span, first, last) for first, last, _, expiry in pending):
            return None  # a transaction writing into the range may commit while this reads
        self._begun += 1
        fill = Fill(series, span, self.epoch, self._begun)
        self._fills.setdefault(series, set()).add(fill)
        return fill

    def finish_fill(self, fill: Fill, key: bytes, answer: Answer | None, now: float) -> bool:
        """Keep ``answer`` (None: the read failed) under ``key`` if it is safe to give later; True if kept."""
        fills = self._fills.get(fill.series)
        if fills is not None:
            fills.discard(fill)
            if not fills:
                del self._fills[fill.series]
        if answer is None or not fill.valid or not self.enabled or fill.epoch != self.epoch:
            return False
        points = len(answer.data_points)
        if points > self.max_points // 10:
            return False  # one large answer would push out many small ones
        held = self._entries.get(key)
        if held is not None and held.number > fill.number:
            return False  # a read that began later (so saw at least as much) already kept its answer
        self._remove(key)
        self._entries[key] = _Entry(fill.series, fill.span, answer, points, now, fill.number)
        self._by_series.setdefault(fill.series, set()).add(key)
        self._points += points
        while len(self._entries) > self.max_entries or self._points > self.max_points:
            self._remove(next(iter(self._entries)))
        return True

    def storing(self, series: Series, first: datetime, last: datetime, seq: int, now: float) -> None:
        """A transaction is about to write ``series`` from ``first`` to ``last`` (POINTS sequence ``seq``).

        Nothing over that range is given or kept until the stored notice of ``seq``, or for at most ``PENDING_S``
        (a transaction that never commits).
        """
        self.notice(series, first, last)
        if len(self._pending) > MAX_PENDING_SERIES:
            self.expire(now)
        pending = self._pending.setdefault(series, [])
        pending[:] = [p for p in pending if p[3] > now]
        pending.append((first, last, seq, now + PENDING_S))

    def notice(self, series: Series, first: datetime, last: datetime, seq: int | None = None) -> None:
        """A stored notice: ``series`` has new or overwritten points from ``first`` to ``last`` (inclusive).

        Written by POINTS sequence ``seq``, whose announcement (if any) it ends.
        """
        pending = self._pending.get(series)
        if pending is not None and seq is not None:
            pending[:] = [p for p in pending if p[2] != seq]
            if not pending:
                del self._pending[series]
        for fill in self._fills.get(series, ()):
            if _overlaps(fill.span, first, last):
                fill.valid = False
        keys = self._by_series.get(series)
        if keys:
            for key in [k for k in keys if _overlaps(self._entries[k].span, first, last)]:
                self._remove(key)

    def hold(self, now: float, seconds: float | None = None) -> None:
        """Keep nothing for ``seconds`` (default ``ttl_s``).

        For rollups recomputed after a notice (an old ingest worker's), or an announcement this process could not
        read (``PENDING_S``).
        """
        self.drop_all()
        self._hold_until = max(self._hold_until, now + (self.ttl_s if seconds is None else seconds))

    def drop_all(self) -> None:
        """Forget every entry, and make reads in flight not count (notices may have been lost)."""
        self._entries.clear()
        self._by_series.clear()
        self._points = 0
        self.epoch += 1

    def expire(self, now: float) -> None:
        """Forget announcements past their expiry (a transaction that never committed)."""
        for series in [s for s, p in self._pending.items() if all(e <= now for *_, e in p)]:
            del self._pending[series]

    def disable(self) -> None:
        """Stop answering and forget everything (the subscription is down)."""
        self.enabled = False
        self.drop_all()

    def enable(self, now: float) -> None:
        """The subscription is live (again): answer from reads made from now on, keeping none for a moment.

        A transaction announced before the subscription existed may still commit (``STARTUP_HOLD_S``).
        """
        self.drop_all()
        self._pending.clear()
        self._hold_until = now + self.startup_hold_s
        self.enabled = True

    def holding(self, now: float) -> bool:
        """True while no read is kept (just (re)subscribed, an old writer's notice, an unreadable announcement)."""
        return now < self._hold_until

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._points -= entry.points
        keys = self._by_series[entry.series]
        keys.discard(key)
        if not keys:
            del self._by_series[entry.series]


def _overlaps(span: Range, first: datetime, last: datetime) -> bool:
    return span[0] <= last and first < span[1]
