"""What a task child does to itself before it imports any task code.

The node starts the child with an environment of only ``PATH`` and the task variables, in the
task's own folder. The child then, as its first act (``apply``):

1. sets its resource limits (address space, CPU seconds, open files), hard and soft;
2. when it runs as root (the node does): enters a private mount namespace and covers every path
   the node asked it to hide (the node's data folder, the operator's home, the wallet file) with
   an empty tmpfs or ``/dev/null``, then binds back only what it needs — its own folder, the task
   code, the Python installation and ``sys.path``;
3. drops to an unprivileged user (``nobody`` by default), which clears every capability, and sets
   ``no_new_privs``.

After that the task code cannot read keys through files, cannot read the node's
``/proc/<pid>/environ`` (another user's), and cannot undo the mounts. When the node does not run as
root, steps 2–3 are skipped and ``apply`` says so: the isolation level is reported as ``"none"``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import SandboxError

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38

_libc: Any = None


def _call(name: str, *args: Any) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"{name}{args!r} failed: {os.strerror(errno)}", errno=errno)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call(
        "mount",
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )


def set_limits(memory_bytes: int, cpu_seconds: int, open_files: int) -> None:
    """Cap this process's address space, CPU time and open files (soft and hard)."""
    for limit, value in (
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_NOFILE, open_files),
    ):
        if value > 0:
            resource.setrlimit(limit, (value, value))


def _under(path: str, parent: str) -> bool:
    return path != parent and (path + "/").startswith(parent.rstrip("/") + "/")


def hide_paths(hide: Iterable[str], keep: Iterable[str]) -> None:
    """In a new mount namespace, cover ``hide`` and bind back ``keep`` (needs root)."""
    hides = sorted({os.path.realpath(p) for p in hide if os.path.lexists(p)})
    keeps = sorted({os.path.realpath(p) for p in keep if os.path.isdir(p)})
    _call("unshare", CLONE_NEWNS)
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    keep_fds = {path: os.open(path, os.O_PATH) for path in keeps}  # in the new namespace's tree
    hidden_dirs = [h for h in hides if os.path.isdir(h)]
    outermost = [h for h in hidden_dirs if not any(_under(h, other) for other in hidden_dirs)]
    for path in outermost:
        _mount("tmpfs", path, "tmpfs", 0, "mode=0755,size=1m")
    for path, fd in keep_fds.items():
        if any(_under(path, h) or path == h for h in outermost):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    for path in hides:  # cover again whatever a bound-back folder brought back
        if not os.path.lexists(path):
            continue
        if any(_under(path, k) for k in keeps) or path not in outermost:
            if os.path.isdir(path):
                if any(_under(k, path) or k == path for k in keeps):
                    continue  # a kept folder lives inside: it was bound back on purpose
                _mount("tmpfs", path, "tmpfs", 0, "mode=0755,size=1m")
            else:
                _mount("/dev/null", path, None, MS_BIND)


def _private_ancestors(paths: Iterable[str]) -> list[str]:
    """Folders above ``paths`` that others may not traverse (the child's user could not reach them)."""
    private = set()
    for path in paths:
        current = Path(os.path.realpath(path))
        for parent in current.parents:
            try:
                if not os.stat(parent).st_mode & 0o001:
                    private.add(str(parent))
            except OSError:
                continue
    return sorted(private)


def drop_privileges(user: str) -> None:
    """Become ``user`` (name or uid): no groups, no capabilities, no way back."""
    import pwd

    entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    _call(
        "prctl",
        PR_SET_NO_NEW_PRIVS,
        ctypes.c_ulong(1),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )


def apply(plan: Mapping[str, Any]) -> str:
    """Apply a sandbox plan from the node's ``init`` message; return the isolation level reached.

    ``plan`` keys: ``memory_bytes``, ``cpu_seconds``, ``open_files``, ``hide``, ``keep``,
    ``user``, ``mode`` (``"auto"``: isolate when root; ``"strict"``: fail unless isolated;
    ``"off"``: limits only).
    """
    set_limits(
        int(plan.get("memory_bytes", 0)), int(plan.get("cpu_seconds", 0)), int(plan.get("open_files", 0))
    )
    mode = plan.get("mode", "auto")
    if mode == "off":
        return "none"
    if os.geteuid() != 0:
        if mode == "strict":
            raise SandboxError("isolation mode 'strict' needs the node to run as root (it does not)")
        return "none"
    import sys

    keep = [str(plan.get("work_dir", os.getcwd())), *plan.get("keep", [])]
    keep += [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    keep += [p for p in sys.path if p and os.path.isdir(p)]
    keep.append(str(Path(__file__).resolve().parents[2]))  # the folder holding pykoii
    hide = list(plan.get("hide", []))
    hide += _private_ancestors(keep)  # e.g. /root holding the interpreter: cover it, bind back what we need
    hide_paths(hide, keep)
    os.chdir(str(plan.get("work_dir", os.getcwd())))
    drop_privileges(str(plan.get("user", "nobody")))
    return "namespace"
