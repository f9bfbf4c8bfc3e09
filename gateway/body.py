"""Request body bytes: undo Content-Encoding (gzip, zstd, lz4) within the size cap, then one typed decode."""

import zlib
from typing import TypeVar

import lz4.frame
import msgspec
import zstandard

from gateway.errors import ApiError, bad_request, unprocessable
from telemetry_schemas.codecs import split_validation_error
from telemetry_schemas.text import TOO_DEEP_DETAIL, json_problem

T = TypeVar("T")
_CHUNK = 1 << 20  # inflate in steps of this size


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds {limit} bytes (after decompression)")


def _zstd(data: bytes, limit: int) -> bytes:
    # Streamed: a frame need not declare its content size, so never trust it; read at most limit + 1.
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = reader.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)  # before any join: a bomb costs the limit once, not twice


def _gzip(data: bytes, limit: int) -> bytes:
    # Every member of a multi-member gzip body (RFC 1952) is read, so junk after the first member is an
    # error (400), never silently dropped; a stream that ends mid-member is one too. Inflated in 1 MiB
    # steps, so a bomb is stopped holding the limit once (zlib's own output buffer would double it).
    chunks: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, auto-detected
        while not inflater.eof:
            chunk = inflater.decompress(rest, _CHUNK)
            rest = inflater.unconsumed_tail
            if not chunk and not rest:
                raise ValueError("the compressed stream is truncated")
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
        rest = inflater.unused_data
        if not rest:
            return b"".join(chunks)


def _lz4(data: bytes, limit: int) -> bytes:
    inflater = lz4.frame.LZ4FrameDecompressor()
    chunks: list[bytes] = []
    size = 0
    rest = data
    while not inflater.eof:
        chunk = inflater.decompress(rest, max_length=_CHUNK)
        rest = b""
        if not chunk and inflater.needs_input:
            raise ValueError("the compressed stream is truncated")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
    if inflater.unused_data:
        raise ValueError(f"{len(inflater.unused_data)} bytes of trailing data after the lz4 frame")
    return b"".join(chunks)


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding without ever inflating past ``limit`` bytes (no zip bombs)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            out = _gzip(data, limit)
        elif encoding == "zstd":
            out = _zstd(data, limit)
        elif encoding == "lz4":
            out = _lz4(data, limit)
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
    """Decode a body: malformed or absurdly deep JSON is a 400, a well-formed body with a bad field a 422.

    Typed text fields are checked by their types; free-form parts (metadata, filters) by ``json_problem``
    (no NUL, nesting depth), so every body obeys the one text rule before anything is published.
    """
    if not data.strip():
        raise bad_request("request body is empty; send a JSON object")
    try:
        decoded = decoder.decode(data)
    except msgspec.ValidationError as exc:
        path, msg = split_validation_error(exc)
        field = path.lstrip(".") or "body"
        raise unprocessable(f"{field}: {msg}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # deeper than the decoder can go: never a 500
        raise bad_request(TOO_DEEP_DETAIL) from None
    found = json_problem(decoded, "", 0)
    if found is not None:
        raise unprocessable(f"{found[0]}: {found[1]}")
    return decoded
