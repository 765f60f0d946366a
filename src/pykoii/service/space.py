"""The free-space reserve: writes are refused (507) while the disk is below it, before it is full.

A full disk fails a log commit (the sequencer then rolls its state back to what is on disk, see
``LedgerStore``); the reserve makes that the rare case: below ``reserve`` free bytes the service
refuses new transactions and blobs with ``InsufficientStorageError`` and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InsufficientStorageError

DEFAULT_RESERVE_BYTES = 64 * 1024 * 1024
"""The default free-space reserve of a ledger's folder."""


def free_bytes(folder: str | Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``folder``."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def check_reserve(folder: str | Path, reserve: int, need: int = 0) -> None:
    """Raise ``InsufficientStorageError`` if writing ``need`` bytes into ``folder`` would leave
    less than ``reserve`` bytes free."""
    if reserve <= 0:
        return
    free = free_bytes(folder)
    if free - need >= reserve:
        return
    raise InsufficientStorageError(
        f"the ledger's disk ({folder}) has {free} bytes free, and a write of {need} bytes would leave "
        f"less than its reserve of {reserve} bytes; writes are refused until space is freed",
        free=free,
        reserve=reserve,
    )
