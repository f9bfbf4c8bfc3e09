"""`telemetry dlq list|show|retry|purge` against the real stack: a bad direct message, re-driven after a fix."""

import asyncio
import json

import msgspec
import nats
import pytest

from telemetry_core.cli import main
from telemetry_core.topology import DLQ_STREAM, device_of_points_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from tests.e2e.conftest import point, stored_rows, wait_rows
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def publish(stack: Stack, device: str, message: object) -> None:
    async def go() -> None:
        nc = await nats.connect(stack.servers.nats_url)
        try:
            await nc.jetstream().publish(points_subject(device), msgspec.json.encode(message))
        finally:
            await nc.close()

    asyncio.run(go())


def letters_of(stack: Stack, device: str, at_least: int = 1, within_s: float = 20) -> list[int]:
    """The DLQ ids of the ingest worker's letters about ``device`` still held, once there are ``at_least``."""

    async def go() -> list[int]:
        nc = await nats.connect(stack.servers.nats_url)
        js = nc.jetstream()
        found: list[int] = []
        sub = await js.subscribe("telemetry.dlq.ingest", stream=DLQ_STREAM, ordered_consumer=True)
        try:
            while len(found) < at_least:
                msg = await sub.next_msg(timeout=within_s)
                if device_of_points_subject(dead_letter_decoder.decode(msg.data).subject) == device:
                    found.append(msg.metadata.sequence.stream)
            return found
        finally:
            await sub.unsubscribe()
            await nc.close()

    return asyncio.run(go())


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stack: Stack, *args: str) -> str:
    monkeypatch.setenv("NATS_URL", stack.servers.nats_url)
    capsys.readouterr()
    main(["dlq", *args])
    return capsys.readouterr().out


def test_a_bad_message_is_listed_shown_and_a_fixed_copy_re_driven(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    device = unique("dev")
    good = point(metric="t", value=21.5, ts="2031-03-01T00:00:00Z")
    publish(stack, device, {"device_id": "somebody_else", "points": [good]})  # rejected whole: wrong device
    (seq,) = letters_of(stack, device)

    listed = [line.split("\t") for line in cli(monkeypatch, capsys, stack, "list", "--worker", "ingest",
                                                 "--limit", "100000").splitlines()]  # fmt: skip
    row = next(r for r in listed if r[0] == str(seq))
    assert (row[2], device_of_points_subject(row[3])) == ("ingest", device)
    shown = json.loads(cli(monkeypatch, capsys, stack, "show", str(seq)))
    assert shown["payload"] == {"device_id": "somebody_else", "points": [good]}
    assert "device" in shown["reason"]
    assert stored_rows(stack.servers, device) == []

    fixed = tmp_path / "fixed.json"  # type: ignore[operator]
    fixed.write_bytes(msgspec.json.encode({"device_id": device, "points": [good]}))
    out = cli(monkeypatch, capsys, stack, "retry", str(seq), "--payload", str(fixed))
    assert out.startswith(f"re-published dead letter {seq} to {points_subject(device)}")
    assert [r[3] for r in wait_rows(stack.servers, device, 1)] == [21.5]
    with pytest.raises(SystemExit) as gone:  # retried letters are removed
        cli(monkeypatch, capsys, stack, "show", str(seq))
    assert gone.value.code == 2


def test_retrying_an_unfixed_letter_reaches_the_worker_again_and_purge_removes_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    device = unique("dev")
    good, bad = point(metric="t", value=1, ts="2031-03-02T00:00:00Z"), point(metric="t", value=None)
    publish(stack, device, {"device_id": device, "points": [good, bad]})
    (first,) = letters_of(stack, device)
    wait_rows(stack.servers, device, 1)  # the good point is stored; only the bad one was dead-lettered

    cli(monkeypatch, capsys, stack, "retry", str(first))  # as is: the worker rejects the same point again
    (second,) = letters_of(stack, device)  # the retried letter is gone; a new one names the re-driven message
    assert second > first
    shown = json.loads(cli(monkeypatch, capsys, stack, "show", str(second)))
    assert shown["payload"] == [bad]
    assert shown["headers"]["X-Telemetry-Redriven-From"] == f"DLQ:{first}"
    assert [r[3] for r in stored_rows(stack.servers, device)] == [1.0]

    assert cli(monkeypatch, capsys, stack, "purge", str(second)).strip() == "purged 1 dead letter(s)"
    with pytest.raises(SystemExit):
        cli(monkeypatch, capsys, stack, "show", str(second))
