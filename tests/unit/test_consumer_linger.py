"""When a consumer's fetch waits for more messages (consumer_runtime's ``_lingers``, Policy's linger fields)."""

from types import SimpleNamespace
from typing import Any

from telemetry_core.consumer_runtime import Policy, _lingers


def fetched(*sizes: int) -> list[Any]:
    return [SimpleNamespace(data=b"x" * n) for n in sizes]


def test_no_linger_without_linger_s_or_with_a_full_batch() -> None:
    assert not _lingers(fetched(10), Policy(batch=4))
    assert not _lingers(fetched(10, 10, 10, 10), Policy(batch=4, linger_s=0.1))  # full: nothing more to wait for
    assert _lingers(fetched(10, 10, 10), Policy(batch=4, linger_s=0.1))


def test_a_lone_message_lingers_only_when_the_minimum_allows_it() -> None:
    assert _lingers(fetched(10), Policy(batch=4, linger_s=0.1))  # linger_min 1: the projections' linger
    assert not _lingers(fetched(10), Policy(batch=4, linger_s=0.1, linger_min=2))  # a trickle: at once
    assert _lingers(fetched(10, 10), Policy(batch=4, linger_s=0.1, linger_min=2))


def test_big_messages_do_not_linger_under_a_byte_limit() -> None:
    policy = Policy(batch=64, linger_s=0.1, linger_min=2, linger_max_bytes=1000)
    assert _lingers(fetched(300, 300, 300), policy)  # 900 bytes: small writes, wait for more
    assert not _lingers(fetched(300, 300, 400), policy)  # 1,000 bytes: big enough already
    assert not _lingers(fetched(100_000, 100_000), policy)  # two 1,000-point batches
