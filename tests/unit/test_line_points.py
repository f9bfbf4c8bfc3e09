"""Line-protocol bodies → this service's points: metric names, device tag, precision, server time, refusals."""

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.line_points import PRECISIONS, DevicePoints, Translation, instant, metric_name, translate
from gateway.line_protocol import LineError, LinePoint, Unsigned, encode, parse

TAGS = ("device_id", "host")


def points_of(body: str, precision: str = "ns", now_ns: int = 0) -> tuple[dict[str, list[dict]], list[LineError]]:
    read = translate(body, TAGS, PRECISIONS[precision], now_ns)
    return {d: [msgspec.json.decode(r) for r in p.raws] for d, p in read.devices.items()}, read.refused


def test_metric_is_measurement_underscore_field_and_value_is_the_measurement_alone() -> None:
    assert metric_name("cpu", "usage_idle") == "cpu_usage_idle"
    assert metric_name("temperature", "value") == "temperature"


def test_each_field_is_a_point_and_device_tag_is_not_repeated() -> None:
    found, errors = points_of("cpu,host=server01,cpu=cpu0 usage_idle=98.5,usage_user=1i 1700000000000000000")
    assert errors == []
    when = "2023-11-14T22:13:20Z"
    assert found == {"server01": [
        {"timestamp": when, "metric_name": "cpu_usage_idle", "value": 98.5, "tags": {"cpu": "cpu0"}},
        {"timestamp": when, "metric_name": "cpu_usage_user", "value": 1, "tags": {"cpu": "cpu0"}},
    ]}  # fmt: skip


def test_device_id_tag_wins_over_host_and_host_stays_a_tag() -> None:
    found, _ = points_of("m,host=h1,device_id=d1 f=true 1700000000000000000")
    assert list(found) == ["d1"] and found["d1"][0]["tags"] == {"host": "h1"} and found["d1"][0]["value"] is True


def test_line_without_device_tag_is_refused_by_number() -> None:
    found, errors = points_of("m,host=a f=1 1\nm,site=x f=1 1")
    assert list(found) == ["a"]
    assert errors == [LineError(2, "no device tag: the line needs one of the tags device_id, host")]


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [("ns", 1700000000123456789), ("us", 1700000000123456), ("u", 1700000000123456), ("ms", 1700000000123),
     ("s", 1700000000), ("m", 28333333), ("h", 472222)],
)  # fmt: skip
def test_precisions(precision: str, stamp: int) -> None:
    found, _ = points_of(f"m,host=a f=1 {stamp}", precision)
    expected = instant(stamp * PRECISIONS[precision])
    assert msgspec.json.decode(msgspec.json.encode(expected)) == found["a"][0]["timestamp"]
    assert abs(expected - datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)).total_seconds() < 3600


def test_nanoseconds_are_kept_to_the_microsecond() -> None:
    found, _ = points_of("m,host=a f=1 1700000000123456789")
    assert found["a"][0]["timestamp"] == "2023-11-14T22:13:20.123456Z"


def test_line_without_timestamp_takes_the_request_time() -> None:
    now = 1_765_000_000_000_000_000
    found, _ = points_of("m,host=a f=1\nm,host=a g=2", now_ns=now)
    assert {p["timestamp"] for p in found["a"]} == {msgspec.json.decode(msgspec.json.encode(instant(now)))}


def test_timestamp_out_of_range_is_refused() -> None:
    found, errors = points_of("m,host=a f=1 9223372036854775807", "h")
    assert found == {} and errors[0].line == 1 and "out of range" in errors[0].error


def test_device_tags_setting() -> None:
    from telemetry_core.settings import Settings

    assert Settings.from_env({}).line_protocol_device_tags == ("device_id", "host")
    env = {"TELEMETRY_LINE_PROTOCOL_DEVICE_TAGS": " sensor , host ,"}
    assert Settings.from_env(env).line_protocol_device_tags == ("sensor", "host")
    read = translate("m,sensor=s1,host=h f=1 1\nm,host=h2 f=1 1", ("sensor", "host"), 1, 0)
    assert sorted(read.devices) == ["h2", "s1"] and read.refused == []


def test_dots_become_underscores_only_when_the_operator_opts_in() -> None:
    body = "disk.io,host=web.example.com reads=3i 1700000000000000000"
    kept = translate(body, TAGS, 1, 0).devices
    assert list(kept) == ["web.example.com"] and kept["web.example.com"].metrics == ["disk.io_reads"]  # refused later
    renamed = translate(body, TAGS, 1, 0, dots_to_underscores=True)
    assert renamed.refused == [] and list(renamed.devices) == ["web_example_com"]
    assert renamed.devices["web_example_com"].metrics == ["disk_io_reads"]


