"""Path and query parameters that carry identifiers: their pattern and bounds, documented as enforced.

``checked_name`` (gateway/deps.py) enforces them with a 400 naming the parameter; these types only put
the same rule into the OpenAPI document (``schema_extra`` documents without making Litestar validate too,
which would answer a second, differently worded error).
"""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.params import Parameter

from gateway.errors import bad_request
from telemetry_schemas.fields import SUBJECT_SAFE

_ID_SCHEMA = {"pattern": SUBJECT_SAFE, "min_length": 1, "max_length": 128}
_ID_DOC = "1-128 characters from A-Z a-z 0-9 _ - : (400 otherwise)"

Identifier = Annotated[str, Parameter(description=_ID_DOC, schema_extra=_ID_SCHEMA)]
OptionalIdentifier = Annotated[str | None, Parameter(description=_ID_DOC, schema_extra=_ID_SCHEMA)]

_END_DOC = "RFC 3339 timestamp with a zone; must be after start_time (422 otherwise)"
EndTime = Annotated[datetime, Parameter(description=_END_DOC)]
OptionalEndTime = Annotated[datetime | None, Parameter(description=_END_DOC)]

_RFC3339 = msgspec.json.Decoder(datetime)  # strict: only an RFC 3339 string decodes


def check_timestamps(request: Request[Any, Any, Any], *names: str) -> None:
    """400 unless each query timestamp given is RFC 3339 with a zone, as documented.

    Litestar converts leniently and would also take a number as epoch seconds (``start_time=0.5``) or a
    naive time; the raw text is checked here so the document (``format: date-time``) tells the truth.
    """
    for name in names:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            ok = _RFC3339.decode(msgspec.json.encode(raw)).tzinfo is not None
        except msgspec.DecodeError:
            ok = False
        if not ok:
            raise bad_request(f"{name}: must be RFC 3339 with a zone, e.g. 2025-12-18T00:00:00Z")
