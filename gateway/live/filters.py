"""Which points of an admitted POINTS message a subscription streams (pure)."""

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.live.condition import Predicate, parse_condition
from telemetry_core.topology import POINTS_ALL, slot_of
from telemetry_schemas.api.stream import StreamedPoint
from telemetry_schemas.values import Point


@dataclass(frozen=True)
class PointFilter:
    """Metric names, required tags and an optional condition; devices are filtered by NATS subject."""

    metric_names: frozenset[str]
    tags: tuple[tuple[str, str], ...]
    condition: Predicate | None

    @classmethod
    def of(cls, metric_names: Sequence[str], tags: dict[str, str], condition: str | None) -> "PointFilter":
        """Build from a subscription's fields (the condition must already have parsed once)."""
        return cls(frozenset(metric_names), tuple(tags.items()), parse_condition(condition) if condition else None)

    def select(self, device_id: str, points: Sequence[Point], sequence: int) -> list[StreamedPoint]:
        """The points to stream, in message order."""
        out = []
        for p in points:
            if self.metric_names and p.metric_name not in self.metric_names:
                continue
            if self.tags and any(p.tags.get(k) != v for k, v in self.tags):
                continue
            if self.condition is not None and not self.condition(
                {
                    "device_id": device_id,
                    "metric_name": p.metric_name,
                    "value": p.value,
                    "unit": p.unit,
                    "tags": p.tags,
                }
            ):
                continue
            out.append(
                StreamedPoint(
                    device_id=device_id,
                    metric_name=p.metric_name,
                    value=p.value,
                    timestamp=p.timestamp,
                    sequence_number=sequence,
                    unit=p.unit,
                    tags=p.tags,
                    metadata=p.metadata,
                )
            )
        return out


def filter_subjects(device_ids: Sequence[str]) -> list[str]:
    """The narrowest POINTS subjects covering ``device_ids``: one stored subject per device, or all of them.

    POINTS stores a device's batches under telemetry.points.<slot>.<device> (topology.POINTS_SLOT_TRANSFORM).
    """
    if not device_ids:
        return [POINTS_ALL]
    return sorted({f"telemetry.points.{slot_of(d)}.{d}" for d in device_ids})
