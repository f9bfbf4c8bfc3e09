"""A real MQTT 3.1.1 device (paho-mqtt) talking to nats-server's MQTT listener."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import paho.mqtt.client as paho

from tests.support.eventually import eventually
from tests.support.ids import unique


def points_topic(device_id: str) -> str:
    """The MQTT topic a device publishes its points on; NATS maps it to subject telemetry.points.<device_id>."""
    return f"telemetry/points/{device_id}"


class Device:
    """One connected MQTT client; ``publish`` returns once the server's PUBACK is in (QoS 1)."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client

    def publish(self, topic: str, payload: bytes | dict[str, Any], qos: int = 1, timeout: float = 15) -> None:
        body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        info = self.client.publish(topic, body, qos=qos)
        info.wait_for_publish(timeout)  # raises on a refused or lost publish; QoS 1: waits for PUBACK
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic} within {timeout}s")

    def publish_points(self, device_id: str, points: list[dict[str, Any]], qos: int = 1) -> None:
        """Publish one RecordPoints message (the POINTS JSON payload) for ``device_id``."""
        self.publish(points_topic(device_id), {"device_id": device_id, "points": points}, qos=qos)


@contextmanager
def mqtt_device(
    port: int, host: str = "127.0.0.1", timeout: float = 15, credentials: tuple[str, str] | None = None
) -> Iterator[Device]:
    """Connect a fresh MQTT client (clean session, unique client id) and run its network loop in a thread."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique("mqtt"), clean_session=True)
    if credentials:
        client.username_pw_set(*credentials)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        # connect() only sends CONNECT; publishes queue until CONNACK, so wait for it to fail early and clearly.
        eventually(client.is_connected, timeout=timeout, what=f"MQTT CONNACK from {host}:{port}")  # refused: never
        yield Device(client)
    finally:
        client.disconnect()
        client.loop_stop()


def connack_reason(port: int, credentials: tuple[str, str] | None, host: str = "127.0.0.1") -> paho.ReasonCode:
    """Connect and return the CONNACK's reason code (``is_failure``: refused, e.g. "not authorized")."""
    got: list[paho.ReasonCode] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique("mqtt"), clean_session=True)
    client.on_connect = lambda _c, _u, _f, reason, _p: got.append(reason)
    if credentials:
        client.username_pw_set(*credentials)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        eventually(lambda: got, timeout=15, what="a CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]
