"""Decompression bombs: every Content-Encoding stops at the cap (413), however the body was compressed."""

import gzip
import io
import tracemalloc
from collections.abc import Callable

import lz4.frame
import pytest
import zstandard

from gateway.body import decompress
from gateway.errors import ApiError
from tests.support import bombs

LIMIT = 1 << 20  # 1 MiB cap
INFLATED = 256 << 20  # each bomb inflates to 256 MiB


def zstd_streamed_bomb() -> bytes:
    return bombs.zstd_streamed_bomb(INFLATED)


def zstd_sized_bomb() -> bytes:
    return bombs.zstd_sized_bomb(INFLATED)


def gzip_bomb() -> bytes:
    return bombs.gzip_bomb(INFLATED)


def lz4_bomb() -> bytes:
    return bombs.lz4_bomb(INFLATED)


@pytest.mark.parametrize(
    ("encoding", "bomb"),
    [("zstd", zstd_streamed_bomb), ("zstd", zstd_sized_bomb), ("gzip", gzip_bomb), ("lz4", lz4_bomb)],
)
def test_a_bomb_stops_at_the_cap_with_413(encoding: str, bomb: Callable[[], bytes]) -> None:
    data = bomb()
    assert len(data) * 100 < INFLATED  # small on the wire
    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as refused:
            decompress(data, encoding, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert str(LIMIT) in refused.value.detail
    assert peak < 8 * LIMIT  # it stopped near the cap instead of inflating all 256 MiB first


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_zstd_up_to_the_cap_inflates_whole(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(out, closefd=False) as writer:
        writer.write(body)
    assert decompress(out.getvalue(), "zstd", LIMIT) == body


def test_zstd_reads_every_frame() -> None:
    compressor = zstandard.ZstdCompressor()
    assert decompress(compressor.compress(b'{"a":') + compressor.compress(b"1}"), "zstd", LIMIT) == b'{"a":1}'


def test_zstd_frames_together_past_the_cap_are_413() -> None:
    half = zstandard.ZstdCompressor().compress(bytes(LIMIT // 2 + 1))
    with pytest.raises(ApiError) as refused:
        decompress(half + half, "zstd", LIMIT)
    assert refused.value.status == 413


def test_a_second_gzip_member_is_part_of_the_body() -> None:
    # Junk in a well-formed second member is not dropped: it makes the body invalid JSON downstream.
    assert decompress(gzip.compress(b'{"a": 1}') + gzip.compress(b"junk"), "gzip", LIMIT) == b'{"a": 1}junk'


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        # mtime=0: parameters are test ids, and ids must not change between collections (pytest-xdist workers).
        ("gzip", gzip.compress(b'{"a": 1}', mtime=0) + b"\x00junk"),
        ("gzip", gzip.compress(b'{"a": 1}', mtime=0)[:-4]),
        ("lz4", lz4.frame.compress(b'{"a": 1}') + b"junk"),
        ("lz4", lz4.frame.compress(b'{"a": 1}')[:-3]),
        ("zstd", zstandard.ZstdCompressor().compress(b'{"a": 1}') + b"junk"),
    ],
)
def test_trailing_or_missing_bytes_are_400(encoding: str, data: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        decompress(data, encoding, LIMIT)
    assert refused.value.status == 400
    assert refused.value.detail.startswith(f"body could not be decompressed as {encoding}")


def test_gzip_members_are_read_in_order_and_counted_together() -> None:
    assert decompress(gzip.compress(b'{"a":') + gzip.compress(b"1}"), "gzip", LIMIT) == b'{"a":1}'
    with pytest.raises(ApiError) as refused:
        decompress(gzip.compress(bytes(LIMIT // 2 + 1)) * 2, "gzip", LIMIT)
    assert refused.value.status == 413
