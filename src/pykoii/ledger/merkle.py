"""Merkle trees over a list of byte strings, as RFC 9162 (Certificate Transparency v2) §2.1 defines them.

A distribution list is committed on the ledger by the root of the tree whose leaves are its chunks
(``distribution.list_chunks``); each chunk then arrives with its inclusion proof, and the ledger
checks it against the committed root before it stores a single entry of it.

- leaf hash: ``SHA-256(0x00 || leaf)``; interior node: ``SHA-256(0x01 || left || right)``;
- a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``: the root is the
  node over the root of the first ``k`` leaves and the root of the rest;
- an inclusion proof lists the sibling hashes from the leaf up; it is verified with the leaf's index
  and the tree size (RFC 9162 §2.1.3.2), so a chunk proves its position as well as its content.

Hashes are written as lowercase hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(leaf: bytes) -> bytes:
    """The hash of one leaf."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node(_root(hashes[:k]), _root(hashes[k:]))


def merkle_root(leaves: Sequence[bytes]) -> str:
    """The hex root of a tree of one or more leaves."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    return _root([leaf_hash(leaf) for leaf in leaves]).hex()


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(index, hashes[:k]), _root(hashes[k:])]
    return [*_path(index - k, hashes[k:]), _root(hashes[:k])]


def inclusion_proofs(leaves: Sequence[bytes]) -> list[list[str]]:
    """The hex inclusion proof of every leaf, in leaf order."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return [[h.hex() for h in _path(index, hashes)] for index in range(len(hashes))]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[str], root: str) -> bool:
    """Whether ``leaf`` is leaf ``index`` of the ``size``-leaf tree with ``root`` (RFC 9162 §2.1.3.2).

    ``proof`` must hold hex hashes of 32 bytes; anything else makes it fail, never raise.
    """
    if not 0 <= index < size:
        return False
    try:
        path = [bytes.fromhex(p) for p in proof]
    except ValueError:
        return False
    if any(len(p) != 32 for p in path):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root
