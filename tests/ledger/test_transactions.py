"""Decoding a transaction's JSON object: every shape rule, and the encode/decode pair."""

from __future__ import annotations

import pytest

from pykoii.errors import MalformedTransactionError
from pykoii.ledger import INSTRUCTIONS, decode_transaction, encode_transaction
from pykoii.ledger.codec import canonical_bytes, sha256_hex
from pykoii.ledger.transactions import AuditSubmission, Transfer, UploadDistributionChunk

from .helpers import address

ALICE, BOB = address("alice"), address("bob")


def body(**fields):
    return {"type": "transfer", "signer": ALICE, "recent_slot": 3, "to": BOB, "amount": 7, **fields}


def test_decode_builds_the_typed_transaction_with_its_id():
    tx = decode_transaction(body())
    assert isinstance(tx, Transfer) and tx.amount == 7 and tx.to == BOB
    assert tx.tx_id == sha256_hex(canonical_bytes(body()))
    assert decode_transaction(body(), canonical=b"given").tx_id == sha256_hex(b"given")


def test_encode_is_the_inverse_of_decode_for_every_instruction():
    samples = {
        "airdrop": {"to": BOB, "amount": 1},
        "transfer": {"to": BOB, "amount": 1},
        "create_task": {
            "task_name": "t",
            "requirements_tags": [{"type": "CPU", "value": "4", "description": ""}],
        },
        "update_task": {"task_id": BOB, "migration_description": "v2"},
        "set_active": {"task_id": BOB, "is_active": False},
        "fund_task": {"task_id": BOB, "amount": 1},
        "stake": {"task_id": BOB, "amount": 1, "ip_address": "http://x"},
        "withdraw": {"task_id": BOB},
        "reveal": {"task_id": BOB, "round": 1, "secret": "ab" * 32},
        "submit": {"task_id": BOB, "round": 2, "submission_value": "cid"},
        "audit_submission": {"task_id": BOB, "round": 2, "candidate": ALICE, "is_valid": False},
        "submit_distribution": {"task_id": BOB, "round": 2, "root": "ab" * 32, "chunks": 1},
        "upload_distribution_chunk": {
            "task_id": BOB,
            "round": 2,
            "index": 0,
            "rewards": {ALICE: 5},
            "slashes": {BOB: 1},
            "proof": [],
        },
        "audit_distribution": {"task_id": BOB, "round": 2, "candidate": ALICE, "is_valid": True},
        "payout": {"task_id": BOB, "round": 2},
        "claim_reward": {"task_id": BOB, "beneficiary": ALICE},
    }
    assert set(samples) == set(INSTRUCTIONS)
    for kind, fields in samples.items():
        tx = decode_transaction({"type": kind, "signer": ALICE, "recent_slot": 0, **fields})
        again = decode_transaction(encode_transaction(tx))
        assert again == tx and again.tx_id == sha256_hex(canonical_bytes(encode_transaction(tx)))


def reject(data, *fragments):
    with pytest.raises(MalformedTransactionError) as info:
        decode_transaction(data)
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


def test_not_an_object():
    reject([1, 2], "must be a JSON object, got list")


def test_unknown_type_lists_the_accepted_ones():
    error = reject(
        body(type="mint"), "unknown instruction type 'mint'", "accepted: airdrop, audit_distribution"
    )
    assert error.received == "mint"
    reject({**body(), "type": None}, "unknown instruction type None")


def test_unknown_field_names_the_fields():
    reject(body(memo="hi"), "transfer has no field 'memo'", "its fields are: amount, recent_slot, signer, to")


@pytest.mark.parametrize("missing", ["signer", "recent_slot", "to", "amount"])
def test_missing_required_field(missing):
    data = body()
    del data[missing]
    reject(data, f"transfer needs field {missing!r}")


@pytest.mark.parametrize(("kind", "field"), [("audit_submission", "is_valid"), ("set_active", "is_active")])
def test_votes_and_activations_must_say_which_way(kind, field):
    data = {
        "type": kind,
        "signer": ALICE,
        "recent_slot": 0,
        "task_id": BOB,
        "round": 0,
        "candidate": ALICE,
        "is_active": True,
        "is_valid": True,
    }
    data = {
        k: v
        for k, v in data.items()
        if k in {"type", "signer", "recent_slot", "task_id", field}
        or (kind == "audit_submission" and k in {"round", "candidate"})
    }
    del data[field]
    reject(data, f"{kind} needs field {field!r}")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("amount", "7", "Transfer.amount: expected an integer, got '7'"),
        ("amount", 7.0, "expected an integer, got 7.0"),
        ("amount", True, "expected an integer, got True"),
        ("recent_slot", None, "expected an integer, got None"),
        ("to", 5, "Transfer.to: expected a string, got 5"),
    ],
)
def test_mistyped_fields(field, value, fragment):
    reject(body(**{field: value}), fragment)


def test_bool_field_must_be_a_bool():
    reject(
        {"type": "set_active", "signer": ALICE, "recent_slot": 0, "task_id": BOB, "is_active": 1},
        "expected true or false, got 1",
    )


