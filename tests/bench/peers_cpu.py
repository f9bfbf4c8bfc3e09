"""Where this service's CPU goes while the peers harness ingests into it: µs of CPU per point, process by process.

The harness runs ingestion and queries in one call, so the stack's processes are sampled in the background
(every ``interval_s``, wall-clock stamped) and the ingestion's window is cut out afterwards from the harness's
own record of it (its ``target ingest`` row: when it ended and how long until every point was visible).

PostgreSQL is counted as its whole process tree, the reaped backends included (``procs.cpu_seconds``): a probe
that lists the backends once, before the load, misses the connections pools open during it (the ingest worker's
second loop, among others), which read as half of PostgreSQL's real share in the sixteenth session's notes.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psutil

from tests.bench.procs import cpu_seconds, machine_cpu

# Process label prefix → the row it is reported under ("gateway-0", "gateway-1" → "gateways").
GROUPS = {
    "gateway": "gateways", "ingest-worker": "ingest worker", "alert-worker": "alert engine",
    "projection-worker": "projections", "nats": "NATS", "postgres": "PostgreSQL",
}  # fmt: skip


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock (time.time()): the harness stamps its rows in UTC wall time
    cpu: dict[str, float]  # group → CPU seconds so far
    machine_busy: float


@dataclass
class CpuSampler:
    """Samples the CPU seconds of the named processes (label → (pid, whole tree?)) until stopped."""

    processes: dict[str, tuple[int, bool]]
    interval_s: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "CpuSampler":
        self._take()
        self._thread = threading.Thread(target=self._run, name="peers-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._take()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def _take(self) -> None:
        cpu: dict[str, float] = {}
        for label, (pid, tree) in self.processes.items():
            group = next((g for prefix, g in GROUPS.items() if label.startswith(prefix)), label)
            try:
                cpu[group] = cpu.get(group, 0.0) + cpu_seconds(pid, tree)
            except psutil.Error:  # a process gone mid-run: its group's last reading stands
                continue
        self.samples.append(Sample(time.time(), cpu, machine_cpu()[0]))

    def per_point(self, start: float, end: float, points: int) -> dict[str, float]:
        """µs of CPU per point of each group between the samples nearest ``start`` and ``end`` (wall clock).

        ``machine`` is every process on the machine (ours, the harness's client, anything else); ``other`` is the
        machine's less ours: mostly the harness's client in this benchmark.
        """
        first = min(self.samples, key=lambda s: abs(s.at - start))
        last = min(self.samples, key=lambda s: abs(s.at - end))
        out = {g: (last.cpu.get(g, 0.0) - first.cpu.get(g, 0.0)) / points * 1e6 for g in last.cpu}
        ours = sum(out.values())
        out["machine"] = (last.machine_busy - first.machine_busy) / points * 1e6
        out["other"] = max(out["machine"] - ours, 0.0)
        return out


def ingest_window(row: dict) -> tuple[float, float]:
    """(start, end) wall-clock seconds of a harness ingest row: it ends at ``ts``, ``visible_s`` after it began.

    The harness stamps ``ts`` to the second (truncated): the end is taken half a second later, so either edge is
    within half a second of the truth (about 5 % of a 10 s window; the queries that follow are light).
    """
    end = datetime.fromisoformat(row["ts"].replace("Z", "+00:00")).timestamp() + 0.5
    return end - float(row["visible_s"]), end


def cpu_line(per_point: dict[str, float]) -> str:
    """The table cell: each group's µs per point, ours first, largest first."""
    ours = sorted(((g, v) for g, v in per_point.items() if g not in ("machine", "other")), key=lambda kv: -kv[1])
    parts = [f"{g} {v:.2f}" for g, v in ours]
    total = sum(v for _, v in ours)
    return (
        f"{', '.join(parts)}; ours {total:.2f}, client and others {per_point.get('other', 0.0):.2f}, "
        f"machine {per_point.get('machine', 0.0):.2f}"
    )
