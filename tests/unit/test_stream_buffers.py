"""The per-socket coalescer, connect tokens and subject narrowing (pure parts of streaming)."""

from gateway.live.coalescer import Coalescer
from gateway.live.connect_token import ConnectTokens
from gateway.live.filters import PointFilter, filter_subjects, streamable
from telemetry_core.headers import SIGNATURE
from telemetry_core.points_validator import PointsValidator, points_body
from telemetry_core.topology import slot_of
from telemetry_schemas.api.stream import StreamedPoint

TS = "2025-12-18T10:00:00Z"


def sp(value: float, seq: int) -> StreamedPoint:
    return StreamedPoint(device_id="d", metric_name="m", value=value, timestamp=TS, sequence_number=seq)


def test_coalescer_keeps_the_newest_and_counts_what_it_drops() -> None:
    c = Coalescer(bound=3)
    c.add([sp(1, 1), sp(2, 1)], 1)
    c.add([sp(3, 2), sp(4, 2), sp(5, 2)], 2)
    assert len(c) == 3 and c.room == 0
    flush = c.take()
    assert [p.value for p in flush.points] == [3, 4, 5]
    assert (flush.sequence, flush.dropped) == (2, 2)
    assert not c.pending
    c.add([], 7)  # a message with nothing selected still moves the resume point
    c.add([sp(6, 8)], 8)
    flush = c.take()
    assert ([p.value for p in flush.points], flush.sequence, flush.dropped) == ([6], 8, 0)
    assert c.dropped_total == 2


def test_coalescer_replay_keeps_a_message_larger_than_the_bound() -> None:
    c = Coalescer(bound=2)
    c.add([sp(i, 1) for i in range(5)], 1, drop=False)
    flush = c.take()
    assert len(flush.points) == 5 and flush.dropped == 0


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


def test_point_filter_by_metric_and_tags() -> None:
    f = PointFilter.of(["temperature"], {"site": "north"}, "value > 1")
    points = [
        StreamedPoint(timestamp=TS, metric_name="temperature", value=2.0, tags={"site": "north", "x": "y"}),
        StreamedPoint(timestamp=TS, metric_name="temperature", value=0.5, tags={"site": "north"}),
        StreamedPoint(timestamp=TS, metric_name="humidity", value=2.0, tags={"site": "north"}),
        StreamedPoint(timestamp=TS, metric_name="temperature", value=2.0, tags={"site": "south"}),
    ]
    selected = f.select("d1", points, 42)
    assert [(p.device_id, p.metric_name, p.value, p.sequence_number) for p in selected] == [
        ("d1", "temperature", 2.0, 42)
    ]


class _Msg:
    def __init__(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        self.subject, self.data, self.headers = subject, data, headers


def test_streamable_follows_the_validators_rule() -> None:
    validator = PointsValidator(b"k" * 32)
    raw = [b'{"timestamp":"2025-12-18T10:00:00Z","metric_name":"temperature","value":1.5,"metadata":{"a":[1]}}']
    body = points_body("dev-1", raw, None, "req")
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
    device, points = admitted
    assert device == "dev-1" and points[0].timestamp == "2025-12-18T10:00:00Z" and points[0].value == 1.5
    assert bytes(points[0].metadata) == b'{"a":[1]}'


def test_a_point_cannot_pose_as_another_device_or_sequence() -> None:
    validator = PointsValidator(b"k" * 32)
    raw = [b'{"timestamp":"2025-12-18T10:00:00Z","metric_name":"m","value":1,"device_id":"victim","sequence_number":1}']
    body = points_body("dev-1", raw, None, None)
    msg = _Msg(f"telemetry.points.{slot_of('dev-1')}.dev-1", body, {SIGNATURE: validator.signature(body)})
    admitted = streamable(validator, msg)  # type: ignore[arg-type]
    assert admitted is not None
    (point,) = PointFilter.of([], {}, None).select(*admitted, 77)
    assert (point.device_id, point.sequence_number) == ("dev-1", 77)
