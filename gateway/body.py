"""Request body bytes: undo Content-Encoding (gzip, zstd, lz4) within the size cap, then one typed decode."""

import zlib
from typing import TypeVar

import lz4.frame
import msgspec
import zstandard

from gateway.errors import ApiError, bad_request, unprocessable
from telemetry_schemas.codecs import split_validation_error

T = TypeVar("T")
_ZSTD_CHUNK = 1 << 20


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds {limit} bytes (after decompression)")


def _zstd(data: bytes, limit: int) -> bytes:
    # Streamed: a frame need not declare its content size, so never trust it; read at most limit + 1.
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = reader.read(min(_ZSTD_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding without ever inflating past ``limit`` bytes (no zip bombs)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, auto-detected
            out = inflater.decompress(data, limit + 1)
        elif encoding == "zstd":
            out = _zstd(data, limit)
        elif encoding == "lz4":
            out = lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=limit + 1)
        else:
            raise ApiError(415, f"Content-Encoding {encoding!r} is not supported; use gzip, zstd or lz4")
    except ApiError:
        raise
    except Exception as exc:
        raise bad_request(f"body could not be decompressed as {encoding}: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out


def decode(data: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a body: malformed JSON is a 400, a well-formed body with a bad field a 422."""
    if not data.strip():
        raise bad_request("request body is empty; send a JSON object")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        path, msg = split_validation_error(exc)
        field = path.lstrip(".") or "body"
        raise unprocessable(f"{field}: {msg}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
