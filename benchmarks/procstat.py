"""Memory and CPU of the processes under test, from /proc (Linux)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def open_sockets(pid: int) -> int | None:
    """How many sockets a process holds open (its connections to kube-apiserver, ECR, ...)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (its threads included), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def load_average() -> float:
    """The machine's 1-minute load average (other work on a shared machine shows here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in pids.items():
        value = cpu_seconds(pid)
        if value is not None:
            out[name] = value
    return out


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in after if name in before}


@dataclass
class RssSampler:
    """Samples VmRSS and open sockets of one process every ``every`` seconds on a daemon thread."""

    pid: int
    every: float = 1.0
    peak_kib: int = 0
    peak_sockets: int = 0
    load_samples: list[float] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, VmRSS KiB, sockets)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        elapsed = 0.0
        while not self._stop.is_set():
            rss = status_kib(self.pid, "VmRSS")
            if rss is None:
                return
            sockets = open_sockets(self.pid) or 0
            self.load_samples.append(load_average())
            self.peak_kib = max(self.peak_kib, rss)
            self.peak_sockets = max(self.peak_sockets, sockets)
            if not self.samples or elapsed - self.samples[-1][0] >= 10:  # keep one sample per 10 s
                self.samples.append((round(elapsed, 1), rss, sockets))
            self._stop.wait(self.every)
            elapsed += self.every

    def load_summary(self) -> dict[str, float]:
        loads = self.load_samples or [0.0]
        return {"mean": round(sum(loads) / len(loads), 2), "max": round(max(loads), 2)}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
