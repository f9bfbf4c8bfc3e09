"""Copy a message a worker cannot process to telemetry.dlq.<worker>, with the reason."""

import base64
import zlib
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from telemetry_core.topology import dlq_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.dead_letter import DeadLetter


def stream_seq(msg: Msg) -> int | None:
    """The message's stream sequence, when it came from JetStream."""
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def publish_dead_letter(
    js: JetStreamContext, worker: str, msg: Msg, reason: str, payload: bytes | None = None
) -> None:
    """Publish a DeadLetter (durable: the DLQ stream keeps it) and wait for its ack."""
    seq = stream_seq(msg)
    body = msg.data if payload is None else payload
    letter = DeadLetter(
        worker=worker,
        reason=reason,
        subject=msg.subject,
        stream_seq=seq,
        failed_at=datetime.now(UTC),
        payload=body.decode("utf-8", errors="replace"),
        headers=dict(msg.headers) if msg.headers else None,
        payload_b64=None if _is_text(body) else base64.b64encode(body).decode("ascii"),
    )
    headers = {"Nats-Msg-Id": f"dlq:{worker}:{seq}:{zlib.crc32(reason.encode()):x}"} if seq is not None else None
    await js.publish(dlq_subject(worker), json_encoder.encode(letter), headers=headers, timeout=5.0)