# --- translate() against the plain reading: parse, then one point per field -----------------------------------


def plain_reading(body: str, tags: tuple[str, ...], precision_ns: int, now_ns: int, dots: bool) -> Translation:
    """What translate() must return, written the simple way: no caches, every line read and encoded alone."""
    parsed, refused = parse(body)
    out = Translation(lines=len(parsed) + len(refused))
    for number, point in parsed:
        used = next((t for t in tags if t in point.tags), None)
        if used is None:
            refused.append(LineError(number, f"no device tag: the line needs one of the tags {', '.join(tags)}"))
            continue
        try:
            when = instant(now_ns if point.timestamp is None else point.timestamp * precision_ns)
        except OverflowError:
            refused.append(LineError(number, f"timestamp {point.timestamp} is out of range"))
            continue
        rest = {k: v for k, v in point.tags.items() if k != used}
        device = point.tags[used].replace(".", "_") if dots else point.tags[used]
        target = out.devices.setdefault(device, DevicePoints())
        for key, value in point.fields.items():
            name = metric_name(point.measurement, key)
            name = name.replace(".", "_") if dots else name
            json: dict[str, object] = {"timestamp": when, "metric_name": name,
                                       "value": value if isinstance(value, bool | str | float) else int(value)}  # fmt: skip
            if rest:
                json["tags"] = rest
            target.raws.append(msgspec.Raw(msgspec.json.encode(json)))
            target.lines.append(number)
            target.metrics.append(name)
    out.refused = sorted(refused, key=lambda e: e.line)
    return out


_text = st.text(st.sampled_from('ab.d ,="\\x'), min_size=1, max_size=4)
_good = st.builds(
    LinePoint,
    measurement=st.sampled_from(["m", "cpu", "disk.io", "we ather", "a,b"]) | _text,
    tags=st.dictionaries(st.sampled_from(["device_id", "host", "site", "a b", "k=v"]) | _text, _text, max_size=3),
    fields=st.dictionaries(
        st.sampled_from(["value", "f", "usage idle"]) | _text,
        st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**63), 2**63 - 1)
        | st.integers(0, 2**64 - 1).map(Unsigned)
        | st.booleans()
        | _text,
        min_size=1,
        max_size=3,
    ),
    timestamp=st.none() | st.sampled_from([0, 1, 1_700_000_000, -5, 2**62]) | st.integers(-(2**63), 2**63 - 1),
).map(encode)
_bad = st.sampled_from([
    "m", "m,host=a", "m,host=a f=", 'm,host=a f="x', "m,host=a f=1 x", "m,host=a f=1 1 2", ",host=a f=1",
    "m,host f=1", "m,host= f=1", "m,host=a f=1x", "# a comment", "", "   ", "m,site=x f=oops 1", "m,site=x f=1 1",
    "m,site=x f=1 x", "m,host=a f=1 99999999999999999999", "m,host=a  f=1", "m,host=a f=1  5", "m,host=a f=2 7 ",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(_good | _bad, min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), min_size=1, max_size=25),
    precision=st.sampled_from(sorted(set(PRECISIONS.values()))),
    dots=st.booleans(),
)
def test_translate_equals_the_plain_reading(pool: list[str], picks: list[int], precision: int, dots: bool) -> None:
    # Lines drawn from a small pool with repeats: translate reads each distinct series key and timestamp once.
    body = "\n".join(pool[i % len(pool)] for i in picks)
    got = translate(body, TAGS, precision, 1_765_000_000_000_000_000, dots)
    want = plain_reading(body, TAGS, precision, 1_765_000_000_000_000_000, dots)
    assert (got.lines, got.refused) == (want.lines, want.refused)
    assert list(got.devices) == list(want.devices)
    for device, points in want.devices.items():
        found = got.devices[device]
        assert [bytes(r) for r in found.raws] == [bytes(r) for r in points.raws]
        assert (found.lines, found.metrics) == (points.lines, points.metrics)


def test_a_bad_series_key_is_refused_on_every_line_that_repeats_it() -> None:
    read = translate("m,host f=1 1\nm,host=a f=2 1\nm,host f=3 2", TAGS, 1, 0)
    assert [e.line for e in read.refused] == [1, 3] and all("invalid tag" in e.error for e in read.refused)
    assert read.lines == 3 and read.devices["a"].lines == [2]
