"""Small accessors handlers use to reach the gateway's resources and request context."""

import re
import uuid
from typing import Any

from litestar import Request

from gateway.errors import bad_request
from gateway.state import GatewayState
from telemetry_core.headers import REQUEST_ID
from telemetry_schemas.fields import SUBJECT_SAFE

_SAFE = re.compile(SUBJECT_SAFE)


def state_of(request: Request[Any, Any, Any]) -> GatewayState:
    """The gateway state the lifespan put on the app."""
    state: GatewayState = request.app.state.gw
    return state


def request_id(request: Request[Any, Any, Any]) -> str:
    """The caller's X-Request-Id (carried into message headers and worker logs), or a new one."""
    given = request.headers.get(REQUEST_ID.lower())
    return given[:64] if given else uuid.uuid4().hex


def checked_name(value: str, what: str) -> str:
    """Validate a device id or metric name from the path: subject-safe, 1-128 characters."""
    if not 1 <= len(value) <= 128 or not _SAFE.match(value):
        raise bad_request(f"{what} {value!r} is invalid: use 1-128 characters from A-Z a-z 0-9 _ - :")
    return value
