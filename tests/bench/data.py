"""Synthetic points: timestamps spread over the last hour, a few metric names, float values."""

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

METRICS = ("temperature", "humidity", "pressure", "voltage", "current")
VALUE_MIN, VALUE_MAX = -50.0, 150.0
_encoder = msgspec.json.Encoder()


def rfc3339(t: datetime) -> str:
    """UTC with microseconds and a Z, e.g. 2025-01-01T10:00:00.123456Z."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


class PointMaker:
    """Points for one device: every call continues the device's own sequence, so (device, metric, time) never repeats.

    ``per_device`` is how many points the device will get in total; they are spread evenly over the hour.
    Metric names cycle through ``metrics``; values lie in [VALUE_MIN, VALUE_MAX].
    """

    def __init__(self, start: datetime, per_device: int, seed: int, metrics: Sequence[str] = METRICS) -> None:
        self._start = start
        self._step = timedelta(seconds=3600) / max(per_device, 1)
        if self._step < timedelta(microseconds=1):
            raise ValueError("too many points per device to give each its own microsecond within the hour")
        self._next = 0
        self._rng = random.Random(seed)
        self._metrics = tuple(metrics)

    def points(self, n: int) -> list[dict[str, object]]:
        out = []
        for _ in range(n):
            g = self._next
            self._next += 1
            out.append(
                {
                    "timestamp": rfc3339(self._start + g * self._step),
                    "metric_name": self._metrics[g % len(self._metrics)],
                    "value": round(self._rng.uniform(VALUE_MIN, VALUE_MAX), 4),
                }
            )
        return out


def batch_body(points: list[dict[str, object]]) -> bytes:
    return _encoder.encode({"data_points": points})


def point_body(point: dict[str, object]) -> bytes:
    return _encoder.encode(point)
