"""Which points of an admitted POINTS message a subscription streams (pure)."""

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg

from gateway.live.condition import Predicate, parse_condition
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import POINTS_ALL, device_of_points_subject, slot_of
from telemetry_schemas.api.stream import StreamedPoint


class _SignedBatch(msgspec.Struct):
    """A signed POINTS message read only as far as streaming needs.

    Signed points were validated by whoever admitted them (telemetry_core.points_validator), so they are
    decoded straight into the output type, timestamp and metadata as text and raw JSON: the workers' typed
    decode costs several times more, on the CPU the gateway's ingest path shares.
    """

    device_id: str
    points: list[StreamedPoint]


_batch_decoder = msgspec.json.Decoder(_SignedBatch)


def streamable(validator: PointsValidator, msg: Msg) -> tuple[str, list[StreamedPoint]] | None:
    """(device, points) of an admitted message, else None.

    The rule is PointsValidator.accepted's (a valid signature; the body's device is the subject's), with the
    lighter decode; tests/unit/test_stream_buffers.py checks that both agree.
    """
    if not validator.signed(msg):
        return None
    try:
        batch = _batch_decoder.decode(msg.data)
    except msgspec.DecodeError:
        return None
    if device_of_points_subject(msg.subject) != batch.device_id:
        return None
    return batch.device_id, batch.points


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

    def select(self, device_id: str, points: Sequence[StreamedPoint], sequence: int) -> list[StreamedPoint]:
        """The points to stream, in message order, stamped with their device and POINTS sequence."""
        out = []
        for p in points:
            if self.metric_names and p.metric_name not in self.metric_names:
                continue
            if self.tags and any(p.tags.get(k) != v for k, v in self.tags):
                continue
            if self.condition is not None and not self.condition(
                {"device_id": device_id, "metric_name": p.metric_name, "value": p.value, "unit": p.unit, "tags": p.tags}
            ):
                continue
            p.device_id = device_id
            p.sequence_number = sequence
            out.append(p)
        return out


def filter_subjects(device_ids: Sequence[str]) -> list[str]:
    """The narrowest POINTS subjects covering ``device_ids``: one stored subject per device, or all of them.

    POINTS stores a device's batches under telemetry.points.<slot>.<device> (topology.POINTS_SLOT_TRANSFORM).
    """
    if not device_ids:
        return [POINTS_ALL]
    return sorted({f"telemetry.points.{slot_of(d)}.{d}" for d in device_ids})
