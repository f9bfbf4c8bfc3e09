"""`telemetry dlq list | show | retry | purge`: look at dead letters and re-drive them after a fix.

Dead letters are DeadLetter messages on the DLQ stream (subjects telemetry.dlq.<worker>, kept 30 days), one
per rejected message or per message's rejected points; the DLQ stream sequence is a letter's id here.

``retry`` re-publishes the original message (or a fixed copy given with ``--payload``) to the subject it was
published on, waits for the PubAck, then deletes the letter. Only POINTS letters are re-driven this way: a
POINTS message is a command that the ingest worker validates again, whereas a letter of an EVENTS or
telemetry.stored message was rejected by one consumer only, and re-publishing it would append a second copy
of a fact every other consumer already applied (re-apply those with `telemetry replay <projection>`).
"""

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from telemetry_core.errors import ConfigurationError
from telemetry_core.headers import MSG_ID, SIGNATURE
from telemetry_core.nats_conn import server_urls
from telemetry_core.settings import Settings
from telemetry_core.topology import DLQ_STREAM, device_of_points_subject, dlq_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from telemetry_schemas.dead_letter import DeadLetter

ALL_LETTERS = "telemetry.dlq.>"
# Set on a re-driven message: which dead letter it came from (for the logs of whoever rejects it again).
REDRIVEN_FROM = "X-Telemetry-Redriven-From"
# Headers not carried over: the old message id would be de-duplicated away by JetStream, and the signature
# vouches for the old body only (the ingest worker validates the unsigned message again and signs it).
_DROPPED_HEADERS = {MSG_ID.lower(), SIGNATURE.lower()}

T = TypeVar("T")


@dataclass(frozen=True)
class Letter:
    """A dead letter and its id (the DLQ stream sequence)."""

    seq: int
    letter: DeadLetter


def _filter(worker: str | None) -> str:
    return dlq_subject(worker) if worker else ALL_LETTERS


async def letters(js: JetStreamContext, worker: str | None = None, limit: int = 100) -> list[Letter]:
    """The oldest ``limit`` dead letters (of one worker, or all)."""
    found: list[Letter] = []
    seq = 1
    while len(found) < limit:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=seq, subject=_filter(worker), next=True)
        except NotFoundError:
            break
        assert raw.seq is not None
        found.append(Letter(raw.seq, dead_letter_decoder.decode(raw.data or b"")))
        seq = raw.seq + 1
    return found


async def letter(js: JetStreamContext, seq: int) -> DeadLetter:
    """One dead letter by its id; ConfigurationError when there is none."""
    try:
        raw = await js.get_msg(DLQ_STREAM, seq=seq)
    except NotFoundError:
        raise ConfigurationError(f"no dead letter {seq} (already retried or purged?)") from None
    return dead_letter_decoder.decode(raw.data or b"")


def original_body(dead: DeadLetter) -> bytes:
    """The bytes to re-send: the message as rejected; for rejected points of a message, a message of them."""
    if dead.payload_b64 is not None:
        return base64.b64decode(dead.payload_b64)
    body = dead.payload.encode()
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if isinstance(parsed, list):
        # The ingest worker dead-letters the bad points of a good message as a JSON array of them.
        return msgspec.json.encode({"device_id": device_of_points_subject(dead.subject), "points": parsed})
    return body


def redrive_subject(dead: DeadLetter) -> str:
    """Where the original was published (POINTS stores it under a slot subject; publishers use the slot-less one)."""
    device = device_of_points_subject(dead.subject)
    if not device:
        raise ConfigurationError(
            f"dead letter of {dead.subject!r}: only POINTS messages are re-driven by re-publishing; re-apply "
            "events with `telemetry replay <projection>`"
        )
    return points_subject(device)


async def retry(js: JetStreamContext, seq: int, body: bytes | None = None) -> tuple[str, int]:
    """Re-publish dead letter ``seq`` (or ``body``, a fixed copy) and delete the letter: (subject, POINTS seq).

    The new message id is derived from the letter, so two concurrent retries of one letter publish once.
    """
    dead = await letter(js, seq)
    subject = redrive_subject(dead)
    headers = {k: v for k, v in (dead.headers or {}).items() if k.lower() not in _DROPPED_HEADERS}
    headers[MSG_ID] = f"redrive:{seq}" if body is None else f"redrive:{seq}:{hashlib.sha256(body).hexdigest()[:16]}"
    headers[REDRIVEN_FROM] = f"{DLQ_STREAM}:{seq}"
    ack = await js.publish(subject, original_body(dead) if body is None else body, headers=headers, timeout=10.0)
    with contextlib.suppress(NotFoundError):  # a concurrent retry deleted it first
        await js.delete_msg(DLQ_STREAM, seq)
    return subject, ack.seq


async def purge(js: JetStreamContext, worker: str | None = None, seqs: list[int] | None = None) -> int:
    """Remove the given dead letters, or every one (of one worker): how many were removed."""
    if seqs:
        removed = 0
        for seq in seqs:
            try:
                removed += bool(await js.delete_msg(DLQ_STREAM, seq))
            except NotFoundError:
                continue
        return removed
    before = (await js.stream_info(DLQ_STREAM)).state.messages
    await js.purge_stream(DLQ_STREAM, subject=_filter(worker))
    return before - (await js.stream_info(DLQ_STREAM)).state.messages


async def _connect(settings: Settings) -> Client:
    if not settings.nats_url:
        raise ConfigurationError("NATS_URL must be set for `telemetry dlq`")
    try:
        return await nats.connect(
            server_urls(settings.nats_url), name="telemetry-dlq", connect_timeout=5, allow_reconnect=False
        )
    except (OSError, NatsError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach NATS at {settings.nats_url}: {exc!r}") from None


def run(settings: Settings, action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Connect, run ``action`` on JetStream, close."""

    async def go() -> T:
        nc = await _connect(settings)
        try:
            return await action(nc.jetstream(timeout=10.0))
        finally:
            await nc.close()

    return asyncio.run(go())


def describe(seq: int, dead: DeadLetter) -> dict[str, Any]:
    """What `dlq show` prints: the letter with its id, the payload parsed when it is JSON."""
    shown: dict[str, Any] = {"seq": seq, **msgspec.to_builtins(dead)}
    with contextlib.suppress(ValueError):
        shown["payload"] = json.loads(dead.payload)
    return shown
