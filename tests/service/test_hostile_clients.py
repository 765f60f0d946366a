"""Hostile clients against a real `pykoii ledger serve`: hundreds of SSE subscribers that never read,
hundreds of connections that never send a request, and clients polling the state root, while honest
clients send transactions. Ingest p99 stays within 2x of the baseline measured in the same run."""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest

from pykoii.client import LedgerClient
from pykoii.keys import Keypair
from pykoii.service.events import EventHub

from .conftest import KOII, start_server, stop

SUBSCRIBERS = 300
IDLE = 1100
"""More than the default limit of 1,024 open files."""


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99) - 1]


async def ingest(url: str, envelopes: list[dict[str, object]], concurrency: int = 16) -> list[float]:
    """Send every envelope (``concurrency`` at a time); the latency of each acknowledgement."""
    queue = list(reversed(envelopes))
    latencies: list[float] = []

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            body = orjson.dumps(queue.pop())
            started = time.perf_counter()
            async with session.post(url + "/tx", data=body) as response:
                await response.read()
                assert response.status == 200, await response.text()
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
    return latencies


async def poll_roots(url: str, stop_after: asyncio.Event) -> int:
    """Four monitoring clients asking for the state root, 50 ms after each answer."""
    answered = 0

    async def poller(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        while not stop_after.is_set():
            async with session.get(url + "/health", params={"state_root": "true"}) as response:
                assert "state_root" in orjson.loads(await response.read())
                answered += 1
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(poller(session) for _ in range(4)))
    return answered


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_hostile_clients_do_not_starve_ingest(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < SUBSCRIBERS + IDLE + 200:
        pytest.skip(f"the hard open-file limit {hard} is too low for {SUBSCRIBERS + IDLE} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192) if hard > 0 else 8192, hard))
    server = start_server(
        "serve", "--data", str(tmp_path / "ledger"), "--devnet", "--workers", "1", "--header-timeout", "4",
        log=tmp_path / "serve.log",
    )  # fmt: skip
    url, port = server.url, server.port
    sockets: list[socket.socket] = []
    try:
        slot = LedgerClient(url).slot()["slot"]
        keys = [Keypair.generate() for _ in range(4550)]
        envelopes = [
            k.sign_transaction({"type": "airdrop", "to": k.public_key, "amount": KOII, "recent_slot": slot})
            for k in keys
        ]
        asyncio.run(ingest(url, envelopes[:500]))  # warm up

        def open_hostile() -> tuple[list[socket.socket], list[socket.socket]]:
            subscribers = []
            for _ in range(SUBSCRIBERS):  # subscribe, then never read a byte
                sub = socket.create_connection(("127.0.0.1", port))
                sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sub.sendall(b"GET /events HTTP/1.1\r\nHost: ledger\r\n\r\n")
                subscribers.append(sub)
            return subscribers, [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]

        async def hostile_phase(envelopes: list[dict[str, object]]) -> tuple[float, int]:
            stop_polling = asyncio.Event()
            polling = asyncio.ensure_future(poll_roots(url, stop_polling))
            latencies = await ingest(url, envelopes)
            stop_polling.set()
            return p99(latencies), await polling

        # Baseline and hostile runs alternate, three of each, so that the shared machine's load
        # (other test processes) weighs on both alike; the medians are compared.
        baselines, loaded_runs = [], []
        batches = [envelopes[i : i + 600] for i in range(500, 4100, 600)]
        warmups = [envelopes[i : i + 150] for i in range(4100, 4550, 150)]
        for round_number in range(3):
            baselines.append(p99(asyncio.run(ingest(url, batches[2 * round_number]))))
            subscribers, idle = open_hostile()
            sockets = subscribers + idle
            opened = time.monotonic()
            # A new client still gets in, though more connections are open than the default file limit.
            assert httpx.get(url + "/health", timeout=10).status_code == 200
            deadline = time.monotonic() + 30
            while f"pykoii_ledger_event_subscribers {SUBSCRIBERS}" not in httpx.get(url + "/metrics").text:
                assert time.monotonic() < deadline, "the subscribers did not all get their streams"
                time.sleep(0.05)
            # The first events fill each stream's 16 KiB buffers (a one-time cost per subscriber);
            # then the non-readers block and the figure is the steady state.
            asyncio.run(ingest(url, warmups[round_number]))
            figure, roots = asyncio.run(hostile_phase(batches[2 * round_number + 1]))
            assert roots > 0
            loaded_runs.append(figure)
            if round_number < 2:
                for conn in sockets:
                    conn.close()
        baseline, loaded = sorted(baselines)[1], sorted(loaded_runs)[1]
        # 2x the same run's baseline (at least 2 x 50 ms: below that, scheduling noise of the shared
        # machine is the figure).
        assert loaded <= 2 * max(baseline, 0.05), f"ingest p99 {loaded_runs} s vs baseline {baselines} s"

        # Connections that never sent a request were closed by the header timeout.
        for conn in idle:
            conn.settimeout(max(1.0, 30 - (time.monotonic() - opened)))
            assert conn.recv(1) == b""
        metrics = httpx.get(url + "/metrics").text
        assert f"pykoii_ledger_event_subscribers {SUBSCRIBERS}" in metrics

        # The non-readers leave: cleanup is immediate, and nothing spins afterwards.
        for conn in sockets:
            conn.close()
        sockets = []
        deadline = time.monotonic() + 30
        while "pykoii_ledger_event_subscribers 0" not in httpx.get(url + "/metrics").text:
            assert time.monotonic() < deadline, "subscribers were not cleaned up"
            time.sleep(0.1)
        before = cpu_seconds(server.pid)
        time.sleep(3)
        assert cpu_seconds(server.pid) - before < 1.5, "the ledger keeps the CPU busy with no clients"
    finally:
        for conn in sockets:
            conn.close()
        stop(server)


def test_a_subscriber_that_falls_out_of_the_ring_gets_a_final_event() -> None:
    async def run() -> None:
        hub = EventHub(capacity=10, flush_seconds=0)
        slow, fast = hub.subscribe(), hub.subscribe(frozenset({"tx"}))
        for n in range(5):
            hub.publish("tx", {"n": n})
        assert [event[2]["n"] for event in await hub.wait(fast) or []] == list(range(5))
        for n in range(5, 25):
            hub.publish("slot" if n % 2 else "tx", {"n": n})
        await asyncio.sleep(0.01)  # the hub checks its subscribers when it wakes them
        final = await hub.wait(slow)
        assert final is not None and [event[1] for event in final] == ["dropped"]
        assert b"event: dropped" in final[0][3] and "too slow" in final[0][2]["reason"]
        assert await hub.wait(slow) is None and hub.subscriber_count == 0
        hub.unsubscribe(fast)

    asyncio.run(run())
