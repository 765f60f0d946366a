"""Ed25519 keypairs, Solana-style keypair files, and signed transaction envelopes.

A keypair file is a JSON array of 64 integers: the 32-byte seed followed by the 32-byte public key,
as ``solana-keygen`` and Koii's tools write them. Public keys are written in base58.

An envelope is ``{"tx": {...}, "signature": "<base58 of 64 bytes>"}``; the signature covers the
canonical bytes of ``tx`` and must verify against ``tx["signer"]``. ``verify_envelope`` is the one
place signatures are checked.

>>> wallet = Keypair.generate()
>>> envelope = wallet.sign_transaction({"type": "transfer", "to": wallet.public_key, "amount": 1,
...                                     "recent_slot": 0})
>>> verify_envelope(envelope).signer == wallet.public_key
True
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .errors import InvalidSignatureError, KeyFileError, MalformedTransactionError
from .ledger.audits import beacon_commitment
from .ledger.codec import base58_decode, base58_encode, canonical_bytes
from .ledger.transactions import Transaction, decode_transaction


@dataclass(frozen=True)
class Keypair:
    """An ed25519 keypair. ``public_key`` is base58; the secret never leaves this object."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> Keypair:
        """A new random keypair."""
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        """The keypair of a 32-byte seed (deterministic; for tests and simulations)."""
        return cls(SigningKey(seed))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keypair:
        """Read a Solana-style keypair file, or raise ``KeyFileError`` saying what is wrong."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyFileError(
                f"keypair file {path} does not exist; create one with `pykoii wallet new`", path=str(path)
            ) from None
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"keypair file {path} is not readable JSON: {exc}", path=str(path)) from None
        if not (
            isinstance(data, list)
            and len(data) == 64
            and all(isinstance(b, int) and 0 <= b < 256 for b in data)
        ):
            raise KeyFileError(
                f"keypair file {path} must hold a JSON array of 64 bytes (Solana format)", path=str(path)
            )
        raw = bytes(data)
        keypair = cls(SigningKey(raw[:32]))
        if bytes(keypair.signing_key.verify_key) != raw[32:]:
            raise KeyFileError(
                f"keypair file {path}: the public half does not match the secret half", path=str(path)
            )
        return keypair

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the keypair file (mode 0600), creating parent folders; refuses to overwrite."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = bytes(self.signing_key) + bytes(self.signing_key.verify_key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(
                f"keypair file {path} already exists; not overwriting it", path=str(path)
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(list(raw), handle)
        return path

    @property
    def public_key(self) -> str:
        """The base58 public key."""
        return base58_encode(bytes(self.signing_key.verify_key))

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte signature of ``message``."""
        return self.signing_key.sign(message).signature

    def beacon_secret(self, task_id: str, round_number: int) -> str:
        """The beacon secret this key commits with its proof for a round (``ledger.audits``): the hex
        SHA-256 of its signature over ``pykoii-beacon:<task>:<round>``. Only this key can compute it
        before it is revealed, and a restarted node finds the same secret again (ed25519 signatures
        are deterministic)."""
        return hashlib.sha256(self.sign(f"pykoii-beacon:{task_id}:{round_number}".encode())).hexdigest()

    def sign_transaction(self, tx: dict[str, Any]) -> dict[str, Any]:
        """An envelope for ``tx``; fills in ``signer`` with this key when it is absent."""
        body = dict(tx)
        body.setdefault("signer", self.public_key)
        return {"tx": body, "signature": base58_encode(self.sign(canonical_bytes(body)))}


PAYLOAD_DOMAIN = b"pykoii task payload v1\x00"
"""What every payload a task has signed (``ctx.sign``) starts with, before its bytes. A ledger
transaction's signed bytes are canonical JSON (they start with ``{``), so no payload signature can
ever be a transaction signature: a task cannot get a transaction signed through ``ctx.sign``."""


