"""InfluxDB line protocol (POST /api/v2/write, POST /write) against the real gateway and workers.

No real Telegraf here: the bodies are written by hand in the format Telegraf's ``outputs.influxdb`` and
``outputs.influxdb_v2`` send (its documented influx serializer: tags sorted, integers with ``i``,
nanosecond timestamps, one metric per line).
"""

import base64
import gzip
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import stored_rows, wait_latest, wait_rows
from tests.support.auth import create_key, gateway_copy
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
T0 = 1765965600  # 2025-12-17T10:00:00Z
T0_ISO = "2025-12-17T10:00:00Z"


def telegraf_body(host: str, t_ns: int) -> str:
    return (
        f"cpu,cpu=cpu-total,host={host} usage_idle=97.6,usage_system=0.9,usage_user=1.5 {t_ns}\n"
        f"disk,device=sda1,fstype=ext4,host={host},mode=rw,path=/ free=1234567i,inodes_used=12345i,"
        f"used_percent=42.5 {t_ns}\n"
        f"mem,host={host} active=1234567i,available_percent=72.3,total=8589934592i {t_ns}\n"
        f"system,host={host} load1=0.12,n_cpus=4i,uptime=99000i {t_ns}\n"
        f'system,host={host} uptime_format=" 1 day,  3:30" {t_ns}\n'
    )


def query(client: httpx.Client, device: str, metrics: list[str], start: str, end: str) -> list[dict[str, Any]]:
    q = {"devices": [device], "metrics": metrics, "start_time": start, "end_time": end, "limit": 1000}
    r = client.post("/api/v1/telemetry/query", json=q)
    assert r.status_code == 200, r.text
    points: list[dict[str, Any]] = r.json()["data_points"]
    return points


