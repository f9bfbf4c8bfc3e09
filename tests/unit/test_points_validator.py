"""The one POINTS validator: every consumer accepts exactly the signed messages, whatever it knows."""

import msgspec
from nats.aio.msg import Msg

from alert_worker.engine import _points
from telemetry_core.headers import SIGNATURE
from telemetry_core.points_validator import Accepted, PointsValidator, Unadmitted, points_body
from telemetry_core.topology import points_subject
from telemetry_schemas.values import Point

KEY = b"k" * 32
GOOD = b'{"timestamp":"2025-12-18T10:00:00Z","metric_name":"t","value":5}'
HIGH = b'{"timestamp":"2025-12-18T10:00:01Z","metric_name":"t","value":150}'
BROKEN = b'{"timestamp":"2025-12-18T10:00:02Z","metric_name":"t","value":null}'


def above_100(point: Point) -> tuple[str, str] | None:
    """A definition: t must be at most 100."""
    return ("value", "above 100") if isinstance(point.value, int) and point.value > 100 else None


def message(body: bytes, device: str = "dev1", signature: str | None = None, **headers: str) -> Msg:
    if signature is not None:
        headers[SIGNATURE] = signature
    return Msg(_client=None, subject=f"telemetry.points.7.{device}", data=body, headers=headers or None)  # type: ignore[arg-type]


def values(points: list[Point]) -> list[object]:
    return [p.value for p in points]


WATCHED = frozenset({"t"})  # the alert engine's rules watch metric t


def evaluated(msg: Msg, validator: PointsValidator) -> list[Point]:
    """The points the alert engine evaluates from ``msg`` when a rule watches their metric."""
    seen, points = _points(msg, validator, WATCHED)
    assert seen == len(points)
    return points


def test_a_signed_message_is_accepted_whole_by_every_consumer() -> None:
    gateway = PointsValidator(KEY)
    body = points_body("dev1", [GOOD, HIGH], "b1", "r1")
    msg = message(body, signature=gateway.signature(body))
    ingest = PointsValidator(KEY, above_100).read(msg)
    assert isinstance(ingest, Accepted)
    assert (ingest.device_id, values(ingest.points)) == ("dev1", [5, 150])
    assert values(evaluated(msg, PointsValidator(KEY))) == [5, 150]


def test_the_verdict_ignores_the_definitions_a_consumer_knows() -> None:
    """Parity when a definition changes between two consumers reading one message: the same split."""
    signer = PointsValidator(KEY)
    bodies = [points_body("dev1", [GOOD, HIGH], None, None), points_body("dev1", [HIGH], None, None)]
    msgs = [message(b, signature=signer.signature(b)) for b in bodies]
    msgs += [message(b) for b in bodies]  # unsigned: not a source of points for anyone until admitted
    msgs.append(message(bodies[0], signature=signer.signature(bodies[1])))  # signature of another body
    for msg in msgs:
        verdicts = []
        for check in (None, above_100, lambda _p: ("value", "always rejected")):
            read = PointsValidator(KEY, check).read(msg)
            stored = values(read.points) if isinstance(read, Accepted) else []
            verdicts.append((stored, values(evaluated(msg, PointsValidator(KEY, check)))))
        assert len(set(map(repr, verdicts))) == 1, verdicts
        assert verdicts[0][0] == verdicts[0][1]


def test_a_forged_signature_is_not_trusted_and_the_points_are_checked() -> None:
    body = points_body("dev1", [GOOD, HIGH, BROKEN], None, None)
    forged = PointsValidator(b"x" * 32).signature(body)
    for msg in (
        message(body, signature=forged),
        message(body, signature="1"),
        message(body, **{"X-Telemetry-Validated": "1"}),
    ):
        assert _points(msg, PointsValidator(KEY), WATCHED) == (0, [])
        read = PointsValidator(KEY, above_100).read(msg)
        assert isinstance(read, Unadmitted)
        assert values(read.points) == [5]
        assert [(e.index, e.field) for e in read.errors] == [(1, "points[1].value"), (2, "points[2].value")]


def test_a_signed_body_replayed_on_another_device_is_not_accepted() -> None:
    signer = PointsValidator(KEY)
    body = points_body("dev1", [GOOD], None, None)
    msg = message(body, device="dev2", signature=signer.signature(body))
    assert _points(msg, signer, WATCHED) == (0, [])
    assert signer.read(msg) == "device_id 'dev1' does not match subject 'telemetry.points.7.dev2'"


def test_points_body_is_a_record_points_message() -> None:
    body = points_body("dev1", [GOOD], "b1", "r1")
    assert msgspec.json.decode(body) == {
        "device_id": "dev1", "points": [msgspec.json.decode(GOOD)], "batch_id": "b1", "request_id": "r1",
    }  # fmt: skip
    assert points_subject("dev1") == "telemetry.points.dev1"


def test_the_engine_only_skims_a_message_whose_metrics_no_rule_watches() -> None:
    signer = PointsValidator(KEY)
    other = b'{"timestamp":"2025-12-18T10:00:03Z","metric_name":"u","value":7}'
    body = points_body("dev1", [GOOD, HIGH, other], None, None)
    msg = message(body, signature=signer.signature(body))
    assert signer.metric_names(msg) == ["t", "t", "u"]
    assert _points(msg, signer, frozenset({"x"})) == (3, [])  # counted, not read: no rule would look at them
    seen, points = _points(msg, signer, frozenset({"u"}))  # one watched metric: the whole verdict, as before
    assert (seen, values(points)) == (3, [5, 150, 7])
    # Not signed, forged, or signed for another device: nothing to count either, skimmed or not.
    for bad in (message(body), message(body, signature="0" * 64), message(body, "dev2", signer.signature(body))):
        assert signer.metric_names(bad) is None
        assert _points(bad, signer, frozenset()) == (0, [])
