"""Limits on a whole task: cgroups v1 when the node is root, rlimits and a watch otherwise.

See ``isolation.py`` for which applies when, and ``docs/node.md`` (*Limits*) for what is
guaranteed. ``Cgroups`` are made and killed by the node; ``set_limits``/``apply`` run in the child
before any task code; ``over_limit`` is the node's watch.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PykoiiError, SandboxError

CGROUPS = "cgroups"
RLIMITS = "rlimits"
CONTROLLERS = ("memory", "pids", "cpu")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def limits_kind() -> str:
    """``cgroups`` when the node may create cgroups (root, v1 controllers mounted), else ``rlimits``."""
    if os.geteuid() != 0:
        return RLIMITS
    if all((CGROUP_ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS):
        return CGROUPS
    return RLIMITS


def space_bytes(code_dir: Path) -> int:
    """The ``space`` (MB) the task's config-task.yml asks for, in bytes (0 when it has none)."""
    from ..config import CONFIG_FILE, parse_config

    path = code_dir / CONFIG_FILE
    try:
        return int(parse_config(path.read_text(), path=str(path)).space * (1 << 20))
    except (OSError, PykoiiError):
        return 0


def set_limits(
    memory_bytes: int, cpu_seconds: int, open_files: int, processes: int = 0, file_bytes: int = 0
) -> None:
    """Cap this process (and what it forks) with rlimits, soft and hard (the child calls this)."""
    for limit, value in (
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_NOFILE, open_files),
        (resource.RLIMIT_NPROC, processes),
        (resource.RLIMIT_FSIZE, file_bytes),
    ):
        if value > 0:
            resource.setrlimit(limit, (value, value))


def apply(plan: Mapping[str, Any]) -> str:
    """The child's first act (``worker.py``): its rlimits; returns the isolation level it runs under."""
    set_limits(
        int(plan.get("memory_bytes", 0)),
        int(plan.get("cpu_seconds", 0)),
        int(plan.get("open_files", 0)),
        int(plan.get("processes", 0)),
        int(plan.get("file_bytes", 0)),
    )
    return str(plan.get("isolation", "none"))


