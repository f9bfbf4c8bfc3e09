"""Encoders and decoders, each built once (msgspec perf tip: reuse them on hot paths)."""

import re
from collections.abc import Callable

import msgspec

from telemetry_schemas.commands import RecordPoints, ValidatedPoints
from telemetry_schemas.dead_letter import DeadLetter
from telemetry_schemas.events import AlertEvent, ApiKeyEvent, MetricEvent, RuleEvent
from telemetry_schemas.notices import PointsStored, StoredNotices
from telemetry_schemas.text import DEPTH_REASON, NO_NUL_PATTERN, NUL_REASON
from telemetry_schemas.values import Point, point_problem, point_text_problem

json_encoder = msgspec.json.Encoder()
point_decoder = msgspec.json.Decoder(Point)
record_points_decoder = msgspec.json.Decoder(RecordPoints)
validated_points_decoder = msgspec.json.Decoder(ValidatedPoints)
points_stored_decoder = msgspec.json.Decoder(PointsStored)
stored_notices_decoder = msgspec.json.Decoder(StoredNotices)
dead_letter_decoder = msgspec.json.Decoder(DeadLetter)
metric_event_decoder = msgspec.json.Decoder(MetricEvent)
rule_event_decoder = msgspec.json.Decoder(RuleEvent)
alert_event_decoder = msgspec.json.Decoder(AlertEvent)
api_key_event_decoder = msgspec.json.Decoder(ApiKeyEvent)
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])

# JSON can only carry a NUL character as the escape \u0000: a request without that escape has none.
_NUL = b"\\u0000"
PointCheck = Callable[[Point], tuple[str, str] | None]

# msgspec ends an error with "- at `$.path`", or "- at `key` in `$.path`" when a key of that object is at fault.
_AT_PATH = re.compile(r"^(?P<msg>.*?) - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$", re.DOTALL)


def decode_notices(data: bytes) -> list[PointsStored]:
    """The notices of one NOTICES message: a StoredNotices' list, or a lone PointsStored (written before batching).

    A StoredNotices message is never empty, so an empty list means the other shape (its fields are ignored by the
    first decode: unknown fields are allowed). Raises msgspec.DecodeError when it is neither.
    """
    notices = stored_notices_decoder.decode(data).notices
    return notices if notices else [points_stored_decoder.decode(data)]


class PointError(msgspec.Struct, kw_only=True):
    """Why the point at ``index`` was rejected; ``field`` is its full path in the request."""

    index: int
    field: str
    error: str


def split_validation_error(exc: msgspec.DecodeError | msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's "Expected `int`, got `str` - at `$.value`" into (".value", "Expected ...")."""
    text = str(exc)
    match = _AT_PATH.match(text)
    if match is None:
        return "", text
    msg = match["msg"]
    # msgspec words a broken text rule as a regex mismatch; say what the rule is instead.
    if NO_NUL_PATTERN in msg.replace("\\\\", "\\"):
        msg = NUL_REASON
    return match["path"], f"keys {msg}" if match["key"] else msg


def decode_points(
    raws: list[msgspec.Raw], prefix: str, check: PointCheck | None = None, document: bytes | None = None
) -> tuple[list[Point], list[PointError]]:
    """Decode and check each raw point alone, so one bad point never costs the good ones.

    Args:
        raws: the items of a JSON array of points, undecoded.
        prefix: the array's path in the request, used in error fields (e.g. ``data_points``).
        check: an extra rule (e.g. the metric's definition); returns (field, reason) or None.
        document: the whole JSON the raws were cut from; when it holds no NUL escape at all, the
            per-point NUL check is skipped (the common case costs one scan of the body).

    Returns:
        The valid points in order, and one error per invalid point with its index and field.
    """
    valid: list[Point] = []
    errors: list[PointError] = []
    suspect = document is None or _NUL in document
    for index, raw in enumerate(raws):  # the field path of a point is formatted only for an error (hot loop)
        try:
            point = point_decoder.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            path, msg = split_validation_error(exc)
            errors.append(PointError(index=index, field=f"{prefix}[{index}]{path}", error=msg))
            continue
        except RecursionError:  # only reachable by a message published straight to NATS
            errors.append(PointError(index=index, field=f"{prefix}[{index}]", error=DEPTH_REASON))
            continue
        problem = point_text_problem(point) if suspect and _NUL in memoryview(raw).tobytes() else None
        if problem is None:
            problem = point_problem(point)
        if problem is None and check is not None:
            problem = check(point)
        if problem is not None:
            field, msg = problem
            errors.append(PointError(index=index, field=f"{prefix}[{index}].{field}", error=msg))
            continue
        valid.append(point)
    return valid, errors
