"""deploy/grafana's dashboard only plots metrics the service exports (a renamed metric breaks this test)."""

import json
import re
from pathlib import Path

from gateway.metrics import GATEWAY_REGISTRY
from telemetry_core.metrics import WORKER_REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "telemetry_dashboard.json"


def _exported() -> set[str]:
    names: set[str] = set()
    for registry in (GATEWAY_REGISTRY, WORKER_REGISTRY):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
            names.update(family.name + s for s in suffixes)
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    doc = json.loads(DASHBOARD.read_text())
    used = {m for p in doc["panels"] for t in p["targets"] for m in re.findall(r"telemetry_\w+", t["expr"])}
    assert used, "the dashboard plots nothing"
    assert used - _exported() == set()
