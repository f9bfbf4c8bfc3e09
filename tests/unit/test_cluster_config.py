"""Replicas per cluster size, the cluster node configuration, NATS_URL lists and the --cluster process plan."""

from pathlib import Path

import pytest

from telemetry_core.clusterrun import mqtt_options, process_plan
from telemetry_core.embedded import nats_config
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_cluster import cluster_config
from telemetry_core.nats_conn import server_urls
from telemetry_core.replicas import resolve_replicas
from telemetry_core.settings import Settings
from telemetry_core.topology import stream_configs


@pytest.mark.parametrize(("asked", "size", "replicas"), [(None, 1, 1), (None, 2, 1), (None, 3, 3), (None, 5, 3),
                                                          (1, 3, 1), (3, 3, 3), (5, 5, 5)])  # fmt: skip
def test_replicas_default_to_what_the_cluster_offers(asked: int | None, size: int, replicas: int) -> None:
    assert resolve_replicas(asked, size) == replicas


def test_more_replicas_than_servers_is_refused_with_the_fix() -> None:
    with pytest.raises(
        ConfigurationError, match=r"TELEMETRY_STREAM_REPLICAS=3 but .* has 1 JetStream server.*at most 1"
    ):
        resolve_replicas(3, 1)


def test_a_server_away_neither_refuses_nor_scales_down_existing_streams() -> None:
    assert resolve_replicas(3, 2, existing=3) == 3  # one of three nodes restarting
    assert resolve_replicas(None, 2, existing=3) == 3
    assert resolve_replicas(None, 1, existing=None) == 1
    assert resolve_replicas(1, 3, existing=3) == 1  # asked explicitly: scaled down
    with pytest.raises(ConfigurationError):
        resolve_replicas(3, 2, existing=1)


def test_the_replicas_setting() -> None:
    assert Settings.from_env({}).stream_replicas is None
    assert Settings.from_env({"TELEMETRY_STREAM_REPLICAS": "0"}).stream_replicas is None
    assert Settings.from_env({"TELEMETRY_STREAM_REPLICAS": "3"}).stream_replicas == 3
    with pytest.raises(ConfigurationError, match="TELEMETRY_STREAM_REPLICAS must be between 0 and 5"):
        Settings.from_env({"TELEMETRY_STREAM_REPLICAS": "7"})
    assert {c.num_replicas for c in stream_configs(Settings(), 3)} == {3}


def test_a_node_routes_to_every_other_node_but_itself() -> None:
    config = cluster_config(1, [7001, 7002, 7003])
    assert 'listen: "127.0.0.1:7002"' in config
    assert 'routes: ["nats-route://127.0.0.1:7001", "nats-route://127.0.0.1:7003"]' in config


def test_nats_url_may_list_every_server() -> None:
    assert server_urls("nats://a:1") == ["nats://a:1"]
    assert server_urls("nats://a:1, nats://b:2,,nats://c:3") == ["nats://a:1", "nats://b:2", "nats://c:3"]


def test_the_cluster_runs_two_copies_of_every_process() -> None:
    plan = process_plan(Settings(port=9000, alert_partitions=2))
    commands = [command for _label, command, _env in plan]
    assert {c: commands.count(c) for c in commands} == {
        "projection-worker": 2, "ingest-worker": 2, "alert-worker": 4, "gateway": 2,
    }  # fmt: skip
    engines = sorted((env["TELEMETRY_ALERT_PARTITION"], env["TELEMETRY_ALERT_PARTITIONS"]) for *_, env in plan if env
                     and "TELEMETRY_ALERT_PARTITION" in env)  # fmt: skip
    assert engines == [("0", "2"), ("0", "2"), ("1", "2"), ("1", "2")]  # an active and a standby per partition
    assert [env["TELEMETRY_PORT"] for _l, c, env in plan if c == "gateway"] == ["9000", "9001"]


def test_a_node_has_one_server_name_of_its_own_also_with_mqtt() -> None:
    # NATS MQTT needs a server_name, and cluster nodes need distinct ones: one line, the node's, never "telemetry".
    extra = cluster_config(1, [7001, 7002, 7003])
    for mqtt_port in (None, 1884):
        config = nats_config(Path("/x"), mqtt_port=mqtt_port, extra=extra, server_name="telemetry-1")
        assert [line for line in config.splitlines() if line.startswith("server_name")] == [
            'server_name: "telemetry-1"'
        ]
    assert 'server_name: "telemetry"\n' in nats_config(Path("/x"), mqtt_port=1883)  # the single node, as before
    assert "server_name" not in nats_config(Path("/x"))


def test_cluster_mqtt_listens_on_consecutive_ports_with_the_sign_in() -> None:
    settings = Settings.from_env({"TELEMETRY_MQTT_PORT": "2883", "TELEMETRY_MQTT_PASSWORD": "p" * 16})
    assert mqtt_options(settings, 3, 3) == {
        "mqtt_ports": [2883, 2884, 2885], "mqtt_host": "127.0.0.1", "mqtt_credentials": ("device", "p" * 16),
        "mqtt_replicas": 3,
    }  # fmt: skip
    assert mqtt_options(Settings.from_env({}), 3, 3)["mqtt_credentials"] is None  # loopback without sign-in
    assert mqtt_options(Settings.from_env({"TELEMETRY_MQTT_PORT": "off"}), 3, 3) == {}
    with pytest.raises(ConfigurationError, match="TELEMETRY_MQTT_PORT=65534: 3 nodes need ports up to 65536"):
        mqtt_options(Settings.from_env({"TELEMETRY_MQTT_PORT": "65534"}), 3, 3)
    # MQTT's own streams: replicated like the service's (nats-server left alone made them R2 on 3 nodes).
    assert "  stream_replicas: 3\n" in nats_config(Path("/x"), mqtt_port=1884, mqtt_replicas=3)
    assert "stream_replicas" not in nats_config(Path("/x"), mqtt_port=1883)