def token(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Token {stack.api_key}"}


def test_a_telegraf_body_is_stored_and_queryable(stack: Stack, client: httpx.Client, servers: Servers) -> None:
    host = unique("telegraf")
    r = httpx.post(f"{stack.url}/api/v2/write", params={"org": "o", "bucket": "b", "precision": "ns"},
                   content=telegraf_body(host, T0 * 10**9), headers={**token(stack), "Content-Type": "text/plain"})  # fmt: skip
    assert (r.status_code, r.content) == (204, b"")
    wait_rows(servers, host, 13)  # 3 + 3 + 3 + 3 + 1 fields
    metrics = [m for m, *_ in stored_rows(servers, host)]
    points = query(client, host, metrics, "2025-12-17T00:00:00Z", "2025-12-18T00:00:00Z")
    got = {p["metric_name"]: (p["value"], p["tags"], p["timestamp"]) for p in points}
    assert got == {
        "cpu_usage_idle": (97.6, {"cpu": "cpu-total"}, T0_ISO),
        "cpu_usage_system": (0.9, {"cpu": "cpu-total"}, T0_ISO),
        "cpu_usage_user": (1.5, {"cpu": "cpu-total"}, T0_ISO),
        "disk_free": (1234567, {"device": "sda1", "fstype": "ext4", "mode": "rw", "path": "/"}, T0_ISO),
        "disk_inodes_used": (12345, {"device": "sda1", "fstype": "ext4", "mode": "rw", "path": "/"}, T0_ISO),
        "disk_used_percent": (42.5, {"device": "sda1", "fstype": "ext4", "mode": "rw", "path": "/"}, T0_ISO),
        "mem_active": (1234567, {}, T0_ISO),
        "mem_available_percent": (72.3, {}, T0_ISO),
        "mem_total": (8589934592, {}, T0_ISO),
        "system_load1": (0.12, {}, T0_ISO),
        "system_n_cpus": (4, {}, T0_ISO),
        "system_uptime": (99000, {}, T0_ISO),
        "system_uptime_format": (" 1 day,  3:30", {}, T0_ISO),
    }
    # The latest-value read model sees them too, like any point.
    latest = wait_latest(client, host, "mem_total", lookback="36500d")
    assert latest["value"] == 8589934592


def test_reference_examples_are_stored_as_written(stack: Stack, client: httpx.Client, servers: Servers) -> None:
    device = unique("ref")
    body = (
        "# the examples of InfluxDB's line-protocol reference, with a device tag\n"
        f"weather,device_id={device},location=us-midwest temperature=82 1465839830100400200\n"
        f"weather,device_id={device},location=us\\,midwest humidity=71i 1465839830100400201\n"
        f"weather,device_id={device},location\\ place=us-midwest too_hot=true 1465839830100400202\n"
        f"weather,device_id={device} too_cold=F 1465839830100400203\n"
        f'weather,device_id={device} temperature_str="too hot\\\\cold" 1465839830100400204\n'
        f'weather,device_id={device} quoted="too\\"hot\\"" 1465839830100400205\n'
        "\n"
        f"weather,device_id={device} bytes=18446744073u 1465839830100400206\n"
    )
    r = httpx.post(f"{stack.url}/api/v2/write", content=body, headers=token(stack))
    assert r.status_code == 204, r.text
    wait_rows(servers, device, 7)
    metrics = [m for m, *_ in stored_rows(servers, device)]
    points = query(client, device, metrics, "2016-06-13T00:00:00Z", "2016-06-14T00:00:00Z")
    got = sorted((p["metric_name"], p["value"], p["tags"], p["timestamp"]) for p in points)
    assert got == [
        # Nanoseconds are stored to the microsecond: the seven lines share 17:43:50.100400.
        ("weather_bytes", 18446744073, {}, "2016-06-13T17:43:50.100400Z"),
        ("weather_humidity", 71, {"location": "us,midwest"}, "2016-06-13T17:43:50.100400Z"),
        ("weather_quoted", 'too"hot"', {}, "2016-06-13T17:43:50.100400Z"),
        ("weather_temperature", 82.0, {"location": "us-midwest"}, "2016-06-13T17:43:50.100400Z"),
        ("weather_temperature_str", "too hot\\cold", {}, "2016-06-13T17:43:50.100400Z"),
        ("weather_too_cold", False, {}, "2016-06-13T17:43:50.100400Z"),
        ("weather_too_hot", True, {"location place": "us-midwest"}, "2016-06-13T17:43:50.100400Z"),
    ]


def test_a_mixed_body_stores_good_lines_and_names_bad_ones(stack: Stack, client: httpx.Client,
                                                           servers: Servers) -> None:  # fmt: skip
    host = unique("mixed")
    limited = unique("pct")
    r = client.post("/api/v1/telemetry/metrics", json={"name": f"{limited}_used", "data_type": "numeric",
                                                       "min_value": 0, "max_value": 100})  # fmt: skip
    assert r.status_code == 201, r.text
    body = "\n".join([
        f"cpu,host={host} usage_idle=90 {T0}",                 # 1 good
        f"cpu,host={host} usage_idle=oops {T0 + 1}",           # 2 syntax
        f"cpu,site=nowhere usage_idle=1 {T0 + 2}",             # 3 no device tag
        f"disk.io,host={host} reads=1i {T0 + 3}",              # 4 metric name not subject-safe
        f"{limited},host={host} used=150,ok=1 {T0 + 4}",       # 5 used: over the definition's max; ok stored
        f"cpu,host={host} usage_idle=91 1",                    # 6 timestamp in 1970
        f"cpu,host={host} usage_idle=92 {T0 + 6}",             # 7 good
        f"cpu,host=web.example.com usage_idle=93 {T0 + 7}",    # 8 device id not subject-safe
    ])  # fmt: skip
    r = httpx.post(f"{stack.url}/write", params={"db": "telegraf", "precision": "s", "u": "telegraf",
                                                 "p": stack.api_key}, content=body)  # fmt: skip
    assert r.status_code == 400, r.text
    answer = r.json()
    assert [e["line"] for e in answer["errors"]] == [2, 3, 4, 5, 6, 8]
    reasons = {e["line"]: e["error"] for e in answer["errors"]}
    assert "invalid field value 'oops'" in reasons[2]
    assert reasons[3] == "no device tag: the line needs one of the tags device_id, host"
    assert reasons[4].startswith("metric 'disk.io_reads' of device") and "metric_name" in reasons[4]
    assert f"metric '{limited}_used'" in reasons[5] and "100" in reasons[5]
    assert "timestamp: must lie between 2000-01-01 and 2100-01-01" in reasons[6]
    assert reasons[8] == "device id 'web.example.com' is invalid: use 1-128 characters from A-Z a-z 0-9 _ - :"
    assert answer["error"] == answer["detail"]
    assert answer["detail"].startswith("partial write: 6 of 8 lines refused, 3 points stored: line 2: ")
    rows = wait_rows(servers, host, 3)
    assert [(m, t.timestamp(), v) for m, t, _, v, _ in rows] == [
        ("cpu_usage_idle", T0, 90.0), (f"{limited}_ok", T0 + 4, 1.0), ("cpu_usage_idle", T0 + 6, 92.0),
    ]  # fmt: skip


def test_a_nul_character_is_refused_and_the_escapes_text_is_stored_as_written(stack: Stack, servers: Servers) -> None:
    """The route skips the per-point NUL check only for a body without a NUL character (routes/line_protocol.py).

    Two requests: the escape's text in the first would make the check run anyway (it looks for that text).
    """
    host = unique("nul")
    nul = f'note,host={host} text="a\x00b" {T0}\ncpu,host={host} usage_idle=90 {T0 + 2}'  # line 1: a NUL character
    r = httpx.post(f"{stack.url}/write", params={"precision": "s"}, content=nul.encode(), headers=token(stack))
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]
    assert error["line"] == 1 and "NUL" in error["error"], error
    escape = f'note,host={host} text="a\\u0000b" {T0 + 1}'  # the six characters \u0000, not a NUL
    r = httpx.post(f"{stack.url}/write", params={"precision": "s"}, content=escape.encode(), headers=token(stack))
    assert r.status_code == 204, r.text
    rows = wait_rows(servers, host, 2)
    assert [(m, v_num, v_text) for m, _, _, v_num, v_text in rows] == [
        ("note_text", None, "a\\u0000b"), ("cpu_usage_idle", 90.0, None),
    ]  # fmt: skip


