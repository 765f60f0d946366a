"""Every route of the ledger API, and every error it answers, in process (TestClient, no sockets)."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from pykoii.keys import Keypair
from pykoii.service.blobs import cid_of
from pykoii.service.ingest import MAX_TX_BODY
from tests.ledger.helpers import HELLO_TASK, KOII

from .conftest import Ledger


def error_of(response: Any, status: int, name: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == name, body
    assert body["message"]
    message: str = body["message"]
    return message


# --- POST /tx ---------------------------------------------------------------------------------


def test_a_transaction_is_accepted_logged_and_applied(ledger: Ledger) -> None:
    alice, bob = Keypair.generate(), Keypair.generate()
    ledger.fund(alice, 10 * KOII)
    receipt = ledger.ok(alice, "transfer", to=bob.public_key, amount=3 * KOII)
    assert receipt["seq"] == 2
    assert receipt["events"] == [
        {"kind": "Transferred", "source": alice.public_key, "to": bob.public_key, "amount": 3 * KOII}
    ]
    assert ledger.http.get(f"/accounts/{bob.public_key}").json()["balance"] == 3 * KOII
    assert ledger.http.get(f"/tx/{receipt['tx_id']}").json() == receipt


def test_the_same_transaction_twice_returns_the_first_receipt(ledger: Ledger) -> None:
    alice = Keypair.generate()
    envelope = ledger.sign(alice, "airdrop", to=alice.public_key, amount=KOII)
    first = ledger.http.post("/tx", json=envelope).json()
    ledger.to_slot(5)
    again = ledger.http.post("/tx", json=envelope)
    assert again.status_code == 200 and again.json() == first
    in_batch = ledger.http.post("/tx", json=[envelope, envelope]).json()
    assert in_batch == [first, first]
    assert ledger.store.seq == 1
    ledger.to_slot(400)  # far past the replay horizon: still the first receipt
    assert ledger.http.post("/tx", json=envelope).json() == first


def test_duplicates_inside_one_batch_share_one_log_entry(ledger: Ledger) -> None:
    alice = Keypair.generate()
    envelope = ledger.sign(alice, "airdrop", to=alice.public_key, amount=KOII)
    results = ledger.http.post("/tx", json=[envelope, envelope, envelope]).json()
    assert results[0] == results[1] == results[2]
    assert ledger.store.seq == 1


def test_a_batch_answers_each_envelope_in_order(ledger: Ledger) -> None:
    alice, bob = Keypair.generate(), Keypair.generate()
    ledger.fund(alice, 5 * KOII)
    batch = [
        ledger.sign(alice, "transfer", to=bob.public_key, amount=KOII),
        ledger.sign(alice, "transfer", to=bob.public_key, amount=100 * KOII),
        {"tx": {"type": "nope"}, "signature": "x"},
        ledger.sign(alice, "transfer", to=bob.public_key, amount=2 * KOII),
    ]
    results = ledger.http.post("/tx", json=batch).json()
    assert [r.get("error") for r in results] == [
        None,
        "InsufficientFundsError",
        "MalformedTransactionError",
        None,
    ]
    assert results[0]["seq"] == 2 and results[3]["seq"] == 3
    assert ledger.http.get(f"/accounts/{bob.public_key}").json()["balance"] == 3 * KOII


BAD_BODIES = [
    (b"{not json", "MalformedTransactionError"),
    (b"42", "MalformedTransactionError"),
    (b"[]", "MalformedTransactionError"),
    (b'{"tx": 1, "signature": "x"}', "MalformedTransactionError"),
    (
        b'{"tx": {"type": "teleport", "signer": "x", "recent_slot": 0}, "signature": "x"}',
        "MalformedTransactionError",
    ),
]


@pytest.mark.parametrize(("body", "name"), BAD_BODIES)
def test_malformed_bodies_are_refused_and_nothing_is_written(ledger: Ledger, body: bytes, name: str) -> None:
    before = ledger.store.root()
    error_of(ledger.http.post("/tx", content=body), 400, name)
    assert ledger.store.seq == 0 and ledger.store.root() == before


def test_wrong_types_and_unknown_instruction_name_the_problem(ledger: Ledger) -> None:
    alice = Keypair.generate()
    wrong = ledger.sign(alice, "transfer", to=alice.public_key, amount="ten")
    assert "amount" in error_of(ledger.http.post("/tx", json=wrong), 400, "MalformedTransactionError")
    unknown = ledger.sign(alice, "mint_forever", to=alice.public_key)
    assert "unknown instruction" in error_of(
        ledger.http.post("/tx", json=unknown), 400, "MalformedTransactionError"
    )


def test_a_bad_signature_is_refused(ledger: Ledger) -> None:
    alice, mallory = Keypair.generate(), Keypair.generate()
    envelope = ledger.sign(alice, "airdrop", to=alice.public_key, amount=KOII)
    forged = {"tx": envelope["tx"], "signature": mallory.sign_transaction(envelope["tx"])["signature"]}
    error_of(ledger.http.post("/tx", json=forged), 400, "InvalidSignatureError")
    assert ledger.store.seq == 0


def test_stale_and_future_recent_slots_are_refused(ledger: Ledger) -> None:
    alice = Keypair.generate()
    ledger.to_slot(200)
    error_of(
        ledger.send(alice, "airdrop", to=alice.public_key, amount=1, recent_slot=10),
        400,
        "StaleTransactionError",
    )
    error_of(
        ledger.send(alice, "airdrop", to=alice.public_key, amount=1, recent_slot=999),
        400,
        "StaleTransactionError",
    )
    assert ledger.store.seq == 0


def test_an_oversize_body_is_refused_with_413(ledger: Ledger) -> None:
    error_of(ledger.http.post("/tx", content=b" " * (MAX_TX_BODY + 1)), 413, "PayloadTooLargeError")
    assert ledger.http.get("/health").status_code == 200


def test_ledger_rule_errors_come_back_by_name(ledger: Ledger) -> None:
    alice = Keypair.generate()
    error_of(ledger.send(alice, "transfer", to=alice.public_key, amount=KOII), 400, "InsufficientFundsError")
    error_of(ledger.send(alice, "stake", task_id=alice.public_key, amount=KOII), 400, "UnknownTaskError")


def test_an_overloaded_sequencer_answers_503(ledger: Ledger) -> None:
    ledger.store.max_pending = 0
    alice = Keypair.generate()
    error_of(ledger.send(alice, "airdrop", to=alice.public_key, amount=1), 503, "LedgerUnavailableError")


# --- reads ------------------------------------------------------------------------------------


def test_unknown_transaction_is_404(ledger: Ledger) -> None:
    error_of(ledger.http.get("/tx/" + "0" * 64), 404, "NotFoundError")


def test_slot_follows_the_clock(ledger: Ledger) -> None:
    assert ledger.http.get("/slot").json() == {"slot": 0, "slot_ms": 400, "seq": 0}
    ledger.to_slot(7)
    assert ledger.http.get("/slot").json()["slot"] == 7


def make_task(ledger: Ledger, nodes: int = 4) -> tuple[str, Keypair, list[Keypair]]:
    manager = Keypair.generate()
    ledger.fund(manager, 500 * KOII)
    stakers = [Keypair.generate() for _ in range(nodes)]
    for node in stakers:
        ledger.fund(node, 20 * KOII)
    created = ledger.ok(manager, "create_task", **HELLO_TASK)
    task_id = created["events"][0]["task_id"]
    for node in stakers:
        ledger.ok(node, "stake", task_id=task_id, amount=5 * KOII, ip_address="http://node.example")
    return task_id, manager, stakers


def test_tasks_list_and_task_state_with_partial_fetch(ledger: Ledger) -> None:
    task_id, manager, stakers = make_task(ledger)
    (summary,) = ledger.http.get("/tasks").json()["tasks"]
    assert summary["task_id"] == task_id and summary["stakers"] == 4
    state = ledger.http.get(f"/tasks/{task_id}").json()
    assert state["task_manager"] == manager.public_key
    assert state["stake_list"] == {} and state["available_balances"] == {} and state["submissions"] == {}
    assert len(state["ip_address_list"]) == 4  # always returned, as Koii does
    full = ledger.http.get(f"/tasks/{task_id}", params={"is_stake_list_required": "true"}).json()
    assert full["stake_list"] == {node.public_key: 5 * KOII for node in stakers}
    assert full["total_stake_amount"] == 20 * KOII
    error_of(
        ledger.http.get(f"/tasks/{task_id}", params={"is_stake_list_required": "maybe"}),
        400,
        "InvalidRequestError",
    )
    error_of(ledger.http.get(f"/tasks/{manager.public_key}"), 404, "NotFoundError")


def test_round_view_shows_submissions_assignments_and_selection(ledger: Ledger) -> None:
    task_id, _, stakers = make_task(ledger, nodes=4)
    start = ledger.store.state.tasks[task_id].starting_slot
    ledger.to_slot(start + 10)  # round 1's first slot: round 0's submission window
    for node in stakers:
        ledger.prove(node, task_id, 0, f"proof-{node.public_key[:6]}")
    view = ledger.http.get(f"/tasks/{task_id}/rounds/0").json()
    assert set(view["submissions"]) == {node.public_key for node in stakers}
    assert view["assignments_final"] is False and view["assignments"] == {}
    ledger.to_slot(start + 10 + 3)  # reveal window: the beacon is not fixed yet
    for node in stakers:
        ledger.reveal(node, task_id, 0)
    assert ledger.http.get(f"/tasks/{task_id}/rounds/0").json()["assignments_final"] is False
    ledger.to_slot(start + 10 + 4)  # votes
    view = ledger.http.get(f"/tasks/{task_id}/rounds/0").json()
    assert view["assignments_final"] is True
    assert all(len(auditors) == 3 for auditors in view["assignments"].values())
    assert view["selected_distribution_submitters"][0] in view["submissions"]
    assert view["windows"]["submission"] == {"first_slot": start + 10, "last_slot": start + 12}
    assert view["payout_record"] is None
    assert sum(view["default_distribution"]["rewards"].values()) == 10 * KOII
    error_of(ledger.http.get(f"/tasks/{task_id}/rounds/x"), 400, "InvalidRequestError")
    error_of(ledger.http.get(f"/tasks/{task_id}/rounds/-1"), 400, "InvalidRequestError")


def test_account_shows_balance_and_per_task_stake(ledger: Ledger) -> None:
    task_id, _, stakers = make_task(ledger, nodes=1)
    account = ledger.http.get(f"/accounts/{stakers[0].public_key}").json()
    assert account["balance"] == 15 * KOII
    assert account["tasks"] == {task_id: {"stake": 5 * KOII, "available_balance": 0}}
    error_of(ledger.http.get("/accounts/not-a-key!"), 400, "InvalidRequestError")


def test_log_pages_for_replicas(ledger: Ledger) -> None:
    alice = Keypair.generate()
    for amount in (1, 2, 3):
        ledger.ok(alice, "airdrop", to=alice.public_key, amount=amount)
    page = ledger.http.get("/log", params={"after": 1, "limit": 1}).json()
    assert page["last_seq"] == 3
    (entry,) = page["entries"]
    assert entry["seq"] == 2 and orjson.loads(entry["tx"])["amount"] == 2
    first = ledger.http.get("/log").json()["entries"][0]
    assert first["prev_hash"] == page["genesis_hash"] == ledger.http.get("/genesis").json()["hash"]
    error_of(ledger.http.get("/log", params={"after": "x"}), 400, "InvalidRequestError")
    error_of(ledger.http.get("/log", params={"limit": 0}), 400, "InvalidRequestError")


def test_events_stream_accepted_transactions(ledger: Ledger) -> None:
    alice = Keypair.generate()
    received: list[str] = []

    def listen() -> None:
        with ledger.http.stream("GET", "/events", params={"types": "tx", "limit": 2}) as response:
            received.extend(line for line in response.iter_lines() if line)

    listener = threading.Thread(target=listen)
    listener.start()
    for _ in range(500):
        if ledger.store.events.subscriber_count:
            break
        threading.Event().wait(0.01)
    ledger.fund(alice, 1)
    ledger.fund(alice, 2)
    listener.join(timeout=10)
    events = [orjson.loads(line[6:]) for line in received if line.startswith("data: ")]
    assert [e["seq"] for e in events] == [1, 2]
    assert all(e["type"] == "airdrop" and e["signer"] == alice.public_key for e in events)
    assert "event: tx" in received


def test_blobs_are_content_addressed_and_verified(ledger: Ledger) -> None:
    stored = ledger.http.put("/blobs", content=b"task code")
    assert stored.status_code == 201
    cid = stored.json()["cid"]
    assert cid == cid_of(b"task code") and cid.startswith("bafkrei")
    assert ledger.http.get(f"/blobs/{cid}").content == b"task code"
    error_of(ledger.http.get(f"/blobs/{cid_of(b'never stored')}"), 404, "NotFoundError")
    error_of(ledger.http.get("/blobs/Qmnotacidv1"), 400, "InvalidCidError")
    assert ledger.store.blobs is not None
    (ledger.store.blobs.folder / cid).write_bytes(b"tampered")
    error_of(ledger.http.get(f"/blobs/{cid}"), 500, "BlobCorruptionError")
    ledger.store.blobs.max_bytes = 4
    error_of(ledger.http.put("/blobs", content=b"too long"), 413, "PayloadTooLargeError")


def test_health_metrics_and_openapi(ledger: Ledger) -> None:
    alice = Keypair.generate()
    ledger.fund(alice)
    ledger.send(alice, "transfer", to=alice.public_key, amount=10**15)
    health = ledger.http.get("/health", params={"state_root": "true"}).json()
    assert health["status"] == "ok" and health["seq"] == 1 and health["state_root"] == ledger.store.root()
    metrics = ledger.http.get("/metrics").text
    assert "pykoii_ledger_tx_accepted_total 1" in metrics
    assert 'pykoii_ledger_tx_rejected_total{error="InsufficientFundsError"} 1' in metrics
    document = ledger.http.get("/openapi.json").json()
    routes = {route.path for route in ledger.http.app.routes}  # type: ignore[attr-defined]
    assert routes == set(document["paths"])


def test_unknown_routes_and_methods_answer_in_the_error_shape(ledger: Ledger) -> None:
    error_of(ledger.http.get("/nowhere"), 404, "NotFoundError")
    error_of(ledger.http.delete("/tx"), 405, "InvalidRequestError")


def test_a_replica_refuses_writes(ledger: Ledger) -> None:
    ledger.store.read_only = True
    alice = Keypair.generate()
    error_of(ledger.send(alice, "airdrop", to=alice.public_key, amount=1), 403, "ReadOnlyReplicaError")
    error_of(ledger.http.put("/blobs", content=b"x"), 403, "ReadOnlyReplicaError")


def test_round_pages_and_the_paid_list_page_by_page(ledger: Ledger) -> None:
    """A round read page by page (2 submitters a page), its chunked list sent through POST /tx, and
    the paid list's entries read page by page from its own route; the receipt holds totals only."""
    from pykoii.ledger.distribution import distribution_transactions

    task_id, _, stakers = make_task(ledger, nodes=5)
    start = ledger.store.state.tasks[task_id].starting_slot
    ledger.to_slot(start + 10)
    for node in stakers:
        ledger.prove(node, task_id, 0, "Hello, World!")
    ledger.to_slot(start + 13)
    for node in stakers:
        ledger.reveal(node, task_id, 0)
    ledger.to_slot(start + 14)
    keys, after = [], ""
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        view = ledger.http.get(f"/tasks/{task_id}/rounds/0", params=params).json()
        assert view["submitters"] == 5 and len(view["submissions"]) <= 2
        assert set(view["assignments"]) == set(view["submissions"])
        keys += list(view["submissions"])
        if view["next_after"] is None:
            break
        after = view["next_after"]
    assert keys == sorted(node.public_key for node in stakers)
    mine = stakers[0].public_key
    only = ledger.http.get(f"/tasks/{task_id}/rounds/0", params={"key": mine}).json()
    assert list(only["submissions"]) == [mine] and only["next_after"] is None

    chosen_key = view["selected_distribution_submitters"][0]
    chosen = next(node for node in stakers if node.public_key == chosen_key)
    default = {"rewards": {k: 2 * KOII for k in keys}, "slashes": {}}
    ledger.to_slot(start + 20)
    for body in distribution_transactions(task_id, 0, default["rewards"], default["slashes"]):
        ledger.ok(chosen, body.pop("type"), **body)
    header = ledger.http.get(f"/tasks/{task_id}/rounds/0").json()["distribution_lists"][chosen_key]
    assert header["complete"] and header["rewards"] == {} and header["reward_total"] == 10 * KOII
    state = ledger.http.get(f"/tasks/{task_id}", params={"is_distribution_required": "true"}).json()
    assert state["distribution_lists"]["0"][chosen_key]["rewards"] == {}  # headers only
    ledger.to_slot(start + 29)  # the last slot of round 2: the list's judgement closed
    receipt = ledger.ok(stakers[1], "payout", task_id=task_id, round=0)
    (paid,) = receipt["events"]
    assert paid["kind"] == "RoundPaid" and paid["rewarded"] == 5 and paid["root"] == header["root"]
    entries, after = [], ""
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = ledger.http.get(f"/tasks/{task_id}/rounds/0/distribution", params=params).json()
        assert page["paid"] and page["submitter"] == chosen_key
        entries += page["entries"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert entries == [{"key": k, "reward": 2 * KOII, "slash": 0} for k in keys]
    one = ledger.http.get(f"/tasks/{task_id}/rounds/0/distribution", params={"key": mine}).json()
    assert one["entries"] == [{"key": mine, "reward": 2 * KOII, "slash": 0}]
    error_of(ledger.http.get(f"/tasks/{task_id}/rounds/1/distribution"), 404, "NotFoundError")
    error_of(
        ledger.http.get(f"/tasks/{task_id}/rounds/0/distribution", params={"after": "x"}),
        400,
        "InvalidRequestError",
    )
    error_of(ledger.http.get(f"/tasks/{task_id}/rounds/0", params={"limit": 0}), 400, "InvalidRequestError")
