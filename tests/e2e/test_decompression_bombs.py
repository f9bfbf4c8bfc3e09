"""Issue 11: compressed bodies inflating to hundreds of MiB are refused at the limit + 1 byte, memory flat.

Measured on the real gateway process: its peak resident set (VmHWM, reset through /proc/<pid>/clear_refs
before each bomb) may grow by less than 50 MB while it refuses a bomb that inflates to 512 MiB.
"""

import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import lz4.frame
import pytest
import zstandard

from tests.e2e.conftest import now_iso
from tests.support import bombs
from tests.support.bombs import zstd_streamed_bomb
from tests.support.stack import Stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")

LIMIT = 16 * 1024 * 1024  # TELEMETRY_MAX_BODY_BYTES, default
INFLATED = 512 << 20
MAX_GROWTH = 50 * 1000 * 1000
URL = "/api/v1/telemetry/query"
TOO_LARGE = {"detail": f"request body exceeds {LIMIT} bytes (after decompression)"}


def zstd_bomb() -> bytes:
    return zstd_streamed_bomb(INFLATED)


def gzip_bomb() -> bytes:
    return bombs.gzip_bomb(INFLATED)


def lz4_bomb() -> bytes:
    return bombs.lz4_bomb(INFLATED)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # "5": reset the peak RSS to the current RSS


@pytest.mark.slow
@pytest.mark.parametrize(("encoding", "bomb"), [("zstd", zstd_bomb), ("gzip", gzip_bomb), ("lz4", lz4_bomb)])
def test_a_bomb_is_413_and_the_gateway_memory_stays_flat(
    client: httpx.Client, stack: Stack, encoding: str, bomb: Callable[[], bytes]
) -> None:
    data = bomb()
    assert len(data) < LIMIT  # small on the wire: only the inflated size is over the limit
    pid = stack.procs["gateway"].pid
    _reset_peak(pid)
    before = _status_kb(pid, "VmHWM") * 1024
    r = client.post(URL, content=data, headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
    growth = _status_kb(pid, "VmHWM") * 1024 - before
    print(f"{encoding} bomb ({len(data)} bytes on the wire): gateway peak RSS growth {growth / 1e6:.1f} MB")
    assert (r.status_code, r.json()) == (413, TOO_LARGE)
    assert growth < MAX_GROWTH, f"{encoding} bomb raised the gateway's peak RSS by {growth / 1e6:.0f} MB"
    assert httpx.get(f"{stack.url}/health", timeout=2).status_code == 200  # and it still answers at once


def _padded_query(size: int) -> bytes:
    body = json.dumps({"metrics": ["m"], "start_time": now_iso(-60), "end_time": now_iso()}).encode()
    return body + b" " * (size - len(body))  # trailing whitespace is valid JSON


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
        ("lz4", lz4.frame.compress),
        ("identity", lambda b: b),
    ],
)
def test_the_limit_is_exact_in_every_encoding(client: httpx.Client, encoding: str, compress: Callable) -> None:
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    at_limit = client.post(URL, content=compress(_padded_query(LIMIT)), headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    over = client.post(URL, content=compress(_padded_query(LIMIT + 1)), headers=headers)
    assert (over.status_code, over.json()) == (413, TOO_LARGE)
