"""Durations such as "24h" or "7d" (pure)."""

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """Parse "90", "90s", "15m", "24h", "7d" or "2w"; raise ValueError with the accepted forms."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration; use e.g. 3600, 30m, 24h, 7d or 2w")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
