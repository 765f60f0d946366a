"""Hostile input against the ledger service, as an attacker would send it (issue 16): each bad value
gets a 4xx JSON error naming it, and one bad envelope never fails the others of its batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykoii.keys import Keypair
from pykoii.service.verify import Verified, Verifier
from tests.ledger.helpers import HELLO_TASK, KOII

from .conftest import Ledger


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_300_deep_envelope_fails_alone_in_the_workers_batch() -> None:
    """Regression: orjson could not re-encode the batch for the workers, so every envelope that
    shared the batch with the deep one was refused ('Recursion limit reached')."""
    alice = Keypair.generate()
    honest = [
        alice.sign_transaction({"type": "airdrop", "to": alice.public_key, "amount": n, "recent_slot": 0})
        for n in range(1, 41)
    ]
    hostile = {"tx": {"type": "transfer", "junk": nested(300)}, "signature": "x"}
    verifier = Verifier(1)
    try:

        async def run() -> list[list[Any]]:
            return await asyncio.gather(
                verifier.verify([hostile]), *(verifier.verify([envelope]) for envelope in honest)
            )

        results = asyncio.run(run())
        assert [type(o).__name__ for o in results[0]] == ["MalformedTransactionError"]
        assert "cannot be encoded" in str(results[0][0])
        assert all(isinstance(chunk[0], Verified) for chunk in results[1:]), results[1:]
        mixed = verifier.verify_sync([hostile, *honest, *honest])  # the chunked path
        assert type(mixed[0]).__name__ == "MalformedTransactionError"
        assert all(isinstance(o, Verified) for o in mixed[1:])
    finally:
        verifier.close()


def test_a_deep_envelope_in_a_batch_over_http_fails_alone(ledger: Ledger) -> None:
    alice = Keypair.generate()
    good = ledger.sign(alice, "airdrop", to=alice.public_key, amount=KOII)
    body = orjson.dumps([{"tx": {"type": "transfer", "junk": nested(200)}, "signature": "x"}, good])
    answer = ledger.http.post("/tx", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    first, second = answer.json()
    assert first["error"] == "MalformedTransactionError"
    assert second["events"][0]["kind"] == "Airdropped"


def test_integers_beyond_64_bits_are_refused_by_value(ledger: Ledger) -> None:
    alice = Keypair.generate()
    ledger.fund(alice)
    envelope = ledger.sign(alice, "transfer", to=alice.public_key, amount=1)
    text = orjson.dumps(envelope).replace(b'"amount":1', b'"amount":18446744073709551616')
    answer = ledger.http.post("/tx", content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "MalformedTransactionError"
    assert "more than 64 bits is not an integer" in answer.json()["message"]


def test_a_negative_recent_slot_is_refused(ledger: Ledger) -> None:
    alice = Keypair.generate()
    answer = ledger.send(alice, "airdrop", to=alice.public_key, amount=1, recent_slot=-1)
    assert answer.status_code == 400, answer.text
    assert "recent_slot is -1" in answer.json()["message"]


def test_a_lone_surrogate_is_a_400(ledger: Ledger) -> None:
    body = b'{"tx":{"type":"transfer","signer":"\\ud800"},"signature":"x"}'
    answer = ledger.http.post("/tx", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "MalformedTransactionError"


@pytest.fixture
def task_id(ledger: Ledger) -> str:
    manager = Keypair.generate()
    ledger.fund(manager, 200 * KOII)
    created = ledger.ok(manager, "create_task", **HELLO_TASK)
    return str(created["events"][0]["task_id"])


@pytest.mark.parametrize("round_number", ["9223372036854775808", "99999999999999999999999", "-1", "x", "1e3"])
def test_round_routes_answer_a_bad_round_with_a_json_400(
    ledger: Ledger, task_id: str, round_number: str
) -> None:
    for path in (
        f"/tasks/{task_id}/rounds/{round_number}",
        f"/explorer/tasks/{task_id}/rounds/{round_number}",
    ):
        answer = ledger.http.get(path)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
        if not path.startswith("/explorer"):
            assert answer.json()["error"] == "InvalidRequestError"


def test_a_round_whose_slots_pass_2_63_is_a_400(ledger: Ledger, tmp_path: Path) -> None:
    manager = Keypair.generate()
    ledger.fund(manager, 200 * KOII)
    slow = {**HELLO_TASK, "round_time": 2**32}
    task = ledger.ok(manager, "create_task", **slow)["events"][0]["task_id"]
    assert ledger.http.get(f"/tasks/{task}/rounds/5").status_code == 200
    answer = ledger.http.get(f"/tasks/{task}/rounds/{2**62}")
    assert answer.status_code == 400
    assert "past the last slot" in answer.json()["message"]
    too_slow = ledger.send(manager, "create_task", **{**HELLO_TASK, "round_time": 2**64 - 1})
    assert too_slow.status_code == 400
    assert too_slow.json()["error"] in ("MalformedTransactionError", "InvalidTaskConfigError")
