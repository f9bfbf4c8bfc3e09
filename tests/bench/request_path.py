"""Where one request's CPU goes inside the gateway: in-process, no socket, no HTTP parser, no client.

`python -m tests.bench.request_path` runs in a child process (servers and workers started by the caller;
the gateway's settings come from the environment, as for `telemetry gateway`): it builds the real app
(create_app + its lifespan: NATS, the read pool, the key and definitions caches) and calls it as an ASGI
app, one request at a time, for three requests:

* ``post``: POST one point (JSON) to /api/v1/telemetry/devices/{id}/telemetry (waits for the PubAck);
* ``q1``: GET the latest value of one series;
* ``q2``: GET one series over 24 h in 1 h buckets (/aggregated, hourly rollup).

For each it prints one JSON line: CPU µs per request without a profiler (``time.process_time``: the figure
that bounds a gateway's requests per second per core), wall p50, and, from a second pass under cProfile
(CPU timer), µs per request per section of the request path (SECTIONS; the profiler inflates them, so
they are to be compared with each other and with the same section of another build in the same run).

The parent (`tests/bench/gateway_headroom.py`) runs it for the current tree and, when BENCH_BASE_TREE names
a checkout of an older commit, for that one (PYTHONPATH first), alternating, so before and after share
one machine state.
"""

import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

KINDS = ("post", "q1", "q2")
# CPU is read per block of this many requests: on a shared machine the fastest and the median block say more
# than one long average (other processes' bursts slow whole blocks).
BLOCK = 50

# Section → the functions (file suffix, function name) whose cumulative time it is; "minus" parts are
# subtracted (a section that wraps another is reported without it). Kept to names both old and new builds have.
_F = tuple[str, str]
SECTIONS: dict[str, tuple[tuple[_F, ...], tuple[_F, ...]]] = {
    "whole request (ASGI app)": (((("litestar/app.py", "__call__"),)), ()),
    "routing + scope (Litestar)": (
        ((("litestar/app.py", "__call__"),)),
        ((("gateway/request_log.py", "middleware"),)),
    ),
    "request id, log context, metrics (middleware)": (
        ((("gateway/request_log.py", "middleware"),)),
        ((("litestar/routes/http.py", "handle"),)),
    ),
    "auth: credentials, key lookup": ((("gateway/auth/authenticator.py", "authenticate"),), ()),
    "rate limit": ((("gateway/auth/rate_limit.py", "charge"),), ()),
    # Litestar's guard call (before) or the before_request hook's (after).
    "guard total (auth + rate + scope)": (
        (("litestar/handlers/base.py", "authorize_connection"), ("gateway/auth/guard.py", "guard_request")),
        (),
    ),
    "parameters + DI + body": (
        (
            ("litestar/_kwargs/kwargs_model.py", "to_kwargs"),
            ("litestar/_kwargs/kwargs_model.py", "resolve_dependencies"),
            ("litestar/_signature/model.py", "parse_values_from_connection_kwargs"),
        ),
        (),
    ),
    "handler (route function, all of it)": (
        (
            ("gateway/routes/queries.py", "get_latest"),
            ("gateway/routes/queries.py", "get_aggregated"),
            ("gateway/routes/ingest.py", "ingest_single"),
        ),
        (),
    ),
    "database (checkout + statement + rows)": (
        (
            ("gateway/views/latest.py", "latest_value"),
            ("gateway/views/aggregates.py", "aggregate"),
            ("gateway/views/aggregates.py", "prefer_exact"),
        ),
        (),
    ),
    # q1 through the latest-value cache (gateway/views/latest.py LatestReads.latest), and its NATS PING wait.
    "latest-value cache read (all of it)": ((("gateway/views/latest.py", "latest"),), ()),
    "latest-value cache: PING barrier": ((("gateway/latest_feed.py", "synced"),), ()),
    "publish + PubAck": ((("gateway/publisher.py", "publish_points"),), ()),
    "response: build": ((("litestar/handlers/http_handlers/base.py", "to_response"),), ()),
    "response: send": ((("litestar/response/base.py", "__call__"),), ()),
}

DEVICE, METRIC = "bench-gw-dev", "temperature"


