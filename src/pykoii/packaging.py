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
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, TaskCodeMismatchError
from .ledger.codec import canonical_bytes

if TYPE_CHECKING:
    from .config import TaskConfig

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


def _check_member(member: tarfile.TarInfo, staging: Path) -> None:
    """What tarfile's ``data`` filter refuses, for Pythons that lack it: a path outside ``staging``."""
    target = os.path.realpath(os.path.join(staging, member.name))
    if os.path.isabs(member.name) or not target.startswith(os.path.realpath(staging) + os.sep):
        raise ValueError(f"member {member.name!r} would land outside the task's folder")
    member.mode = (member.mode or 0o644) & 0o755
    member.uid = member.gid = 0
    member.uname = member.gname = ""


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
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, members=members, filter="data")
            else:  # Python 3.11.0-3.11.3 (Debian 12's python3): the same checks by hand
                for member in members:
                    _check_member(member, staging)
                archive.extractall(staging, members=members)
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)
            for name in files:
                path = os.path.join(root, name)
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"task archive could not be unpacked: {exc}") from exc
    return destination


CID_PATTERN = re.compile(r"b[a-z2-7]{58}")
"""The shape of ``cid_of``'s CIDs (``bafkrei…``, 59 characters)."""


@dataclass(frozen=True)
class Published:
    """What ``publish`` put in the ledger's blob store for a task, and what it said about it."""

    task_audit_program: str
    """The code archive's CID (the ledger's ``task_audit_program``)."""
    task_metadata: str
    """The metadata blob's CID (the ledger's ``task_metadata``)."""
    notes: tuple[str, ...]


def metadata_blob(config: TaskConfig, code: str) -> bytes:
    """The task's metadata (Koii's ``metadata.json`` fields, the task's name and its code as the
    author gave it), as canonical JSON bytes: the same config gives the same blob, the same CID."""
    return canonical_bytes({"task_name": config.task_name, "task_audit_program": code, **config.metadata()})


def publish(client: Any, folder: Path, config: TaskConfig) -> Published:
    """Upload a task's code and metadata to ``client``'s blob store; their CIDs.

    ``task_audit_program`` in ``config-task.yml`` is kept as given when it is a CID (code uploaded
    before; the ledger must hold it); otherwise it must name a file of ``folder`` (default
    ``task.py``), and the whole folder is packed: the ledger records the archive's CID, the metadata
    blob keeps the name as given, and a note says so.
    """
    given = config.task_audit_program
    notes = []
    if CID_PATTERN.fullmatch(given):
        client.get_blob(given)  # NotFoundError names it when the ledger does not hold it
        code = given
        notes.append(f"task_audit_program {given} is a CID: kept as given (no upload)")
    else:
        if not (folder / given).is_file():
            raise ConfigError(
                f"task_audit_program is {given!r}, which is not a file of {folder}; accepted: a file of "
                "the task folder (the folder is packed and uploaded) or the CID of code already uploaded",
                received=given,
            )
        data = build_archive(folder)
        code = client.put_blob(data)
        notes.append(
            f"task_audit_program {given}: packed with its folder ({len(data)} bytes) and uploaded; "
            f"the ledger records the archive's CID {code}"
        )
    metadata = client.put_blob(metadata_blob(config, given))
    notes.append(f"task_metadata: {metadata} (author, links, tags, environment)")
    return Published(code, metadata, tuple(notes))
