"""Turn a list of raw points into (valid raw points, errors) for one device."""

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from gateway.metrics import POINTS_REJECTED
from telemetry_core.points_validator import admit_points
from telemetry_schemas.codecs import PointCheck, PointError
from telemetry_schemas.values import Point


@dataclass(frozen=True)
class CheckedBatch:
    """The valid points (raw JSON, to publish as they came) and the rejected ones with reasons."""

    raw_points: Sequence[bytes]  # views into the request body (msgspec.Raw), not copies
    points: list[Point]
    errors: list[PointError]


def check_points(
    raws: list[msgspec.Raw], prefix: str, check: PointCheck | None = None, document: bytes | None = None
) -> CheckedBatch:
    """Validate each point alone (and against its metric definition); valid ones survive the others."""
    points, errors = admit_points(raws, prefix, check, document)
    if not errors:  # the common case: every point, as the request holds them (the publish joins the views)
        return CheckedBatch(raws, points, errors)
    POINTS_REJECTED.inc(len(errors))
    bad = {e.index for e in errors}
    return CheckedBatch([raw for i, raw in enumerate(raws) if i not in bad], points, errors)


def summarize(errors: list[PointError], total: int, limit: int = 5) -> str:
    """One-line detail naming the first few failures by field, e.g. for a 422 or a partial success."""
    shown = "; ".join(f"{e.field}: {e.error}" for e in errors[:limit])
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return f"{len(errors)} of {total} points rejected: {shown}{more}"
