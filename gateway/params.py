"""Path and query parameters that carry identifiers: their pattern and bounds, documented as enforced.

``checked_name`` (gateway/deps.py) enforces them with a 400 naming the parameter; these types only put
the same rule into the OpenAPI document (``schema_extra`` documents without making Litestar validate too,
which would answer a second, differently worded error).
"""

from datetime import datetime
from typing import Annotated

from litestar.params import Parameter

from telemetry_schemas.fields import SUBJECT_SAFE

_ID_SCHEMA = {"pattern": SUBJECT_SAFE, "min_length": 1, "max_length": 128}
_ID_DOC = "1-128 characters from A-Z a-z 0-9 _ - : (400 otherwise)"

Identifier = Annotated[str, Parameter(description=_ID_DOC, schema_extra=_ID_SCHEMA)]
OptionalIdentifier = Annotated[str | None, Parameter(description=_ID_DOC, schema_extra=_ID_SCHEMA)]

_END_DOC = "RFC 3339 timestamp with a zone; must be after start_time (422 otherwise)"
EndTime = Annotated[datetime, Parameter(description=_END_DOC)]
OptionalEndTime = Annotated[datetime | None, Parameter(description=_END_DOC)]
