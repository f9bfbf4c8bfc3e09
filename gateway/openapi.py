"""The OpenAPI document's configuration; every schema in it is generated from the types the routes declare."""

from dataclasses import dataclass

# Litestar's own Struct schema plugin; it is not exported under a public name.
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Operation, RequestBody, Schema, SecurityScheme
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from telemetry_core import __version__

_DESCRIPTION = (
    "IoT telemetry ingestion and queries. Every endpoint but /health* needs X-Api-Key: <key> or Authorization: "
    'Bearer <key>. Request bodies may be sent with Content-Encoding gzip, zstd or lz4. Errors are {"detail": "..."}: '
    "400 unreadable request or over a limit, 401 credentials, 404 not found, 409 conflict, 413 body too large, "
    "415 unsupported Content-Encoding, 422 invalid field (named with its index), 503 NATS or PostgreSQL unavailable."
)


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose request body may be left out (Litestar marks every body as required)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


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
        if schema.required and schema.properties:
            order = list(schema.properties)
            schema.required = sorted(schema.required, key=lambda name: order.index(name) if name in order else 0)
        return schema


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
