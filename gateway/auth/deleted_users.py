"""Users deleted by the account service (FR-020, user.deleted): every gateway refuses their JWTs from then on.

A JWT stays valid until its ``exp``; nothing in the token says its user is gone. The projection worker anonymises
a deleted user in the read models (projection_worker/platform_events.py) and records the SHA-256 of the id in
``telemetry.erased_principals``; without this cache the same user could go on calling with a token minted before
the deletion. Each gateway follows the user.deleted subject of the PLATFORM stream (an ordered consumer from the
stream's first message, as the API key cache follows EVENTS), so a deletion is refused milliseconds after it is
published, and reads the table once at start for deletions older than the stream keeps (30 days). Only hashes are
held, as in the table.
"""

import asyncio

import msgspec
import structlog
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from telemetry_core.erased_principals import principal_sha256
from telemetry_core.follower import Follower
from telemetry_core.topology import PLATFORM_STREAM
from telemetry_schemas.integration import ANONYMOUS, UserDeleted

_decode = msgspec.json.Decoder(UserDeleted).decode
_LOAD = "SELECT principal_sha256 FROM telemetry.erased_principals"
_RETRY_S = 2.0


class DeletedUsers:
    """The hashes of deleted users' ids, from the stream and the table."""

    def __init__(
        self, js: JetStreamContext, subject: str, pool: AsyncConnectionPool, log: structlog.stdlib.BoundLogger
    ) -> None:
        self._hashes: set[str] = set()
        self._pool, self._log = pool, log
        self._follower = Follower(js, PLATFORM_STREAM, subject, _decode, self._apply, log)
        self._loading: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()  # the table was read once

    def _apply(self, event: UserDeleted, _seq: int) -> None:
        if event.user_id != ANONYMOUS:
            self._hashes.add(principal_sha256(event.user_id))

    def deleted(self, user_id: str) -> bool:
        """Whether the account service deleted this user."""
        return bool(self._hashes) and principal_sha256(user_id) in self._hashes

    def __len__(self) -> int:
        """How many deleted users are known."""
        return len(self._hashes)

    @property
    def follower(self) -> Follower:
        """The ordered consumer of user.deleted (for health checks)."""
        return self._follower

    async def start(self, timeout_s: float = 30.0) -> None:
        """Follow the stream and return once what it holds is applied; the table is read in the background.

        The table only adds deletions older than the stream's 30 days, so a database that is away at start does
        not hold the gateway up: it is read again every 2 s until it answers (``loaded``).
        """
        await self._follower.start()
        await self._follower.wait_caught_up(timeout_s)
        self._loading = asyncio.create_task(self._load_until_done())

    async def _load_until_done(self) -> None:
        while True:
            try:
                async with self._pool.connection() as conn:
                    rows = await (await conn.execute(_LOAD)).fetchall()
            except Exception as exc:
                self._log.warning("deleted_users_unreadable_retrying", error=repr(exc), retry_in_s=_RETRY_S)
                await asyncio.sleep(_RETRY_S)
                continue
            self._hashes.update(h for (h,) in rows)
            self.loaded.set()
            return

    async def stop(self) -> None:
        """Stop following (and reading the table, if it still is)."""
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.wait({self._loading}, timeout=1.0)
        await self._follower.stop()
