"""API keys kept in memory from the EVENTS stream: a lookup costs no database round trip.

Every gateway copy follows ``telemetry.events.apikey.>`` with an ordered push consumer (the same
follower as the metric definitions cache), so a revocation is applied everywhere milliseconds after
it is published.
"""

import structlog
from nats.js import JetStreamContext

from gateway.auth.principal import Principal
from telemetry_core.follower import Follower
from telemetry_core.topology import API_KEY_EVENTS, EVENTS_STREAM
from telemetry_schemas.codecs import api_key_event_decoder
from telemetry_schemas.events import ApiKeyCreated, ApiKeyEvent, ApiKeyRevoked


class ApiKeyCache:
    """digest → caller, for every key created and not revoked."""

    def __init__(self, js: JetStreamContext, log: structlog.stdlib.BoundLogger) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        self._digest_of: dict[str, bytes] = {}
        self._follower = Follower(js, EVENTS_STREAM, API_KEY_EVENTS, api_key_event_decoder.decode, self._apply, log)

    def _apply(self, event: ApiKeyEvent, _seq: int) -> None:
        match event:
            case ApiKeyCreated():
                digest = bytes.fromhex(event.digest)
                self._digest_of[event.key_id] = digest
                self._by_digest[digest] = Principal(
                    subject=f"apikey:{event.key_id}",
                    scopes=frozenset({event.scope}),
                    kind="apikey",
                    limit_key=f"apikey:{event.key_id}",
                    devices=frozenset(event.devices),
                )
            case ApiKeyRevoked():
                digest = self._digest_of.pop(event.key_id, b"")
                self._by_digest.pop(digest, None)

    def __len__(self) -> int:
        """How many keys are live (created, not revoked)."""
        return len(self._by_digest)

    def get(self, digest: bytes) -> Principal | None:
        """The caller holding the key with this digest, or None (unknown or revoked)."""
        return self._by_digest.get(digest)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Follow the stream and return once every existing key is loaded (a half-loaded cache would 401)."""
        await self._follower.start()
        await self._follower.wait_caught_up(timeout_s)

    @property
    def follower(self) -> Follower:
        """The ordered consumer feeding the cache (for health checks)."""
        return self._follower

    async def stop(self) -> None:
        """Stop following."""
        await self._follower.stop()
