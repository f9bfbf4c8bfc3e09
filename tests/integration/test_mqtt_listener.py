"""nats-server's MQTT listener as the embedded server configures it, and what a QoS 1 PUBACK promises."""

import asyncio
import json
import socket
import urllib.request
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from telemetry_core.embedded import free_port, nats_config, port_open, start_nats
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_flush import flush
from telemetry_core.settings import Settings
from tests.support.eventually import eventually
from tests.support.mqtt import connack_reason, mqtt_device


def test_mqtt_listener_is_on_loopback_at_the_port_asked(tmp_path: Path) -> None:
    monitor, mqtt = free_port(), free_port()
    server = start_nats(tmp_path / "nats", monitor_port=monitor, mqtt_port=mqtt)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as resp:
            varz = json.load(resp)
        assert (varz["mqtt"]["host"], varz["mqtt"]["port"]) == ("127.0.0.1", mqtt)
        assert server.extra["mqtt_url"] == f"mqtt://127.0.0.1:{mqtt}"
        with mqtt_device(mqtt):  # a real client gets its CONNACK
            pass
    finally:
        server.stop()


def test_a_taken_mqtt_port_is_named_before_nats_server_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=f"MQTT port 127.0.0.1:{port} is already in use.*TELEMETRY_MQTT_PORT"
        ):
            start_nats(tmp_path / "nats", mqtt_port=port)


def test_no_mqtt_listener_when_its_port_is_0() -> None:
    assert "mqtt" not in nats_config(Path("/x"), mqtt_port=0)
    assert "mqtt" not in nats_config(Path("/x"))
    assert 'listen: "127.0.0.1:1883"' in nats_config(Path("/x"), mqtt_port=1883)


def test_a_restarted_server_listens_for_mqtt_again(tmp_path: Path) -> None:
    mqtt = free_port()
    server = start_nats(tmp_path / "nats", mqtt_port=mqtt)
    try:
        server.kill()
        assert not port_open(mqtt)
        server.restart()
        assert port_open(mqtt)
    finally:
        server.stop()


@pytest.mark.parametrize(("raw", "port"), [(None, 1883), ("", 1883), ("0", 0), ("off", 0), ("18830", 18830)])
def test_mqtt_port_setting(raw: str | None, port: int) -> None:
    env = {} if raw is None else {"TELEMETRY_MQTT_PORT": raw}
    assert Settings.from_env(env).mqtt_port == port
    assert Settings.from_env(env).mqtt_host == "127.0.0.1"


@pytest.mark.parametrize("raw", ["70000", "mqtt", "-1"])
def test_mqtt_port_setting_rejects_what_is_not_a_port(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="TELEMETRY_MQTT_PORT"):
        Settings.from_env({"TELEMETRY_MQTT_PORT": raw})


def test_qos1_puback_means_the_server_took_the_message_not_that_jetstream_stored_it(tmp_path: Path) -> None:
    """NATS MQTT acknowledges a QoS 1 publish once it has routed it, before (and whatever) a stream does.

    A stream that refuses the message (here: too large) does not stop the PUBACK. So QoS 1 protects the hop
    device -> server (the device re-sends until PUBACK); the POINTS write is then as safe as any core
    NATS publish the server has accepted (README, "MQTT devices"). If nats-server ever waited for the
    stream, this test fails and the README can promise more.
    """
    mqtt = free_port()
    server = start_nats(tmp_path / "nats", mqtt_port=mqtt)

    async def make_stream() -> None:
        nc = await nats.connect(server.url)
        try:
            await nc.jetstream().add_stream(StreamConfig(name="CAP", subjects=["cap.>"], max_msg_size=64))
        finally:
            await nc.close()

    async def stored() -> list[tuple[str, bytes]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            count = (await js.stream_info("CAP")).state.messages
            messages = [await js.get_msg("CAP", seq) for seq in range(1, count + 1)]
            return [(m.subject, m.data or b"") for m in messages]
        finally:
            await nc.close()

    try:
        asyncio.run(make_stream())
        with mqtt_device(mqtt) as device:
            device.publish("cap/big", b"x" * 500, qos=1)  # PUBACKed although CAP refuses it
            device.publish("cap/small", b"ok", qos=1)
        # The small one, published after on the same connection, is stored; the big one never was.
        eventually(lambda: asyncio.run(stored()), what="CAP holds a message")
        assert asyncio.run(stored()) == [("cap.small", b"ok")]
    finally:
        server.stop()


# Sign-in (TELEMETRY_MQTT_PASSWORD): nats-server's MQTT authorization block, for MQTT clients only.
CREDENTIALS = ("device", "a-long-enough-mqtt-password")


def test_with_a_password_mqtt_clients_must_sign_in_and_nats_clients_are_untouched(tmp_path: Path) -> None:
    mqtt = free_port()
    server = start_nats(tmp_path / "nats", mqtt_port=mqtt, mqtt_credentials=CREDENTIALS)
    try:
        assert (tmp_path / "nats" / "nats-server.conf").stat().st_mode & 0o077 == 0  # the password's file
        assert connack_reason(mqtt, None).is_failure
        assert connack_reason(mqtt, ("device", "a-wrong-password-of-length")).is_failure
        assert not connack_reason(mqtt, CREDENTIALS).is_failure

        async def published_through_mqtt() -> bytes:
            nc = await nats.connect(server.url)  # an ordinary NATS client: no credentials asked of it
            try:
                sub = await nc.subscribe("telemetry.points.>")
                await flush(nc)
                with mqtt_device(mqtt, credentials=CREDENTIALS) as device:
                    device.publish("telemetry/points/dev-1", b"{}")
                return (await sub.next_msg(timeout=10)).data
            finally:
                await nc.close()

        assert asyncio.run(published_through_mqtt()) == b"{}"
    finally:
        server.stop()


def test_the_authorization_block_is_written_only_with_credentials() -> None:
    assert "authorization" not in nats_config(Path("/x"), mqtt_port=1883)
    text = nats_config(Path("/x"), mqtt_port=1883, mqtt_credentials=("dev ice", 'pa"ss'))
    assert 'username: "dev ice"' in text and 'password: "pa\\"ss"' in text  # quoted: any characters are safe


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"TELEMETRY_MQTT_HOST": "0.0.0.0"}, "TELEMETRY_MQTT_HOST=0.0.0.0 opens the MQTT listener beyond"),
        ({"TELEMETRY_MQTT_HOST": "mqtt.example.com"}, "set TELEMETRY_MQTT_PASSWORD"),
        ({"TELEMETRY_MQTT_PASSWORD": "short"}, "at least 16 characters"),
    ],
)
def test_an_mqtt_listener_beyond_loopback_needs_a_password(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "env",
    [
        {"TELEMETRY_MQTT_HOST": "0.0.0.0", "TELEMETRY_MQTT_PASSWORD": CREDENTIALS[1]},
        {"TELEMETRY_MQTT_HOST": "0.0.0.0", "TELEMETRY_MQTT_PORT": "off"},
        {"TELEMETRY_MQTT_HOST": "::1"},
    ],
)
def test_a_password_or_loopback_or_no_listener_is_accepted(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert settings.mqtt_username == "device" and settings.mqtt_password == env.get("TELEMETRY_MQTT_PASSWORD", "")
    assert CREDENTIALS[1] not in repr(settings)  # never in a logged settings object
