"""The line-protocol parser against every example of InfluxDB's line-protocol reference, and a round trip."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.line_protocol import LineError, LinePoint, Unsigned, encode, parse, parse_line


def one(line: str) -> LinePoint:
    return parse_line(line)


# --- The reference's syntax examples --------------------------------------------------------------------------


def test_full_line_with_timestamp() -> None:
    assert one("weather,location=us-midwest temperature=82 1465839830100400200") == LinePoint(
        "weather", {"location": "us-midwest"}, {"temperature": 82.0}, 1465839830100400200
    )


def test_line_without_timestamp_leaves_the_time_to_the_server() -> None:
    assert one("weather,location=us-midwest temperature=82").timestamp is None


def test_several_tags_and_fields() -> None:
    p = one("weather,location=us-midwest,season=summer temperature=82,humidity=71i 1465839830100400200")
    assert p.tags == {"location": "us-midwest", "season": "summer"}
    assert p.fields == {"temperature": 82.0, "humidity": 71}
    assert isinstance(p.fields["humidity"], int) and not isinstance(p.fields["humidity"], Unsigned)


def test_no_tags() -> None:
    assert one("weather temperature=82 1465839830100400200") == LinePoint(
        "weather", {}, {"temperature": 82.0}, 1465839830100400200
    )


# --- Data types -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("82", 82.0), ("82.0", 82.0), ("-1.5", -1.5), ("1e3", 1000.0), ("-1.234456e+78", -1.234456e78),
        ("1.", 1.0), (".5", 0.5), ("+3", 3.0),
    ],
)  # fmt: skip
def test_floats(text: str, expected: float) -> None:
    value = one(f"m,device_id=d f={text}").fields["f"]
    assert isinstance(value, float) and value == expected


def test_integers_and_unsigned() -> None:
    p = one("m i=82i,n=-9223372036854775808i,u=18446744073709551615u")
    assert p.fields == {"i": 82, "n": -9223372036854775808, "u": 18446744073709551615}
    assert type(p.fields["i"]) is int and isinstance(p.fields["u"], Unsigned)


@pytest.mark.parametrize("text", ["t", "T", "true", "True", "TRUE"])
def test_true(text: str) -> None:
    assert one(f"weather,location=us-midwest too_hot={text}").fields["too_hot"] is True


@pytest.mark.parametrize("text", ["f", "F", "false", "False", "FALSE"])
def test_false(text: str) -> None:
    assert one(f"weather,location=us-midwest too_hot={text}").fields["too_hot"] is False


def test_string_field() -> None:
    assert one('weather,location=us-midwest temperature="too warm"').fields == {"temperature": "too warm"}


def test_string_field_keeps_commas_equals_and_spaces() -> None:
    p = one('weather,location=us-midwest temperature_str="too hot, =cold" 1465839830100400200')
    assert p.fields == {"temperature_str": "too hot, =cold"}
    assert p.timestamp == 1465839830100400200


# --- Quoting and special characters ---------------------------------------------------------------------------


def test_escaped_comma_in_tag_value() -> None:
    assert one(r"weather,location=us\,midwest temperature=82 1465839830100400200").tags == {"location": "us,midwest"}


def test_escaped_equals_in_field_key() -> None:
    assert one(r"weather,location=us-midwest temp\=rature=82 1465839830100400200").fields == {"temp=rature": 82.0}


def test_escaped_space_in_tag_key() -> None:
    assert one(r"weather,location\ place=us-midwest temperature=82 1465839830100400200").tags == {
        "location place": "us-midwest"
    }


def test_escaped_comma_and_space_in_measurement() -> None:
    assert one(r"wea\,ther,location=us-midwest temperature=82 1465839830100400200").measurement == "wea,ther"
    assert one(r"wea\ ther,location=us-midwest temperature=82 1465839830100400200").measurement == "wea ther"


def test_escaped_equals_and_space_in_tag_value() -> None:
    assert one(r"m,k=a\=b\ c f=1").tags == {"k": "a=b c"}


def test_equals_in_measurement_needs_no_escape() -> None:
    assert one("wea=ther f=1").measurement == "wea=ther"


def test_escaped_quotes_in_string_field() -> None:
    assert one(r'weather,location=us-midwest temperature="too\"hot\""').fields == {"temperature": 'too"hot"'}


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        (r'"too hot\cold"', r"too hot\cold"),
        (r'"too hot\\cold"', r"too hot\cold"),
        (r'"too hot\\\cold"', r"too hot\\cold"),
        (r'"too hot\\\\cold"', r"too hot\\cold"),
        (r'"too hot\\\\\cold"', r"too hot\\\cold"),
    ],
)
def test_backslashes_in_string_fields(written: str, stored: str) -> None:
    # The reference's table: "\\" is one backslash; a backslash before any other character stays.
    assert one(f"weather,location=us-midwest temperature_str={written}").fields == {"temperature_str": stored}


def test_backslash_before_other_characters_is_kept_in_names() -> None:
    assert one(r"we\ather,lo\cation=us\midwest te\mp=1").measurement == r"we\ather"
    p = one(r"we\ather,lo\cation=us\midwest te\mp=1")
    assert p.tags == {r"lo\cation": r"us\midwest"} and p.fields == {r"te\mp": 1.0}


def test_quotes_in_names_are_literal() -> None:
    p = one('"weather",loc="home" f=1')
    assert p.measurement == '"weather"' and p.tags == {"loc": '"home"'}


def test_string_field_with_spaces_before_timestamp() -> None:
    p = one('m,device_id=d a="x y z",b=1i 1700000000')
    assert p.fields == {"a": "x y z", "b": 1} and p.timestamp == 1700000000


# --- Lines, comments, whitespace ------------------------------------------------------------------------------


def test_comments_and_blank_lines_are_skipped_and_lines_keep_their_numbers() -> None:
    body = (
        "# Insert point\n\nweather,location=us-midwest temperature=82 1465839830100400200\n   \n  # indented\nm f=1\n"
    )
    points, errors = parse(body)
    assert errors == []
    assert [(n, p.measurement) for n, p in points] == [(3, "weather"), (6, "m")]


def test_crlf_line_endings() -> None:
    points, errors = parse("a f=1 1\r\nb f=2 2\r\n")
    assert errors == [] and [(n, p.measurement, p.timestamp) for n, p in points] == [(1, "a", 1), (2, "b", 2)]


def test_runs_of_spaces_between_sections() -> None:
    assert one("m,t=1  f=1   5") == LinePoint("m", {"t": "1"}, {"f": 1.0}, 5)


def test_negative_timestamp() -> None:
    assert one("m f=1 -1465839830100400200").timestamp == -1465839830100400200


# --- Bad lines: reported by number with the reason; the others parse -----------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("weather", "missing fields"),
        ("weather,location=us-midwest", "missing fields"),
        ("weather temperature=", "missing field value"),
        ("weather temperature", "invalid field"),
        ("weather =82", "invalid field"),
        ("weather,location temperature=82", "invalid tag"),
        ("weather,location= temperature=82", "missing tag value"),
        ("weather,=x temperature=82", "invalid tag"),
        ("weather temperature=82 12a", "invalid timestamp"),
        ("weather temperature=82 1 2", "unexpected text"),
        ('weather temperature="unterminated', "unterminated"),
        ("weather temperature=82x", "invalid field value"),
        ("weather temperature=1.5i", "invalid field value"),
        ("weather temperature=-1u", "invalid field value"),
        ("weather temperature=NaN", "invalid field value"),
        ("weather temperature=yes", "invalid field value"),
        (",t=1 f=1", "missing measurement"),
    ],
)
def test_bad_lines(line: str, reason: str) -> None:
    points, errors = parse(f"good f=1 1\n{line}\ngood f=2 2")
    assert [n for n, _ in points] == [1, 3]
    assert len(errors) == 1 and errors[0].line == 2
    assert reason in errors[0].error, errors[0].error


def test_error_names_the_field() -> None:
    _, errors = parse("m a=1,b=oops")
    assert errors == [LineError(1, "field 'b': invalid field value 'oops': expected a float, an integer (1i), "
                                   "unsigned (1u), boolean or string")]  # fmt: skip


# --- Round trip: any point encoded as line protocol parses back to itself ------------------------------------

_name_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\n\r\t")
_names = st.text(_name_chars, min_size=1, max_size=12).filter(lambda s: not s.startswith("#") and s.strip() != "")
_field_keys = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='\\\n\r\t"'),
                      min_size=1, max_size=12)  # fmt: skip
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**64 - 1).map(Unsigned),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20),
)
_points = st.builds(
    LinePoint,
    measurement=_names,
    tags=st.dictionaries(_names, _names, max_size=4),
    fields=st.dictionaries(_field_keys, _values, min_size=1, max_size=4),
    timestamp=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_points, min_size=1, max_size=5))
def test_round_trip(points: list[LinePoint]) -> None:
    body = "\n".join(encode(p) for p in points) + "\n"
    parsed, errors = parse(body)
    assert errors == []
    assert [n for n, _ in parsed] == list(range(1, len(points) + 1))
    for (_, got), want in zip(parsed, points, strict=True):
        assert got.measurement == want.measurement and got.tags == want.tags and got.timestamp == want.timestamp
        assert set(got.fields) == set(want.fields)
        for key, value in want.fields.items():
            back = got.fields[key]
            assert type(back) is type(value), (key, value, back)
            assert back == value or (isinstance(value, float) and math.isclose(back, value))  # type: ignore[arg-type]
