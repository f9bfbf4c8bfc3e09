"""The line-protocol write routes' bodies as the OpenAPI document shows them, and their error bodies.

Errors are reported the way InfluxDB does, so that Influx clients and Telegraf log them as they know:
2.x ``{"code": "invalid", "message": ...}`` and 1.x ``{"error": ...}``; both also carry this service's
``detail`` (the same text) and ``errors``, every refused line with its 1-based number and reason.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar.openapi.spec import Operation, RequestBody

EXAMPLE = (
    "cpu,cpu=cpu-total,host=server01 usage_idle=97.6,usage_user=1.5 1765965600000000000\n"
    "mem,host=server01 used_percent=27.7,total=8589934592i 1765965600000000000\n"
)
LineProtocolText = Annotated[
    str,
    msgspec.Meta(
        description="InfluxDB line protocol, one point per line: "
        "measurement[,tag=value...] field=value[,field=value...] [timestamp]",
        examples=["cpu,host=server01,cpu=cpu0 usage_idle=98.5,usage_user=1.2 1765965600000000000"],
    ),
]


V2_PATH = "/api/v2/write"
V1_PATH = "/write"
# InfluxDB 2.x error codes by status (its "influxdb error" codes), for clients that branch on ``code``.
_V2_CODES = {
    400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found", 413: "request too large",
    415: "unsupported media type", 422: "unprocessable entity", 429: "too many requests", 503: "unavailable",
}  # fmt: skip


def influx_error_fields(path: str, status: int, detail: str) -> dict[str, Any]:
    """The fields InfluxDB's error body has, added to any error answered on a write path (else {})."""
    if path == V2_PATH:
        return {"code": _V2_CODES.get(status, "internal error"), "message": detail}
    if path == V1_PATH:
        return {"error": detail}
    return {}


class RefusedLine(msgspec.Struct, kw_only=True):
    """One refused line (or one refused field of it) and why."""

    line: int
    error: str


class InfluxV2Error(msgspec.Struct, kw_only=True):
    """POST /api/v2/write error, as InfluxDB 2.x reports it.

    On a 400 for refused lines the good lines were stored and ``errors`` lists the refused ones (it is empty
    for errors of the whole request).
    """

    code: str
    message: str
    detail: str
    errors: list[RefusedLine] = []


class InfluxV1Error(msgspec.Struct, kw_only=True):
    """POST /write error, as InfluxDB 1.x reports it.

    On a 400 for refused lines the good lines were stored and ``errors`` lists the refused ones (it is empty
    for errors of the whole request).
    """

    error: str
    detail: str
    errors: list[RefusedLine] = []


@dataclass
class LineProtocolOperation(Operation):
    """The write operations as Influx clients see them: a text/plain body, 204 with no body, no 422."""

    def __post_init__(self) -> None:
        """Re-label the body's media type and drop what these routes never answer."""
        body = self.request_body
        if isinstance(body, RequestBody) and body.content:
            media = next(iter(body.content.values()))
            media.example = EXAMPLE
            body.content = {"text/plain": media}
            body.description = "InfluxDB line protocol (UTF-8), optionally compressed (Content-Encoding)"
        if self.responses:
            self.responses.pop("422", None)
            no_content = self.responses.get("204")
            if no_content is not None and hasattr(no_content, "content"):
                no_content.content = None
