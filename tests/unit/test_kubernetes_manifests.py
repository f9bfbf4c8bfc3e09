"""deploy/kubernetes: every process is there in the copies docs/scaling.md promises, the gateway is probed on
/health, and every process gets every NATS node and the stream replicas the NATS chart's cluster offers."""

from pathlib import Path
from typing import Any

import yaml

from telemetry_core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(doc: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _container(doc)["env"]}


def test_every_process_runs_in_two_copies_against_every_nats_node() -> None:
    deployments = {d["metadata"]["name"]: d for d in _documents("telemetry.yaml") if d["kind"] == "Deployment"}
    commands = sorted(_container(d)["args"][0] for d in deployments.values())
    assert commands == ["alert-worker", "alert-worker", "gateway", "ingest-worker", "projection-worker"]
    assert all(d["spec"]["replicas"] == 2 for d in deployments.values())
    nodes = _documents("nats-values.yaml")[0]["config"]["cluster"]["replicas"]
    for d in deployments.values():
        env = _env(d)
        # The settings parse it (a bad value would stop every pod), with one URL per node.
        settings = Settings.from_env(env | {"DATABASE_URL": "postgresql://x/y"})
        assert settings.nats_url is not None and len(settings.nats_url.split(",")) == nodes
        assert settings.stream_replicas == nodes
    partitions = sorted(
        (env["TELEMETRY_ALERT_PARTITION"], env["TELEMETRY_ALERT_PARTITIONS"])
        for env in map(_env, deployments.values()) if "TELEMETRY_ALERT_PARTITION" in env
    )  # fmt: skip
    assert partitions == [("0", "2"), ("1", "2")]


def test_the_gateway_is_probed_on_health_and_fsync_stays_on() -> None:
    (gateway,) = [d for d in _documents("telemetry.yaml") if d["metadata"]["name"] == "telemetry-gateway"
                  and d["kind"] == "Deployment"]  # fmt: skip
    container = _container(gateway)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert _documents("nats-values.yaml")[0]["config"]["jetstream"]["merge"]["sync_interval"] == "always"
    (pg,) = _documents("postgres-cluster.yaml")
    assert pg["kind"] == "Cluster" and pg["spec"]["instances"] == 3
