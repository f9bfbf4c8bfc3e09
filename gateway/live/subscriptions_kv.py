"""Subscriptions in the JetStream key-value bucket SUBSCRIPTIONS, so any gateway copy can serve any socket.

Why a KV bucket and not an event-sourced aggregate: a subscription is ephemeral session state with no
history worth replaying and no read model; what is needed is "every copy sees it now, and it goes away
by itself". The bucket's TTL (``TELEMETRY_SUBSCRIPTION_TTL``) removes a subscription nobody connects to;
a gateway holding a socket re-writes the entry every third of the TTL (compare-and-set on its revision,
so it can never resurrect a cancelled one), and DELETE leaves a delete marker that every copy's
watcher sees (gateway/live/hub.py) and that closes the socket wherever it is.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from telemetry_core.topology import SUBSCRIPTIONS_BUCKET
from telemetry_schemas.api.stream import SubscribeRequest


class Subscription(msgspec.Struct, kw_only=True, frozen=True):
    """The stored record: the request's fields, who made it, and when."""

    subscription_id: str
    device_ids: list[str]
    metric_names: list[str]
    tags: dict[str, str]
    filter_condition: str | None
    max_frequency: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Stored:
    """A subscription and the bucket revision it was read at (for compare-and-set touches)."""

    subscription: Subscription
    revision: int


_decoder = msgspec.json.Decoder(Subscription)


def new_subscription_id() -> str:
    """``sub_`` and 24 hex characters (a valid KV key and NATS token)."""
    return f"sub_{secrets.token_hex(12)}"


class SubscriptionStore:
    """Create, read, keep alive and cancel subscriptions."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> "SubscriptionStore":
        """Bind to the bucket (topology.ensure_topology creates it)."""
        return cls(await js.key_value(SUBSCRIPTIONS_BUCKET))

    async def create(self, request: SubscribeRequest, created_by: str) -> Subscription:
        """Store a new subscription under a fresh id."""
        sub = Subscription(
            subscription_id=new_subscription_id(),
            device_ids=list(dict.fromkeys(request.device_ids)),
            metric_names=list(dict.fromkeys(request.metric_names)),
            tags=dict(request.tags),
            filter_condition=request.filter_condition,
            max_frequency=request.max_frequency,
            created_at=datetime.now(UTC),
            created_by=created_by,
        )
        await self._kv.create(sub.subscription_id, msgspec.json.encode(sub))
        return sub

    async def get(self, subscription_id: str) -> Stored | None:
        """The subscription, or None when unknown, cancelled or expired."""
        try:
            entry = await self._kv.get(subscription_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None or entry.revision is None:
            return None
        return Stored(_decoder.decode(entry.value), entry.revision)

    async def touch(self, stored: Stored) -> Stored | None:
        """Re-write the entry so its TTL starts again; None when it was cancelled or expired meanwhile."""
        value = msgspec.json.encode(stored.subscription)
        for _ in range(3):
            try:
                revision = await self._kv.update(stored.subscription.subscription_id, value, last=stored.revision)
                return Stored(stored.subscription, revision)
            except KeyWrongLastSequenceError:
                # Another socket's gateway touched it, or DELETE marked it: read again to tell which.
                current = await self.get(stored.subscription.subscription_id)
                if current is None:
                    return None
                stored = current
        return stored

    async def cancel(self, subscription_id: str) -> bool:
        """Mark the subscription deleted; False when there was none."""
        if await self.get(subscription_id) is None:
            return False
        await self._kv.delete(subscription_id)
        return True
