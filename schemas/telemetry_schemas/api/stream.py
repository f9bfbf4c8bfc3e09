"""Bodies of the E5 real-time streaming endpoints and the messages a subscription's WebSocket receives."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

from telemetry_schemas.base import ApiBody
from telemetry_schemas.fields import DeviceId, MetricName, Tags

MIN_FREQUENCY_MS = 100
MAX_FREQUENCY_MS = 10_000
DEFAULT_FREQUENCY_MS = 1000
# A subscription names at most this many devices: each becomes one filter subject of its JetStream consumer.
MAX_DEVICES = 256
MAX_METRICS = 256
MAX_CONDITION_CHARS = 512

FilterCondition = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_CONDITION_CHARS,
        description=(
            "A small expression over each point, e.g. `value > 25 and tags.site == 'north'`. Operands: "
            "`value`, `metric_name`, `device_id`, `unit`, `tags.<key>`, numbers, 'strings' or \"strings\", "
            "true, false; operators ==, !=, >, >=, <, <=; combined with and, or, not and parentheses. "
            "A comparison whose sides are of different kinds (a number against text) is false. "
            "Anything else is answered 422 with the position at fault; it is parsed, never evaluated as code."
        ),
        examples=["value > 25"],
    ),
]


class SubscribeRequest(ApiBody):
    """E5-US1 body: which points to stream, and how often at most."""

    device_ids: Annotated[
        list[DeviceId],
        msgspec.Meta(max_length=MAX_DEVICES, description="Devices to stream; empty or absent = every device"),
    ] = []
    metric_names: Annotated[
        list[MetricName],
        msgspec.Meta(max_length=MAX_METRICS, description="Metrics to stream; empty or absent = every metric"),
    ] = []
    tags: Annotated[
        Tags, msgspec.Meta(description="A point is streamed only when it carries every one of these tags")
    ] = {}
    filter_condition: FilterCondition | None = None
    max_frequency: Annotated[
        int,
        msgspec.Meta(
            ge=MIN_FREQUENCY_MS,
            le=MAX_FREQUENCY_MS,
            description="At most one message per this many milliseconds; points arriving in between are "
            "coalesced into the next message",
        ),
    ] = DEFAULT_FREQUENCY_MS


class SubscribeResponse(ApiBody):
    """E5-US1 answer.

    Open ``websocket_url`` with ``?token=<connect_token>`` (browsers cannot set headers, and an API key
    in a URL ends up in proxy logs), or with the usual credential headers. ``?since=<sequence_number>``
    resumes after the last message received.
    """

    subscription_id: str
    message: str
    websocket_url: str
    connect_token: str
    connect_token_expires_at: datetime
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the subscription lives while no socket is open on it")]


class ConnectTokenResponse(ApiBody):
    """A fresh connect token for an existing subscription (e.g. to reconnect after the first one expired)."""

    subscription_id: str
    connect_token: str
    connect_token_expires_at: datetime


class CancelResponse(ApiBody):
    """E5-US3 answer."""

    subscription_id: str
    status: str
    message: str


class StreamedPoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One point in a stream message; ``sequence_number`` is the POINTS stream message it came in.

    ``timestamp`` and ``metadata`` are passed on as the device sent them (RFC 3339 text; a JSON object).
    The gateway decodes a signed POINTS message's points straight into this type and then sets
    ``device_id`` and ``sequence_number`` (whatever a point carried under those names is overwritten).
    """

    device_id: str = ""
    metric_name: str
    value: Any
    timestamp: str
    sequence_number: int = 0
    unit: str | None = None
    tags: dict[str, str] = {}
    metadata: msgspec.Raw = msgspec.Raw(b"{}")


class StreamMessage(msgspec.Struct, kw_only=True):
    """What the socket receives, at most once per ``max_frequency`` ms (a JSON text frame).

    ``device_id`` is the device of every point in the message, or null when the message holds points of
    several devices (each point names its own). ``sequence_number`` is the POINTS stream sequence of the
    last message covered: reconnect with ``?since=<sequence_number>`` to continue with no gap and no
    duplicate. ``dropped`` counts points discarded since the previous message because this socket's
    buffer overflowed (a client reading too slowly); 0 normally.
    """

    subscription_id: str
    device_id: str | None
    data_points: list[StreamedPoint]
    timestamp: datetime
    sequence_number: int
    dropped: int = 0
