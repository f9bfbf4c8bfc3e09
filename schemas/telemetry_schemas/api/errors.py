"""The PRD's common error body."""

from telemetry_schemas.base import ApiBody


class ErrorResponse(ApiBody):
    """``{"detail": "..."}``: detail says what is wrong and where (field, index)."""

    detail: str
