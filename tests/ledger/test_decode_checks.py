"""The compiled checks of ``decode_transaction`` (ledger/checks.py) against its definition
(``transactions._decode_checked``), and the pickled form the signature workers send back.

For every instruction class, on random and hostile JSON objects: the compiled check answers a
transaction exactly when the definition accepts the object, and then the very same transaction
(same class, same field values of the same types); otherwise the definition raises, so
``decode_transaction`` raises the error it always raised.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykoii.errors import MalformedTransactionError
from pykoii.ledger import INSTRUCTIONS, decode_transaction
from pykoii.ledger.bounds import FIELDS, MAX_INTEGER
from pykoii.ledger.checks import not_compiled
from pykoii.ledger.codec import BASE58_ALPHABET
from pykoii.ledger.transactions import _checker, _decode_checked, _layout

COMPILED = sorted(kind for kind, cls in INSTRUCTIONS.items() if _checker(cls) is not not_compiled)

_ADDRESSES = st.text(st.sampled_from(BASE58_ALPHABET), min_size=32, max_size=44)
_HEXES = st.text(st.sampled_from("0123456789abcdef"), min_size=64, max_size=64) | st.just("")
_ANY = (
    st.none()
    | st.floats(allow_nan=False)
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
_NEAR = {  # per kind: values at and just past the edges of what it accepts
    "integer": st.sampled_from(
        [0, 1, 2**63 - 1, 2**63, 2**64, -1, -(2**63), -(2**63) - 1, True, False, 1.0, 2.5]
    ),
    "boolean": st.sampled_from([True, False, 0, 1, None, "true"]),
    "hex": st.sampled_from(["", "a" * 63, "a" * 65, "A" * 64, "g" * 64, "ab" * 32, " " + "a" * 63, 0]),
    "address": st.text(st.sampled_from(BASE58_ALPHABET + "0OIl"), min_size=30, max_size=46)
    | st.sampled_from(["1" * 31, "1" * 45, "é" * 40, ""]),
    "string": st.sampled_from(
        ["", "\ud800", "a\udfffb", "é" * 70, "x" * 256, "x" * 257, "x" * 300, "x" * 64, "x" * 65, 5]
    )
    | st.text(st.characters(), max_size=70),
}


def _fitting(name: str) -> st.SearchStrategy[Any]:
    kind = FIELDS[name].kind
    if kind == "integer":
        return st.integers(0, 2**63 - 1) | st.sampled_from([0, 1, 2**63 - 1])
    if kind == "boolean":
        return st.booleans()
    if kind == "hex":
        return _HEXES
    if kind == "address":
        return _ADDRESSES
    return st.text(max_size=300) | st.text(st.characters(), max_size=70)


def _hostile(name: str) -> st.SearchStrategy[Any]:
    return _NEAR[FIELDS[name].kind] | _NEAR[FIELDS[name].kind] | _ANY


@st.composite
def _objects(draw: st.DrawFn) -> tuple[str, dict[Any, Any]]:
    """A fitting object of a compiled class, then at most a few things wrong with it: a field
    left out, a field of a hostile value, a key no instruction has."""
    kind = draw(st.sampled_from(COMPILED))
    names = sorted(_layout(INSTRUCTIONS[kind]).names)
    data: dict[Any, Any] = {"type": kind} | {name: draw(_fitting(name)) for name in names}
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        change, name = draw(st.integers(0, 9)), draw(st.sampled_from(names))
        if change == 0:
            data.pop(name, None)
        elif change == 1:
            data[draw(st.sampled_from(["amount", "to", "secret", "extra", 7, None, "Type"]))] = 1
        else:
            data[name] = draw(_hostile(name))
    return kind, data


def _same(a: Any, b: Any) -> bool:
    fields = [f.name for f in dataclasses.fields(a)]
    return type(a) is type(b) and all(
        type(getattr(a, n)) is type(getattr(b, n)) and getattr(a, n) == getattr(b, n) for n in fields
    )


@settings(max_examples=1500)
@given(_objects())
def test_the_compiled_check_accepts_exactly_what_the_definition_accepts(
    case: tuple[str, dict[Any, Any]],
) -> None:
    kind, data = case
    cls = INSTRUCTIONS[kind]
    checked = _checker(cls)(data)
    try:
        expected = _decode_checked(cls, kind, data)
    except MalformedTransactionError as error:
        assert checked is None, f"compiled check accepted what the definition refuses: {error}"
        with pytest.raises(MalformedTransactionError) as raised:
            decode_transaction(data, canonical=b"{}")
        assert (raised.value.message, raised.value.details) == (error.message, error.details)
        return
    assert checked is not None, "compiled check refused what the definition accepts"
    object.__setattr__(expected, "tx_id", "")
    assert _same(checked, expected)
    decoded = decode_transaction(data, canonical=b"{}")
    object.__setattr__(checked, "tx_id", decoded.tx_id)
    assert _same(decoded, checked)


_EDGE_VALUES = {  # per kind, deterministic: at and just past the edges of what it accepts
    "integer": [0, 1, 2**63 - 1, 2**63, -1, -(2**63), -(2**63) - 1, True, False, 1.0, None, "1"],
    "boolean": [True, False, 0, 1, None, "true"],
    "hex": ["", "a" * 64, "a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 63 + "\n", 0, None],
    "address": ["1" * 32, "z" * 44, "1" * 31, "1" * 45, "0" * 32, "O" * 32, "é" * 40, "", 5, None],
    "string": ["", "x", "\ud800", "a\udfffb", "é" * 70, "x" * 64, "x" * 65, "x" * 256, "x" * 257, 5, None],
}


def _fitting_object(kind: str) -> dict[str, Any]:
    first = {"integer": 1, "boolean": True, "hex": "ab" * 32, "address": "2" * 40, "string": "cid"}
    names = _layout(INSTRUCTIONS[kind]).names
    return {"type": kind} | {name: first[FIELDS[name].kind] for name in names}


@pytest.mark.parametrize("kind", COMPILED)
def test_every_field_at_its_edges_decodes_as_the_definition_says(kind: str) -> None:
    cls = INSTRUCTIONS[kind]
    cases = [_fitting_object(kind)]
    for name in sorted(_layout(cls).names):
        cases.append({key: value for key, value in cases[0].items() if key != name})
        cases += [cases[0] | {name: value} for value in _EDGE_VALUES[FIELDS[name].kind]]
    cases += [cases[0] | {"extra": 1}, cases[0] | {7: 1}]
    accepted = 0
    for data in cases:
        checked = _checker(cls)(data)
        try:
            expected = _decode_checked(cls, kind, data)
        except MalformedTransactionError:
            assert checked is None, data
            continue
        accepted += 1
        assert checked is not None, data
        object.__setattr__(expected, "tx_id", "")
        assert _same(checked, expected), data
    assert accepted > len(_layout(cls).names)


def test_every_instruction_without_nested_fields_is_compiled() -> None:
    nested = {"create_task", "update_task", "upload_distribution_chunk"}
    assert set(COMPILED) == set(INSTRUCTIONS) - nested


def test_a_dict_subclass_goes_by_the_definition() -> None:
    class Odd(dict[str, Any]):
        pass

    data = Odd(type="payout", signer="1" * 32, recent_slot=0, task_id="2" * 32, round=1)
    assert decode_transaction(data) == decode_transaction(dict(data))


@given(_objects())
def test_a_transaction_pickles_to_itself_with_its_id(case: tuple[str, dict[Any, Any]]) -> None:
    kind, data = case
    try:
        tx = decode_transaction(data)
    except MalformedTransactionError:
        return
    again = pickle.loads(pickle.dumps(tx, protocol=pickle.HIGHEST_PROTOCOL))
    assert _same(again, tx) and again.tx_id == tx.tx_id


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"signer": "1" * 32, "recent_slot": -1, "task_id": "2" * 32, "round": 1},
            "payout.recent_slot is -1; accepted: an integer from 0 to",
        ),
        (
            {"signer": "1" * 32, "recent_slot": True, "task_id": "2" * 32, "round": 1},
            "payout: Payout.recent_slot: expected an integer, got True",
        ),
        (
            {"signer": "1" * 31, "recent_slot": 0, "task_id": "2" * 32, "round": 1},
            "payout.signer must be a base58 public key (32-44 characters), got '1111",
        ),
        ({"signer": "1" * 32, "recent_slot": 0, "task_id": "2" * 32}, "payout needs field 'round'"),
        (
            {"signer": "1" * 32, "recent_slot": 0, "task_id": "2" * 32, "round": MAX_INTEGER + 1},
            "payout.round is 9223372036854775808; accepted",
        ),
        (
            {"signer": "1" * 32, "recent_slot": 0, "task_id": "2" * 32, "round": 1, "x": 1},
            "payout has no field 'x'; its fields are: recent_slot, round, signer, task_id",
        ),
    ],
)
def test_refusals_keep_their_messages(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedTransactionError) as raised:
        decode_transaction({"type": "payout", **data})
    assert raised.value.message.startswith(message)
