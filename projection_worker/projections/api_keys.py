"""Read model: API keys (hashed) and their revocation, from apikey.created / apikey.revoked events."""

from typing import Any, assert_never

from psycopg import AsyncCursor
from psycopg.types.json import Jsonb

from telemetry_core.topology import API_KEYS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import api_key_event_decoder
from telemetry_schemas.events import ApiKeyCreated, ApiKeyEvent, ApiKeyRevoked

NAME = "api_keys"
SPEC: ConsumerSpec = API_KEYS_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.api_keys",)

_CREATE = """
INSERT INTO telemetry.api_keys (key_id, name, scope, digest, devices, created_at, created_by)
VALUES (%(key_id)s, %(name)s, %(scope)s, %(digest)s, %(devices)s, %(created_at)s, %(created_by)s)
ON CONFLICT (key_id) DO NOTHING
"""
_REVOKE = "UPDATE telemetry.api_keys SET revoked_at = %s, revoked_by = %s WHERE key_id = %s AND revoked_at IS NULL"


def decode(data: bytes) -> ApiKeyEvent:
    """Decode an API key event."""
    return api_key_event_decoder.decode(data)


async def apply(cur: AsyncCursor[Any], messages: list[ApiKeyEvent]) -> None:
    """Apply events in stream order."""
    for event in messages:
        match event:
            case ApiKeyCreated():
                await cur.execute(
                    _CREATE,
                    {
                        "key_id": event.key_id,
                        "name": event.name,
                        "scope": event.scope.value,
                        "digest": event.digest,
                        "devices": Jsonb(event.devices),
                        "created_at": event.created_at,
                        "created_by": event.created_by,
                    },
                )
            case ApiKeyRevoked():
                await cur.execute(_REVOKE, (event.at, event.by, event.key_id))
            case _:
                assert_never(event)
