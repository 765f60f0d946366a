"""LedgerClient against a real in-process ledger (TestClient behind an httpx transport, no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pykoii import errors
from pykoii.client import LedgerClient, error_from_body
from pykoii.clock import ManualClock
from pykoii.keys import Keypair
from tests.ledger.helpers import HELLO_TASK, KOII
from tests.service.conftest import Ledger, TestClient, open_ledger


def in_process(http: TestClient) -> httpx.BaseTransport:
    """An httpx transport that hands each request to the app behind ``http``."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = http.request(
            request.method, request.url.raw_path.decode(), content=request.content, headers=request.headers
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handle)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "ledger") as opened:
        yield opened


@pytest.fixture
def client(ledger: Ledger) -> Iterator[LedgerClient]:
    with LedgerClient("http://ledger", transport=in_process(ledger.http)) as client:
        yield client


def test_send_transaction_signs_with_a_recent_slot(ledger: Ledger, client: LedgerClient) -> None:
    alice, bob = Keypair.generate(), Keypair.generate()
    ledger.to_slot(12)
    receipt = client.send_transaction(alice, {"type": "airdrop", "to": alice.public_key, "amount": 5 * KOII})
    assert receipt["slot"] == 12 and receipt["seq"] == 1
    assert client.transaction(receipt["tx_id"]) == receipt
    client.send_transaction(alice, {"type": "transfer", "to": bob.public_key, "amount": KOII})
    assert client.account(bob.public_key)["balance"] == KOII
    assert client.slot()["seq"] == 2


def test_refusals_raise_the_named_error_class(ledger: Ledger, client: LedgerClient) -> None:
    alice = Keypair.generate()
    with pytest.raises(errors.InsufficientFundsError) as caught:
        client.send_transaction(alice, {"type": "transfer", "to": alice.public_key, "amount": 1})
    assert caught.value.status == 400
    with pytest.raises(errors.NotFoundError):
        client.transaction("0" * 64)
    with pytest.raises(errors.InvalidCidError):
        client.get_blob("bnot-a-cid")
    results = client.send_batch(
        [
            ledger.sign(alice, "airdrop", to=alice.public_key, amount=1),
            ledger.sign(alice, "transfer", to=alice.public_key, amount=10),
        ]
    )
    assert results[0]["seq"] == 1  # type: ignore[index]
    assert isinstance(results[1], errors.InsufficientFundsError)


def test_unknown_error_names_become_ledger_http_errors() -> None:
    assert isinstance(error_from_body(502, {"error": "Bogus", "message": "x"}), errors.LedgerHTTPError)
    assert isinstance(error_from_body(502, "gateway"), errors.LedgerHTTPError)


def test_task_round_and_partial_fetch(ledger: Ledger, client: LedgerClient) -> None:
    manager = Keypair.generate()
    ledger.fund(manager, 200 * KOII)
    task_id = ledger.ok(manager, "create_task", **HELLO_TASK)["events"][0]["task_id"]
    ledger.ok(manager, "stake", task_id=task_id, amount=5 * KOII, ip_address="http://me")
    assert [task["task_id"] for task in client.tasks()] == [task_id]
    assert client.task(task_id)["stake_list"] == {}
    assert client.task(task_id, is_stake_list_required=True)["stake_list"] == {manager.public_key: 5 * KOII}
    assert client.round(task_id, 0)["round"] == 0
    with pytest.raises(errors.NotFoundError):
        client.task(manager.public_key)


def test_blobs_log_health_metrics_openapi_events(ledger: Ledger, client: LedgerClient) -> None:
    cid = client.put_blob(b"distribution list")
    assert client.get_blob(cid) == b"distribution list"
    alice = Keypair.generate()
    ledger.fund(alice, 1)
    page = client.log(0)
    assert page["last_seq"] == 1 and page["entries"][0]["prev_hash"] == client.genesis()["hash"]
    assert client.health(state_root=True)["state_root"] == ledger.store.root()
    assert "pykoii_ledger_log_seq 1" in client.metrics()
    assert "/tx" in client.openapi()["paths"]


def test_connection_errors_are_retried_with_backoff_then_raised() -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    clock = ManualClock()
    client = LedgerClient(
        "http://nowhere", transport=httpx.MockTransport(refuse), retries=3, backoff=0.5, clock=clock
    )
    with pytest.raises(errors.LedgerUnavailableError, match="after 4 attempts"):
        client.slot()
    assert attempts == ["/slot"] * 4
    assert clock.now() == pytest.approx(0.5 + 1.0 + 2.0)


def test_a_retry_after_a_lost_answer_gets_the_first_receipt(ledger: Ledger) -> None:
    """The first POST reaches the ledger but its answer is lost; the retry gets the same receipt."""
    inner = in_process(ledger.http)
    lost = []

    def flaky(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        if request.method == "POST" and not lost:
            lost.append(response)
            raise httpx.ReadError("connection reset", request=request)
        return response

    client = LedgerClient("http://ledger", transport=httpx.MockTransport(flaky), clock=ManualClock())
    alice = Keypair.generate()
    receipt = client.send_transaction(alice, {"type": "airdrop", "to": alice.public_key, "amount": 7})
    assert receipt["seq"] == 1 and ledger.store.seq == 1
