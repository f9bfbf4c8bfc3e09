"""Bodies of the statistics endpoints (E6-US1, E6-US2). Every figure is defined where it is declared.

Windows: "the last 24 hours" of points means the 24 UTC hour buckets ending with the current one (the
points' timestamps, not when they arrived); "active" means a point was stored in the last hour; rates
(points_per_second, avg_latency, error_rate) cover the current UTC minute and the 4 before it.
"""

from datetime import datetime
from typing import Annotated

import msgspec

from telemetry_schemas.base import ApiBody


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


_BY_TYPE = (
    "Keys gauge, counter, histogram, summary (the metric types of the definitions) and undefined (metrics with "
    "no definition), each always present."
)


class MetricPoints(ApiBody):
    """One metric and its number of distinct stored points."""

    name: str
    points: int


class HourPoints(ApiBody):
    """Distinct stored points whose timestamp falls in one UTC hour."""

    hour: Annotated[datetime, _doc("Start of the UTC hour.")]
    points: int


class DeviceStatsResponse(ApiBody):
    """E6-US1 answer. A device with no data gets zeros (and last_update null), not 404."""

    device_id: str
    total_metrics: Annotated[int, _doc("Metrics the device has ever sent a stored point for.")]
    active_metrics: Annotated[int, _doc("Of those, metrics with a point stored in the last hour.")]
    data_points_count: Annotated[
        int, _doc("Distinct stored points of the device: a point overwritten (same metric and timestamp) counts once.")
    ]
    last_update: Annotated[datetime | None, _doc("Timestamp of the device's newest point; null when it has none.")]
    storage_size: Annotated[
        int,
        _doc(
            "Estimated bytes: the points table's size in PostgreSQL (all partitions, with indexes and TOAST; read "
            "at most every 5 s) times this device's share of the stored points."
        ),
    ]
    avg_frequency: Annotated[float, _doc("Points per minute over the last 24 hours: last_24h_points / 1440.")]
    last_24h_points: Annotated[
        int, _doc("Distinct points with a timestamp in the 24 UTC hour buckets ending with the current hour.")
    ]
    last_24h_alerts: Annotated[int, _doc("Alerts of this device triggered in the last 24 hours (rolling).")]
    metrics_by_type: Annotated[dict[str, int], _doc("The device's metrics per metric type. " + _BY_TYPE)]
    top_metrics: Annotated[
        list[MetricPoints], _doc("Up to 5 metrics with the most distinct points, most first, ties by name.")
    ]


class ServiceStatsResponse(ApiBody):
    """E6-US2 answer: the whole service. Zeros when nothing is stored."""

    total_devices: Annotated[int, _doc("Devices with at least one stored point.")]
    active_devices: Annotated[int, _doc("Devices with a point stored in the last hour.")]
    total_metrics: Annotated[int, _doc("Distinct metric names with at least one stored point (any device).")]
    total_data_points: Annotated[int, _doc("Distinct stored points: an overwritten point counts once.")]
    storage_size: Annotated[
        int,
        _doc(
            "Bytes the points table takes in PostgreSQL: all partitions, with indexes and TOAST (read at most "
            "every 5 s)."
        ),
    ]
    points_per_second: Annotated[
        float,
        _doc(
            "Points written (overwrites included) since the start of the UTC minute 4 minutes before the current "
            "one, divided by the seconds since then."
        ),
    ]
    avg_latency: Annotated[
        float,
        _doc(
            "Mean milliseconds from JetStream accepting a POINTS message (the gateway's 200) to the ingest "
            "worker's commit, over the messages stored in the same window as points_per_second; 0 when none."
        ),
    ]
    error_rate: Annotated[
        float,
        _doc(
            "Over the same window: POINTS messages (or parts of them) the ingest worker dead-lettered / (messages "
            "stored + those dead letters); 0 when none. Requests the gateway refused (4xx) are not in it: see "
            "/metrics for those."
        ),
    ]
    last_24h_points: Annotated[int, _doc("Sum of data_by_hour: distinct points with a timestamp in those 24 hours.")]
    last_24h_devices: Annotated[int, _doc("Devices with a point stored in the last 24 hours (rolling).")]
    last_24h_alerts: Annotated[int, _doc("Alerts triggered in the last 24 hours (rolling).")]
    devices_by_type: Annotated[
        dict[str, int],
        _doc("Devices sending at least one metric of each type (a device can count under several). " + _BY_TYPE),
    ]
    metrics_by_type: Annotated[dict[str, int], _doc("Metric names with stored points per type. " + _BY_TYPE)]
    data_by_hour: Annotated[
        list[HourPoints],
        _doc("24 entries, oldest first: the UTC hour buckets ending with the current one, zeros included."),
    ]
