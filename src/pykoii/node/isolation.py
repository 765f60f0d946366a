"""How a task child is isolated and limited: bubblewrap, cgroups, rlimits.

Every task child is started the same way whether the node runs as root or not: under
**bubblewrap** (``bwrap``), with new user, PID, IPC, UTS and cgroup namespaces, ``--die-with-parent``,
``--new-session``, no further user namespaces (``--disable-userns``), the whole system read-only
(``--ro-bind / /``), a fresh ``/dev`` and ``/proc``, its own size-capped ``/tmp`` and ``/dev/shm``,
the node's data folder, the operator's home and the wallet file covered by empty mounts, and only
its own work folder bound back writable (its code read-only). It sees only its own processes, so it
cannot read another process's ``/proc/<pid>/environ`` or ``cmdline``, signal or ptrace the node or
another task; when bubblewrap's PID 1 goes, the kernel kills every process left in the namespace.

When the node runs as root, the child is first started by ``jail.py`` (as root) which puts it in the
task's **cgroups** (v1: memory, pids, cpu; ``limits.Cgroups``), covers folders the task's user could not
traverse (e.g. ``/root`` holding the Python installation) while binding back what the child needs,
and becomes the task's **own uid** (one per task, never root, never ``nobody``) before exec'ing the
same bubblewrap command. A node that is not root cannot create cgroups: the child's limits are then
rlimits set by the child on itself before any task code runs (RLIMIT_NPROC counts the whole
sandbox because the sandbox has its own user namespace) and the node's watch over the sandbox's
processes. ``limits.py`` holds all of that; ``limits.limits_kind`` says which applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SandboxError

BUBBLEWRAP = "bubblewrap"
NONE = "none"
LEVELS = (BUBBLEWRAP, NONE)
"""Isolation levels: ``bubblewrap`` (every task child sandboxed) or ``none`` (the operator's explicit
``--isolation none``: task code runs as the node's user and can read what it can)."""

TASK_UID_BASE = 1_000_000
TASK_UID_SPAN = 1 << 30
JAIL = Path(__file__).with_name("jail.py")

FIX_HINT = (
    "install bubblewrap (Debian: `apt-get install bubblewrap`; `make system-packages` does it) and make "
    "sure unprivileged user namespaces are enabled (`sysctl kernel.unprivileged_userns_clone=1`, "
    "`user.max_user_namespaces` > 0); or, knowing that task code then runs with the node's rights, "
    "start the node with `--isolation none`"
)

_probed: dict[int, str | None] = {}


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or ``None``."""
    return shutil.which("bwrap")


def unavailable_reason() -> str | None:
    """Why task children cannot be isolated on this machine (``None`` when they can).

    Runs a real ``bwrap`` with the namespaces every task child gets (as a throwaway task uid when
    the node is root, through ``jail.py``), once per process.
    """
    uid = os.geteuid()
    if uid in _probed:
        return _probed[uid]
    path = bwrap_path()
    if path is None:
        reason: str | None = "bubblewrap (bwrap) is not installed"
    else:
        command = [*bwrap_args(work_dir=None, code_dir=None, hide=(), keep=(), tmp_bytes=1 << 20), "true"]
        if uid == 0:
            command = jail_command({"uid": TASK_UID_BASE, "cgroups": [], "cover": []}, command)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"bwrap could not be run: {exc}"
        else:
            reason = None if done.returncode == 0 else f"bwrap failed: {done.stderr.strip()[-300:]}"
    _probed[uid] = reason
    return reason


def require_isolation(task_id: str = "") -> None:
    """Raise ``SandboxError`` naming the cause and the fix when task children cannot be isolated."""
    reason = unavailable_reason()
    if reason is not None:
        raise SandboxError(
            f"refusing to start task code without isolation: {reason}. To fix it, {FIX_HINT}",
            task_id=task_id,
        )


SCRATCH = ("/tmp", "/dev/shm")
"""The sandbox's own empty, size-capped scratch folders (fresh tmpfs, none of the host's files)."""


def bwrap_args(
    *,
    work_dir: Path | None,
    code_dir: Path | None,
    hide: Iterable[str],
    keep: Iterable[str],
    tmp_bytes: int,
) -> list[str]:
    """The bubblewrap command line (up to the program to run) for one task child."""
    args = [
        bwrap_path() or "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--hostname",
        "task",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for scratch in SCRATCH:
        args += ["--size", str(tmp_bytes), "--tmpfs", scratch]
    hidden = sorted({os.path.realpath(p) for p in hide if p not in ("", "/") and os.path.lexists(p)})
    dirs = [h for h in hidden if os.path.isdir(h)]
    for path in dirs:
        if not any(_under(path, other) and path != other for other in dirs):
            args += ["--tmpfs", path]
    # What the child needs (its Python, pykoii) is bound back wherever something above it was covered,
    # the sandbox's own /tmp and /dev/shm included (a node installed under /tmp must still start).
    covered = [*dirs, *SCRATCH]
    kept = sorted({os.path.realpath(p) for p in keep if os.path.isdir(p)})
    for path in kept:
        if any(_under(path, h) for h in covered):
            args += ["--ro-bind", path, path]
    if code_dir is not None:
        args += ["--ro-bind", str(code_dir), str(code_dir)]
    for path in hidden:
        if not os.path.isdir(path) and not any(_under(path, h) for h in dirs):
            args += ["--ro-bind", "/dev/null", path]
    if work_dir is not None:
        args += ["--bind", str(work_dir), str(work_dir), "--chdir", str(work_dir)]
    return args


def child_environment() -> dict[str, str]:
    """``PATH``, and the node's ``PYTHONPATH`` if it has one (the child imports pykoii like the node)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def jail_command(plan: Mapping[str, Any], command: Sequence[str]) -> list[str]:
    """``command`` started through ``jail.py`` (root only): cgroups, covers, the task's uid."""
    import json

    return [sys.executable, "-I", "-S", str(JAIL), json.dumps(dict(plan)), *command]


