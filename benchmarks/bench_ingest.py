# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""Ledger ingest end to end: signed transactions over HTTP → verify → apply → durable log → reply.

Starts `pykoii ledger serve` as a real process (uvicorn, signature workers, SQLite WAL with
synchronous=FULL) and drives it from this process with aiohttp, on the same machine:

1. ed25519 verify-only rate on the same cores (one process per core, ``verify_envelope``);
2. saturation: many connections posting batches of signed transfers and proofs, as fast as the
   ledger acknowledges them: tx/s and p50/p99 time to durable acknowledgement;
3. the same with one envelope per request (HTTP-bound): aiohttp at 64 connections, then the raw
   HTTP/1.1 client at each of ``--connections`` (default 64 and 256: with one envelope per request,
   how many requests are in flight decides how many each verify batch and each commit carry);
4. a fixed offered load of 5,000 tx/s (open loop): p50/p99 time to durable acknowledgement.

Writes the "## Ledger service ingest" section of BENCHMARKS.md (and only that section).
Run: ``.venv/bin/python benchmarks/bench_ingest.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from pykoii.keys import Keypair, verify_envelope

ROOT = Path(__file__).resolve().parents[1]
KOII = 1_000_000_000
SECTION = "## Ledger service ingest"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _verify_chunk(payload: bytes) -> int:
    envelopes = orjson.loads(payload)
    for envelope in envelopes:
        verify_envelope(envelope)
    return len(envelopes)


def verify_only_rate(envelopes: list[dict[str, Any]], processes: int) -> float:
    """Envelopes verified per second by ``processes`` worker processes (verify_envelope only)."""
    chunk = len(envelopes) // processes
    payloads = [orjson.dumps(envelopes[i * chunk : (i + 1) * chunk]) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_verify_chunk, [orjson.dumps(envelopes[:50])] * processes))  # warm up
        started = time.perf_counter()
        done = sum(pool.map(_verify_chunk, payloads))
        return done / (time.perf_counter() - started)


