"""Per-caller token buckets: requests per second and points per second, across the gateway copies.

A bucket holds ``rate * burst_s`` tokens and refills continuously. A request that finds enough
tokens (or a full bucket, for a batch larger than the bucket) spends them and may leave the bucket
in debt; one that does not is refused with the seconds until it would pass (``Retry-After``).
What a copy's callers spend is also told to the other copies (``rate_share.py``), which take it from
their own buckets of the same key (:meth:`TokenBuckets.absorb`): a key's limit holds for the service.
"""

import math
import time

from litestar.exceptions import TooManyRequestsException

# Buckets idle this long are full again; dropping them bounds memory when many JWT subjects come and go.
_PRUNE_EVERY = 10_000


class TokenBuckets:
    """One bucket per caller for one kind of cost; ``rate`` 0 means unlimited."""

    def __init__(self, rate: float, burst_s: float, what: str) -> None:
        self.rate = rate
        self._capacity = rate * burst_s
        self._what = what
        self._buckets: dict[str, tuple[float, float]] = {}
        # What this copy's callers spent since the last share, per key; None until rate_share.py shares it.
        self.spent: dict[str, float] | None = None

    def charge(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` from ``key``'s bucket or raise 429 with Retry-After."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self.rate)
        needed = min(cost, self._capacity)
        if tokens < needed:
            self._buckets[key] = (tokens, now)
            wait = max(1, math.ceil((needed - tokens) / self.rate))
            raise TooManyRequestsException(
                detail=f"rate limit: at most {self.rate:g} {self._what} per second for this key; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[key] = (tokens - cost, now)
        if self.spent is not None:
            self.spent[key] = self.spent.get(key, 0.0) + cost
        if len(self._buckets) > _PRUNE_EVERY:
            self._prune(now)

    def absorb(self, key: str, cost: float) -> None:
        """Take what ``key`` spent at another gateway copy from its bucket here (it may go into debt)."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self.rate)
        # At most one bucket of debt: a copy that missed messages (or many copies at once) cannot lock a key
        # out for longer than a full refill.
        self._buckets[key] = (max(tokens - cost, -self._capacity), now)

    def take_spent(self) -> dict[str, float]:
        """What was spent here since the last call (and forget it); nothing while spending is not recorded."""
        if self.spent is None:
            return {}
        spent, self.spent = self.spent, {}
        return spent

    def _prune(self, now: float) -> None:
        full_after = self._capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
