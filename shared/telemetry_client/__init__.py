"""Python client for the telemetry service: sync and async, typed with the service's own msgspec contracts.

```python
from telemetry_client import TelemetryClient, Point
with TelemetryClient("http://127.0.0.1:8218", api_key) as tc:
    tc.send("boiler_7", Point(timestamp=now, metric_name="temperature", value=21.5))
```
"""

from telemetry_client.async_client import AsyncTelemetryClient
from telemetry_client.batching import AsyncBatcher, Batcher
from telemetry_client.errors import ServiceUnavailable, TelemetryApiError, TelemetryClientError
from telemetry_client.sync_client import TelemetryClient
from telemetry_schemas.values import Point

__all__ = [
    "AsyncBatcher",
    "AsyncTelemetryClient",
    "Batcher",
    "Point",
    "ServiceUnavailable",
    "TelemetryApiError",
    "TelemetryClient",
    "TelemetryClientError",
]