def disk_usage(folder: Path) -> int:
    """Bytes the files under ``folder`` occupy (allocated blocks; links are not followed)."""
    total = 0
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError), os.scandir(current) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
    return total


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(name))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from ``/proc``)."""
    tree = _children()
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, []))
    return found


def sandbox_usage(pid: int) -> tuple[int, int]:
    """``(threads, proportional resident bytes)`` of the sandbox started as ``pid`` (the rlimit
    fallback's watch). Memory is each process's PSS, so pages a fork shares are counted once."""
    threads = rss = 0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            threads += len(os.listdir(f"/proc/{each}/task"))
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{each}/smaps_rollup") as handle:
                rss += next(int(line.split()[1]) for line in handle if line.startswith("Pss:")) * 1024
    return threads, rss


def describe_exit(code: int, *, sandboxed: bool) -> str:
    """How a child's exit status reads in the task log (``code`` as ``Popen.returncode``)."""
    if sandboxed and code > 128:
        code = -(code - 128)  # bubblewrap exits with 128 + the signal that killed its child
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = {
        "SIGXCPU": "it used up its CPU-time limit (--task-cpu-seconds)",
        "SIGXFSZ": "it wrote a file larger than its disk limit",
        "SIGKILL": "killed (SIGKILL)",
    }.get(name, name)
    return f"signal {name}: {hint}"


def over_limit(
    *, cgroups: Cgroups | None, before: dict[str, int], pid: int | None, memory: int, processes: int
) -> str:
    """Why the running task is over its memory or process limit (empty when it is not).

    With cgroups: the kernel's counters moved since ``before``. Without: the sandbox started as
    ``pid`` holds at least ``processes`` threads or more than ``memory`` resident bytes.
    """
    if cgroups is not None:
        now = cgroups.counters()
        if now["memory"] > before.get("memory", 0):
            return f"memory limit: the kernel killed a process of the task at {memory >> 20} MiB"
        if now["processes"] > before.get("processes", 0):
            return f"process limit: the task tried to run more than {processes} processes/threads"
    elif pid is not None:
        count, resident = sandbox_usage(pid)
        if count >= processes:
            return f"process limit: the task ran {count} processes/threads (limit {processes})"
        if resident > memory:
            return f"memory limit: the task's processes held {resident >> 20} MiB (limit {memory >> 20} MiB)"
    return ""


@dataclass
class Cgroups:
    """One task's cgroups (v1 ``memory``, ``pids``, ``cpu``), under the node's own groups.

    ``create`` makes them and sets ``memory.limit_in_bytes``, ``pids.max`` and the CPU quota;
    ``counters`` reads the kernel's own record of limit hits (``oom_kill``, ``pids.events max``);
    ``kill`` SIGKILLs every process in them until none is left; ``remove`` deletes them.
    """

    name: str

    def folder(self, controller: str) -> Path:
        return CGROUP_ROOT / controller / _own_group(controller).lstrip("/") / self.name

    def create(self, memory_bytes: int, processes: int, cpus: float) -> list[str]:
        """Make the groups with their limits; return the ``cgroup.procs`` files to join."""
        self.kill()
        for controller in CONTROLLERS:
            self.folder(controller).mkdir(parents=True, exist_ok=True)
        memory = self.folder("memory")
        _write(memory / "memory.limit_in_bytes", memory_bytes)
        with contextlib.suppress(OSError):  # only when swap accounting is on
            _write(memory / "memory.memsw.limit_in_bytes", memory_bytes)
        _write(self.folder("pids") / "pids.max", processes)
        period = 100_000
        ceiling = _cpu_ceiling(self.folder("cpu").parent)
        if ceiling is not None:  # the kernel refuses (EINVAL) a quota above a parent group's
            cpus = min(cpus, ceiling) if cpus > 0 else ceiling
        _write(self.folder("cpu") / "cpu.cfs_period_us", period)
        _write(self.folder("cpu") / "cpu.cfs_quota_us", max(int(cpus * period), 1000) if cpus > 0 else -1)
        return [str(self.folder(c) / "cgroup.procs") for c in CONTROLLERS]

    def counters(self) -> dict[str, int]:
        """``{"memory": OOM kills, "processes": refused forks}`` so far in these groups."""
        out = {"memory": 0, "processes": 0}
        with contextlib.suppress(OSError, ValueError):
            for line in (self.folder("memory") / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    out["memory"] = int(line.split()[1])
        with contextlib.suppress(OSError, ValueError):
            for line in (self.folder("pids") / "pids.events").read_text().splitlines():
                if line.startswith("max "):
                    out["processes"] = int(line.split()[1])
        return out

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError):
            return [int(p) for p in (self.folder("pids") / "cgroup.procs").read_text().split()]
        return []

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL every process in the groups until none is left; return how many were killed."""
        killed, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids: set[int] = set()
            for controller in CONTROLLERS:
                with contextlib.suppress(OSError, ValueError):
                    pids.update(
                        int(p) for p in (self.folder(controller) / "cgroup.procs").read_text().split()
                    )
            if not pids:
                return killed
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.02)
        raise SandboxError(f"processes of cgroup {self.name} survived SIGKILL for {timeout} s")

    def remove(self) -> None:
        self.kill()
        for controller in CONTROLLERS:
            with contextlib.suppress(OSError):
                self.folder(controller).rmdir()


def _write(path: Path, value: int) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def _cpu_ceiling(group: Path) -> float | None:
    """The fewest CPU cores ``group`` or any group above it allows (its ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``), or ``None`` if none has a quota: a node in a container limited to half a
    core can give its tasks at most that."""
    ceiling = None
    root = CGROUP_ROOT / "cpu"
    while True:
        with contextlib.suppress(OSError, ValueError):
            quota = int((group / "cpu.cfs_quota_us").read_text())
            period = int((group / "cpu.cfs_period_us").read_text())
            if quota > 0 and period > 0:
                ceiling = quota / period if ceiling is None else min(ceiling, quota / period)
        if group == root or root not in group.parents:
            return ceiling
        group = group.parent


def _own_group(controller: str) -> str:
    """The node's own cgroup path in ``controller``'s v1 hierarchy."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
    return "/"
