"""A real full disk: the ledger's folder on a 20 MB tmpfs, filled by another writer under load.

Every commit that fails leaves no hole: nothing past it is acknowledged, the ledger rebuilds its
state from disk, answers JSON errors meanwhile, accepts writes again once space is freed, and after
kill -9 it restarts, replays, and `ledger verify` passes with every acknowledged transaction in
the log. Needs root (to mount the tmpfs); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest

from pykoii.client import LedgerClient
from pykoii.clock import ManualClock
from pykoii.keys import Keypair
from pykoii.service import SQLiteLog, create_app
from pykoii.service.space import free_bytes

from .conftest import KOII, TestClient, make_store, start_server, stop
from .test_processes import verify_cli


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "20m") -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the suite as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(path: Path) -> None:
    """Write ``path`` until the file system says ENOSPC (the attacker, or another program)."""
    with open(path, "wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 14, 1 << 10, 64):
            chunk = b"\0" * size
            while True:
                try:
                    handle.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


async def load(
    url: str, envelopes: list[dict[str, object]], acked: list[str], statuses: Counter[int]
) -> None:
    """Send every envelope from 32 concurrent connections; record acks and every status seen (each
    error must be a JSON ``{error, message}``)."""
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            envelope = queue.get_nowait()
            try:
                async with session.post(url + "/tx", data=orjson.dumps(envelope)) as response:
                    body = orjson.loads(await response.read())
            except (TimeoutError, aiohttp.ClientError):
                continue
            statuses[response.status] += 1
            if response.status == 200:
                acked.append(body["tx_id"])
            else:
                assert set(body) == {"error", "message"}, body
                await asyncio.sleep(0.01)

    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(sender(session) for _ in range(32)))


def test_a_full_disk_under_load_loses_nothing_acknowledged_and_the_ledger_restarts(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        folder = disk / "ledger"
        log = tmp_path / "serve.log"
        args = ("serve", "--data", str(folder), "--devnet", "--workers", "1")
        # No reserve at first: the commits themselves meet the full disk.
        server = start_server(*args, "--reserve-mb", "0", log=log)
        url, port = server.url, server.port
        try:
            slot = LedgerClient(url).slot()["slot"]
            keys = [Keypair.generate() for _ in range(4000)]
            envelopes = [
                k.sign_transaction(
                    {"type": "airdrop", "to": k.public_key, "amount": KOII, "recent_slot": slot}
                )
                for k in keys
            ]
            acked: list[str] = []
            statuses: Counter[int] = Counter()
            asyncio.run(load(url, envelopes[:1000], acked, statuses))
            assert statuses[200] == 1000

            # Another writer takes the disk to full; the load goes on.
            fill_disk(disk / "filler")
            deadline = time.monotonic() + 60
            batch = 1000
            while "log commit failed" not in log.read_text() and time.monotonic() < deadline:
                asyncio.run(load(url, envelopes[batch : batch + 500], acked, statuses))
                batch = 1000 if batch + 500 >= 3000 else batch + 500  # repeats answer first receipts
            text = log.read_text()
            assert "log commit failed" in text, f"no commit failed on the full disk: {statuses}\n{text}"
            assert statuses[503] + statuses[507] > 0, statuses
            assert statuses.keys() <= {200, 503, 507}, statuses

            # The ledger rebuilt its state from disk; the follower's long poll waits, not spins.
            deadline = time.monotonic() + 60
            while httpx.get(url + "/health").json()["status"] == "recovering":
                assert time.monotonic() < deadline, "still rebuilding after 60 s"
                time.sleep(0.1)
            health = LedgerClient(url).health()
            started = time.monotonic()
            page = LedgerClient(url).log(health["seq"], limit=10, wait=1)
            assert page["entries"] == [] and time.monotonic() - started >= 0.9

            # Space freed: it accepts writes again, continuing the chain on disk.
            (disk / "filler").unlink()
            asyncio.run(load(url, envelopes[3000:3500], acked, statuses))
            assert statuses[200] >= 1500
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)

        checked = verify_cli(folder)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        backend = SQLiteLog(folder / "ledger.sqlite3")
        logged = {entry.tx_id for entry in backend.entries(0, 100_000)}
        backend.close()
        assert set(acked) <= logged, f"{len(set(acked) - logged)} acknowledged transactions are missing"

        # With a reserve, a full disk is refused up front (507), nothing applied; freed, it goes on.
        server = start_server(*args, "--reserve-mb", "1", port=port, log=log)
        try:
            client = LedgerClient(url)
            assert client.health()["seq"] == len(logged)
            fill_disk(disk / "filler")
            refused: Counter[int] = Counter()
            asyncio.run(load(url, envelopes[3500:3600], acked, refused))
            assert refused == {507: 100}
            response = httpx.put(url + "/blobs", content=b"x" * 1000)
            assert response.status_code == 507 and response.json()["error"] == "InsufficientStorageError"
            (disk / "filler").unlink()
            receipt = client.send_transaction(
                keys[-1], {"type": "airdrop", "to": keys[-1].public_key, "amount": 2 * KOII}
            )
            assert receipt["seq"] == len(logged) + 1
            client.close()
        finally:
            stop(server)
        checked = verify_cli(folder)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_below_the_reserve_writes_are_refused_with_507_and_nothing_changes(tmp_path: Path) -> None:
    clock = ManualClock(start=0.0, wall_start=1_700_000_000.0)
    folder = tmp_path / "ledger"
    folder.mkdir()
    store = make_store(folder, clock, reserve_bytes=free_bytes(folder) + 2**40)
    alice = Keypair.generate()
    with TestClient(create_app(store)) as http:
        envelope = alice.sign_transaction(
            {"type": "airdrop", "to": alice.public_key, "amount": 5, "recent_slot": 0}
        )
        response = http.post("/tx", json=envelope)
        assert response.status_code == 507, response.text
        assert response.json()["error"] == "InsufficientStorageError"
        assert "reserve" in response.json()["message"]
        blob = http.put("/blobs", content=b"hello")
        assert blob.status_code == 507 and blob.json()["error"] == "InsufficientStorageError"
        assert http.get("/health").json()["seq"] == 0
        store.reserve_bytes = store.blobs.reserve_bytes = 0  # space freed
        assert http.post("/tx", json=envelope).status_code == 200
        assert http.put("/blobs", content=b"hello").status_code == 201


def test_blobs_have_a_total_quota_of_their_own(tmp_path: Path) -> None:
    clock = ManualClock(start=0.0, wall_start=1_700_000_000.0)
    store = make_store(tmp_path / "ledger", clock, blob_quota_bytes=1000)
    with TestClient(create_app(store)) as http:
        assert http.put("/blobs", content=b"a" * 600).status_code == 201
        assert http.put("/blobs", content=b"a" * 600).status_code == 201  # the same bytes: no-op
        refused = http.put("/blobs", content=b"b" * 600)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"] == "InsufficientStorageError"
        assert "quota of 1000 bytes" in refused.json()["message"]
        assert sorted(p.stat().st_size for p in (tmp_path / "ledger" / "blobs").iterdir()) == [600]
    again = make_store(tmp_path / "ledger", clock, blob_quota_bytes=1000)  # counted again at start
    assert again.blobs is not None and again.blobs.used == 600
    again.backend.close()
