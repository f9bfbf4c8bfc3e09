"""The gateway's latest-value cache: rows of telemetry.latest_values, invalidated by the stored notices (no I/O).

Correctness rules (docs/architecture.md, "Latest-value cache"; gateway/latest_feed.py feeds it):

* It only ever holds a row **read from the database** (a fill), never a point taken from a notice: the cache is
  never ahead of latest_values, so a process that reads the database instead never shows an older value
  than one another process answered from its cache.
* A notice announcing a newer (time, points_seq) than an entry's row makes the entry pending (no answer) until a
  fill reads a row at least that new. An older or equal notice changes nothing: latest_values' upsert keeps the
  row with the greater (time, src_seq) (projection_worker/projections/latest_values.py), so does the cache.
* A fill is kept only if (a) nothing dropped the cache meanwhile (``epoch``), (b) its row is at least as new as
  every notice that reached the entry while the read ran, and (c) the database said the row was caught up with
  the raw points (no newer point of the series in telemetry.points: the notice of every such point was
  published after its points committed, so it may have passed before this process subscribed, or been lost).
* While the notice subscription is down (disconnected, or messages dropped as a slow consumer) the cache is
  emptied and does not answer; it answers again once the subscription is back (and every entry is a new fill).
* Entries are kept at most ``max_entries`` (least recently used out) and re-read after ``ttl_s``: a bound on how
  long a change made without a notice (a replay rebuilding latest_values) can go unseen.
* With prefill on (gateway/latest_prefill.py), a notice of a series the cache does not hold yet is remembered
  (while there is room) so that the series is filled before its first read; so is a notice that makes pending an
  entry a request read since its last fill (a dashboard polling a series that is written meanwhile), once per
  such read. Either fill is an ordinary one, kept by the rules above or not at all.
"""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from telemetry_schemas.api.queries import LatestValueResponse

Key = tuple[str, str]  # (device_id, metric_name)
Order = tuple[datetime, int]  # (point time, POINTS sequence): later wins, as in latest_values' upsert


@dataclass(slots=True)
class _Entry:
    found: LatestValueResponse | None = None  # None: pending (no answer until a fill catches up)
    order: Order | None = None
    required: Order | None = None  # the newest order a notice announced since this entry was made
    filled_at: float = 0.0
    # A request read this entry (a hit, or a miss that filled it) since the last prefill: when a notice makes
    # it pending, the prefill reads it again before the next poll. Cleared once queued: queued at most once per read.
    read: bool = False


@dataclass(slots=True, frozen=True)
class Fill:
    """A database read in flight: kept by ``finish_fill`` only if nothing happened meanwhile that makes it stale."""

    key: Key
    entry: _Entry
    epoch: int
    by_request: bool = True  # False: the prefill's (the row is not read by anyone yet)


class LatestCache:
    """(device, metric) → the latest_values row, for the gateway's /latest (one per gateway process)."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.enabled = False  # answers only while the notice subscription is live (gateway/latest_feed.py)
        self.epoch = 0  # bumped whenever entries were dropped: fills begun before do not count
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._noticed: dict[Key, None] | None = None  # series noticed but not held, for the prefill; None: off
        self._refill: dict[Key, None] = {}  # read entries a notice made pending, for the prefill (when on)

    def start_prefill(self) -> None:
        """Remember the series notices announce that the cache does not hold (``take_noticed`` hands them over)."""
        if self._noticed is None:
            self._noticed = {}

    def take_noticed(self) -> list[Key]:
        """For the prefill: noticed series the cache still does not hold, then read entries made pending, oldest first.

        Both since the last call; a read entry that a request filled meanwhile is left out.
        """
        noticed, refill, entries = self._noticed, self._refill, self._entries
        if not noticed and not refill:
            return []
        self._noticed, self._refill = {}, {}
        absent = [key for key in noticed or () if key not in entries]
        return absent + [key for key in refill if (entry := entries.get(key)) is not None and entry.found is None]

    def needs_fill(self, key: Key) -> bool:
        """True if a prefill of ``key`` could add something: on, and no row held for it (absent or pending).

        False once the cache is full and ``key`` is not in it: a prefill must not push out entries being read.
        """
        if not self.enabled:
            return False
        entry = self._entries.get(key)
        if entry is None:
            return len(self._entries) < self.max_entries
        return entry.found is None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, now: float) -> LatestValueResponse | None:
        """The cached row if it may answer (enabled, filled, younger than the TTL), else None (read the database)."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None or entry.found is None or now - entry.filled_at >= self.ttl_s:
            return None
        self._entries.move_to_end(key)
        entry.read = True
        return entry.found

    def begin_fill(self, key: Key, evict: bool = True) -> Fill | None:
        """Before a database read of ``key``: None when the cache is off (the read is not to be kept).

        ``evict=False`` (the prefill): None too when ``key`` is not held and the cache is full, rather than push
        out the least recently used entry, which a request read.
        """
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            if not evict and len(self._entries) >= self.max_entries:
                return None
            entry = self._entries[key] = _Entry()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if evict:
            entry.read = True  # a request's miss: it reads this series
        return Fill(key, entry, self.epoch, by_request=evict)

    def finish_fill(
        self, fill: Fill, found: LatestValueResponse | None, order: Order | None, caught_up: bool, now: float
    ) -> bool:
        """Keep the row read for ``fill`` if it is safe to answer from (module docstring); True if kept."""
        entry = fill.entry
        if not self.enabled or fill.epoch != self.epoch or self._entries.get(fill.key) is not entry:
            return False  # dropped or evicted meanwhile: the read may predate a lost notice
        if found is None or order is None or not caught_up:
            return False  # no row, or latest_values is behind the raw points: ask the database next time too
        if entry.required is not None and order < entry.required:
            return False  # a notice newer than this row arrived while it was read
        if entry.order is not None and entry.found is not None and order < entry.order:
            return False  # a concurrent fill already kept a newer row
        entry.found, entry.order, entry.filled_at = found, order, now
        if not fill.by_request:
            entry.read = False
        return True

    def notice(self, key: Key, order: Order) -> None:
        """A stored notice's newest point of ``key``: a newer one than the entry's row makes the entry pending."""
        entry = self._entries.get(key)
        if entry is None:
            # A later fill checks the raw points (module docstring, rule c). The prefill's list is bounded by the
            # room left: a fleet bigger than the cache is not all remembered.
            noticed = self._noticed
            if noticed is not None and len(noticed) + len(self._entries) < self.max_entries:
                noticed[key] = None
            return
        if entry.required is None or order > entry.required:
            entry.required = order
        if entry.order is not None and order > entry.order:
            entry.found = entry.order = None
        if entry.found is None and entry.read and self._noticed is not None:
            # Read since its last prefill and now pending: fill it again before the next poll (one per read).
            entry.read = False
            self._refill[key] = None

    def drop_all(self) -> None:
        """Forget every entry, and make fills in flight not count (notices may have been lost)."""
        self._entries.clear()
        self.epoch += 1

    def disable(self) -> None:
        """Stop answering and forget everything (the subscription is down)."""
        self.enabled = False
        self.drop_all()

    def enable(self) -> None:
        """The subscription is live (again): answer from fills made from now on."""
        self.drop_all()
        self.enabled = True
