"""Keypairs, Solana-style keypair files, and signed envelopes (``pykoii.keys``)."""

from __future__ import annotations

import json
import os

import pytest

from pykoii.errors import InvalidSignatureError, KeyFileError, MalformedTransactionError
from pykoii.keys import Keypair, verify_envelope
from pykoii.ledger.codec import base58_decode, base58_encode, canonical_bytes

SEED = bytes(range(32))


def transfer_body(keypair: Keypair) -> dict:
    return {"type": "transfer", "to": keypair.public_key, "amount": 5, "recent_slot": 0}


def test_from_seed_is_deterministic_and_public_key_is_base58_of_32_bytes():
    first, second = Keypair.from_seed(SEED), Keypair.from_seed(SEED)
    assert first.public_key == second.public_key
    assert len(base58_decode(first.public_key)) == 32
    assert Keypair.generate().public_key != first.public_key


def test_save_then_load_gives_the_same_key_and_a_private_file(tmp_path):
    keypair = Keypair.from_seed(SEED)
    path = keypair.save(tmp_path / "wallets" / "id.json")
    data = json.loads(path.read_text())
    assert len(data) == 64 and bytes(data[:32]) == SEED
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert Keypair.load(path).public_key == keypair.public_key


def test_save_refuses_to_overwrite(tmp_path):
    path = Keypair.generate().save(tmp_path / "id.json")
    with pytest.raises(KeyFileError, match="already exists"):
        Keypair.generate().save(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("not json", "not readable JSON"),
        ("[1, 2, 3]", "JSON array of 64 bytes"),
        (json.dumps([300] * 64), "JSON array of 64 bytes"),
        (json.dumps({"secret": 1}), "JSON array of 64 bytes"),
        (json.dumps(list(SEED) + [0] * 32), "public half does not match"),
    ],
)
def test_bad_keypair_files_raise_key_file_error(tmp_path, content, message):
    path = tmp_path / "id.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeyFileError, match=message) as info:
        Keypair.load(path)
    assert info.value.path == str(path)


def test_envelope_signs_canonical_bytes_and_verifies():
    keypair = Keypair.from_seed(SEED)
    envelope = keypair.sign_transaction(transfer_body(keypair))
    assert envelope["tx"]["signer"] == keypair.public_key
    signature = base58_decode(envelope["signature"])
    assert signature == keypair.sign(canonical_bytes(envelope["tx"]))
    tx = verify_envelope(envelope)
    assert tx.signer == keypair.public_key and tx.amount == 5
    assert len(tx.tx_id) == 64


@pytest.mark.parametrize("field", ["amount", "to", "recent_slot", "signer"])
def test_tampered_transaction_fails_verification(field):
    keypair, other = Keypair.from_seed(SEED), Keypair.from_seed(b"\1" * 32)
    envelope = keypair.sign_transaction(transfer_body(keypair))
    tampered = dict(envelope["tx"])
    tampered[field] = {"amount": 6, "to": other.public_key, "recent_slot": 1, "signer": other.public_key}[
        field
    ]
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        verify_envelope({"tx": tampered, "signature": envelope["signature"]})


def test_bad_signatures_raise_invalid_signature_error():
    keypair = Keypair.from_seed(SEED)
    envelope = keypair.sign_transaction(transfer_body(keypair))
    with pytest.raises(InvalidSignatureError, match="not base58"):
        verify_envelope({**envelope, "signature": "0OIl"})
    with pytest.raises(InvalidSignatureError, match="must be 64 bytes"):
        verify_envelope({**envelope, "signature": base58_encode(b"\1" * 10)})


@pytest.mark.parametrize(
    "envelope", [None, [], {"tx": {}}, {"tx": {}, "signature": "x", "extra": 1}, {"tx": [], "signature": "x"}]
)
def test_malformed_envelopes(envelope):
    with pytest.raises(MalformedTransactionError, match="envelope"):
        verify_envelope(envelope)
