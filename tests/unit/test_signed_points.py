"""PointsValidator(trust_signed=True): the ingest worker reads signed messages without re-checking each point.

The same points as the strict read (values, zones, tags, metadata; SignedPoint is a Point and encodes to the
same JSON), still nothing from an unsigned or forged message; the one difference is that a signed point the
strict types would refuse is taken as its signer vouched for it, which is how the test sees the fast decoder.
"""

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
from nats.aio.msg import Msg

from telemetry_core.headers import SIGNATURE
from telemetry_core.points_validator import Accepted, PointsValidator, Unadmitted, consumer_validator, points_body
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point

KEY = b"s" * 32
T0 = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def message(body: bytes, signature: str | None) -> Msg:
    headers = {SIGNATURE: signature} if signature is not None else None
    return Msg(_client=None, subject="telemetry.points.3.dev1", data=body, headers=headers)  # type: ignore[arg-type]


def random_point(rng: random.Random) -> Point:
    zone = rng.choice([UTC, timezone(timedelta(hours=-3, minutes=-30))])
    value = rng.choice([rng.uniform(-1e6, 1e6), rng.randrange(-(2**50), 2**50), True, "txt", {"lat": 1.5, "lon": 2},
                        [1, "a", {"b": None}]])  # fmt: skip
    return Point(timestamp=(T0 + timedelta(seconds=rng.randrange(10**6))).astimezone(zone),
                 metric_name=rng.choice(["t", "a:b-c_d"]), value=value, unit=rng.choice([None, "kPa"]),
                 tags=rng.choice([{}, {"k": "v"}]), metadata=rng.choice([{}, {"n": {"x": [1, None]}}]))  # fmt: skip


def test_trusted_read_gives_the_strict_points() -> None:
    rng = random.Random(3)
    signer = PointsValidator(KEY)
    for _ in range(20):
        points = [random_point(rng) for _ in range(rng.randrange(1, 30))]
        body = points_body("dev1", [json_encoder.encode(p) for p in points], None, None)
        msg = message(body, signer.signature(body))
        strict, trusted = PointsValidator(KEY).read(msg), PointsValidator(KEY, trust_signed=True).read(msg)
        assert isinstance(strict, Accepted) and isinstance(trusted, Accepted)
        assert all(isinstance(p, Point) for p in trusted.points)
        assert [msgspec.structs.asdict(p) for p in trusted.points] == [msgspec.structs.asdict(p) for p in points]
        assert json_encoder.encode(trusted.points) == json_encoder.encode(strict.points) == json_encoder.encode(points)


def test_trust_covers_signed_messages_only() -> None:
    # A metric name the strict type refuses (a dot: not subject-safe). Signed, it can only come from a signer that
    # vouched for it; the trusted read takes it, the strict read does not: that is the decoder in use.
    odd = b'{"timestamp":"2030-01-01T00:00:00Z","metric_name":"a.b","value":1}'
    body = points_body("dev1", [odd], None, None)
    signed = message(body, PointsValidator(KEY).signature(body))
    trusted = PointsValidator(KEY, trust_signed=True)
    verdict = trusted.read(signed)
    assert isinstance(verdict, Accepted) and [p.metric_name for p in verdict.points] == ["a.b"]
    assert PointsValidator(KEY).accepted(signed) is None
    # Unsigned or forged: not accepted, checked point by point like any direct publication.
    for msg in (message(body, None), message(body, "0" * 64)):
        assert trusted.accepted(msg) is None
        admitted = trusted.read(msg)
        assert isinstance(admitted, Unadmitted) and [e.field for e in admitted.errors] == ["points[0].metric_name"]
    # A zone is still required: downstream code compares aware times.
    naive = points_body("dev1", [b'{"timestamp":"2030-01-01T00:00:00","metric_name":"t","value":1}'], None, None)
    assert trusted.accepted(message(naive, PointsValidator(KEY).signature(naive))) is None


def test_every_points_consumer_takes_the_same_verdict() -> None:
    # The one constructor trusts signed messages; the ingest worker, the alert engine and the points replay all
    # use it, so a message only the strict types refuse is stored and evaluated alike (not stored only).
    odd = b'{"timestamp":"2030-01-01T00:00:00Z","metric_name":"a.b","value":1}'
    body = points_body("dev1", [odd], None, None)
    verdict = consumer_validator(KEY).accepted(message(body, PointsValidator(KEY).signature(body)))
    assert verdict is not None and [p.metric_name for p in verdict.points] == ["a.b"]
    assert consumer_validator(KEY).accepted(message(body, "0" * 64)) is None
    repo = Path(__file__).resolve().parents[2]
    for path in ("ingest_worker/main.py", "alert_worker/main.py", "ingest_worker/replay_points.py"):
        source = (repo / path).read_text()
        assert "consumer_validator(" in source and "PointsValidator(" not in source, path
