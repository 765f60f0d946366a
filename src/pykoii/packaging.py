"""Task code as one archive, named by the hash of its bytes.

``build_archive(folder)`` packs a task folder (``task.py``, ``config-task.yml``, any helpers) into a
deterministic ``.tar.gz``: files in sorted order, every timestamp 0, owner root, modes 0644/0755,
caches and VCS folders left out. The same folder always gives the same bytes, so the same CID.

``cid_of(data)`` is that CID: CIDv1, raw codec, sha2-256, base32 lower case with the multibase
prefix ``b`` (``bafkrei…``), the format of the ledger's blob store. It goes into the task's
``task_audit_program``; a node that downloads the blob checks it with ``verify_cid`` and refuses
code whose hash does not match.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()); _ = (folder / "task.py").write_text("x = 1\\n")
>>> build_archive(folder) == build_archive(folder)
True
>>> cid_of(b"").startswith("bafkrei")
True
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import ConfigError, TaskCodeMismatchError

EXCLUDED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".venv",
        "venv",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "dist",
    }
)
"""Folder names never packed."""
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".tar.gz")

MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
"""The largest archive ``build_archive`` produces and ``extract_archive`` accepts."""


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of ``data``."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def verify_cid(data: bytes, cid: str) -> None:
    """Raise ``TaskCodeMismatchError`` unless ``data`` hashes to ``cid``."""
    actual = cid_of(data)
    if actual != cid:
        raise TaskCodeMismatchError(
            f"task code does not match its CID: task_audit_program is {cid} but the downloaded "
            f"{len(data)} bytes hash to {actual}; refusing to run it",
            expected=cid,
            actual=actual,
        )


def _files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for name in sorted(files):
            if not name.endswith(EXCLUDED_SUFFIXES):
                found.append(Path(root, name))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def build_archive(folder: str | os.PathLike[str]) -> bytes:
    """The deterministic ``.tar.gz`` of a task folder, which must hold ``task.py``."""
    folder = Path(folder)
    if not (folder / "task.py").is_file():
        raise ConfigError(
            f"{folder} holds no task.py; `pykoii task build` packs a task folder", path=str(folder)
        )
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for path in _files(folder):
                if path.is_symlink():
                    continue
                info = tarfile.TarInfo(path.relative_to(folder).as_posix())
                data = path.read_bytes()
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ConfigError(
            f"{folder} packs to {len(data)} bytes; the limit is {MAX_ARCHIVE_BYTES}",
            path=str(folder),
            size=len(data),
        )
    return data


def extract_archive(data: bytes, destination: str | os.PathLike[str]) -> Path:
    """Unpack an archive made by ``build_archive`` into ``destination`` (replaced atomically).

    Only regular files and folders inside ``destination`` are written (tarfile's ``data`` filter);
    every folder gets mode 0755 and every file 0644 or 0755, so the task's unprivileged child can
    read them.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]
            archive.extractall(staging, members=members, filter="data")
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)
            for name in files:
                path = os.path.join(root, name)
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"task archive could not be unpacked: {exc}") from exc
    return destination
