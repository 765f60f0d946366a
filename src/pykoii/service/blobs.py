"""Content-addressed blobs: task code, proofs and distribution lists, named by their CIDv1.

A CID here is IPFS's CIDv1 with the ``raw`` codec and a sha2-256 multihash, written in base32
(lowercase, no padding) with the multibase prefix ``b``, so the same bytes have the same id here
and on IPFS (``ipfs add --cid-version 1 --raw-leaves`` of a small file)::

    cid = "b" + base32(0x01 0x55 0x12 0x20 || sha256(data))

Blobs are written to a temporary file, fsynced, renamed into place and the folder fsynced, so a
stored blob survives a crash. Reads hash the bytes again and refuse a blob that no longer matches.

Blobs have a total quota of their own (``quota_bytes``, 1 GiB by default) and respect the ledger's
free-space reserve (``space.check_reserve``), so uploads cannot fill the disk the log needs: past
either, ``put`` raises ``InsufficientStorageError`` (507) and writes nothing.

>>> cid_of(b"hello")
'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import threading
from pathlib import Path

from ..errors import (
    BlobCorruptionError,
    InsufficientStorageError,
    InvalidCidError,
    NotFoundError,
    PayloadTooLargeError,
)
from .space import check_reserve

CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])
"""CIDv1, codec raw (0x55), multihash sha2-256 (0x12) of 32 bytes (0x20)."""

MAX_BLOB_BYTES = 8 * 1024 * 1024
"""The default size limit of one blob."""

DEFAULT_QUOTA_BYTES = 1024 * 1024 * 1024
"""The default total size of all blobs."""


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of ``data``."""
    digest = hashlib.sha256(data).digest()
    return "b" + base64.b32encode(CID_PREFIX + digest).decode().lower().rstrip("=")


def check_size(data: bytes, limit: int = MAX_BLOB_BYTES) -> None:
    """``PayloadTooLargeError`` (413) when ``data`` is over ``limit`` bytes. The one size rule for a
    blob, wherever it is put (the service, a task's ``ctx.blobs``, the simulator)."""
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"blob of {len(data)} bytes is over the limit of {limit} bytes", limit=limit, received=len(data)
        )


def digest_of_cid(cid: str) -> bytes:
    """The sha2-256 digest a CID names, or ``InvalidCidError`` saying what is wrong."""
    accepted = "a CIDv1 with the raw codec and sha2-256, base32 with prefix 'b' (59 characters)"
    if not isinstance(cid, str) or len(cid) != 59 or not cid.startswith("b"):
        raise InvalidCidError(f"blob id {cid!r} is not {accepted}", cid=cid)
    body = cid[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidCidError(f"blob id {cid!r} is not base32; expected {accepted}", cid=cid) from None
    if raw[:4] != CID_PREFIX or len(raw) != 36:
        raise InvalidCidError(f"blob id {cid!r} is not {accepted}", cid=cid)
    return raw[4:]


class BlobStore:
    """Blobs on disk under ``folder``, one file per CID, at most ``quota_bytes`` in all, never
    leaving less than ``reserve_bytes`` free on the disk."""

    def __init__(
        self,
        folder: str | Path,
        *,
        max_bytes: int = MAX_BLOB_BYTES,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        reserve_bytes: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self.reserve_bytes = reserve_bytes
        self.stored = 0
        for leftover in self.folder.glob(".*.tmp"):  # a write that a crash interrupted
            leftover.unlink(missing_ok=True)
        self.used = sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())
        """Bytes of all stored blobs (plus those being written)."""
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its CID. Storing the same bytes twice is a no-op."""
        check_size(data, self.max_bytes)
        cid = cid_of(data)
        path = self.folder / cid
        if path.exists():
            return cid
        with self._lock:  # concurrent uploads cannot overshoot the quota together
            if self.used + len(data) > self.quota_bytes:
                raise InsufficientStorageError(
                    f"blobs hold {self.used} bytes; {len(data)} more would pass their quota of "
                    f"{self.quota_bytes} bytes",
                    used=self.used,
                    quota=self.quota_bytes,
                )
            check_reserve(self.folder, self.reserve_bytes, need=len(data))
            self.used += len(data)
        temporary = self.folder / f".{cid}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            with self._lock:
                self.used -= len(data)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            raise InsufficientStorageError(
                f"blob {cid} of {len(data)} bytes could not be written: {exc.strerror or exc}",
                used=self.used,
                quota=self.quota_bytes,
            ) from None
        self.stored += 1
        return cid

    def get(self, cid: str) -> bytes:
        """The bytes of ``cid``, verified against it; ``NotFoundError`` or ``BlobCorruptionError``."""
        digest = digest_of_cid(cid)
        try:
            data = (self.folder / cid).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no blob has id {cid}", cid=cid) from None
        if hashlib.sha256(data).digest() != digest:
            raise BlobCorruptionError(f"stored blob {cid} no longer matches its id; it is corrupted", cid=cid)
        return data
