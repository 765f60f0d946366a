"""The periodic checkpoint waits for a quiet moment (no request for ``QUIET_SECONDS``), at most until
half an interval more has been applied, and a ledger killed at any moment around it restarts to the
same state, with every acknowledged transaction."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from pykoii.client import LedgerClient
from pykoii.clock import ManualClock, SystemClock
from pykoii.keys import Keypair
from pykoii.service import SQLiteLog, replay
from pykoii.service.records import mark_of
from pykoii.service.store import LedgerStore

from .conftest import KOII, make_store, start_server, stop
from .test_processes import verify_cli


def checkpoint_seqs(folder: Path) -> list[int]:
    with sqlite3.connect(folder / "ledger.sqlite3") as conn:
        return [seq for (seq,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")]


async def airdrops(store: LedgerStore, keys: list[Keypair]) -> None:
    for key in keys:
        await store.submit(
            key.sign_transaction(
                {"type": "airdrop", "to": key.public_key, "amount": KOII, "recent_slot": store.slot()}
            )
        )


def test_a_busy_ledger_takes_a_due_checkpoint_half_an_interval_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "QUIET_SECONDS", 3600.0)  # never quiet: only the bound takes it
    store = make_store(tmp_path, ManualClock(), checkpoint_every=10)
    keys = [Keypair.from_seed(bytes([i]) * 32) for i in range(40)]

    async def run() -> list[int]:
        await store.start()
        await airdrops(store, keys[:14])
        taken = checkpoint_seqs(tmp_path)
        await airdrops(store, keys[14:])
        while store._checkpointing is not None and not store._checkpointing.done():
            await asyncio.sleep(0.01)
        return taken

    before_bound = asyncio.run(run())
    assert before_bound == []  # due at 10 entries, but busy: not taken before 15
    seqs = checkpoint_seqs(tmp_path)
    assert seqs and all(seq >= 15 for seq in seqs)
    asyncio.run(store.close())
    again = make_store(tmp_path, ManualClock())
    assert (again.root(), again.seq) == (store.root(), store.seq)
    again.backend.close()


def test_a_due_checkpoint_is_taken_once_the_ledger_is_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "QUIET_SECONDS", 0.05)
    store = make_store(tmp_path, ManualClock(), checkpoint_every=10)
    keys = [Keypair.from_seed(bytes([i]) * 32) for i in range(12)]

    async def run() -> tuple[int, list[int]]:
        await store.start()
        await airdrops(store, keys)
        seq = store.seq
        deadline = time.monotonic() + 60
        while not checkpoint_seqs(tmp_path) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return seq, checkpoint_seqs(tmp_path)

    seq, seqs = asyncio.run(run())
    assert seqs == [seq]  # the state after every entry accepted, taken with nothing arriving
    backend = SQLiteLog(tmp_path / "ledger.sqlite3")
    assert [mark_of(entry) for entry in backend.marks()] == [(seq, store.root())]
    backend.close()
    asyncio.run(store.close())


def sign_airdrops(url: str, count: int) -> list[dict[str, object]]:
    slot = LedgerClient(url).slot()["slot"]
    keys = [Keypair.generate() for _ in range(count)]
    return [
        k.sign_transaction({"type": "airdrop", "to": k.public_key, "amount": KOII, "recent_slot": slot})
        for k in keys
    ]


@pytest.mark.parametrize("wait_for_checkpoint", [False, True], ids=["right after the acks", "once stored"])
def test_a_ledger_killed_around_its_checkpoint_restarts_with_every_acknowledged_tx(
    tmp_path: Path, wait_for_checkpoint: bool
) -> None:
    """kill -9 right after the acknowledgements (the checkpoint due, waiting for quiet, being taken
    or being written: whichever moment it is), or once it is stored; then ``ledger verify`` and a
    restart: every acknowledged transaction is there and the state is a replay's."""
    folder = tmp_path / "ledger"
    args = ("serve", "--data", str(folder), "--devnet", "--workers", "0", "--checkpoint-every", "40")
    server = start_server(*args, log=tmp_path / "serve.log")
    client = LedgerClient(server.url)
    acked = [client.send(envelope)["tx_id"] for envelope in sign_airdrops(server.url, 45)]
    if wait_for_checkpoint:
        deadline = time.monotonic() + 60
        while not checkpoint_seqs(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint_seqs(folder) == [45]
        acked += [client.send(envelope)["tx_id"] for envelope in sign_airdrops(server.url, 5)]
    client.close()
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)

    checked = verify_cli(folder)
    assert checked.returncode == 0, checked.stderr
    backend = SQLiteLog(folder / "ledger.sqlite3")
    logged = [entry.tx_id for entry in backend.entries(0, 10_000)]
    assert set(acked) <= set(logged)
    fresh = LedgerStore(backend, clock=SystemClock(), read_only=True, use_checkpoint=False)
    fresh_root = fresh.root()
    backend.close()

    server = start_server(*args, port=server.port, log=tmp_path / "serve.log")
    try:
        client = LedgerClient(server.url)
        health = client.health(state_root=True)
        assert health["seq"] == len(logged) and health["state_root"] == fresh_root
        assert client.transaction(acked[-1])["tx_id"] == acked[-1]
        client.close()
    finally:
        stop(server)
