"""pykoii's public surface: a sorted ``__all__`` whose names all exist (STYLE §14)."""

from __future__ import annotations

import pykoii
import pykoii.ledger


def isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_is_sorted_and_complete():
    for module in (pykoii, pykoii.ledger):
        names = list(module.__all__)
        # isort style (ruff RUF022): CONSTANTS, then Classes, then functions and the rest.
        assert names == sorted(names, key=isort_key), f"{module.__name__}.__all__ is not sorted"
        assert len(names) == len(set(names))
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name}"


def test_ledger_entry_points_are_exported():
    assert {"apply_transaction", "state_root", "LedgerState"} <= set(pykoii.__all__)
    assert {
        "apply_transaction",
        "decode_transaction",
        "encode_transaction",
        "state_root",
        "to_plain",
        "from_plain",
        "round_of",
        "audit_ring",
        "selected_submitter",
    } <= set(pykoii.ledger.__all__)