class Load:
    def __init__(self, url: str, keys: list[Keypair]) -> None:
        self.url, self.keys = url, keys
        self.counter = 0

    def slot(self) -> int:
        return int(httpx.get(self.url + "/slot").json()["slot"])

    def sign(self, count: int, task_id: str | None = None) -> list[dict[str, Any]]:
        """``count`` transfers between the signer keys (and, with a task, a few proofs)."""
        slot = self.slot()
        out = []
        n = len(self.keys)
        for _ in range(count):
            self.counter += 1
            i = self.counter
            out.append(
                self.keys[i % n].sign_transaction(
                    {
                        "type": "transfer",
                        "to": self.keys[(i * 7 + 1) % n].public_key,
                        "amount": i,  # unique per counter: no two envelopes are the same transaction
                        "recent_slot": slot,
                    }
                )
            )
        return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class RawHTTP(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client connection (what wrk does): one request in flight, requests
    pre-encoded, answers read by ``Content-Length``. It costs the load generator a fraction of aiohttp's
    CPU per request, so more of the shared cores measure the server."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        found = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if found is None:
            self.waiter.set_exception(RuntimeError(f"no content-length in {head!r}"))
            return
        size = end + 4 + int(found.group(1))
        if len(self.buffer) < size:
            return
        body = bytes(self.buffer[end + 4 : size])
        del self.buffer[:size]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def saturate_raw(url: str, bodies: list[bytes], connections: int) -> dict[str, float]:
    """``saturate`` with ``RawHTTP`` connections instead of aiohttp."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST /tx HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    requests = [head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body for body in bodies]
    latencies: list[float] = []
    answered: list[float] = []  # when each accepted answer arrived, for the steady-state rate
    accepted = 0
    position = 0
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal accepted, position
        transport, connection = await loop.create_connection(RawHTTP, host, int(port))
        try:
            while position < len(requests):
                raw = requests[position]
                position += 1
                started = time.perf_counter()
                status, body = await connection.request(raw)
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    answer = orjson.loads(body)
                    accepted += len(answer) if isinstance(answer, list) else 1
                    answered.append(time.perf_counter())
        finally:
            transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "tx_per_s": steady_rate(answered),
        "whole_tx_per_s": accepted / elapsed,
        "seconds": elapsed,
        "accepted": accepted,
        "sent": len(bodies),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def steady_rate(answered: list[float]) -> float:
    """Answers per second between the 10th and the 90th percentile of their arrival times (one
    envelope per answer): the rate once every connection is busy, without the ramp-up (connections
    opening, the first verify batches) and the tail (connections finishing one by one)."""
    if len(answered) < 10:
        return float("nan")
    ordered = sorted(answered)
    low, high = len(ordered) // 10, len(ordered) * 9 // 10
    return (high - low) / max(ordered[high] - ordered[low], 1e-9)


async def saturate(
    url: str, envelopes: list[dict[str, Any]], batch: int, connections: int, client: str = "aiohttp"
) -> dict[str, float]:
    """Closed loop: each connection posts its next batch as soon as the previous one is acknowledged.
    Bodies are encoded before the clock starts; ``client`` is ``aiohttp`` or ``raw`` (``RawHTTP``)."""
    bodies = [
        orjson.dumps(envelopes[i : i + batch] if batch > 1 else envelopes[i])
        for i in range(0, len(envelopes), batch)
    ]
    if client == "raw":
        result = await saturate_raw(url, bodies, connections)
        result["sent"] = len(envelopes)
        return result
    latencies: list[float] = []
    accepted = 0
    position = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, position
        while position < len(bodies):
            body = bodies[position]
            position += 1
            started = time.perf_counter()
            async with session.post(url + "/tx", data=body) as response:
                answer = orjson.loads(await response.read())
            latencies.append(time.perf_counter() - started)
            if response.status == 200:
                accepted += len(answer) if isinstance(answer, list) else 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "tx_per_s": accepted / elapsed,
        "accepted": accepted,
        "sent": len(envelopes),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def offered(url: str, envelopes: list[dict[str, Any]], rate: int, batch: int) -> dict[str, float]:
    """Open loop: a batch every ``batch / rate`` seconds whatever the answers; latency from the
    scheduled send time to the durable acknowledgement."""
    bodies = [orjson.dumps(envelopes[i : i + batch]) for i in range(0, len(envelopes), batch)]
    interval = batch / rate
    latencies: list[float] = []
    accepted = 0

    async def send(session: aiohttp.ClientSession, body: bytes, scheduled: float) -> None:
        nonlocal accepted
        async with session.post(url + "/tx", data=body) as response:
            answer = orjson.loads(await response.read())
        latencies.append(time.perf_counter() - scheduled)
        if response.status == 200:
            accepted += sum(1 for r in answer if "error" not in r)

    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        pending = []
        for index, body in enumerate(bodies):
            scheduled = start + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(send(session, body, scheduled)))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
    return {
        "tx_per_s": accepted / elapsed,
        "accepted": accepted,
        "sent": len(envelopes),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its children (Linux ``/proc``; NaN elsewhere)."""
    try:
        pids = [pid] + [
            int(name) for name in os.listdir("/proc") if name.isdigit() and _proc_stat(int(name))[1] == pid
        ]
    except OSError:
        return float("nan")
    return sum(_proc_stat(p)[0] for p in pids)


def _proc_stat(pid: int) -> tuple[float, int]:
    """``(CPU seconds, parent pid)`` of a process; ``(0, 0)`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])


def measured(server: int, run: Any) -> dict[str, float]:
    """``asyncio.run(run)`` plus the CPU per acknowledged transaction of the server (main process and
    signature workers) and of this load generator, in microseconds."""
    server_before, client_before = tree_cpu(server), time.process_time()
    result: dict[str, float] = asyncio.run(run)
    accepted = max(result["accepted"], 1)
    result["server_us"] = (tree_cpu(server) - server_before) / accepted * 1e6
    result["client_us"] = (time.process_time() - client_before) / accepted * 1e6
    return result


def start_server(folder: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykoii.cli",
            "ledger",
            "serve",
            "--data",
            str(folder),
            "--devnet",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the ledger did not start")


def fund(url: str, keys: list[Keypair]) -> None:
    slot = int(httpx.get(url + "/slot").json()["slot"])
    envelopes = [
        k.sign_transaction(
            {"type": "airdrop", "to": k.public_key, "amount": 1000 * KOII, "recent_slot": slot}
        )
        for k in keys
    ]
    for i in range(0, len(envelopes), 1000):
        answers = httpx.post(url + "/tx", content=orjson.dumps(envelopes[i : i + 1000]), timeout=60).json()
        assert all("error" not in a for a in answers), answers[:3]


PIPELINE = (
    "pykoii_ledger_verify_batches_total",
    "pykoii_ledger_verified_total",
    "pykoii_ledger_commits_total",
    "pykoii_ledger_committed_entries_total",
)


def pipeline_counts(url: str) -> list[float]:
    """The verifier's and the sequencer's counters (``PIPELINE``) from ``GET /metrics``."""
    text = httpx.get(url + "/metrics").text
    return [_metric(text, name) for name in PIPELINE]


def batch_sizes(before: list[float], after: list[float]) -> dict[str, float]:
    """Envelopes per verify batch and entries per commit between two ``pipeline_counts``."""
    batches, verified, commits, entries = (b - a for a, b in zip(before, after, strict=True))
    return {"verify_batch": verified / max(batches, 1), "commit_batch": entries / max(commits, 1)}


def write_section(text: str, section: str = SECTION) -> None:
    """Replace ``section`` of BENCHMARKS.md (a ``## `` heading up to the next) by ``text``; keep the rest."""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip() + "\n\n", current)
    else:
        updated = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.write_text(updated.rstrip() + "\n")


LOAD_AT_START = os.getloadavg()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--connections",
        default="64,256",
        help="connection counts of the raw-client single-envelope runs, comma-separated (default 64,256)",
    )
    args = parser.parse_args()
    total = 30_000 if args.quick else 80_000
    connection_counts = sorted({int(count) for count in args.connections.split(",")})
    cores = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="pykoii-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(folder / "ledger", port, args.workers)
    try:
        keys = [Keypair.from_seed(i.to_bytes(32, "big")) for i in range(1, 1001)]
        fund(url, keys)
        load = Load(url, keys)
        print("signing…", flush=True)
        sample = load.sign(20_000)
        verify_rate = verify_only_rate(sample, cores)
        print(f"verify-only on {cores} processes: {verify_rate:,.0f}/s", flush=True)

        batched = asyncio.run(saturate(url, load.sign(total), batch=100, connections=32))
        print(f"saturation, batches of 100: {batched}", flush=True)
        envelopes = load.sign(total // 2)
        single = measured(server.pid, saturate(url, envelopes, batch=1, connections=64))
        print(f"saturation, one per request, aiohttp: {single}", flush=True)
        raws: dict[int, dict[str, float]] = {}
        for count in connection_counts:
            envelopes = load.sign(total // 2)
            before = pipeline_counts(url)
            raws[count] = measured(
                server.pid, saturate(url, envelopes, batch=1, connections=count, client="raw")
            )
            raws[count].update(batch_sizes(before, pipeline_counts(url)))
            print(
                f"saturation, one per request, raw HTTP/1.1 client, {count} connections: {raws[count]}",
                flush=True,
            )
        fixed = asyncio.run(
            offered(url, load.sign(50_000 if not args.quick else 25_000), rate=5000, batch=50)
        )
        print(f"offered 5,000 tx/s: {fixed}", flush=True)
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
    print(metrics, flush=True)
    ratio = batched["tx_per_s"] / verify_rate
    commits, entries = (
        _metric(metrics, "pykoii_ledger_commits_total"),
        _metric(metrics, "pykoii_ledger_committed_entries_total"),
    )
    best_count = max(raws, key=lambda count: raws[count]["tx_per_s"])
    best = raws[best_count]
    counts_text = " and ".join(str(count) for count in raws)
    raw_rows = "\n".join(
        f"| end to end, one envelope per request, {count} connections, raw HTTP/1.1 client | "
        f"**{run['tx_per_s']:,.0f}** | {run['p50_ms']:.0f} ms | {run['p99_ms']:.0f} ms |"
        for count, run in raws.items()
    )
    cpu_text = "; ".join(
        f"at {count} connections the service {run['server_us']:.0f} µs and the raw client {run['client_us']:.0f} µs"
        for count, run in raws.items()
    )
    whole_text = "; ".join(
        f"{run['whole_tx_per_s']:,.0f} tx/s at {count} connections ({run['accepted']:,.0f} tx in {run['seconds']:.1f} s)"
        for count, run in raws.items()
    )
    batch_text = "; ".join(
        f"{run['verify_batch']:.1f} and {run['commit_batch']:.1f} at {count} connections"
        for count, run in raws.items()
    )
    checkpoint_note = (
        "- The log passes 200,000 entries during the offered-load run, so that run includes a checkpoint\n"
        "  (written in the background; the sequencer goes on).\n"
        if entries >= 200_000
        else ""
    )
    text = f"""{SECTION}

`benchmarks/bench_ingest.py` — signed transfers from 1,000 signer keys, every one a distinct transaction, sent
over HTTP by a load generator (this process) to `pykoii ledger serve` (a separate process: uvicorn + uvloop +
httptools, `POST /tx` answered by the HTTP protocol itself without an ASGI cycle, {args.workers} signature-worker
processes, SQLite WAL with `synchronous=FULL`) on the same machine
({cores} cores, {platform.python_implementation()} {platform.python_version()}). Time to durable acknowledgement is
measured by the client, from sending a request to receiving its answer, which the ledger sends only after the
log commit returned. The load generator is aiohttp, except in the row marked raw: a minimal HTTP/1.1 keep-alive
client in the script (pre-encoded requests, answers read by `Content-Length`; what wrk does). Run
{time.strftime("%Y-%m-%d")}; load average {LOAD_AT_START[0]:.1f} when it started (other work on the same
machine takes cores from both sides; the verify-only row is measured under the same load).

| measurement | tx/s | p50 ack | p99 ack |
|---|---|---|---|
| ed25519 verify-only (`verify_envelope`, {cores} processes, same run) | {verify_rate:,.0f} | | |
| end to end, batches of 100, 32 connections | **{batched["tx_per_s"]:,.0f}** | {batched["p50_ms"]:.0f} ms | {batched["p99_ms"]:.0f} ms |
| end to end, one envelope per request, 64 connections, aiohttp | {single["tx_per_s"]:,.0f} | {single["p50_ms"]:.0f} ms | {single["p99_ms"]:.0f} ms |
{raw_rows}
| offered 5,000 tx/s (open loop, batches of 50 every 10 ms) | {fixed["tx_per_s"]:,.0f} | {fixed["p50_ms"]:.0f} ms | **{fixed["p99_ms"]:.0f} ms** |

- End to end / verify-only ratio: **{ratio:.2f}** (target for one envelope per request: ≥ 9,000 tx/s).
- **Single envelope per request, raw client: {best["tx_per_s"]:,.0f} tx/s at {best_count} connections** (the best of
  the connection counts run, {counts_text}; each is a row above; target ≥ 9,000 tx/s). The raw rows give the
  steady-state rate: the answers that arrived between the 10th and the 90th percentile of their arrival
  times, over that time (without the ramp-up and the tail of the run). Whole-run averages: {whole_text}.
- CPU per acknowledged transaction, one envelope per request (service = main process and signature workers
  together): {cpu_text}; {single["server_us"]:.0f} µs in the aiohttp run, whose load generator took
  {single["client_us"]:.0f} µs.
- Envelopes per verify batch and entries per commit, raw client: {batch_text}.
- Group commit: {entries:,.0f} entries in {commits:,.0f} commits over the whole run (each commit one fsync); see
  `pykoii_ledger_commits_total` and `pykoii_ledger_committed_entries_total` in `GET /metrics`.
{checkpoint_note}
What bounds the figure: the 2 cores are shared by the load generator, the service's main process (HTTP parsing,
JSON, the sequencer's apply, hashing the chain, SQLite inserts) and the signature workers (ed25519 in PyNaCl,
~60 µs per transaction). With one envelope per request and aiohttp, the load generator alone takes about a third
of the CPU, so the service gets roughly two thirds of the machine; the raw client leaves it nearly all, which is
the figure to compare with the target. The sequencer is pipelined: pass N+1 is stamped, applied and hashed while
pass N's commit (write-ahead log pages + fsync) runs on the writer thread; each pass is still answered only after
its own commit returned, so the acknowledgement keeps meaning "on disk". Batches of 100 per request amortise the
per-request costs; there the cores are shared between verification (the largest part) and the main process's
apply, hashing and inserts. On a machine with more cores the verify workers scale out and the main process (one core) becomes the bound.
"""
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


if __name__ == "__main__":
    sys.exit(main())
