"""Canonical bytes, base58, hashes, and the plain form of the whole ledger state."""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykoii.keys import Keypair, sign_payload, signer_key, verify
from pykoii.ledger import LedgerState, canonical_bytes, from_plain, state_root, to_plain
from pykoii.ledger.codec import (
    BASE58_ALPHABET,
    base58_decode,
    base58_encode,
    derive_address,
    is_address,
    plain_bytes,
    sha256_hex,
)
from pykoii.ledger.state import AuditTrigger, Submission, TaskState, Vote

from .helpers import World


@pytest.mark.parametrize(
    "data", [b"", b"\0", b"\0\0\x01", b"hello", bytes(range(32)), b"\xff" * 64, b"\0" * 5 + b"\x7f"]
)
def test_base58_round_trip(data):
    assert base58_decode(base58_encode(data)) == data


def test_base58_known_values():
    # Bitcoin's reference vectors.
    assert base58_encode(b"hello world") == "StV1DL6CwTryKyV"
    assert base58_encode(b"\0\0\x28\x7f\xb4\xcd") == "11233QC4"
    assert base58_decode("1") == b"\0"


def test_base58_decode_names_the_bad_character():
    with pytest.raises(ValueError, match="'0' is not a base58 character"):
        base58_decode("abc0")
    assert "0" not in BASE58_ALPHABET and "l" not in BASE58_ALPHABET
    with pytest.raises(ValueError, match="'é' is not a base58 character"):
        base58_decode("ab\u00e9")
    with pytest.raises(TypeError, match="must be a string, got int"):
        base58_decode(7)  # type: ignore[arg-type]


def test_verify_answers_false_for_a_key_or_signature_that_is_not_text():
    node = Keypair.generate()
    signature = sign_payload(node, {"round": 1})
    assert verify({"round": 1}, signature, node.public_key)
    assert not verify({"round": 1}, signature, 7)  # type: ignore[arg-type]
    assert not verify({"round": 1}, None, node.public_key)  # type: ignore[arg-type]
    assert signer_key(node.public_key) == base58_decode(node.public_key)


def test_canonical_bytes_sorted_compact_utf8():
    assert canonical_bytes({"b": 1, "a": [1, {"d": None, "c": True}], "é": "ü"}) == (
        '{"a":[1,{"c":true,"d":null}],"b":1,"é":"ü"}'.encode()
    )
    assert canonical_bytes({"a": 1, "b": 2}) == canonical_bytes({"b": 2, "a": 1})


def test_sha256_and_derived_addresses():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    first = derive_address("task", "x")
    assert first == derive_address("task", "x") != derive_address("task", "y")
    assert is_address(first)
    assert not is_address("short") and not is_address("0" * 40) and not is_address(42)


def test_full_state_plain_round_trip_keeps_root_and_values():
    world = World()
    world.submit_all(0, {world.nodes[1]: "Goodbye"})
    world.accuse(0, world.nodes[1], voters=2)
    world.submit_list(0)
    state = world.state
    plain = to_plain(state)
    # Through real JSON text, with keys sorted as a snapshot would write them.
    again = from_plain(LedgerState, json.loads(json.dumps(plain, sort_keys=True)))
    assert state_root(again) == state_root(state)
    assert to_plain(again) == plain
    task = again.tasks[world.task_id]
    assert isinstance(task, TaskState)
    assert 0 in task.submissions and isinstance(task.submissions[0][world.nodes[0]], Submission)
    trigger = task.submissions_audit_trigger[0][world.nodes[1]]
    assert isinstance(trigger, AuditTrigger) and all(isinstance(v, Vote) for v in trigger.votes.values())
    assert again.journal is None and "journal" not in plain


def test_state_root_changes_with_any_field():
    world = World(node_count=1)
    before = state_root(world.state)
    world.task.task_vars = "x"
    assert state_root(world.state) != before


def test_from_plain_rejects_bad_shapes_naming_the_path():
    plain = to_plain(World(node_count=1).state)
    plain["total_supply"] = "12"
    with pytest.raises(ValueError, match=r"LedgerState.total_supply: expected an integer, got '12'"):
        from_plain(LedgerState, plain)
    plain["total_supply"] = True
    with pytest.raises(ValueError, match="expected an integer"):
        from_plain(LedgerState, plain)
    with pytest.raises(ValueError, match="expected an object"):
        from_plain(LedgerState, [])
    with pytest.raises(ValueError, match="missing field 'task_id'"):
        from_plain(TaskState, {})


