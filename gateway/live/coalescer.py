"""A socket's bounded buffer: what arrived since the last message, oldest dropped first on overflow (pure)."""

from collections import deque
from dataclasses import dataclass

# One buffered point: its device and its StreamedPoint JSON (gateway/live/filters.py).
Item = tuple[str, bytes]


@dataclass(frozen=True)
class Flush:
    """What the next message carries."""

    points: list[Item]
    sequence: int  # POINTS sequence of the last message covered
    dropped: int  # points discarded since the previous flush


class Coalescer:
    """Holds at most ``bound`` points; ``add`` beyond it discards the oldest and counts them."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._points: deque[Item] = deque()
        self._sequence = 0  # last POINTS message seen, with or without matching points
        self._flushed_sequence = 0
        self._dropped = 0
        self.dropped_total = 0

    def __len__(self) -> int:
        return len(self._points)

    @property
    def room(self) -> int:
        """Points that can be added before the oldest are dropped."""
        return max(0, self.bound - len(self._points))

    @property
    def pending(self) -> bool:
        """Whether there is something to send: points, or a drop count to report."""
        return bool(self._points) or self._dropped > 0

    def add(self, points: list[Item], sequence: int, *, drop: bool = True) -> None:
        """Buffer one POINTS message's selected points (possibly none: the sequence still advances).

        ``drop=False`` (replay, whose caller waits for room first) keeps them all even past the bound: a
        single message may be larger than the whole buffer.
        """
        self._sequence = max(self._sequence, sequence)
        self._points.extend(points)
        over = len(self._points) - self.bound
        if over > 0 and drop:
            for _ in range(over):
                self._points.popleft()
            self._dropped += over
            self.dropped_total += over

    def take(self) -> Flush:
        """Everything buffered, and the count dropped since the previous take; the buffer is emptied."""
        points = list(self._points)
        self._points.clear()
        flush = Flush(points, self._sequence, self._dropped)
        self._dropped = 0
        self._flushed_sequence = self._sequence
        return flush
