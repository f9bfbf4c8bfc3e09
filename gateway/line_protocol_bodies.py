"""The line-protocol write routes' bodies as the OpenAPI document shows them, and their error bodies.

Errors are reported the way InfluxDB does, so that Influx clients and Telegraf log them as they know:
2.x ``{"code": "invalid", "message": ...}`` and 1.x ``{"error": ...}``; both also carry this service's
``detail`` (the same text) and ``errors``, every refused line with its 1-based number and reason.
"""

from typing import Annotated

import msgspec

LineProtocolText = Annotated[
    str,
    msgspec.Meta(
        description="InfluxDB line protocol, one point per line: "
        "measurement[,tag=value...] field=value[,field=value...] [timestamp]",
        examples=["cpu,host=server01,cpu=cpu0 usage_idle=98.5,usage_user=1.2 1765965600000000000"],
    ),
]


class RefusedLine(msgspec.Struct, kw_only=True):
    """One refused line (or one refused field of it) and why."""

    line: int
    error: str


class InfluxV2Error(msgspec.Struct, kw_only=True):
    """POST /api/v2/write error (400): good lines were stored, the refused ones are listed."""

    code: str
    message: str
    detail: str
    errors: list[RefusedLine] = []


class InfluxV1Error(msgspec.Struct, kw_only=True):
    """POST /write error (400): good lines were stored, the refused ones are listed."""

    error: str
    detail: str
    errors: list[RefusedLine] = []