def python_paths() -> list[str]:
    """Folders the child's Python needs: the interpreter, its prefixes, ``sys.path``, pykoii."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    paths.append(str(Path(__file__).resolve().parents[2]))  # the folder holding pykoii
    return sorted({os.path.realpath(p) for p in paths})


def private_ancestors(paths: Iterable[str]) -> list[str]:
    """Folders above ``paths`` that other users may not traverse (a task's uid could not reach them)."""
    private = set()
    for path in paths:
        for parent in Path(os.path.realpath(path)).parents:
            with contextlib.suppress(OSError):
                if not os.stat(parent).st_mode & 0o001:
                    private.add(str(parent))
    return sorted(private)


def task_uid(work_dir: Path, key: str) -> int:
    """The task's own uid (root nodes): the work folder's owner if it is one of ours, else new."""
    with contextlib.suppress(OSError):
        owner = os.lstat(work_dir).st_uid
        if TASK_UID_BASE <= owner < TASK_UID_BASE + TASK_UID_SPAN:
            return owner
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return TASK_UID_BASE + digest % TASK_UID_SPAN


def prepare_work_dir(work_dir: Path, uid: int | None) -> None:
    """Create the work folder; give it (the folder itself, nothing inside) to ``uid``.

    The folder's parent belongs to the node and is invisible to the task, so the task cannot swap
    the folder for a link; nothing below it is ever touched by the node.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    info = os.lstat(work_dir)
    if not os.path.isdir(work_dir) or os.path.islink(work_dir):
        raise SandboxError(f"the task's work folder {work_dir} is not a folder", path=str(work_dir))
    if uid is not None and (info.st_uid != uid or info.st_gid != uid):
        os.chown(work_dir, uid, uid, follow_symlinks=False)
    os.chmod(work_dir, 0o700)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")
