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
    # Prometheus targets only (those with an expr); the Infinity ones: tests/e2e/test_grafana_query_panels.py.
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", []) if "expr" in t]
    used = {m for e in exprs for m in re.findall(r"telemetry_\w+", e)}
    assert used, "the dashboard plots nothing"
    assert used - _exported() == set()
