"""The per-socket coalescer, connect tokens, subject narrowing and message bytes (pure parts of streaming)."""

import json
from datetime import UTC, datetime

import msgspec

from gateway.live.coalescer import Coalescer, Flush
from gateway.live.connect_token import ConnectTokens
from gateway.live.filters import Admitted, PointFilter, filter_subjects, streamable
from gateway.live.wire import message_bytes
from telemetry_core.headers import SIGNATURE
from telemetry_core.points_validator import PointsValidator, points_body
from telemetry_core.topology import slot_of
from telemetry_schemas.api.stream import StreamMessage

TS = "2025-12-18T10:00:00Z"


def sp(value: float, seq: int, device: str = "d") -> tuple[str, bytes]:
    point = {"device_id": device, "sequence_number": seq, "timestamp": TS, "metric_name": "m", "value": value}
    return device, json.dumps(point).encode()


def values(flush: Flush) -> list[float]:
    return [json.loads(p)["value"] for _, p in flush.points]


def test_coalescer_keeps_the_newest_and_counts_what_it_drops() -> None:
    c = Coalescer(bound=3)
    c.add([sp(1, 1), sp(2, 1)], 1)
    c.add([sp(3, 2), sp(4, 2), sp(5, 2)], 2)
    assert len(c) == 3 and c.room == 0
    flush = c.take()
    assert values(flush) == [3, 4, 5]
    assert (flush.sequence, flush.dropped) == (2, 2)
    assert not c.pending
    c.add([], 7)  # a message with nothing selected still moves the resume point
    c.add([sp(6, 8)], 8)
    flush = c.take()
    assert (values(flush), flush.sequence, flush.dropped) == ([6], 8, 0)
    assert c.dropped_total == 2


def test_coalescer_replay_keeps_a_message_larger_than_the_bound() -> None:
    c = Coalescer(bound=2)
    c.add([sp(i, 1) for i in range(5)], 1, drop=False)
    flush = c.take()
    assert len(flush.points) == 5 and flush.dropped == 0


def test_message_bytes_are_a_stream_message() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    one = msgspec.json.decode(message_bytes("sub_x", Flush([sp(1, 4), sp(2, 5)], 5, 3), now), type=StreamMessage)
    assert (one.subscription_id, one.device_id, one.sequence_number, one.dropped) == ("sub_x", "d", 5, 3)
    assert [(p.value, p.sequence_number) for p in one.data_points] == [(1, 4), (2, 5)]
    assert one.timestamp == now
    mixed = msgspec.json.decode(message_bytes("s", Flush([sp(1, 4, "a"), sp(2, 5, "b")], 5, 0)), type=StreamMessage)
    assert mixed.device_id is None and [p.device_id for p in mixed.data_points] == ["a", "b"]
    empty = msgspec.json.decode(message_bytes("s", Flush([], 9, 4)), type=StreamMessage)
    assert (empty.data_points, empty.dropped) == ([], 4)


def test_connect_tokens_are_bound_to_a_subscription_and_expire() -> None:
    tokens = ConnectTokens(b"k" * 32, ttl_s=60)
    token, expiry = tokens.mint("sub_a", now=1000)
    assert expiry == 1060
    assert tokens.valid(token, "sub_a", now=1059)
    assert not tokens.valid(token, "sub_a", now=1061)  # expired
    assert not tokens.valid(token, "sub_b", now=1000)  # another subscription
    assert not ConnectTokens(b"x" * 32, ttl_s=60).valid(token, "sub_a", now=1000)  # another key
    forged_expiry = token.replace("1060.", "9999999999.")
    assert not tokens.valid(forged_expiry, "sub_a", now=1000)
    for junk in ("", ".", "abc", "1060", "-5.x", "1" * 40 + ".x"):
        assert not tokens.valid(junk, "sub_a", now=1000)


