"""The shared core of every command: an event-sourced aggregate's subject, its current state, and appending to it.

An aggregate's current state is the last event on its subject (``telemetry.events.<kind>.<id>`` of
stream EVENTS). A command reads it, decides (pure functions in the per-aggregate modules), and
appends its event with ``Nats-Expected-Last-Subject-Sequence`` set to the sequence it read, so of two
writers racing on one aggregate exactly one wins; the other gets the one 409 mapping below. The
append returns once the event is visible to the aggregate's readers (``Visibility``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.commands.visibility import Visibility
from gateway.errors import conflict
from gateway.publisher import CommandPublisher, SequenceConflictError
from telemetry_core.topology import EVENTS_STREAM
from telemetry_schemas.events import DomainEvent

E = TypeVar("E", bound=DomainEvent)


@dataclass(frozen=True)
class CommandContext:
    """Who asked, and the request id carried into the event's headers and the workers' logs."""

    principal: str
    request_id: str


@dataclass(frozen=True)
class Current(Generic[E]):
    """An aggregate as its subject tells it: the last event and its stream sequence (0 and None: never written)."""

    seq: int
    last: E | None


class Aggregate(Generic[E]):
    """One kind of event-sourced aggregate: where its events live, how they decode, who must see a write."""

    def __init__(
        self,
        publisher: CommandPublisher,
        subject_of: Callable[[str], str],
        decode: Callable[[bytes], E],
        visibility: Visibility,
    ) -> None:
        self._publisher = publisher
        self._subject_of = subject_of
        self._decode = decode
        self.visibility = visibility

    async def current(self, key: str) -> Current[E]:
        """The last event on the aggregate's subject (the true current state, not the read model's)."""
        last = await self._publisher.last_on_subject(EVENTS_STREAM, self._subject_of(key))
        if last is None:
            return Current(0, None)
        seq, data = last
        return Current(seq, self._decode(data))

    async def first(self, key: str) -> E | None:
        """The first event on the aggregate's subject (its creation), or None."""
        found = await self._publisher.first_on_subject(EVENTS_STREAM, self._subject_of(key))
        return None if found is None else self._decode(found[1])

    async def append(self, key: str, event: E, expected_seq: int, ctx: CommandContext, on_conflict: str) -> int:
        """Publish ``event`` only if ``expected_seq`` is still the subject's last; return once it is visible.

        Raises 409 with ``on_conflict`` when another writer appended first.
        """
        try:
            seq = await self._publisher.publish_event(self._subject_of(key), event, expected_seq, ctx.request_id)
        except SequenceConflictError:
            raise conflict(on_conflict) from None
        await self.visibility.wait(seq)
        return seq
