"""The OpenAPI document's configuration; every schema in it is generated from the types the routes declare."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Litestar's own Struct schema plugin; it is not exported under a public name.
from litestar import Litestar
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from telemetry_core import __version__
from telemetry_schemas.api.errors import ErrorResponse

_DESCRIPTION = (
    "IoT telemetry ingestion and queries. Every endpoint but /health needs X-Api-Key: <key> or Authorization: "
    "Bearer <key> (/health/detailed too, unless the operator sets TELEMETRY_PUBLIC_HEALTH_DETAILS=true). Request "
    'bodies may be sent with Content-Encoding gzip, zstd or lz4. Errors are {"detail": "..."}: 400 unreadable '
    "request or over a limit, 401 credentials, 404 not found, 405 method not allowed (with Allow), 409 conflict, "
    "413 body too large (before or after decompression), 415 unsupported Content-Encoding, 422 invalid field or "
    "query parameter (named with its index), 429 over a key's rate limit (Retry-After), 503 NATS or PostgreSQL "
    "unavailable or the service overloaded (busy or shedding ingestion; Retry-After), 504 a query past the "
    "statement timeout. Text fields: no NUL, bounded "
    "length; free-form JSON nests at most 32 levels; every integer is bounded as documented."
)


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose request body may be left out (Litestar marks every body as required)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def _any_of(schema: Schema) -> None:
    """Turn ``oneOf`` into ``anyOf`` throughout a Struct's schema.

    Litestar writes a union as ``oneOf``, which requires exactly one branch to match: ``int | float`` would
    then refuse every integer (valid as both). msgspec decodes a union by trying its types, which is ``anyOf``.
    """
    if schema.one_of:
        schema.any_of, schema.one_of = schema.one_of, None
    children: list[Any] = [*(schema.properties or {}).values(), *(schema.any_of or []), *(schema.all_of or [])]
    children += [schema.items, schema.additional_properties]
    for child in children:
        if isinstance(child, Schema):
            _any_of(child)


class DeclaredOrderStructs(OpenAPISchemaPlugin):
    """msgspec Structs as Litestar documents them, with ``required`` in declaration order, not sorted.

    Declaration order is how msgspec's own JSON Schema (and the exported schemas) list them.
    """

    def __init__(self) -> None:
        self._structs = StructSchemaPlugin()

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        """The fields Litestar's Struct plugin handles."""
        return self._structs.is_plugin_supported_field(field_definition)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: object) -> Schema:
        """Litestar's schema, then ``required`` re-ordered as the fields are declared."""
        schema = self._structs.to_openapi_schema(field_definition, schema_creator)  # type: ignore[arg-type]
        _any_of(schema)
        if schema.required and schema.properties:
            order = list(schema.properties)
            schema.required = sorted(schema.required, key=lambda name: order.index(name) if name in order else 0)
        return schema


_MEANING = {
    400: "The request cannot be read: malformed JSON or compression, an invalid identifier in the path or query, "
    "JSON nested deeper than the decoder allows, or over a count limit. The detail names the field.",
    401: "Missing or invalid credentials.",
    403: "The credentials lack the scope this operation needs, or may not write this device's points.",
    404: "No such resource (or no data for it).",
    409: "Conflict: the resource exists, the transition is not allowed, or another writer changed it first.",
    413: "The body is larger than the limit, before or after decompression.",
    415: "Unsupported Content-Encoding (use gzip, zstd or lz4).",
    422: "A field of the body, or a query parameter, is invalid; the detail names it (with its index, and the "
    "allowed values for an enumeration).",
    429: "Over this key's rate limit (TELEMETRY_RATE_LIMIT_*); retry after the Retry-After header's seconds.",
    503: "NATS or PostgreSQL is unavailable, or the service is overloaded; nothing was changed. Retry. When "
    "overloaded the detail starts `the service is busy` (every pooled database connection stayed in use for "
    "TELEMETRY_DB_TIMEOUT, or too many heavy queries waited TELEMETRY_HEAVY_QUERY_WAIT) or, on ingestion, `the "
    "service is shedding load` (storage is more than TELEMETRY_MAX_INGEST_BACKLOG seconds behind), and the "
    "Retry-After header gives the seconds to wait.",
    504: "The query ran longer than TELEMETRY_STATEMENT_TIMEOUT and PostgreSQL cancelled it; ask for a shorter "
    "range, fewer devices or an interval the rollups serve.",
}
# Handler parameters that are filled by dependency injection, not by the client.
_INJECTED = frozenset({"request", "data", "gw", "pool", "settings", "ctx", "metric_commands", "rule_commands",
                       "alert_commands", "off_loop", "live"})  # fmt: skip


