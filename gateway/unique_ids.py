"""Identifiers unique across processes and restarts, made without a system call per request.

Every single-point POST needs two fresh ids: the request id (request_log.py, when the client sent none) and the
JetStream ``Nats-Msg-Id`` of its points (publisher.py). ``uuid.uuid4()`` reads 16 bytes from the kernel for each
(``os.urandom``: a ``getrandom`` system call), measured at about 3 % of the gateway's CPU per single-point request
on the shared 2-core machine (docs/benchmarks-single-point.md). Here a process draws 64 random bits once and
counts: ``<16 hex random><16 hex counter>``, the same 32 lowercase hex characters as ``uuid4().hex``.

Uniqueness: within a process the counter never repeats; two processes (N gateway copies, a restart) share a
prefix with probability 2^-64 per pair. A forked child draws a new prefix (``os.register_at_fork``), so a fork
after import cannot hand the parent's sequence to two processes.
"""

import itertools
import os


class _Source:
    """The process's random prefix and its counter."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()


_source = _Source()
os.register_at_fork(after_in_child=_source.reseed)


def new_id() -> str:
    """A fresh 32-character lowercase hex id, unique across this process's calls and (with 2^-64 odds) processes."""
    return f"{_source.prefix}{next(_source.counter):016x}"
