"""Hypothesis strategies for valid points."""

import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

SAFE = string.ascii_letters + string.digits + "_-:"

names = st.text(SAFE, min_size=1, max_size=40)
# PostgreSQL cannot store U+0000, so the API rejects it: valid points never contain it.
_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


def text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=min_size, max_size=max_size)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(max_size=20)
)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    nested = st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    # Objects shaped exactly like a geolocation are classified as one; keep free JSON clear of that shape.
    return st.dictionaries(text(max_size=8), nested, max_size=4).filter(
        lambda d: set(d) not in ({"lat", "lon"}, {"lat", "lon", "alt"})
    )


geolocations = st.fixed_dictionaries(
    {"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}, optional={"alt": st.floats(-1000, 10000)}
)


def values() -> st.SearchStrategy[Any]:
    return (
        st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text(max_size=200)
        | json_objects()
        | st.lists(json_scalars | json_objects(), max_size=4)  # a JSON array is a JSON value too
        | geolocations
    )


timestamps = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond)
)


def points() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"timestamp": timestamps, "metric_name": names, "value": values()},
        optional={
            "unit": text(max_size=32),
            "tags": st.dictionaries(text(min_size=1, max_size=16), text(max_size=32), max_size=4),
            "metadata": json_objects(),
        },
    )
