"""deploy/k8s against the code it runs: no Kubernetes here, so check what can drift — setting names, commands,
probe paths and the kustomization's file list."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import create_app
from telemetry_core.cli import main as cli_main
from telemetry_core.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SETTINGS_SOURCE = (Path(__file__).resolve().parents[2] / "shared" / "telemetry_core" / "settings.py").read_text()


def _service_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", []))


def _subcommand(container: dict[str, Any]) -> str:
    """`args: [sub]`, or the `exec telemetry <sub>` of a shell wrapper."""
    if container.get("command", [None])[0] == "/bin/sh":
        found = re.search(r"exec telemetry ([\w-]+)", container["args"][0])
        assert found, container["args"]
        return found.group(1)
    return str(container["args"][0])


def test_every_file_the_kustomization_names_exists_and_every_manifest_is_named() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    outside = {"kustomization.yaml", "nats-values.yaml", "postgres-cluster.yaml"}  # applied by helm / on their own
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - outside


def test_every_setting_in_the_config_map_is_one_the_service_reads() -> None:
    config = next(d for d in _service_documents() if d["kind"] == "ConfigMap")
    unknown = [name for name in config["data"] if f'"{name}"' not in SETTINGS_SOURCE]
    assert unknown == []
    Settings.from_env({**config["data"], "DATABASE_URL": "postgresql://db/x"})  # and the values parse


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Job"])
def test_every_container_runs_a_command_the_cli_has(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    commands = [_subcommand(c) for d in _service_documents() if d["kind"] == kind for c in _containers(d)]
    assert commands
    for command in commands:
        with pytest.raises(SystemExit) as exited:  # argparse: --help exits 0 for a known command, 2 otherwise
            cli_main([command, "--help"])
        assert exited.value.code == 0, command


def test_probes_point_at_routes_the_gateway_serves() -> None:
    app = create_app(Settings.from_env({"NATS_URL": "nats://unused:1", "DATABASE_URL": "postgresql://unused/x"}))
    paths = {route.path for route in app.routes}
    probes = [
        probe["httpGet"]["path"]
        for d in _service_documents()
        for c in _containers(d)
        for key in ("readinessProbe", "livenessProbe", "startupProbe")
        if (probe := c.get(key)) and "httpGet" in probe
    ]
    assert probes and set(probes) <= paths
    # and those paths need no key (Kubernetes sends none): the plain /health is public by design
    assert set(probes) <= {"/health"}


def test_the_alert_partition_wrapper_gives_each_partition_an_active_engine_and_a_standby() -> None:
    config = next(d for d in _service_documents() if d["kind"] == "ConfigMap")
    engines = next(d for d in _service_documents() if d["kind"] == "StatefulSet")
    partitions, replicas = int(config["data"]["TELEMETRY_ALERT_PARTITIONS"]), engines["spec"]["replicas"]
    assert replicas % partitions == 0 and replicas // partitions >= 2


def test_every_process_gets_every_nats_node_and_the_replicas_the_chart_cluster_offers() -> None:
    config = next(d for d in _service_documents() if d["kind"] == "ConfigMap")
    nodes = yaml.safe_load((K8S / "nats-values.yaml").read_text())["config"]["cluster"]["replicas"]
    settings = Settings.from_env({**config["data"], "DATABASE_URL": "postgresql://db/x"})
    assert settings.nats_url is not None and len(settings.nats_url.split(",")) == nodes
    assert settings.stream_replicas == nodes
    assert yaml.safe_load((K8S / "nats-values.yaml").read_text())["config"]["jetstream"]["merge"] == {
        "sync_interval": "always"  # the durability promise (README, "Durability")
    }
