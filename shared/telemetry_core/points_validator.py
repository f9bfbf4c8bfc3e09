"""The one validator of POINTS messages: which points are stored, evaluated and streamed.

A point is *admitted* exactly once, by whoever first checks it against the metric definitions:
the gateway for HTTP points, the ingest worker for messages published straight onto the stream.
An admitted message carries an HMAC signature (``X-Telemetry-Signature``) over its body under
the key shared by the gateway and the workers. Every consumer of POINTS then applies the same
rule, which looks only at the message's bytes and never at a definitions cache: a correctly
signed message is accepted whole, anything else is not a source of points. So the ingest worker
and the alert engine (and any later consumer) agree on every message, whatever their caches know.

An unsigned (or forged) message is decoded and checked here for the ingest worker, which
dead-letters its bad points and re-publishes its good ones as a signed message: those are then
stored and evaluated like any other admitted points.
"""

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import msgspec
from nats.aio.msg import Msg

from telemetry_core.headers import SIGNATURE
from telemetry_core.topology import device_of_points_subject
from telemetry_schemas.codecs import (
    PointCheck,
    PointError,
    ValidatedPoints,
    decode_points,
    record_points_decoder,
    validated_points_decoder,
)
from telemetry_schemas.signed import SignedPoints, signed_points_decoder
from telemetry_schemas.values import Point, metric_name_problem

# The RecordPoints body is assembled from the already-validated raw JSON of each point: no
# re-encoding on the hot path. Field names must match telemetry_schemas.commands.RecordPoints.
_OPEN = b'{"device_id":"%s","points":['


def points_body(device_id: str, raw_points: Sequence[bytes], batch_id: str | None, request_id: str | None) -> bytes:
    """The RecordPoints JSON of one device's admitted points, built from their raw JSON in one join."""
    parts = [_OPEN % device_id.encode(), b",".join(raw_points), b"]"]
    if batch_id is not None:
        parts += (b',"batch_id":', msgspec.json.encode(batch_id))
    if request_id is not None:
        parts += (b',"request_id":', msgspec.json.encode(request_id))
    parts.append(b"}")
    return b"".join(parts)


def admit_points(
    raws: list[msgspec.Raw], prefix: str, check: PointCheck | None, document: bytes | None = None
) -> tuple[list[Point], list[PointError]]:
    """Decode each raw point and check it (shape, then its metric's definition): the admission rule."""
    return decode_points(raws, prefix, check, document)


class _MetricOnly(msgspec.Struct):
    metric_name: str


class _Skim(msgspec.Struct):
    """A POINTS message read for its device and metric names only (msgspec skips the rest of each point)."""

    device_id: str
    points: list[_MetricOnly]


_skim_decoder = msgspec.json.Decoder(_Skim)


class _OfDevice(Protocol):
    @property
    def device_id(self) -> str: ...  # read-only: the bodies are frozen Structs


D = TypeVar("D", bound=_OfDevice)


@dataclass(frozen=True)
class Accepted:
    """A signed message: every point is stored and evaluated."""

    device_id: str
    points: list[Point]


@dataclass(frozen=True)
class Unadmitted:
    """A message nobody admitted yet (published directly): checked, not yet a source of points."""

    device_id: str
    points: list[Point]
    raws: list[msgspec.Raw]
    errors: list[PointError]


class PointsValidator:
    """Signs admitted messages and tells every consumer which points of a message count."""

    def __init__(self, key: bytes, check: PointCheck | None = None, *, trust_signed: bool = False) -> None:
        """``trust_signed``: read signed messages without re-checking each point's constraints (signed_points_decoder).

        The same messages are accepted (the signer validated them); a consumer that opts in saves the per-point
        checks. Every consumer of POINTS opts in through ``consumer_validator``, so all take one verdict.
        """
        self._key = key
        self._check = check
        # The full read of a signed message: trusting its points' types, or checking them (ValidatedPoints).
        self._signed_decoder: msgspec.json.Decoder[SignedPoints | ValidatedPoints] = (
            signed_points_decoder if trust_signed else validated_points_decoder  # type: ignore[assignment]
        )
        self._trust_signed = trust_signed

    def signature(self, body: bytes) -> str:
        """The signature header value of ``body``."""
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def signed(self, msg: Msg) -> bool:
        """Whether ``msg`` carries a valid signature of its body (constant-time comparison)."""
        claimed = msg.headers.get(SIGNATURE) if msg.headers else None
        return claimed is not None and hmac.compare_digest(claimed, self.signature(msg.data))

    def signed_body(self, msg: Msg, decoder: "msgspec.json.Decoder[D]", *, signature_checked: bool = False) -> D | None:
        """``msg``'s body as ``decoder`` reads it when it is signed and names its subject's device, else None.

        The rule every consumer applies to a signed message, whichever part of the body it decodes (the alert
        engine's skim, the full read, the live streams' raw points). Signed but unreadable cannot happen unless
        the key leaked; the careful path (``read``) says why.
        """
        if not signature_checked and not self.signed(msg):
            return None
        try:
            body = decoder.decode(msg.data)
        except msgspec.DecodeError:
            return None
        return body if device_of_points_subject(msg.subject) == body.device_id else None

    def metric_names(self, msg: Msg) -> list[str] | None:
        """The metric of each point of a signed message, without decoding the points; None when not signed.

        A skim (about a quarter of the cost of the full read): a consumer that needs the points of some metrics
        only (the alert engine) reads the whole message only when one of its metrics is wanted, then with
        ``accepted(msg, signature_checked=True)``, which is still the verdict.
        """
        skim = self.signed_body(msg, _skim_decoder)
        return None if skim is None else [p.metric_name for p in skim.points]

    def accepted(self, msg: Msg, *, signature_checked: bool = False) -> Accepted | None:
        """The points every consumer stores/evaluates from ``msg``; None when it is not an admitted message.

        Depends on the message's bytes and the key only, so it is the same in every consumer.
        ``signature_checked``: the caller verified the signature of this very message (``metric_names``).
        """
        typed = self.signed_body(msg, self._signed_decoder, signature_checked=signature_checked)
        if typed is None:
            return None
        if not self._trust_signed and any(metric_name_problem(p.metric_name) for p in typed.points):
            return None  # the strict read: the one rule Point's type documents but point_problem runs
        # list is invariant for the type checker; a SignedPoint is a Point.
        return Accepted(typed.device_id, cast(list[Point], typed.points))

    def read(self, msg: Msg) -> Accepted | Unadmitted | str:
        """What the ingest worker does with ``msg``: accept it, admit it now, or reject it whole (the reason)."""
        accepted = self.accepted(msg)
        if accepted is not None:
            return accepted
        try:
            command = record_points_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            return f"not a RecordPoints message: {exc}"
        if device_of_points_subject(msg.subject) != command.device_id:
            return f"device_id {command.device_id!r} does not match subject {msg.subject!r}"
        points, errors = admit_points(command.points, "points", self._check, msg.data)
        return Unadmitted(command.device_id, points, command.points, errors)


def consumer_validator(key: bytes, check: PointCheck | None = None) -> PointsValidator:
    """The validator of every POINTS consumer (ingest worker, alert engine, points replay): signed messages trusted.

    One construction for all of them: "the points every consumer stores/evaluates" must be the same set, and a
    consumer reading signed messages strictly while another trusts them could disagree on a message only the
    strict types refuse. Trusting costs nothing in safety (a forged signature is still refused) and halves the
    decode (docs/architecture.md, "Validation of POINTS").
    """
    return PointsValidator(key, check, trust_signed=True)
