"""Per-process CPU time and memory of the stack, from /proc via psutil."""

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

MiB = 1024 * 1024


def vm_hwm(pid: int) -> int:
    """Peak resident set size (VmHWM) in bytes, 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int, tree: bool) -> float:
    """User + system CPU seconds; for a tree, also the live children and the reaped ones (postgres backends)."""
    procs = _tree(pid) if tree else [psutil.Process(pid)]
    total = 0.0
    for i, p in enumerate(procs):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        if tree and i == 0:
            total += t.children_user + t.children_system
    return total


def _proc_cpu(p: psutil.Process) -> float | None:
    try:
        t = p.cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def backend_cpu(postmaster: int, clients: dict[int, str]) -> dict[str, float]:
    """CPU seconds of PostgreSQL's live backends, summed by the watched process each one serves.

    A backend is matched to its client through the TCP connection between them (the backend's
    remote port is the client's local port). Backends of unwatched clients count under "other client".
    """
    backends = _tree(postmaster)[1:]
    client_of_port: dict[int, int] = {}
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.pid is not None and c.laddr and c.raddr and c.pid in clients:
                client_of_port[c.laddr.port] = c.pid
    except psutil.Error:
        return {}
    out: dict[str, float] = {}
    for b in backends:
        try:
            conns = b.net_connections(kind="tcp")
        except psutil.Error:
            continue
        owner = next((client_of_port[c.raddr.port] for c in conns if c.raddr and c.raddr.port in client_of_port), None)
        if owner is None:
            if not conns:
                continue  # background process (checkpointer, WAL writer, autovacuum …)
            name = "other client"
        else:
            name = clients[owner]
        cpu = _proc_cpu(b)
        if cpu is not None:
            out[f"{b.pid}|{name}"] = cpu
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, iowait, total) CPU seconds of the whole machine, summed over cores."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), getattr(t, "iowait", 0.0), total


def _others(ours: set[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds of every process that is not ours, by pid (kernel threads included)."""
    out = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.pid in ours or p.info["cpu_times"] is None:
            continue
        t = p.info["cpu_times"]
        out[p.pid] = (p.info["name"] or "?", t.user + t.system)
    return out


@dataclass
class Watched:
    name: str
    pid: int
    tree: bool = False  # postgres: the postmaster and every backend


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu: dict[str, float]
    machine: tuple[float, float, float]
    others: dict[int, tuple[str, float]]
    backends: dict[str, float]  # "<backend pid>|<client name>" → CPU seconds (see backend_cpu)


@dataclass
class PhaseCpu:
    """CPU seconds each process used during one phase, and the phase's wall time."""

    name: str
    wall_s: float
    cpu_s: dict[str, float]
    machine_busy_s: float
    machine_iowait_s: float
    machine_total_s: float
    top_others: list[tuple[str, float]]  # (name, CPU seconds) of the busiest processes that are not ours
    pg_for: dict[str, float] = field(default_factory=dict)  # postgres CPU seconds by the client it served


@dataclass
class Monitor:
    """Samples PSS (to catch the peak sum over postgres backends) and snapshots CPU per phase."""

    watched: list[Watched]
    interval_s: float = 0.5
    peak_tree_pss: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def all_watched(self) -> list[Watched]:
        return [*self.watched, Watched("bench client", os.getpid())]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            for w in self.watched:
                if not w.tree:
                    continue
                pss = 0
                for p in _tree(w.pid):
                    try:
                        pss += p.memory_full_info().pss
                    except (psutil.Error, AttributeError):
                        continue
                self.peak_tree_pss[w.name] = max(self.peak_tree_pss.get(w.name, 0), pss)

    def snapshot(self) -> Snapshot:
        watched = self.all_watched()
        ours = {p.pid for w in watched for p in (_tree(w.pid) if w.tree else [])} | {w.pid for w in watched}
        clients = {w.pid: w.name for w in watched if not w.tree}
        pg = next((w.pid for w in watched if w.tree), None)
        # Read the backends right after the totals, so that the split and the total cover the same window.
        at = time.monotonic()
        cpu = {w.name: cpu_seconds(w.pid, w.tree) for w in watched}
        backends = backend_cpu(pg, clients) if pg is not None else {}
        return Snapshot(at=at, cpu=cpu, machine=machine_cpu(), others=_others(ours), backends=backends)

    @staticmethod
    def phase(name: str, before: Snapshot, after: Snapshot) -> PhaseCpu:
        others = []
        for pid, (label, cpu) in after.others.items():
            start = before.others.get(pid)
            used = cpu - (start[1] if start is not None else 0.0)
            if used > 0:
                others.append((f"{label} ({pid})", used))
        others.sort(key=lambda o: -o[1])
        # Backends alive at the end: their CPU since the start (0 if new). What backends that exited during
        # the phase used, and the background processes, is the rest of the postgres total.
        pg_for: dict[str, float] = {}
        for key, cpu in after.backends.items():
            client = key.split("|", 1)[1]
            pg_for[client] = pg_for.get(client, 0.0) + cpu - before.backends.get(key, 0.0)
        return PhaseCpu(
            name=name,
            wall_s=after.at - before.at,
            cpu_s={k: after.cpu[k] - before.cpu.get(k, 0.0) for k in after.cpu},
            machine_busy_s=after.machine[0] - before.machine[0],
            machine_iowait_s=after.machine[1] - before.machine[1],
            machine_total_s=after.machine[2] - before.machine[2],
            top_others=others[:3],
            pg_for=pg_for,
        )

    def memory(self) -> list[tuple[str, int, str]]:
        """(process, peak memory bytes, how it was measured) for every watched process."""
        out = []
        for w in self.all_watched():
            if not w.tree:
                out.append((w.name, vm_hwm(w.pid), "VmHWM (peak RSS)"))
                continue
            procs = _tree(w.pid)
            largest = max((vm_hwm(p.pid) for p in procs), default=0)
            note = (
                f"peak of the summed PSS of the postmaster and all backends, sampled every {self.interval_s:g} s "
                f"(PSS splits shared_buffers among the processes mapping it, so the sum is real memory); "
                f"largest single-process VmHWM {largest / MiB:.0f} MiB"
            )
            out.append((w.name, self.peak_tree_pss.get(w.name, 0), note))
        return out


def merge_phases(name: str, parts: list[PhaseCpu]) -> PhaseCpu:
    """One phase made of several windows (e.g. the halves of an ABBA comparison): times add up."""
    others: dict[str, float] = {}
    for p in parts:
        for label, cpu in p.top_others:
            others[label] = others.get(label, 0.0) + cpu
    names = {k for p in parts for k in p.cpu_s}
    return PhaseCpu(
        name=name,
        wall_s=sum(p.wall_s for p in parts),
        cpu_s={k: sum(p.cpu_s.get(k, 0.0) for p in parts) for k in names},
        machine_busy_s=sum(p.machine_busy_s for p in parts),
        machine_iowait_s=sum(p.machine_iowait_s for p in parts),
        machine_total_s=sum(p.machine_total_s for p in parts),
        top_others=sorted(others.items(), key=lambda o: -o[1])[:3],
        pg_for={k: sum(p.pg_for.get(k, 0.0) for p in parts) for k in {k for p in parts for k in p.pg_for}},
    )
