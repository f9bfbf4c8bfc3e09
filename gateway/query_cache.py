"""The gateway's cache of one-series query answers, dropped by the stored notices (no I/O).

Dashboards ask the same questions again and again (every viewer, every refresh): one device's metric over a
fixed range, in buckets. Such an answer depends only on that series' points inside the range, and every write
of them is announced by a stored notice (telemetry.stored.<device>) published after its transaction committed;
rollup_minute / rollup_hour are written by that same transaction (migration 0013). The rules, which mirror the
latest-value cache's (gateway/latest_cache.py; the feed and its read barrier are gateway/latest_feed.py):

* It only holds answers **computed from the database**, for reads of exactly one device and one metric over a
  fixed range (POST /query, GET …/range aggregated, GET /aggregated?device_id=…: gateway/views/cached_queries.py).
* A notice for a series drops every entry of that series whose range [start, end) overlaps the notice's
  [first_time, last_time], and makes every read of that series in flight over such a range not count: a read
  that began before the notice may have missed its points. A read that begins after the notice arrived began
  after the commit it announces, so it sees the points.
* A read is kept only if nothing dropped the cache meanwhile (``epoch``), and never in place of the answer of a read
  that began after it (reads are numbered as they begin).

Hence what an answer given after the read barrier reflects: every write whose notice reached this process before
the request arrived (a read kept began after such a notice, or the notice dropped it).
* A notice from an ingest worker older than migration 0013 (``rollups_applied`` false) leaves the rollups to be
  recomputed *after* it: no read is kept for ``ttl_s`` after one.
* While the notice subscription is down the cache is emptied and does not answer.
* Entries are kept at most ``max_entries`` and ``max_points`` data points in all (least recently used out), and
  re-read after ``ttl_s``: the bound on changes made without a notice (retention deleting expired points).

What it does **not** give, unlike the latest-value cache: latest_values is written *after* its notice was
published, so a client can only have seen a newer row once the notice is on its way to every gateway; the points
and rollups answered here are committed *before* their notice. Between the ingest worker's commit and its notice
reaching this process (milliseconds: the worker publishes right after committing), a client reading the database
directly or through another process may see points this cache does not answer yet. If the worker dies between the
two, the notice comes with the POINTS message's redelivery (the consumer's ack wait) or the entry expires (``ttl_s``).
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
    enabled: bool = False  # answers only while the notice subscription is live
    epoch: int = 0  # bumped whenever everything was dropped: reads begun before do not count
    _entries: OrderedDict[bytes, _Entry] = field(default_factory=OrderedDict)
    _by_series: dict[Series, set[bytes]] = field(default_factory=dict)
    _fills: dict[Series, set[Fill]] = field(default_factory=dict)
    _points: int = 0
    _hold_until: float = float("-inf")
    _begun: int = 0

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

    def notice(self, series: Series, first: datetime, last: datetime) -> None:
        """A stored notice: ``series`` has new or overwritten points from ``first`` to ``last`` (inclusive)."""
        for fill in self._fills.get(series, ()):
            if _overlaps(fill.span, first, last):
                fill.valid = False
        keys = self._by_series.get(series)
        if keys:
            for key in [k for k in keys if _overlaps(self._entries[k].span, first, last)]:
                self._remove(key)

    def hold(self, now: float) -> None:
        """Rollups are recomputed after a notice (an old ingest worker's): keep nothing for ``ttl_s``."""
        self.drop_all()
        self._hold_until = now + self.ttl_s

    def drop_all(self) -> None:
        """Forget every entry, and make reads in flight not count (notices may have been lost)."""
        self._entries.clear()
        self._by_series.clear()
        self._points = 0
        self.epoch += 1

    def disable(self) -> None:
        """Stop answering and forget everything (the subscription is down)."""
        self.enabled = False
        self.drop_all()

    def enable(self) -> None:
        """The subscription is live (again): answer from reads made from now on."""
        self.drop_all()
        self.enabled = True

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