def test_integer_keys_arrive_as_strings_but_values_never_do():
    trigger = from_plain(AuditTrigger, {"trigger_by": "x", "slot": 3, "votes": {}})
    assert trigger.slot == 3
    task_plain = to_plain(World(node_count=1).task)
    task_plain["distributions_audit_record"] = {"7": "PayoutSuccessful"}
    assert from_plain(TaskState, task_plain).distributions_audit_record == {7: "PayoutSuccessful"}
    task_plain["distributions_audit_record"] = {"seven": "PayoutSuccessful"}
    with pytest.raises(ValueError, match="expected an integer, got 'seven'"):
        from_plain(TaskState, task_plain)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 + 5) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(_PLAIN)
def test_canonical_bytes_are_the_json_definition(value):
    """The fast path (orjson) writes exactly the bytes of the definition (json.dumps, sorted keys,
    compact, no ASCII escaping), and falls back to it for what orjson refuses (integers >= 2**64)."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_bytes(value) == expected


def test_canonical_bytes_of_what_only_json_writes():
    assert canonical_bytes({1: "a", 2**70: [True]}) == b'{"1":"a","1180591620717411303424":[true]}'
    with pytest.raises(UnicodeEncodeError):
        canonical_bytes({"a": "\ud800"})  # a lone surrogate has no UTF-8 form, whichever path


_ROUNDS = st.dictionaries(st.integers(-3, 2**64 + 5), _TEXT, max_size=4)


@st.composite
def _states(draw: st.DrawFn) -> LedgerState:
    """A ledger state with random values in every kind of field: integer-keyed round maps (keys
    such as 9 and 10 sort as text), dataclasses in dicts, text of any plane, big integers."""
    world = World(node_count=draw(st.integers(1, 3)))
    task = world.task
    for round_number, value in draw(_ROUNDS).items():
        task.submissions[round_number] = {
            node: Submission(value, draw(st.integers(0, 2**65)), round_number, reveal=draw(_TEXT))
            for node in world.nodes
        }
        task.distributions_audit_record[round_number] = value
        task.submissions_audit_trigger[round_number] = {
            draw(_TEXT): AuditTrigger(value, 1, {draw(_TEXT): Vote(draw(st.booleans()), value, 2)})
        }
    task.task_vars = draw(_TEXT)
    world.state.recent_transactions.update(draw(st.dictionaries(st.integers(0, 300), st.just({"a": 1}))))
    return world.state


@given(_states())
def test_plain_bytes_are_canonical_bytes_of_to_plain(state):
    """Checkpoints and state roots encode the live state (``plain_bytes``): exactly the bytes of the
    definition, ``canonical_bytes(to_plain(state))``, itself the ``json`` definition."""
    expected = json.dumps(to_plain(state), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plain_bytes(state) == canonical_bytes(to_plain(state)) == expected.encode()
    assert state_root(state) == sha256_hex(expected.encode())


class _Text(str):
    def __str__(self) -> str:
        return "other"


@dataclasses.dataclass
class _Odd:
    anything: Any
    rounds: dict[int, Any] = dataclasses.field(default_factory=dict)
    skipped: Any = dataclasses.field(default=None, metadata={"encode": False})


@pytest.mark.parametrize(
    "value",
    [
        _Odd({1: "int key where the annotation says Any", "b": [_Odd(2)]}),
        _Odd((1, _Odd("tuple")), {9: 1, 10: _Odd(None, {True: 1})}),
        _Odd(_Text("a str subclass"), {1: {2: "nested int keys"}}),
        _Odd({_Text("key"): 1}),
        _Odd(collections.OrderedDict(b=1, a=2), collections.OrderedDict({3: 4})),
        _Odd(2**70, skipped=object()),
        [_Odd(1), {"x": _Odd(2)}],
    ],
)
def test_plain_bytes_of_what_orjson_cannot_walk_is_still_the_definition(value):
    assert plain_bytes(value) == canonical_bytes(to_plain(value))
