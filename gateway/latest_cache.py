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
  entry a request read lately (a dashboard polling a series that is written meanwhile), at most
  ``REFILLS_PER_READ`` times per read, fewer while the series is written more often than that between reads.
  Either fill is an ordinary one, kept by the rules above or not at all.
"""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from telemetry_schemas.api.queries import LatestValueResponse

# A read entry that notices make pending is read again by the prefill up to this many times after each request
# read it: a dashboard polling every P s a device that writes every W s gets hits while P is under ~8 W. The bound
# keeps the refills' cost per read (~25 µs of gateway and PostgreSQL CPU each, in 1,000-series statements: at
# most ~200 µs) near what the miss it saves costs over a hit (~220 µs: PostgreSQL ~120, gateway ~100, measured
# in docs/benchmarks.md's eighteenth session), however often the series is written and however rarely read.
REFILLS_PER_READ = 8
# A series written more often between two reads than its refills cover wastes every refill (each is pending again
# before the read comes, which misses anyway): a device writing every second, polled every 10 s, cost ~6 prefill
# reads per poll for no hit. A read that finds the entry pending with every refill spent halves the entry's budget
# (down to 1); a read answered by a refill restores it to REFILLS_PER_READ; after REPROBE_AFTER such reads at 1 the
# full budget is tried once more (the writes may have slowed down): about 2 wasted reads per poll instead of ~6.
REPROBE_AFTER = 8

Key = tuple[str, str]  # (device_id, metric_name)
Order = tuple[datetime, int]  # (point time, POINTS sequence): later wins, as in latest_values' upsert


@dataclass(slots=True)
class _Entry:
    found: LatestValueResponse | None = None  # None: pending (no answer until a fill catches up)
    order: Order | None = None
    required: Order | None = None  # the newest order a notice announced since this entry was made
    filled_at: float = 0.0
    # Refills left: set to ``budget`` by each request's read (a hit, or a miss that fills it), one used each time a
    # notice makes the entry pending and it is queued for the prefill; ``spent`` counts them since that read.
    refills: int = 0
    spent: int = 0
    budget: int = REFILLS_PER_READ  # refills per read, halved while they are all wasted (REPROBE_AFTER)
    starved: int = 0  # reads in a row at a budget of 1 that found every refill spent

    def read(self, hit: bool) -> None:
        """A request read this entry: its refills until the next read, from what the last ones achieved."""
        if hit and self.spent:  # a refill answered this read: refilling pays for this series
            self.budget, self.starved = REFILLS_PER_READ, 0
        elif not hit and self.spent and not self.refills:  # every refill spent, and still written after the last
            if self.budget > 1:
                self.budget //= 2
            else:
                self.starved += 1
                if self.starved >= REPROBE_AFTER:
                    self.budget, self.starved = REFILLS_PER_READ, 0
        self.refills, self.spent = self.budget, 0


@dataclass(slots=True, frozen=True)
class Fill:
    """A database read in flight: kept by ``finish_fill`` only if nothing happened meanwhile that makes it stale."""

    key: Key
    entry: _Entry
    epoch: int


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
        """The series noticed since the last call that the cache still does not hold, oldest first."""
        noticed, entries = self._noticed, self._entries
        if not noticed:
            return []
        self._noticed = {}
        return [key for key in noticed if key not in entries]

    def take_refills(self) -> list[Key]:
        """The read entries notices made pending since the last call, still pending (no request filled them)."""
        refill, entries = self._refill, self._entries
        if not refill:
            return []
        self._refill = {}
        return [key for key in refill if (entry := entries.get(key)) is not None and entry.found is None]

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
        entry.read(hit=True)
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
            entry.read(hit=False)  # a request's miss: it reads this series
        return Fill(key, entry, self.epoch)

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
        if entry.found is None and entry.refills and self._noticed is not None and key not in self._refill:
            # Read lately and now pending: fill it again before the next poll (its budget bounds it).
            entry.refills -= 1
            entry.spent += 1
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
