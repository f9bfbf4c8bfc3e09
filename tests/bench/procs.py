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
        return Snapshot(
            at=time.monotonic(),
            cpu={w.name: cpu_seconds(w.pid, w.tree) for w in watched},
            machine=machine_cpu(),
            others=_others(ours),
        )

    @staticmethod
    def phase(name: str, before: Snapshot, after: Snapshot) -> PhaseCpu:
        others = []
        for pid, (label, cpu) in after.others.items():
            start = before.others.get(pid)
            used = cpu - (start[1] if start is not None else 0.0)
            if used > 0:
                others.append((f"{label} ({pid})", used))
        others.sort(key=lambda o: -o[1])
        return PhaseCpu(
            name=name,
            wall_s=after.at - before.at,
            cpu_s={k: after.cpu[k] - before.cpu.get(k, 0.0) for k in after.cpu},
            machine_busy_s=after.machine[0] - before.machine[0],
            machine_iowait_s=after.machine[1] - before.machine[1],
            machine_total_s=after.machine[2] - before.machine[2],
            top_others=others[:3],
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
    )
