"""What `telemetry dlq retry` re-sends, and where (no broker needed for these decisions)."""

import base64
from datetime import UTC, datetime

import msgspec
import pytest

from telemetry_core.dlq_admin import original_body, redrive_subject
from telemetry_core.errors import ConfigurationError
from telemetry_schemas.dead_letter import DeadLetter


def letter(subject: str, payload: str, payload_b64: str | None = None) -> DeadLetter:
    return DeadLetter(worker="ingest", reason="r", subject=subject, stream_seq=7, failed_at=datetime.now(UTC),
                      payload=payload, payload_b64=payload_b64)  # fmt: skip


def test_a_points_letter_goes_back_to_the_slot_less_subject() -> None:
    assert redrive_subject(letter("telemetry.points.12.dev_1", "{}")) == "telemetry.points.dev_1"
    assert redrive_subject(letter("telemetry.points.dev_1", "{}")) == "telemetry.points.dev_1"


def test_letters_of_events_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="only POINTS messages"):
        redrive_subject(letter("telemetry.events.rule.r1", "{}"))


def test_rejected_points_are_re_sent_as_a_message_of_them_and_binary_bodies_exactly() -> None:
    bad = [{"timestamp": "2031-01-01T00:00:00Z", "metric_name": "t", "value": None}]
    body = original_body(letter("telemetry.points.3.dev_9", msgspec.json.encode(bad).decode()))
    assert msgspec.json.decode(body) == {"device_id": "dev_9", "points": bad}
    raw = bytes([0x82, 0xA1, 0xFF, 0x00])
    assert original_body(letter("telemetry.points.3.dev_9", "\ufffd", base64.b64encode(raw).decode())) == raw
    assert original_body(letter("telemetry.points.3.dev_9", "not json")) == b"not json"
