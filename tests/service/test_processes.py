"""The ledger as real processes: `pykoii ledger serve` over HTTP, kill -9 under load, a replica."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from pykoii import errors
from pykoii.client import LedgerClient
from pykoii.clock import SystemClock
from pykoii.keys import Keypair
from pykoii.service import SQLiteLog
from pykoii.service.store import LedgerStore

from .conftest import KOII, start_server, stop


def verify_cli(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykoii.cli", "ledger", "verify", "--data", str(folder), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_as_a_subprocess_over_http(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    server = start_server(
        "serve",
        "--data",
        str(folder),
        "--devnet",
        "--slot-ms",
        "100",
        "--workers",
        "1",
        log=tmp_path / "serve.log",
    )
    try:
        client = LedgerClient(server.url)
        alice, bob = Keypair.generate(), Keypair.generate()
        client.send_transaction(alice, {"type": "airdrop", "to": alice.public_key, "amount": 3 * KOII})
        receipt = client.send_transaction(alice, {"type": "transfer", "to": bob.public_key, "amount": KOII})
        assert client.transaction(receipt["tx_id"]) == receipt
        assert client.account(bob.public_key)["balance"] == KOII
        slots = [event["data"]["slot"] for event in client.events(types=("slot",), limit=3)]
        assert slots == sorted(slots) and len(set(slots)) == 3
        with pytest.raises(errors.InsufficientFundsError):
            client.send_transaction(bob, {"type": "transfer", "to": alice.public_key, "amount": 5 * KOII})
        root = client.health(state_root=True)["state_root"]
        client.close()
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
    backend = SQLiteLog(folder / "ledger.sqlite3")
    assert backend.latest_checkpoint().seq == 2  # type: ignore[union-attr]  # written on the way out
    backend.close()
    checked = verify_cli(folder)
    assert checked.returncode == 0, checked.stderr
    assert "3 entries (2 transactions, 1 checkpoint marks)" in checked.stdout and root in checked.stdout


async def blast(
    url: str,
    envelopes: list[dict[str, object]],
    acked: list[str],
    stop_after: int,
    server: subprocess.Popen[bytes],
) -> None:
    """Send envelopes from 64 concurrent connections; kill -9 the server after ``stop_after`` acks."""
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            envelope = queue.get_nowait()
            try:
                async with session.post(url + "/tx", data=orjson.dumps(envelope)) as response:
                    body = await response.read()
                    if response.status == 200:
                        acked.append(orjson.loads(body)["tx_id"])
            except (TimeoutError, aiohttp.ClientError):
                continue
            if len(acked) >= stop_after and server.poll() is None:
                server.send_signal(signal.SIGKILL)

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(sender(session) for _ in range(64)))


def test_kill_9_under_load_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    server = start_server(
        "serve", "--data", str(folder), "--devnet", "--workers", "1", log=tmp_path / "serve.log"
    )
    url, port = server.url, server.port
    slot = LedgerClient(url).slot()["slot"]
    keys = [Keypair.generate() for _ in range(3000)]
    envelopes = [
        k.sign_transaction({"type": "airdrop", "to": k.public_key, "amount": KOII, "recent_slot": slot})
        for k in keys
    ]
    acked: list[str] = []
    asyncio.run(blast(url, envelopes, acked, stop_after=1000, server=server))
    server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL, "the server was not killed mid-stream"
    assert 1000 <= len(acked) < len(envelopes)

    checked = verify_cli(folder)
    assert checked.returncode == 0, checked.stderr
    backend = SQLiteLog(folder / "ledger.sqlite3")
    logged = {entry.tx_id for entry in backend.entries(0, 10_000)}
    assert set(acked) <= logged
    fresh = LedgerStore(backend, clock=SystemClock(), read_only=True, use_checkpoint=False)
    fresh_root = fresh.root()
    backend.close()

    server = start_server(
        "serve", "--data", str(folder), "--workers", "0", port=port, log=tmp_path / "serve.log"
    )
    try:
        client = LedgerClient(url)
        health = client.health(state_root=True)
        assert health["seq"] == len(logged) and health["state_root"] == fresh_root
        assert client.transaction(acked[-1])["tx_id"] == acked[-1]
        client.close()
    finally:
        stop(server)


def test_a_replica_reaches_the_primary_state_root(tmp_path: Path) -> None:
    primary = start_server(
        "serve",
        "--data",
        str(tmp_path / "primary"),
        "--devnet",
        "--workers",
        "0",
        log=tmp_path / "primary.log",
    )
    replica = None
    try:
        client = LedgerClient(primary.url)
        keys = [Keypair.generate() for _ in range(20)]
        for key in keys:
            client.send_transaction(key, {"type": "airdrop", "to": key.public_key, "amount": 10 * KOII})
        replica = start_server(
            "follow",
            primary.url,
            "--data",
            str(tmp_path / "replica"),
            "--workers",
            "0",
            log=tmp_path / "replica.log",
        )
        for i, key in enumerate(keys):  # more while it follows
            client.send_transaction(key, {"type": "transfer", "to": keys[i - 1].public_key, "amount": i + 1})
        follower = LedgerClient(replica.url)
        want = client.health(state_root=True)
        deadline = time.monotonic() + 30
        while follower.health()["seq"] < want["seq"] and time.monotonic() < deadline:
            time.sleep(0.05)
        got = follower.health(state_root=True)
        assert got["role"] == "replica"
        assert (got["seq"], got["last_hash"], got["state_root"]) == (
            want["seq"],
            want["last_hash"],
            want["state_root"],
        )
        assert follower.account(keys[0].public_key) == client.account(keys[0].public_key)
        with pytest.raises(errors.ReadOnlyReplicaError):
            follower.send_transaction(keys[0], {"type": "transfer", "to": keys[1].public_key, "amount": 1})
    finally:
        if replica is not None:
            stop(replica)
        stop(primary)
