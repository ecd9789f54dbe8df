"""Peak memory of a process and all its descendants (Ray's GCS, raylet and workers when the
process started Ray), sampled from /proc while a block of code runs (Linux only).

RSS counts a shared page once in every process that maps it (Ray's object store is mapped by
the raylet and by every worker reading from it), so the sum of RSS overstates what the
processes take together; PSS divides each shared page among the processes that map it, and
its sum is what they take. Both are reported.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class MemoryPeak:
    rss_bytes: int = 0
    """Largest sum of RSS over the tree seen in one sample."""
    pss_bytes: int = 0
    """Largest sum of PSS over the tree seen in one sample."""
    processes: int = 0
    """Processes in the tree at the sample with the largest RSS sum."""
    largest: list[tuple[str, int]] | None = None
    """(command, RSS bytes) of the 5 largest processes at the sample with the largest RSS
    sum, largest first."""
    samples: int = 0


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name in parentheses may hold spaces: ppid is the 2nd field after it
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _field_kib(path: str, name: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:60].decode()
    except OSError:
        return "?"


def sample(root: int) -> tuple[int, int, dict[int, int]]:
    """(RSS sum, PSS sum, RSS per pid) of the tree under ``root``, in bytes."""
    pids = tree(root)
    rss = {p: _field_kib(f"/proc/{p}/status", "VmRSS:") * 1024 for p in pids}
    pss = sum(_field_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return sum(rss.values()), pss * 1024, rss


@contextmanager
def peak_memory(interval_s: float = 0.2, root: int | None = None):
    """Sample the tree under ``root`` (default: this process) every ``interval_s`` while
    the block runs; yields the `MemoryPeak`, complete once the block exits."""
    root = os.getpid() if root is None else root
    peak, stop = MemoryPeak(), threading.Event()

    def run() -> None:
        while True:
            rss, pss, per_pid = sample(root)
            peak.samples += 1
            if rss > peak.rss_bytes:
                peak.rss_bytes, peak.processes = rss, len(per_pid)
                top = sorted(per_pid.items(), key=lambda item: -item[1])[:5]
                peak.largest = [(_command(pid), size) for pid, size in top]
            peak.pss_bytes = max(peak.pss_bytes, pss)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