def _q2_query() -> str:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=24)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (f"metric_name={METRIC}&device_id={DEVICE}&aggregation_type=avg&interval=3600"
            f"&start_time={start:{fmt}}&end_time={end:{fmt}}")  # fmt: skip


class _Point(msgspec.Struct):
    timestamp: str
    metric_name: str
    value: float


def requests(key: str) -> dict[str, Callable[[int], tuple[str, str, str, bytes]]]:
    """kind → (i → method, path, query, body); every POST is a new point of its own device."""
    base = datetime.now(UTC) - timedelta(hours=1)

    def post(i: int) -> tuple[str, str, str, bytes]:
        at = (base + timedelta(milliseconds=i)).isoformat()
        body = msgspec.json.encode(_Point(at, METRIC, float(i % 100)))
        return "POST", "/api/v1/telemetry/devices/bench-rp-post/telemetry", "", body

    q2 = _q2_query()
    return {
        "post": post,
        "q1": lambda i: ("GET", f"/api/v1/telemetry/devices/{DEVICE}/metrics/{METRIC}/latest", "", b""),
        "q2": lambda i: ("GET", "/api/v1/telemetry/aggregated", q2, b""),
    }


async def call(app: Any, key: str, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would hand it over."""
    headers = [(b"host", b"127.0.0.1:8218"), (b"x-api-key", key.encode()), (b"user-agent", b"bench")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": headers, "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8218), "state": {},
    }  # fmt: skip
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _sections(stats: pstats.Stats, n: int) -> dict[str, float]:
    cum: dict[tuple[str, str], float] = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for wanted in {f for adds, subs in SECTIONS.values() for f in (*adds, *subs)}:
            if file.endswith(wanted[0]) and func == wanted[1]:
                cum[wanted] = cum.get(wanted, 0.0) + ct
    out = {}
    for name, (adds, subs) in SECTIONS.items():
        out[name] = (sum(cum.get(f, 0.0) for f in adds) - sum(cum.get(f, 0.0) for f in subs)) / n * 1e6
    return out


async def probe(n: int) -> dict[str, dict[str, Any]]:
    """Measure every kind on the app built from this process's code (module docstring)."""
    from gateway.app import create_app
    from telemetry_core.logging import configure_logging
    from telemetry_core.settings import Settings

    settings = Settings.from_env(os.environ)
    configure_logging(settings, "gateway")
    app = create_app(settings)
    key = settings.api_keys[0]
    results: dict[str, dict[str, Any]] = {}
    async with app.lifespan():
        make = requests(key)
        counter = 0
        for kind in KINDS:

            async def run(count: int, record: list[float] | None, kind: str = kind) -> None:
                nonlocal counter
                for _ in range(count):
                    counter += 1
                    method, path, query, body = make[kind](counter)
                    t = time.perf_counter()
                    status, data = await call(app, key, method, path, query, body)
                    if record is not None:
                        record.append(time.perf_counter() - t)
                    if status != 200:
                        raise RuntimeError(f"{kind}: HTTP {status}: {data[:300]!r}")

            await run(200, None)  # warm-up: prepared statements, caches, code paths
            walls: list[float] = []
            blocks: list[float] = []  # CPU µs per request of each block of BLOCK requests
            for _ in range(max(1, n // BLOCK)):
                cpu0 = time.process_time()
                await run(BLOCK, walls)
                blocks.append((time.process_time() - cpu0) / BLOCK * 1e6)
            blocks.sort()
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await run(n, None)
            profiler.disable()
            if os.environ.get("REQUEST_PATH_DUMP"):
                profiler.dump_stats(f"{os.environ['REQUEST_PATH_DUMP']}.{kind}.prof")
            walls.sort()
            results[kind] = {
                "cpu_us": blocks[len(blocks) // 2],
                "cpu_min_us": blocks[0],
                "wall_p50_us": walls[len(walls) // 2] * 1e6,
                "sections": _sections(pstats.Stats(profiler), n),
            }
    return results


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for kind, figures in asyncio.run(probe(n)).items():
        print(json.dumps({"kind": kind, **figures}), flush=True)


if __name__ == "__main__":
    main()
