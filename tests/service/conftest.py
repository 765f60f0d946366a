"""Fixtures for ledger-service tests: a real store on a temporary folder, a manual clock, the app
in process through Starlette's TestClient (no sockets), and helpers to start real servers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pykoii.clock import ManualClock
from pykoii.devnet import LISTENING
from pykoii.keys import Keypair
from pykoii.ledger import LedgerParams
from pykoii.service import Genesis, create_app, open_store
from pykoii.service.store import LedgerStore
from tests.ledger.helpers import KOII

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

SLOT_SECONDS = 0.4


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


class Ledger:
    """A store, its manual clock and an in-process HTTP client, with a few conveniences."""

    def __init__(self, store: LedgerStore, clock: ManualClock, http: TestClient) -> None:
        self.store, self.clock, self.http = store, clock, http

    def slot(self) -> int:
        return self.store.slot()

    def to_slot(self, slot: int) -> None:
        """Move the manual clock to the start of ``slot``."""
        self.clock.advance(max(0.0, self.store.slots.start_of(slot) - self.clock.now()) + 1e-6)
        assert self.store.slot() == slot

    def sign(self, key: Keypair, kind: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("recent_slot", self.slot())
        return key.sign_transaction({"type": kind, **fields})

    def send(self, key: Keypair, kind: str, **fields: Any) -> httpx.Response:
        return self.http.post("/tx", json=self.sign(key, kind, **fields))

    def ok(self, key: Keypair, kind: str, **fields: Any) -> dict[str, Any]:
        response = self.send(key, kind, **fields)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def prove(self, key: Keypair, task_id: str, round_number: int, value: str) -> dict[str, Any]:
        """Submit a proof with its beacon commitment (what a node sends)."""
        from pykoii.keys import submit_body

        body = submit_body(key, task_id, round_number, value)
        return self.ok(key, body.pop("type"), **body)

    def reveal(self, key: Keypair, task_id: str, round_number: int) -> dict[str, Any]:
        """Reveal the beacon secret committed with ``key``'s proof (in the reveal window)."""
        from pykoii.keys import reveal_body

        body = reveal_body(key, task_id, round_number)
        return self.ok(key, body.pop("type"), **body)

    def fund(self, key: Keypair, amount: int = 100 * KOII) -> None:
        self.ok(key, "airdrop", to=key.public_key, amount=amount)


def make_store(folder: Path, clock: ManualClock, **options: Any) -> LedgerStore:
    genesis = Genesis(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0), slot_ms=400)
    return open_store(str(folder), clock=clock, genesis=genesis, **options)


@contextlib.contextmanager
def open_ledger(folder: Path) -> Iterator[Ledger]:
    """A devnet store on ``folder`` behind its app, on a manual clock at slot 0."""
    clock = ManualClock(start=0.0, wall_start=1_700_000_000.0)
    store = make_store(folder, clock)
    with TestClient(create_app(store)) as http:
        yield Ledger(store, clock, http)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "ledger") as opened:
        yield opened


class LedgerProcess(subprocess.Popen[bytes]):
    """``pykoii ledger ...`` as started by ``start_server``: ``url`` is where it listens."""

    url = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def start_server(*args: str, log: Path, port: int = 0) -> LedgerProcess:
    """Start ``pykoii ledger ...`` as a real process and wait until it answers ``GET /health``.

    ``port`` 0 (the default): the process binds a port the OS picks, so no other process can take
    it in between, and says which in its ``listening on`` line (``url``). A restart passes the
    port it had (``server.port``), as a restarted ledger would."""
    handle = open(log, "ab")
    start = handle.tell()
    process = LedgerProcess(
        [sys.executable, "-m", "pykoii.cli", "ledger", *args, "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {log.read_text()}")
        if not process.url:
            with open(log, "rb") as written:
                written.seek(start)
                found = LISTENING.search(written.read().decode(errors="replace"))
            process.url = found.group(1) if found else ""
        try:
            if process.url and httpx.get(f"{process.url}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"server did not start: {log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