def test_subjects_are_one_stored_subject_per_device_or_the_wildcard() -> None:
    assert filter_subjects([]) == ["telemetry.points.>"]
    assert filter_subjects(["dev-1", "dev-1"]) == [f"telemetry.points.{slot_of('dev-1')}.dev-1"]


def raw(point: dict[str, object]) -> msgspec.Raw:
    return msgspec.Raw(json.dumps({"timestamp": TS, **point}).encode())


def test_point_filter_by_metric_tags_and_condition() -> None:
    f = PointFilter.of(["temperature"], {"site": "north"}, "value > 1")
    points = [
        raw({"metric_name": "temperature", "value": 2.0, "tags": {"site": "north", "x": "y"}}),
        raw({"metric_name": "temperature", "value": 0.5, "tags": {"site": "north"}}),
        raw({"metric_name": "humidity", "value": 2.0, "tags": {"site": "north"}}),
        raw({"metric_name": "temperature", "value": 2.0, "tags": {"site": "south"}}),
    ]
    selected = [json.loads(p) for _, p in f.select(Admitted("d1", points), 42)]
    assert selected == [{"device_id": "d1", "sequence_number": 42, "timestamp": TS, "metric_name": "temperature",
                         "value": 2.0, "tags": {"site": "north", "x": "y"}}]  # fmt: skip
    everything = PointFilter.of([], {}, None)
    assert everything.passes_everything and len(everything.select(Admitted("d1", points, plain=True), 1)) == 4


class _Msg:
    def __init__(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        self.subject, self.data, self.headers = subject, data, headers


def test_streamable_follows_the_validators_rule() -> None:
    validator = PointsValidator(b"k" * 32)
    raws = [b'{"timestamp":"2025-12-18T10:00:00Z","metric_name":"temperature","value":1.5,"metadata":{"a":[1]}}']
    body = points_body("dev-1", raws, None, "req")
    subject = f"telemetry.points.{slot_of('dev-1')}.dev-1"
    cases = [
        _Msg(subject, body, {SIGNATURE: validator.signature(body)}),  # admitted
        _Msg(subject, body, None),  # unsigned (published directly, not yet admitted)
        _Msg(subject, body, {SIGNATURE: "0" * 64}),  # forged
        _Msg("telemetry.points.3.dev-2", body, {SIGNATURE: validator.signature(body)}),  # another device's subject
        _Msg(subject, b"{", {SIGNATURE: validator.signature(b"{")}),  # signed junk
    ]
    for msg in cases:
        assert (streamable(validator, msg) is None) == (validator.accepted(msg) is None)  # type: ignore[arg-type]
    admitted = streamable(validator, cases[0])  # type: ignore[arg-type]
    assert admitted is not None
    assert admitted.plain
    ((device, point),) = PointFilter.of([], {}, None).select(admitted, 7)
    assert device == "dev-1"
    assert json.loads(point) == {"device_id": "dev-1", "sequence_number": 7, "timestamp": "2025-12-18T10:00:00Z",
                                 "metric_name": "temperature", "value": 1.5, "metadata": {"a": [1]}}  # fmt: skip


def test_a_point_cannot_pose_as_another_device_or_sequence() -> None:
    validator = PointsValidator(b"k" * 32)
    raws = [
        b'{"timestamp":"2025-12-18T10:00:00Z","metric_name":"m","value":1,"device_id":"victim","sequence_number":1}'
    ]
    body = points_body("dev-1", raws, None, None)
    msg = _Msg(f"telemetry.points.{slot_of('dev-1')}.dev-1", body, {SIGNATURE: validator.signature(body)})
    admitted = streamable(validator, msg)  # type: ignore[arg-type]
    assert admitted is not None
    assert not admitted.plain
    ((_, point),) = PointFilter.of([], {}, None).select(admitted, 77)
    decoded = json.loads(point)
    assert (decoded["device_id"], decoded["sequence_number"]) == ("dev-1", 77)
    assert point.count(b'"device_id"') == 1  # no duplicate member for a lenient parser to pick
