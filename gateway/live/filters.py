"""Which points of an admitted POINTS message a subscription streams (pure)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from nats.aio.msg import Msg

from gateway.live.condition import Predicate, parse_condition
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import POINTS_ALL, slot_of
from telemetry_schemas.api.stream import StreamedPoint


class _SignedBatch(msgspec.Struct):
    """A signed POINTS message with its points left as raw JSON.

    Signed points were validated by whoever admitted them (telemetry_core.points_validator), so streaming
    passes each point's JSON on as it is, with the device and the POINTS sequence put in front: about half
    the gateway CPU of decoding and re-encoding every point, CPU the gateway's ingest path shares.
    """

    device_id: str
    points: list[msgspec.Raw]


class _Fields(msgspec.Struct):
    """What a filter reads of a point (only decoded when the subscription filters by metric, tags or condition)."""

    metric_name: str
    value: Any = None
    unit: str | None = None
    tags: dict[str, str] = {}


_batch_decoder = msgspec.json.Decoder(_SignedBatch)
_fields_decoder = msgspec.json.Decoder(_Fields)
_DEVICE_KEY, _SEQUENCE_KEY = b'"device_id"', b'"sequence_number"'


class Admitted(NamedTuple):
    """An admitted message's device and raw points; ``plain``: no point carries device_id / sequence_number."""

    device_id: str
    points: list[msgspec.Raw]
    plain: bool = False


def streamable(validator: PointsValidator, msg: Msg) -> Admitted | None:
    """The device and raw points of an admitted message, else None.

    The rule is PointsValidator.accepted's (a valid signature; the body's device is the subject's), with the
    lighter decode; tests/unit/test_stream_buffers.py checks that both agree.
    """
    batch = validator.signed_body(msg, _batch_decoder)
    if batch is None:
        return None
    return Admitted(batch.device_id, batch.points, plain=not _has_own_keys(msg.data))


def stamped(prefix: bytes, raw: bytes, device_id: str, sequence: int) -> bytes:
    """One StreamedPoint's JSON: ``prefix`` (device and sequence) and the point's own members.

    A point that itself carries a ``device_id`` or ``sequence_number`` member is re-encoded without them, so
    it cannot pose as another device or another place in the stream.
    """
    if _DEVICE_KEY in raw or _SEQUENCE_KEY in raw:
        point = msgspec.json.decode(raw, type=StreamedPoint)
        point.device_id, point.sequence_number = device_id, sequence
        return msgspec.json.encode(point)
    return prefix + raw[1:]  # a point is a non-empty JSON object: "{" + members + "}"


def _has_own_keys(body: bytes) -> bool:
    """Whether any point of a POINTS body may carry device_id / sequence_number (the body's own device_id is one)."""
    return body.count(_DEVICE_KEY) > 1 or _SEQUENCE_KEY in body


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

    @property
    def passes_everything(self) -> bool:
        """No metric, tag or condition filter: points need not be decoded at all."""
        return not self.metric_names and not self.tags and self.condition is None

    def matches(self, device_id: str, raw: bytes) -> bool:
        """Whether one point (its JSON) passes the metric, tag and condition filters."""
        p = _fields_decoder.decode(raw)
        if self.metric_names and p.metric_name not in self.metric_names:
            return False
        if self.tags and any(p.tags.get(k) != v for k, v in self.tags):
            return False
        return self.condition is None or self.condition(
            {"device_id": device_id, "metric_name": p.metric_name, "value": p.value, "unit": p.unit, "tags": p.tags}
        )

    def select(self, admitted: Admitted, sequence: int) -> list[tuple[str, bytes]]:
        """The points to stream, in message order: (device, StreamedPoint JSON stamped with device and sequence)."""
        device_id = admitted.device_id
        prefix = b'{"device_id":%s,"sequence_number":%d,' % (msgspec.json.encode(device_id), sequence)
        raws = [bytes(r) for r in admitted.points]
        if not self.passes_everything:
            raws = [r for r in raws if self.matches(device_id, r)]
        if admitted.plain:  # the common case: no per-point look for members to drop
            return [(device_id, prefix + r[1:]) for r in raws]
        return [(device_id, stamped(prefix, r, device_id, sequence)) for r in raws]


def filter_subjects(device_ids: Sequence[str]) -> list[str]:
    """The narrowest POINTS subjects covering ``device_ids``: one stored subject per device, or all of them.

    POINTS stores a device's batches under telemetry.points.<slot>.<device> (topology.POINTS_SLOT_TRANSFORM).
    """
    if not device_ids:
        return [POINTS_ALL]
    return sorted({f"telemetry.points.{slot_of(d)}.{d}" for d in device_ids})
