"""Fixtures for dashboard tests: a real ledger store on a manual clock behind the service's app
(with the explorer mounted as the service mounts it), and a helper that plays a round by hand
with real signed transactions."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount

from pykoii.clock import ManualClock
from pykoii.dashboard import create_explorer
from pykoii.keys import Keypair, reveal_body, submit_body
from pykoii.ledger import LedgerParams
from pykoii.ledger.distribution import distribution_transactions
from pykoii.service import Genesis, create_app, open_store
from pykoii.service.reads import StoreReads
from pykoii.service.store import LedgerStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

KOII = 1_000_000_000
LOCAL = ("127.0.0.1", 50000)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def ledger_app(store: LedgerStore) -> Any:
    """The service's app with the explorer at /explorer (one mount, as the service does it)."""
    app = create_app(store)
    if not any(getattr(r, "path", "") == "/explorer" for r in app.routes):
        app.router.routes.append(Mount("/explorer", create_explorer(StoreReads(store))))
    return app


class Ledger:
    """A store, its manual clock and an in-process HTTP client, and a round played by hand."""

    def __init__(self, store: LedgerStore, clock: ManualClock, http: TestClient) -> None:
        self.store, self.clock, self.http = store, clock, http

    @property
    def transport(self) -> httpx.BaseTransport:
        return self.http._transport  # type: ignore[attr-defined, no-any-return]

    def slot(self) -> int:
        return self.store.slot()

    def to_slot(self, slot: int) -> None:
        self.clock.advance(max(0.0, self.store.slots.start_of(slot) - self.clock.now()) + 1e-6)
        assert self.store.slot() == slot

    def ok(self, key: Keypair, kind: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("recent_slot", self.slot())
        response = self.http.post("/tx", json=key.sign_transaction({"type": kind, **fields}))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def fund(self, key: Keypair | str, koii: int = 100) -> None:
        to = key if isinstance(key, str) else key.public_key
        self.ok(Keypair.generate(), "airdrop", to=to, amount=koii * KOII)

    def create_task(self, *, code_cid: str = "bafkreihelloworld", name: str = "Hello World") -> str:
        manager = Keypair.generate()
        self.fund(manager, 500)
        receipt = self.ok(
            manager,
            "create_task",
            task_name=name,
            task_description="Stores and submits Hello, World!",
            task_audit_program=code_cid,
            total_bounty_amount=100 * KOII,
            bounty_amount_per_round=10 * KOII,
            round_time=10,
            submission_window=3,
            audit_window=3,
            minimum_stake_amount=2 * KOII,
            allowed_failed_distributions=3,
            requirements_tags=[
                {"type": "TASK_VARIABLE", "value": "FAULTY", "description": "1 submits a wrong value"}
            ],
            sample_size=5,
        )
        return str(next(e["task_id"] for e in receipt["events"] if e.get("task_id")))

    def task(self, task_id: str) -> dict[str, Any]:
        flags = "is_submission_required=true&is_distribution_required=true"
        flags += "&is_available_balances_required=true&is_stake_list_required=true"
        result: dict[str, Any] = self.http.get(f"/tasks/{task_id}?{flags}").json()
        return result

    def stake(self, key: Keypair, task_id: str, koii: int = 5) -> None:
        self.fund(key, koii + 1)
        self.ok(key, "stake", task_id=task_id, amount=koii * KOII, ip_address="http://127.0.0.1:30017")

    def play_round(
        self, task_id: str, number: int, nodes: list[Keypair], faulty: set[str], pay: bool = True
    ) -> None:
        """Round ``number`` from proofs to payout: every node submits, the assigned auditors of a
        faulty node vote false, the selected node submits the default list, anyone pays out (unless
        ``pay`` is false: then the round stays unsettled)."""
        task = self.task(task_id)
        start = task["starting_slot"] + (number + 1) * task["round_time"]
        self.to_slot(max(self.slot(), start))
        for key in nodes:
            value = "wrong" if key.public_key in faulty else "Hello, World!"
            body = submit_body(key, task_id, number, value)
            self.ok(key, body.pop("type"), **body)
        self.to_slot(start + task["submission_window"])  # the reveal window
        for key in nodes:
            body = reveal_body(key, task_id, number)
            self.ok(key, body.pop("type"), **body)
        self.to_slot(start + task["submission_window"] + max(1, min(task["audit_window"] // 2, 4)))
        view = self.http.get(f"/tasks/{task_id}/rounds/{number}").json()
        keys = {k.public_key: k for k in nodes}
        for candidate in faulty:
            for auditor in view["assignments"].get(candidate, []):
                self.ok(
                    keys[auditor],
                    "audit_submission",
                    task_id=task_id,
                    round=number,
                    candidate=candidate,
                    is_valid=False,
                )
        self.to_slot(start + task["round_time"])
        view = self.http.get(f"/tasks/{task_id}/rounds/{number}").json()
        submitter = keys[view["selected_distribution_submitters"][0]]
        dist = view["default_distribution"]  # the whole list: these rounds fit on one page
        for body in distribution_transactions(task_id, number, dist["rewards"], dist["slashes"]):
            self.ok(submitter, body.pop("type"), **body)
        self.to_slot(start + 2 * task["round_time"] - 1)  # the list's judgement closed: payout
        if pay:
            self.ok(Keypair.generate(), "payout", task_id=task_id, round=number)


@contextlib.contextmanager
def open_ledger(folder: Path) -> Iterator[Ledger]:
    clock = ManualClock(start=0.0, wall_start=1_700_000_000.0)
    genesis = Genesis(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0), slot_ms=400)
    store = open_store(str(folder), clock=clock, genesis=genesis)
    with TestClient(ledger_app(store)) as http:
        yield Ledger(store, clock, http)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "ledger") as opened:
        yield opened
