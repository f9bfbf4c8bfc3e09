"""`telemetry run`'s gateway copies: how many, their names and pools; and two sockets sharing one port."""

import os
import socket

import pytest

from gateway.main import reuse_port_socket
from telemetry_core.embedded import free_port
from telemetry_core.gateway_copies import gateway_children, gateway_process_count
from telemetry_core.settings import Settings


def test_the_default_is_one_gateway_per_core() -> None:
    assert gateway_process_count(Settings.from_env({})) == (os.cpu_count() or 1)
    assert gateway_process_count(Settings.from_env({"TELEMETRY_GATEWAY_PROCESSES": "3"})) == 3


def test_one_gateway_keeps_its_name_and_binds_as_before() -> None:
    (child,) = gateway_children(Settings.from_env({"TELEMETRY_GATEWAY_PROCESSES": "1"}), {"A": "1"})
    assert child.name == "gateway"
    assert child.env == {"A": "1"}  # no SO_REUSEPORT: a second gateway on the port is an error, as it was


@pytest.mark.parametrize(("copies", "pool"), [(3, 10), (16, 7), (100, 2)])
def test_copies_share_the_port_and_a_pool_budget(copies: int, pool: int) -> None:
    settings = Settings.from_env({"TELEMETRY_GATEWAY_PROCESSES": str(copies)})
    children = gateway_children(settings, {"A": "1"})
    assert [c.name for c in children] == [f"gateway-{i}" for i in range(copies)]
    for child in children:
        assert child.env["TELEMETRY_GATEWAY_REUSE_PORT"] == "on"
        assert child.env["TELEMETRY_DB_POOL_MAX"] == str(pool)
        assert child.env["A"] == "1"
        assert child.argv[-1] == "gateway"


def test_two_gateways_can_listen_on_one_port_only_with_reuse_port() -> None:
    port = free_port()
    first = reuse_port_socket("127.0.0.1", port)
    second = reuse_port_socket("127.0.0.1", port)
    plain = socket.socket()
    try:
        first.listen()
        second.listen()
        with pytest.raises(OSError):  # without SO_REUSEPORT the port is taken
            plain.bind(("127.0.0.1", port))
    finally:
        for s in (first, second, plain):
            s.close()
    assert Settings.from_env({"TELEMETRY_GATEWAY_REUSE_PORT": "on"}).gateway_reuse_port
    assert not Settings.from_env({}).gateway_reuse_port