@pytest.mark.parametrize("bad", ["", "short", "0" * 40, "O" * 40, "x" * 45])
def test_addresses_must_be_base58_public_keys(bad):
    reject(body(to=bad), "transfer.to must be a base58 public key (32-44 characters)", repr(bad))


def test_distribution_keys_must_be_addresses():
    data = {
        "type": "upload_distribution_chunk",
        "signer": ALICE,
        "recent_slot": 0,
        "task_id": BOB,
        "round": 0,
        "index": 0,
        "proof": [],
        "rewards": {"nobody": 1},
    }
    reject(data, "upload_distribution_chunk.rewards keys must be base58 public keys, got 'nobody'")


def test_vote_decodes_is_valid():
    data = {
        "type": "audit_submission",
        "signer": ALICE,
        "recent_slot": 0,
        "task_id": BOB,
        "round": 1,
        "candidate": ALICE,
        "is_valid": False,
    }
    tx = decode_transaction(data)
    assert isinstance(tx, AuditSubmission) and tx.is_valid is False


def test_distribution_amount_values_must_be_integers():
    data = {
        "type": "upload_distribution_chunk",
        "signer": ALICE,
        "recent_slot": 0,
        "task_id": BOB,
        "round": 0,
        "index": 0,
        "proof": [],
        "rewards": {ALICE: 1.5},
    }
    reject(data, "UploadDistributionChunk.rewards[", "expected an integer, got 1.5")
    data["rewards"] = {ALICE: 2}
    assert isinstance(decode_transaction(data), UploadDistributionChunk)


# --- every field bounded (issue 16) -------------------------------------------------------------


def test_every_field_of_every_instruction_has_a_bound():
    from pykoii.ledger.bounds import FIELDS, TAG_FIELDS
    from pykoii.ledger.transactions import transaction_schemas

    schemas = transaction_schemas()
    assert set(schemas) == set(INSTRUCTIONS)
    for kind, schema in schemas.items():
        assert schema["additionalProperties"] is False
        for name in set(schema["properties"]) - {"type"}:
            assert name in FIELDS, f"{kind}.{name} has no bound"
            assert "description" in schema["properties"][name]
    tags = schemas["create_task"]["properties"]["requirements_tags"]
    assert tags["items"]["additionalProperties"] is False
    assert set(tags["items"]["properties"]) == set(TAG_FIELDS)


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"recent_slot": -1}, ("transfer.recent_slot is -1", "accepted: an integer from 0 to")),
        ({"amount": 2**64}, ("transfer.amount is 18446744073709551616", "from -9223372036854775808 to")),
        ({"amount": 1.8446744073709552e19}, ("expected an integer", "more than 64 bits is not an integer")),
        ({"to": BOB[:-1] + "\ud800"}, ("transfer.to must be a base58 public key",)),
    ],
)
def test_integers_are_64_bit_and_never_negative_where_no_rule_owns_them(fields, fragments):
    with pytest.raises(MalformedTransactionError) as caught:
        decode_transaction(body(**fields))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_a_lone_surrogate_is_refused_cleanly():
    data = {
        "type": "update_task",
        "signer": ALICE,
        "recent_slot": 1,
        "task_id": BOB,
        "migration_description": "v2 \ud800",
    }
    with pytest.raises(MalformedTransactionError, match="lone surrogate"):
        decode_transaction(data)
    # and the same inside a nested tag
    data = {**data, "migration_description": "", "requirements_tags": [{"type": "CPU", "value": "\udfff"}]}
    with pytest.raises(
        MalformedTransactionError, match=r"requirements_tags\[0\]\.value is not valid Unicode"
    ):
        decode_transaction(data)


def test_nested_tags_have_no_unknown_keys_and_need_a_type():
    base = {"type": "create_task", "signer": ALICE, "recent_slot": 1}
    with pytest.raises(MalformedTransactionError, match=r"requirements_tags\[1\] has no field 'blob'"):
        decode_transaction(
            {**base, "requirements_tags": [{"type": "CPU"}, {"type": "RAM", "blob": "x" * 10}]}
        )
    with pytest.raises(MalformedTransactionError, match=r"requirements_tags\[0\] needs field 'type'"):
        decode_transaction({**base, "requirements_tags": [{"value": "4"}]})
    with pytest.raises(MalformedTransactionError, match=r"requirements_tags\[0\]: expected an object"):
        decode_transaction({**base, "requirements_tags": ["CPU"]})


def test_migration_description_is_bounded():
    data = {"type": "update_task", "signer": ALICE, "recent_slot": 1, "task_id": BOB}
    decode_transaction({**data, "migration_description": "d" * 256})
    with pytest.raises(MalformedTransactionError, match="migration_description is 1000000 characters"):
        decode_transaction({**data, "migration_description": "d" * 1_000_000})


def test_hostile_values_are_cut_short_in_messages():
    with pytest.raises(MalformedTransactionError) as caught:
        decode_transaction(body(amount="9" * 100_000))
    assert len(str(caught.value)) < 300