def payload_bytes(payload: Any) -> bytes:
    """The bytes a payload signature covers: ``bytes`` as they are, ``str`` as UTF-8, anything else
    as canonical JSON (sorted keys, no spaces), so ``{"a": 1, "b": 2}`` signs like ``{"b": 2, "a": 1}``."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return canonical_bytes(payload)


def sign_payload(keypair: Keypair, payload: Any) -> str:
    """``keypair``'s base58 signature of ``payload`` under ``PAYLOAD_DOMAIN`` (what ``ctx.sign``
    returns; the node signs with its staking key, the task never holds it)."""
    return base58_encode(keypair.sign(PAYLOAD_DOMAIN + payload_bytes(payload)))


def verify(payload: Any, signature: str, public_key: str) -> bool:
    """Whether ``signature`` (base58, from ``ctx.sign``) is ``public_key``'s signature of ``payload``.
    Never raises for a malformed signature or key: the answer is then ``False``.

    >>> node = Keypair.generate()
    >>> verify({"round": 3}, sign_payload(node, {"round": 3}), node.public_key)
    True
    >>> verify({"round": 4}, sign_payload(node, {"round": 3}), node.public_key)
    False
    """
    try:
        signature_bytes, key = base58_decode(signature), base58_decode(public_key)
        VerifyKey(key).verify(PAYLOAD_DOMAIN + payload_bytes(payload), signature_bytes)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify_envelope(envelope: Any) -> Transaction:
    """Check an envelope's shape and signature; return the decoded transaction.

    Raises ``MalformedTransactionError`` for a bad shape and ``InvalidSignatureError`` when the
    signature does not verify against ``tx["signer"]``.
    """
    return verify_envelope_bytes(envelope)[0]


@functools.lru_cache(maxsize=16384)
def signer_key(signer: str) -> bytes:
    """``base58_decode`` of a signer's public key, remembered for the last 16,384 signers: in a
    network of fewer nodes the same signers sign again and again (a hit costs about 0.2 µs, a
    decode about 1.8). The cache holds about 240 bytes a signer (its key text included), at most
    about 4 MB per process. A round with more signers than that (a 100,000-node round) finds
    none of them in it and pays about 0.4 µs more per envelope than a plain decode
    (benchmarks/bench_verify.py measures it that way)."""
    return base58_decode(signer)


def verify_envelope_bytes(envelope: Any) -> tuple[Transaction, bytes]:
    """``verify_envelope``, also returning the canonical bytes of ``tx`` that the signature covers."""
    if not isinstance(envelope, dict) or set(envelope) != {"tx", "signature"}:
        raise MalformedTransactionError(
            'an envelope must be a JSON object {"tx": {...}, "signature": "<base58>"}', received=envelope
        )
    body, signature = envelope["tx"], envelope["signature"]
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise MalformedTransactionError(
            'an envelope must be {"tx": <object>, "signature": <base58 string>}', received=envelope
        )
    canonical = canonical_bytes(body)
    tx = decode_transaction(body, canonical=canonical)
    try:
        signature_bytes = base58_decode(signature)
        public_key = signer_key(tx.signer)
    except ValueError as exc:
        raise InvalidSignatureError(f"signature is not base58: {exc}", signature=signature) from None
    if len(signature_bytes) != 64 or len(public_key) != 32:
        raise InvalidSignatureError(
            f"signature must be 64 bytes and signer 32 bytes; "
            f"got {len(signature_bytes)} and {len(public_key)}",
            signature=signature,
        )
    try:  # what ``VerifyKey(public_key).verify(canonical, signature_bytes)`` calls, lengths checked above
        crypto_sign_open(signature_bytes + canonical, public_key)
    except (BadSignatureError, ValueError):
        raise InvalidSignatureError(
            f"signature does not verify for signer {tx.signer} over the canonical bytes of tx",
            signer=tx.signer,
        ) from None
    return tx, canonical


def submit_body(keys: Keypair, task_id: str, round_number: int, value: str) -> dict[str, Any]:
    """The ``submit`` transaction of a proof, with the commitment to ``keys``' beacon secret."""
    secret = keys.beacon_secret(task_id, round_number)
    commitment = beacon_commitment(task_id, round_number, keys.public_key, secret)
    return {
        "type": "submit",
        "task_id": task_id,
        "round": round_number,
        "submission_value": value,
        "commitment": commitment,
    }


def reveal_body(keys: Keypair, task_id: str, round_number: int) -> dict[str, Any]:
    """The ``reveal`` transaction of ``keys``' beacon secret for a round."""
    secret = keys.beacon_secret(task_id, round_number)
    return {"type": "reveal", "task_id": task_id, "round": round_number, "secret": secret}