def test_v2_errors_have_influx_shape(stack: Stack) -> None:
    r = httpx.post(f"{stack.url}/api/v2/write", content="just garbage", headers=token(stack))
    assert r.status_code == 400
    body = r.json()
    assert (body["code"], body["errors"][0]["line"]) == ("invalid", 1)
    assert body["message"] == body["detail"] and body["message"].endswith(
        "line 1: invalid field 'garbage': expected key=value"
    )
    r = httpx.post(f"{stack.url}/api/v2/write", params={"precision": "fortnight"}, content="m,host=h f=1",
                   headers=token(stack))  # fmt: skip
    assert (r.status_code, r.json()["message"]) == (400, "precision 'fortnight' is invalid: use ns, us (u), ms or s "
                                                         "(also m, h)")  # fmt: skip
    r = httpx.post(f"{stack.url}/api/v2/write", content="\n# only a comment\n", headers=token(stack))
    assert (r.status_code, r.json()["code"]) == (400, "invalid")


def test_gzip_body_and_each_precision(stack: Stack, servers: Servers) -> None:
    host = unique("gz")
    instant = datetime(2025, 12, 17, 10, 0, 0, 123456, tzinfo=UTC)
    stamps = {"ns": T0 * 10**9 + 123456789, "us": T0 * 10**6 + 123456, "ms": T0 * 1000 + 123, "s": T0}
    for precision, stamp in stamps.items():
        body = gzip.compress(f"p_{precision},host={host} v=1 {stamp}\n".encode())
        r = httpx.post(f"{stack.url}/api/v2/write", params={"precision": precision}, content=body,
                       headers={**token(stack), "Content-Encoding": "gzip"})  # fmt: skip
        assert r.status_code == 204, r.text
    before = time.time()
    r = httpx.post(f"{stack.url}/api/v2/write", content=gzip.compress(f"now,host={host} v=2".encode()),
                   headers={**token(stack), "Content-Encoding": "gzip"})  # fmt: skip
    assert r.status_code == 204, r.text
    rows = {m: t for m, t, *_ in wait_rows(servers, host, 5)}
    assert rows["p_ns_v"] == instant
    assert rows["p_us_v"] == instant
    assert rows["p_ms_v"] == instant.replace(microsecond=123000)
    assert rows["p_s_v"] == instant.replace(microsecond=0)
    assert before - 1 <= rows["now_v"].timestamp() <= time.time() + 1  # no timestamp: the server's time


