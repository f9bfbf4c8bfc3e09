"""`telemetry apikey create | list | revoke`: API keys as event-sourced data.

``create`` publishes apikey.created (with only the key's SHA-256 digest) on the key's own subject of
EVENTS and prints the key once; ``revoke`` publishes apikey.revoked; every gateway applies both from
the stream within milliseconds. ``list`` reads the api_keys read model in PostgreSQL.
"""

import asyncio
import getpass
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import nats
import psycopg
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import APIError, NotFoundError

from telemetry_core.api_key_material import key_digest, new_key
from telemetry_core.errors import ConfigurationError
from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ
from telemetry_core.nats_conn import server_urls
from telemetry_core.settings import Settings
from telemetry_core.topology import EVENTS_STREAM, api_key_subject
from telemetry_schemas.codecs import api_key_event_decoder, json_encoder
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.events import ApiKeyCreated, ApiKeyRevoked
from telemetry_schemas.fields import SUBJECT_SAFE

_SAFE = re.compile(SUBJECT_SAFE)
_KEY_ID = re.compile(r"^key_[0-9a-f]{12}$")
_LIST = """
SELECT key_id, name, scope, devices, created_at, created_by, revoked_at FROM telemetry.api_keys
ORDER BY created_at, key_id
"""
_EXISTS = "SELECT 1 FROM telemetry.api_keys WHERE key_id = %s"
_VISIBLE_WITHIN_S = 10.0


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def check_name(name: str) -> str:
    """A key's name: 1-128 printable characters (it is shown in lists, never used as an id)."""
    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise ConfigurationError("--name must be 1-128 printable characters")
    return name


def check_devices(devices: list[str], scope: ApiKeyScope) -> list[str]:
    """Device ids an ingest key is limited to; other scopes cannot be limited by device."""
    if devices and scope is not ApiKeyScope.INGEST:
        raise ConfigurationError("--devices limits an ingest key; read and admin keys see every device")
    for device in devices:
        if not 1 <= len(device) <= 128 or not _SAFE.match(device):
            raise ConfigurationError(f"--devices: {device!r} is not a device id (1-128 of A-Z a-z 0-9 _ - :)")
    return sorted(set(devices))


async def _connect(settings: Settings) -> Client:
    # A one-shot command: fail fast and quietly instead of the services' retry-and-reconnect-forever.
    nats_url, _ = settings.require_servers()
    try:
        return await nats.connect(
            server_urls(nats_url), name="telemetry-apikey", connect_timeout=5, allow_reconnect=False
        )
    except (OSError, NatsError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach NATS at {nats_url}: {exc!r}") from None


async def _publish(settings: Settings, subject: str, event: ApiKeyCreated | ApiKeyRevoked, expected: int) -> None:
    nc = await _connect(settings)
    try:
        js = nc.jetstream(timeout=settings.publish_timeout_s)
        headers = {EXPECTED_LAST_SUBJECT_SEQ: str(expected)}
        await js.publish(subject, json_encoder.encode(event), headers=headers)
    finally:
        await nc.close()


async def _last_event(settings: Settings, key_id: str) -> tuple[int, ApiKeyCreated | ApiKeyRevoked] | None:
    nc = await _connect(settings)
    try:
        js = nc.jetstream(timeout=settings.publish_timeout_s)
        try:
            msg = await js.get_last_msg(EVENTS_STREAM, api_key_subject(key_id))
        except NotFoundError:
            return None
        return int(msg.seq or 0), api_key_event_decoder.decode(msg.data or b"")
    finally:
        await nc.close()


def _wait_listed(database_url: str, key_id: str) -> bool:
    # Read-your-writes for `list` right after `create`, when a projection worker is running.
    deadline = time.monotonic() + _VISIBLE_WITHIN_S
    with psycopg.connect(database_url) as conn:
        while time.monotonic() < deadline:
            if conn.execute(_EXISTS, (key_id,)).fetchone() is not None:
                return True
            time.sleep(0.05)
    return False


def create(settings: Settings, name: str, scope: ApiKeyScope, devices: list[str]) -> tuple[str, str]:
    """Issue a key; returns (key_id, key). The key is not stored anywhere: only its digest is."""
    _, database_url = settings.require_servers()
    name, devices = check_name(name), check_devices(devices, scope)
    key_id, key = new_key()
    event = ApiKeyCreated(
        key_id=key_id, name=name, scope=scope, digest=key_digest(key).hex(), devices=devices,
        created_at=datetime.now(UTC), created_by=_operator(),
    )  # fmt: skip
    asyncio.run(_publish(settings, api_key_subject(key_id), event, 0))
    if not _wait_listed(database_url, key_id):
        print(f"warning: {key_id} is not in the api_keys read model yet (is a projection worker running?)",
              file=sys.stderr)  # fmt: skip
    return key_id, key


def revoke(settings: Settings, key_id: str) -> bool:
    """Revoke ``key_id``; False when it was revoked already. Unknown ids are a ConfigurationError."""
    if not _KEY_ID.fullmatch(key_id):
        raise ConfigurationError(f"{key_id!r} is not a key id (key_ followed by 12 hex digits; see `apikey list`)")
    last = asyncio.run(_last_event(settings, key_id))
    if last is None:
        raise ConfigurationError(f"no API key {key_id}")
    seq, event = last
    if isinstance(event, ApiKeyRevoked):
        return False
    revoked = ApiKeyRevoked(key_id=key_id, at=datetime.now(UTC), by=_operator())
    try:
        asyncio.run(_publish(settings, api_key_subject(key_id), revoked, seq))
    except APIError as exc:
        raise ConfigurationError(f"{key_id} changed while revoking it ({exc}); run revoke again") from None
    return True


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    """Every key (revoked ones too), oldest first, from the api_keys read model."""
    _, database_url = settings.require_servers()
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(_LIST).fetchall()
