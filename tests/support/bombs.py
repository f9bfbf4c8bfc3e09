"""Decompression bombs: small bodies that inflate to ``size`` bytes of zeros, in each accepted encoding."""

import gzip
import io
from collections.abc import Callable

import lz4.frame
import zstandard


def _zeros(write: Callable[[bytes], object], total: int) -> None:
    block = bytes(1 << 20)
    for _ in range(total // len(block)):
        write(block)


def zstd_streamed_bomb(size: int) -> bytes:
    """A zstd frame written as a stream: it declares no content size, so only an output cap can stop it."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(out, closefd=False) as writer:
        _zeros(writer.write, size)
    data = out.getvalue()
    assert zstandard.get_frame_parameters(data).content_size == zstandard.CONTENTSIZE_UNKNOWN
    return data


def zstd_sized_bomb(size: int) -> bytes:
    """A zstd frame that declares its (huge) content size up front."""
    return zstandard.ZstdCompressor().compress(bytes(size))


def gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as writer:
        _zeros(writer.write, size)
    return out.getvalue()


def lz4_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with lz4.frame.LZ4FrameFile(out, mode="wb") as writer:
        _zeros(writer.write, size)
    return out.getvalue()
