"""Run every JSON conformance vector in ``vectors/``: the ledger's behaviour, written as data.

A vector is ``{name, description, pre_state, pre_state_root, tx, slot, expected}`` where ``expected``
is ``{post_state_root, events}`` or ``{error: "<ErrorName>"}``. Each vector is applied twice, each
time to a fresh state loaded from ``pre_state``, and both runs must agree with ``expected``
(determinism). Vectors are written by ``make_vectors.py`` and never regenerated here: a change of
behaviour must show up as a failing vector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pykoii import errors
from pykoii.ledger import (
    INSTRUCTIONS,
    LedgerState,
    apply_transaction,
    decode_transaction,
    event_to_plain,
    from_plain,
    state_root,
)

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def outcome(vector: dict[str, Any]) -> dict[str, Any]:
    state = from_plain(LedgerState, vector["pre_state"])
    assert state_root(state) == vector["pre_state_root"], "pre_state does not load to its recorded root"
    try:
        receipt = apply_transaction(state, decode_transaction(vector["tx"]), vector["slot"])
    except errors.InvalidTransactionError as exc:
        assert state_root(state) == vector["pre_state_root"], "a refused transaction changed the state"
        return {"error": exc.name}
    return {"post_state_root": state_root(state), "events": [event_to_plain(e) for e in receipt.events]}


@pytest.mark.parametrize("path", VECTORS, ids=[path.stem for path in VECTORS])
def test_vector(path: Path) -> None:
    vector = load(path)
    assert vector["name"] == path.stem
    first = outcome(vector)
    second = outcome(vector)
    assert first == second, "the same (state, tx, slot) gave two outcomes"
    assert first == vector["expected"]


def test_vectors_cover_every_instruction_and_every_refusal() -> None:
    vectors = [load(path) for path in VECTORS]
    assert len(vectors) >= 40
    accepted = {v["tx"]["type"] for v in vectors if "events" in v["expected"]}
    assert accepted == set(INSTRUCTIONS)
    refused = {v["expected"]["error"] for v in vectors if "error" in v["expected"]}
    refusals = {
        name
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.InvalidTransactionError)
    }
    # Signatures are checked before apply_transaction (pykoii.keys.verify_envelope; see test_keys.py),
    # and the base class itself is never raised.
    assert refused == refusals - {"InvalidTransactionError", "InvalidSignatureError"}
    assert all(hasattr(errors, name) for name in refused)
