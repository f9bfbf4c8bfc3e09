"""Which message a consumer was handling, alone, when its process died: the culprit of a crash loop, by name.

JetStream's delivery count cannot tell it: every message of a batch the process died on comes back with a higher
count, and so does every message fetched behind one that kills the worker, though none of them was handled. So
when the consumer runtime handles redelivered messages one at a time (consumer_runtime.py), it writes the stream
sequence it is about to handle into this bucket (one key per durable consumer), and removes it once the message
is settled or the worker stops cleanly. A key still there at the next attempt of the same message means the
process died while handling exactly that message; after ``Policy.crash_limit`` such deaths it is dead-lettered
instead of handled again, and the consumer gets past it.

Best effort: when NATS cannot answer, the runtime handles the message without a journal entry (nothing is
dead-lettered on a guess). One key per durable consumer: where several processes share one (e.g.
TELEMETRY_INGEST_WORKERS=2), one's entry may overwrite another's, and the count of the overwritten message starts
again: a crash loop can then last longer before the dead letter, but no message is blamed for another's death.
"""

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

BUCKET = "CONSUMER_CRASHES"


class Entry(msgspec.Struct, frozen=True):
    """The message being handled alone (its stream sequence) and how many attempts at it began."""

    seq: int
    attempts: int


async def ensure_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The bucket, created when missing (one history entry per key: only the newest attempt matters)."""
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        config = KeyValueConfig(BUCKET, history=1, storage=StorageType.FILE, replicas=replicas)
        return await js.create_key_value(config)


class CrashJournal:
    """One durable consumer's entry in the bucket."""

    def __init__(self, js: JetStreamContext, durable: str, log: structlog.stdlib.BoundLogger) -> None:
        self._js, self._key, self._log = js, durable, log
        self._kv: KeyValue | None = None
        self._written = False

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await ensure_bucket(self._js)
        return self._kv

    async def begin(self, seq: int) -> int:
        """Record an attempt at message ``seq``; return how many earlier attempts at it never finished."""
        try:
            kv = await self._bucket()
            try:
                found = await kv.get(self._key)
                before = msgspec.json.decode(found.value or b"", type=Entry)
            except (KeyNotFoundError, KeyDeletedError, msgspec.DecodeError):
                before = None
            died = before.attempts if before is not None and before.seq == seq else 0
            await kv.put(self._key, msgspec.json.encode(Entry(seq, died + 1)))
            self._written = True
            return died
        except Exception as exc:  # NATS away: handle the message without an entry
            self._log.warning("crash_journal_unavailable", error=repr(exc), seq=seq)
            return 0

    async def end(self) -> None:
        """The message in hand was settled, or the worker stops cleanly: no death to count."""
        if not self._written:
            return
        try:
            await (await self._bucket()).delete(self._key)
            self._written = False
        except Exception as exc:
            self._log.warning("crash_journal_unavailable", error=repr(exc))