def errors(*statuses: int, model: Any = ErrorResponse, description: str | None = None) -> dict[int, ResponseSpec]:
    """Responses for ``statuses``, each with the error body ``{"detail": ...}`` (or ``model``)."""
    return {
        status: ResponseSpec(data_container=model, description=description or _MEANING[status], generate_examples=False)
        for status in statuses
    }


def _common_statuses(handler: HTTPRouteHandler) -> list[int]:
    """What any operation of this shape can answer, whatever it does."""
    params = handler.parsed_fn_signature.parameters
    path_params = {name for path in handler.paths for name in re.findall(r"{(\w+):", path)}
    query_params = set(params) - _INJECTED - path_params
    statuses = [503]
    if "data" in params or path_params or query_params:
        statuses.append(400)
    if not handler.opt.get("public"):
        # 401 credentials; 403 scope or device not allowed; 429 over a per-key rate limit (when configured).
        statuses += [401, 403, 429]
    if "data" in params:
        statuses += [413, 415, 422]
    elif query_params:
        statuses.append(422)
    if "ctx" in params:  # a command: appends to an aggregate's subject with an expected sequence
        statuses.append(409)
    if not handler.opt.get("public") and ({"pool", "gw"} & set(params)) and "ingestion" not in (handler.tags or []):
        statuses.append(504)  # reads PostgreSQL through the pool: its statements carry the statement timeout
    return statuses


def document_errors(handlers: Iterable[Any]) -> None:
    """Give every operation the statuses it can answer with their real body; what a route declares wins.

    Litestar would otherwise document a 400 whose body requires ``status_code`` (never sent) and nothing else.
    """
    for handler in handlers:
        if not isinstance(handler, HTTPRouteHandler):
            continue
        declared = dict(handler.responses or {})
        for status, spec in errors(*_common_statuses(handler)).items():
            declared.setdefault(status, spec)
        handler.responses = declared


_RETRY_AFTER = {
    "429": "Seconds until this key's rate limit would let the request through.",
    "503": "Seconds to wait when the service is overloaded (busy or shedding ingestion); absent when NATS or "
    "PostgreSQL is unavailable.",
}


def document_retry_after(app: Litestar) -> None:
    """Give the 429 and 503 answers of every operation their ``Retry-After`` header in the document.

    ResponseSpec cannot carry headers, so the document Litestar built (and keeps) is amended in place.
    """
    document: OpenAPI = app.openapi_schema
    for item in (document.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            for status, description in _RETRY_AFTER.items():
                response = (operation.responses or {}).get(status) if operation is not None else None
                if isinstance(response, OpenAPIResponse):
                    header = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER, minimum=1), description=description)
                    response.headers = {**(response.headers or {}), "Retry-After": header}


def openapi_config() -> OpenAPIConfig:
    """Title, version, description and the two ways to present a key."""
    return OpenAPIConfig(
        title="Telemetry Service",
        version=__version__,
        description=_DESCRIPTION,
        path="/schema",
        components=Components(
            security_schemes={
                "ApiKey": SecurityScheme(type="apiKey", name="X-Api-Key", security_scheme_in="header"),
                "Bearer": SecurityScheme(type="http", scheme="bearer"),
            }
        ),
        security=[{"ApiKey": []}, {"Bearer": []}],
    )
