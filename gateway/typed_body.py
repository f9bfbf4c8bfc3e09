"""Request bodies declared by type: the route's ``data`` parameter and its OpenAPI schema come from one type.

Litestar's own body decoding goes JSON → Python objects → ``msgspec.convert(strict=False)``: it would
accept ``"true"`` for a bool and answer 400 with a generic detail. These DTOs decode the (decompressed)
bytes straight into the type with msgspec, strictly, with the project's ``{"detail": "<field>: ..."}``
errors (gateway/body.py), and hand Litestar the type for the OpenAPI document.

* ``JsonBody[T]``: the route receives a ``T`` (control-plane routes).
* ``RawBody[T]``: the route receives the decompressed bytes and decodes them itself (ingestion, where
  one msgspec pass with per-point partial success is measured 2-4x faster); ``T`` only documents it.
"""

from typing import Any, ClassVar, TypeVar

import msgspec
from litestar.dto import AbstractDTO
from litestar.typing import FieldDefinition

from gateway.body import decode, decompress

T = TypeVar("T")


class _Body(AbstractDTO[T]):
    """A body of type ``model_type``; no DTO backend (no field renaming or filtering is wanted)."""

    # handler id → the route may be called without a body (its ``data`` parameter has a default).
    _optional: ClassVar[dict[str, bool]] = {}

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Any:
        raise NotImplementedError

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        """Remember whether the body may be left out; nothing else is prepared per handler."""
        if field_definition.name == "data":
            _Body._optional[handler_id] = field_definition.has_default or field_definition.is_optional

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any) -> Any:
        """The schema of ``model_type`` itself (a component reference for Structs)."""
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))

    def _bytes(self, value: bytes) -> bytes:
        connection = self.asgi_connection
        limit = connection.route_handler.resolve_request_max_body_size() or len(value)
        return decompress(value, connection.headers.get("content-encoding", ""), limit)

    def _may_be_empty(self) -> bool:
        return _Body._optional.get(self.asgi_connection.route_handler.handler_id, False)


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


class JsonBody(_Body[T]):
    """Decode the body into ``model_type`` (strict msgspec); a whitespace-only optional body is None."""

    def decode_bytes(self, value: bytes) -> Any:
        """Decompress and decode; 400 unreadable, 422 naming the field at fault."""
        data = self._bytes(value)
        if not data.strip() and self._may_be_empty():
            return None
        decoder = _decoders.get(self.model_type)
        if decoder is None:
            decoder = _decoders[self.model_type] = msgspec.json.Decoder(self.model_type)
        return decode(data, decoder)


class RawBody(_Body[T]):
    """Hand the route the decompressed bytes; ``model_type`` documents what they hold."""

    def decode_bytes(self, value: bytes) -> bytes:
        """Decompress only."""
        return self._bytes(value)
