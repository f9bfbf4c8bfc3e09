"""E5: real-time subscriptions (POST/DELETE /api/v1/telemetry/subscribe) and their WebSocket."""

import re
from datetime import UTC, datetime
from typing import Any

from litestar import WebSocket, delete, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody

from gateway.auth.authenticator import authenticate
from gateway.auth.guard import require_credentials
from gateway.commands.aggregate import CommandContext
from gateway.errors import not_found, unprocessable
from gateway.live.condition import ConditionError, parse_condition
from gateway.live.hub import LiveHub
from gateway.openapi import errors
from gateway.typed_body import JsonBody
from telemetry_schemas.api.stream import (
    CancelResponse,
    ConnectTokenResponse,
    StreamMessage,
    SubscribeRequest,
    SubscribeResponse,
)
from telemetry_schemas.enums import ApiKeyScope

_TAGS = ["real-time streaming"]
_BASE = "/api/v1/telemetry/subscribe"
_WS = "/ws/telemetry"
# KV keys and NATS tokens: anything else cannot name a subscription, so it is unknown without a lookup.
# Checked with fullmatch: `$` alone would also let a trailing newline through (it would reach a KV subject).
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_NOT_FOUND = 4004

_MESSAGE_DOC = (
    "Each message is a JSON text frame: " + " ".join((StreamMessage.__doc__ or "").split()) + " Each data point "
    "has device_id, metric_name, value, timestamp, sequence_number and, when set, unit, tags and metadata."
)


def _expires_at(expiry: int) -> datetime:
    return datetime.fromtimestamp(expiry, UTC)


@post(_BASE, status_code=201, tags=_TAGS, summary="Create a real-time subscription (E5-US1)",
      dto=JsonBody[SubscribeRequest], return_dto=None,
      description="201 with the subscription_id, the websocket_url to open and a connect_token for it. The "
      "subscription is stored where every gateway copy sees it; with no socket open it is forgotten after "
      "`expires_in` seconds (TELEMETRY_SUBSCRIPTION_TTL, default 300). The connect_token is valid for "
      "TELEMETRY_CONNECT_TOKEN_TTL seconds (default 120); POST .../subscribe/{subscription_id}/token gives a new "
      "one. 422 names the field at fault: max_frequency outside 100..10000 ms, a bad device id or metric name, "
      "or filter_condition syntax (with the position).")  # fmt: skip
async def subscribe(
    data: JSONBody[SubscribeRequest], live: NamedDependency[LiveHub], ctx: NamedDependency[CommandContext]
) -> SubscribeResponse:
    """Store a subscription and hand out its socket address and connect token."""
    if data.filter_condition is not None:
        try:
            parse_condition(data.filter_condition)
        except ConditionError as exc:
            raise unprocessable(f"filter_condition: {exc}") from None
    sub = await live.store.create(data, ctx.principal)
    token, expiry = live.tokens.mint(sub.subscription_id)
    return SubscribeResponse(
        subscription_id=sub.subscription_id,
        message="Subscription created successfully",
        websocket_url=f"{_WS}/{sub.subscription_id}",
        connect_token=token,
        connect_token_expires_at=_expires_at(expiry),
        expires_in=live.ttl_s,
    )


@post(f"{_BASE}/{{subscription_id:str}}/token", status_code=200, tags=_TAGS, responses=errors(404),
      summary="A new connect token for a subscription",
      description="200 with a fresh connect_token (e.g. to reconnect a browser after the first expired); "
      "404 when the subscription is unknown, cancelled or expired.")  # fmt: skip
async def connect_token(subscription_id: FromPath[str], live: NamedDependency[LiveHub]) -> ConnectTokenResponse:
    """Mint a token for an existing subscription."""
    if not _ID.fullmatch(subscription_id) or await live.store.get(subscription_id) is None:
        raise not_found(f"subscription {subscription_id!r} not found")
    token, expiry = live.tokens.mint(subscription_id)
    return ConnectTokenResponse(
        subscription_id=subscription_id, connect_token=token, connect_token_expires_at=_expires_at(expiry)
    )


@delete(f"{_BASE}/{{subscription_id:str}}", status_code=200, tags=_TAGS, responses=errors(404),
        summary="Cancel a subscription (E5-US3)",
        description="200 with a confirmation; the socket open on it, on whichever gateway copy, is closed with "
        "code 1000 and reason 'subscription cancelled'. 404 when the subscription is unknown, already cancelled "
        "or expired.")  # fmt: skip
async def cancel(subscription_id: FromPath[str], live: NamedDependency[LiveHub]) -> CancelResponse:
    """Delete the subscription; every copy's watcher closes its sockets."""
    if not _ID.fullmatch(subscription_id) or not await live.store.cancel(subscription_id):
        raise not_found(f"subscription {subscription_id!r} not found")
    return CancelResponse(subscription_id=subscription_id, status="cancelled", message="Subscription cancelled")


@websocket(f"{_WS}/{{subscription_id:str}}", opt={"public": True}, guards=[require_credentials], tags=_TAGS,
           summary="Real-time stream of a subscription (E5-US2)",
           description="Query parameters: token (the connect_token; or send X-Api-Key / Authorization headers), "
           "since (a sequence_number received earlier: first replays what came after it, then continues live). "
           + _MESSAGE_DOC + " Close codes: 4004 unknown, cancelled or expired subscription (checked first); 4001 "
           "no valid token or credentials; 4003 credentials without the read scope; 4400 bad since; 1000 cancelled "
           "by DELETE; 1001 gateway stopping; 1011 server error (reconnect with since).")  # fmt: skip
async def stream_socket(
    socket: WebSocket[Any, Any, Any], subscription_id: FromPath[str], live: NamedDependency[LiveHub]
) -> None:
    """Check the subscription, then the credentials, then stream (the guard is skipped: it would answer first).

    A refused socket is accepted and then closed with a code, which a browser can read (a refused handshake
    tells it nothing); an admitted one is accepted once its consumer exists (LiveHub.serve).
    """
    stored = await live.store.get(subscription_id) if _ID.fullmatch(subscription_id) else None
    if stored is None:
        await _refuse(socket, CLOSE_NOT_FOUND, "subscription not found (unknown, cancelled or expired)")
        return
    token = socket.query_params.get("token")
    if not (token and live.tokens.valid(token, subscription_id)):
        try:
            principal = await authenticate(socket)
        except NotAuthorizedException:
            reason = "connect token expired or invalid" if token else "send ?token=<connect_token> or X-Api-Key"
            await _refuse(socket, CLOSE_UNAUTHORIZED, reason)
            return
        if not principal.may(ApiKeyScope.READ):
            await _refuse(
                socket, CLOSE_FORBIDDEN, f"needs scope read; these credentials have {principal.describe_scopes()}"
            )
            return
    since_text = socket.query_params.get("since")
    since = None
    if since_text is not None:
        if not since_text.isdigit() or len(since_text) > 19:
            await _refuse(socket, CLOSE_BAD_REQUEST, "since must be a sequence_number (a non-negative integer)")
            return
        since = int(since_text)
    await live.serve(socket, stored, since)


async def _refuse(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    await socket.accept()
    await socket.close(code, reason)


ROUTES = [subscribe, connect_token, cancel, stream_socket]
