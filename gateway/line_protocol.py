r"""InfluxDB line protocol: parse a body into points (and encode points, for tests and benchmarks). Pure, no I/O.

``measurement[,tag=value...] field=value[,field=value...] [timestamp]``, one point per line, as in InfluxDB's
line-protocol reference: measurements escape comma and space; tag keys, tag values and field keys escape
comma, equals and space; string field values are double-quoted and escape ``"`` and ``\``; a backslash
before any other character is kept as it is. Field values: floats (``1``, ``-1.5e3``), integers ``1i``,
unsigned ``1u``, booleans ``t T true True TRUE f F false False FALSE`` and strings. Lines starting with
``#`` and blank lines are skipped. A bad line becomes a ``LineError`` naming its 1-based line number; the
others still parse.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

FieldValue = float | int | bool | str


class Unsigned(int):
    """An unsigned integer field (``1u``); kept apart from ``1i`` so that encoding gives the text back."""


@dataclass(frozen=True, slots=True)
class LinePoint:
    """One line: its measurement, tags, fields and timestamp (None: the server's time)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class LineError:
    """Why line ``line`` (1-based) was refused."""

    line: int
    error: str


class LineSyntaxError(Exception):
    """A syntax error in one line (caught per line; its text is the reason)."""


_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_UINT = re.compile(r"\d+")
_NAME_ESCAPE = re.compile(r"\\([, ])")  # measurement
_KEY_ESCAPE = re.compile(r"\\([,= ])")  # tag keys, tag values, field keys
_STRING_ESCAPE = re.compile(r'\\(["\\])')  # string field values


def _unescape(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(r"\1", text) if "\\" in text else text


def _scan(s: str, start: int, stops: str, quotes: bool) -> int:
    """Index of the first unescaped character of ``stops`` from ``start`` (outside quotes), else len(s)."""
    i, n, quoted = start, len(s), False
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if quotes and c == '"':
            quoted = not quoted
        elif not quoted and c in stops:
            return i
        i += 1
    if quoted:
        raise LineSyntaxError("unterminated quoted string")
    return n


def _split(s: str, sep: str, quotes: bool) -> list[str]:
    """``s`` split at unescaped ``sep`` (outside quotes when ``quotes``)."""
    if "\\" not in s and '"' not in s:
        return s.split(sep)
    parts, start = [], 0
    while True:
        end = _scan(s, start, sep, quotes)
        parts.append(s[start:end])
        if end >= len(s):
            return parts
        start = end + 1


def _field_value(text: str) -> FieldValue:
    if FLOAT.fullmatch(text):  # first: the common case, and no other kind's text is a float's (nor is "")
        return float(text)
    if not text:
        raise LineSyntaxError("missing field value")
    if text[0] == '"':
        if len(text) < 2 or text[-1] != '"':
            raise LineSyntaxError(f"invalid string field value {text!r}: it must be one double-quoted string")
        return _unescape(text[1:-1], _STRING_ESCAPE)
    last = text[-1]
    if last == "i" and _INT.fullmatch(text, 0, len(text) - 1):
        return int(text[:-1])
    if last == "u" and _UINT.fullmatch(text, 0, len(text) - 1):
        return Unsigned(text[:-1])
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LineSyntaxError(
        f"invalid field value {text!r}: expected a float, an integer (1i), unsigned (1u), boolean or string"
    )


def sections(line: str) -> tuple[str, str, str]:
    """(measurement and tags, fields, timestamp text) of a line; runs of spaces separate them."""
    if "\\" not in line and '"' not in line:
        parts = line.split(" ")
        if "" in parts:  # runs of spaces
            parts = [p for p in parts if p]
    else:
        parts = []
        i = 0
        for quotes in (False, True):
            while i < len(line) and line[i] == " ":
                i += 1
            end = _scan(line, i, " ", quotes)
            parts.append(line[i:end])
            i = end
        rest = line[i:].strip(" ")
        if rest:
            parts.extend(rest.split(" "))
        parts = [p for p in parts if p]
    if len(parts) < 2:
        raise LineSyntaxError("missing fields: a line is 'measurement[,tag=value...] field=value[,...] [timestamp]'")
    if len(parts) > 3:
        raise LineSyntaxError(f"unexpected text after the timestamp: {' '.join(parts[3:])!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def parse_line(line: str) -> LinePoint:
    """Parse one non-blank, non-comment line; raise ValueError with the reason."""
    try:
        return _parse(line)
    except LineSyntaxError as exc:
        raise ValueError(str(exc)) from None


def _parse(line: str) -> LinePoint:
    key, field_text, stamp = sections(line)
    measurement, tags = series_key(key)
    return LinePoint(measurement, tags, fields(field_text), timestamp(stamp))


def series_key(key: str) -> tuple[str, dict[str, str]]:
    """The measurement and tags of a line's first section (InfluxDB's series key)."""
    names = _split(key, ",", False)
    measurement = _unescape(names[0], _NAME_ESCAPE)
    if not measurement:
        raise LineSyntaxError("missing measurement")
    tags: dict[str, str] = {}
    for pair in names[1:]:
        k, eq, v = pair.partition("=") if "\\" not in pair else _partition(pair, False)
        if not eq or not k:
            raise LineSyntaxError(f"invalid tag {pair!r}: expected key=value")
        if not v:
            raise LineSyntaxError(f"missing tag value of tag {_unescape(k, _KEY_ESCAPE)!r}")
        tags[_unescape(k, _KEY_ESCAPE)] = _unescape(v, _KEY_ESCAPE)
    return measurement, tags


def fields(text: str) -> dict[str, FieldValue]:
    """The fields of a line's second section, by key."""
    found: dict[str, FieldValue] = {}
    for pair in _split(text, ",", True):
        k, eq, v = pair.partition("=") if "\\" not in pair and '"' not in pair else _partition(pair, True)
        if not eq or not k:
            raise LineSyntaxError(f"invalid field {pair!r}: expected key=value")
        name = _unescape(k, _KEY_ESCAPE)
        try:
            found[name] = _field_value(v)
        except LineSyntaxError as exc:
            raise LineSyntaxError(f"field {name!r}: {exc}") from None
    return found


def timestamp(text: str) -> int | None:
    """A line's third section as an integer, or None when the line has none."""
    if not text:
        return None
    if not _INT.fullmatch(text):
        raise LineSyntaxError(f"invalid timestamp {text!r}: expected an integer")
    return int(text)


def _partition(pair: str, quotes: bool) -> tuple[str, str, str]:
    end = _scan(pair, 0, "=", quotes)
    if end >= len(pair):
        return pair, "", ""
    return pair[:end], "=", pair[end + 1 :]


def lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line that holds a point (not blank, not a comment), stripped, with its 1-based number."""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if line and line[0] != "#":
            yield number, line


def parse(text: str) -> tuple[list[tuple[int, LinePoint]], list[LineError]]:
    """Every line's point with its 1-based line number, and the lines refused with their reasons."""
    points: list[tuple[int, LinePoint]] = []
    errors: list[LineError] = []
    for number, line in lines(text):
        try:
            points.append((number, _parse(line)))
        except LineSyntaxError as exc:
            errors.append(LineError(number, str(exc)))
    return points, errors


# Encoding: the inverse of the rules above (tests and the benchmark write bodies with it).
def _escape(text: str, chars: str) -> str:
    for c in chars:
        text = text.replace(c, "\\" + c)
    return text


def encode_value(value: FieldValue) -> str:
    """A field value as line protocol text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Unsigned):
        return f"{int(value)}u"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(point: LinePoint) -> str:
    """One line (no newline) for ``point``."""
    head = _escape(point.measurement, ", ")
    for k, v in point.tags.items():
        head += f",{_escape(k, ',= ')}={_escape(v, ',= ')}"
    fields = ",".join(f"{_escape(k, ',= ')}={encode_value(v)}" for k, v in point.fields.items())
    tail = "" if point.timestamp is None else f" {point.timestamp}"
    return f"{head} {fields}{tail}"
