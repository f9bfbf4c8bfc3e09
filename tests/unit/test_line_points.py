"""Line-protocol points → this service's points: metric names, device tag, precision, server time."""

from datetime import UTC, datetime

import msgspec
import pytest

from gateway.line_points import PRECISIONS, instant, metric_name, to_device_points
from gateway.line_protocol import LineError, parse

TAGS = ("device_id", "host")


def points_of(body: str, precision: str = "ns", now_ns: int = 0) -> tuple[dict[str, list[dict]], list[LineError]]:
    parsed, errors = parse(body)
    devices, more = to_device_points(parsed, TAGS, PRECISIONS[precision], now_ns)
    return {d: [msgspec.json.decode(r) for r in p.raws] for d, p in devices.items()}, errors + more


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
    parsed, _ = parse("m,sensor=s1,host=h f=1 1\nm,host=h2 f=1 1")
    devices, errors = to_device_points(parsed, ("sensor", "host"), 1, 0)
    assert sorted(devices) == ["h2", "s1"] and errors == []


def test_dots_become_underscores_only_when_the_operator_opts_in() -> None:
    body = "disk.io,host=web.example.com reads=3i 1700000000000000000"
    parsed, _ = parse(body)
    kept, _ = to_device_points(parsed, TAGS, 1, 0)
    assert list(kept) == ["web.example.com"] and kept["web.example.com"].metrics == ["disk.io_reads"]  # refused later
    renamed, errors = to_device_points(parsed, TAGS, 1, 0, dots_to_underscores=True)
    assert errors == [] and list(renamed) == ["web_example_com"]
    assert renamed["web_example_com"].metrics == ["disk_io_reads"]