def test_credentials_and_device_limits(stack: Stack, servers: Servers) -> None:
    own, other = unique("own"), unique("other")
    _, key = create_key(servers, unique("telegraf"), "ingest", devices=own)
    url = f"{stack.url}/write"
    basic = "Basic " + base64.b64encode(f"telegraf:{key}".encode()).decode()
    assert httpx.post(url, content=f"m,host={own} f=1 {T0}", params={"precision": "s"},
                      headers={"Authorization": basic}).status_code == 204  # fmt: skip
    r = httpx.post(url, content=f"m,host={own} f=2 {T0 + 1}\nm,host={other} f=3 {T0}", params={"precision": "s"},
                   headers={"Authorization": f"Token {key}"})  # fmt: skip
    assert (r.status_code, r.json()["detail"]) == (403, f"forbidden: this key may not write points of device {other!r}")
    assert httpx.post(url, content=f"m,host={own} f=1 {T0}").status_code == 401
    assert httpx.post(url, content=f"m,host={own} f=1 {T0}", params={"u": "x", "p": "wrong"}).status_code == 401
    # The password-as-key forms are for the write paths only: elsewhere ?p= is not a credential.
    r = httpx.get(f"{stack.url}/api/v1/telemetry/metrics", params={"p": stack.api_key})
    assert r.status_code == 401
    # The refused request published nothing (it was refused before publishing): one row, none of the other.
    wait_rows(servers, own, 1)
    assert stored_rows(servers, other) == []


def test_whole_request_errors_have_influx_shape_too(stack: Stack) -> None:
    # Raised before the route runs (no body, bad gzip, no credentials): still InfluxDB's fields.
    r = httpx.post(f"{stack.url}/api/v2/write", headers=token(stack))
    assert (r.status_code, r.json()) == (400, {"code": "invalid", "message": r.json()["detail"],
                                               "detail": r.json()["detail"], "errors": []})  # fmt: skip
    r = httpx.post(f"{stack.url}/write", content=b"not gzip", headers={**token(stack), "Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"].startswith("body could not be decompressed as gzip")
    r = httpx.post(f"{stack.url}/api/v2/write", content="m,host=h f=1")
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    # Other paths keep the service's own shape.
    r = httpx.post(f"{stack.url}/api/v1/telemetry/bulk", headers=stack.headers)
    assert set(r.json()) == {"detail"}


def test_the_device_tag_is_configurable(stack: Stack, servers: Servers, tmp_path: Path) -> None:
    sensor = unique("sensor")
    with gateway_copy(servers, tmp_path, TELEMETRY_LINE_PROTOCOL_DEVICE_TAGS="sensor") as copy:
        body = f"m,sensor={sensor},host=h1 f=1 {T0}\nm,host=h2 f=2 {T0}"
        r = httpx.post(f"{copy.url}/api/v2/write", params={"precision": "s"}, content=body, headers=token(copy))
        assert r.status_code == 400
        assert r.json()["errors"] == [{"line": 2, "error": "no device tag: the line needs one of the tags sensor"}]
    rows = wait_rows(servers, sensor, 1)
    assert (rows[0][0], rows[0][3]) == ("m_f", 1.0)


def test_a_large_body_is_split_per_message_and_bounded(stack: Stack, servers: Servers) -> None:
    host = unique("big")
    # 1500 lines: parsed off the event loop (over 1000 lines) and one device's 1500 points in two messages.
    body = "".join(f"m,host={host} f={i} {T0 + i}\n" for i in range(1500))
    r = httpx.post(f"{stack.url}/write", params={"precision": "s"}, content=gzip.compress(body.encode()),
                   headers={**token(stack), "Content-Encoding": "gzip"}, timeout=60)  # fmt: skip
    assert r.status_code == 204, r.text
    rows = wait_rows(servers, host, 1500, timeout=60)
    assert [v for *_, v, _ in rows] == [float(i) for i in range(1500)]
    r = httpx.post(f"{stack.url}/api/v2/write", params={"precision": "s"}, headers=token(stack),
                   content="".join(f"m,host={host} f=1 {T0}\n" for _ in range(20_000)), timeout=120)  # fmt: skip
    assert r.status_code == 204, r.text  # 20,000 lines, the last one ended by a newline: within the bound
    too_many = "".join(f"m,host={host} f=1 {T0}\n" for _ in range(20_001))
    r = httpx.post(f"{stack.url}/api/v2/write", params={"precision": "s"}, content=too_many, headers=token(stack))
    assert (r.status_code, r.json()["code"]) == (413, "request too large")
    assert r.json()["message"].startswith("body has 20001 lines; at most 20000 per request")
