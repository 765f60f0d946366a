"""The root node's first step before bubblewrap: ``python -I -S jail.py '<json plan>' bwrap ...``.

Only used when the node runs as root (standard library only, so it starts fast and imports no
project code). As root, in the freshly started process, it

1. joins the task's cgroups (``plan["cgroups"]``: ``cgroup.procs`` files), so the task child and
   everything it forks are counted and limited from their first instruction;
2. enters a private mount namespace and covers with an empty tmpfs every folder ``plan["cover"]``
   that the task's user may not traverse (e.g. ``/root``, 0700, holding the Python installation),
   binding back read-only only the folders the child needs (``plan["keep"]``);
3. becomes the task's own unprivileged user (``plan["uid"]``, no groups, ``no_new_privs``);
4. execs the rest of its arguments: bubblewrap, which then builds the sandbox exactly as it does
   for a node that is not root (new user, PID, IPC, UTS namespaces...).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _fail(why: str) -> None:
    """Say why on stderr (the node shows it as the child's last words) and exit 126: no task runs."""
    print(f"pykoii jail: {why}", file=sys.stderr, flush=True)
    os._exit(126)


def _call(name: str, *args: object) -> None:
    if getattr(_libc, name)(*args) != 0:
        _fail(f"{name}: {os.strerror(ctypes.get_errno())}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call(
        "mount",
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def cover(covers: list[str], keeps: list[str], keeps_rw: list[str]) -> None:
    """Cover ``covers`` with empty tmpfs in a new mount namespace; bind ``keeps`` back read-only
    and ``keeps_rw`` writable."""
    _call("unshare", CLONE_NEWNS)
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    wanted = [(p, True) for p in keeps] + [(p, False) for p in keeps_rw]
    fds = [(p, ro, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p, ro in wanted if os.path.isdir(p)]
    outermost = [c for c in covers if not any(_under(c, o) and c != o for o in covers)]
    for path in outermost:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for path, read_only, fd in sorted(fds):
        if any(_under(path, c) for c in outermost):
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            if read_only:
                _mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
        os.close(fd)


def main() -> None:
    plan = json.loads(sys.argv[1])
    command = sys.argv[2:]
    try:
        for procs in plan.get("cgroups", []):
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        if plan.get("cover"):
            cover(list(plan["cover"]), list(plan.get("keep", [])), list(plan.get("keep_rw", [])))
        uid = int(plan["uid"])
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        off = ctypes.c_ulong(0)
        _call("prctl", PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), off, off, off)
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
