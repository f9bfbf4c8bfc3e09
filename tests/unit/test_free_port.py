"""free_port: a listening port that outgoing connections cannot take between choosing it and binding it."""

import socket
from pathlib import Path

import pytest

from telemetry_core.embedded import LISTEN_PORTS_FROM, ephemeral_range, free_port


def test_reads_the_kernels_ephemeral_range(tmp_path: Path) -> None:
    file = tmp_path / "range"
    file.write_text("32768\t60999\n")
    assert ephemeral_range(file) == (32768, 60999)
    assert ephemeral_range(tmp_path / "missing") is None
    file.write_text("garbage")
    assert ephemeral_range(file) is None


@pytest.mark.skipif(ephemeral_range() is None, reason="no /proc ephemeral range on this system")
def test_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    span = ephemeral_range()
    assert span is not None
    ports = {free_port() for _ in range(20)}
    for port in ports:
        assert LISTEN_PORTS_FROM <= port < span[0], port
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free as promised
    assert len(ports) > 1  # chosen at random, not a fixed port that two callers would share


@pytest.mark.skipif(ephemeral_range() is None, reason="no /proc ephemeral range on this system")
def test_skips_a_port_someone_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        candidates = iter([busy, busy, LISTEN_PORTS_FROM + 7])

        class Scripted:
            def randrange(self, low: int, high: int) -> int:
                return next(candidates)

        monkeypatch.setattr("telemetry_core.embedded.random.SystemRandom", Scripted)
        assert free_port() == LISTEN_PORTS_FROM + 7
