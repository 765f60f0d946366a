# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""The validator network's throughput, against the engine's own ceiling, all in one run.

1. CometBFT v0.38.25 with its built-in Go ``kvstore`` application, 1 and 4 validators: unique
   transactions broadcast to one validator's RPC (``broadcast_tx_sync``, JSON-RPC batches) from this
   Python process; committed tx/s counted from the blocks' ``num_txs`` in the load window.
2. pykoii on 1 and 4 validators: signed transfers posted to one validator's ``POST /tx`` (batches),
   each answered after its block is committed and built on; committed tx/s the same way, and p50/p99
   time from send to committed receipt, at saturation and at half that load.
3. The single sequencer (``pykoii ledger serve``) under the same load, for comparison.

Everything runs on this machine (engines, applications, load generator share the cores). Writes the
"## Validator network" section of BENCHMARKS.md. Run: ``.venv/bin/python benchmarks/bench_validators.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from pykoii.chain.engine import cometbft_binary, engine_version
from pykoii.chain.network import ValidatorNetwork
from pykoii.devnet import free_port
from pykoii.keys import Keypair

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Validator network"
KOII = 1_000_000_000


def committed_in_window(rpc: str, start: float, end: float) -> tuple[int, int]:
    """(transactions, blocks) committed in blocks whose time lies in [start, end] (Unix seconds)."""
    top = int(httpx.get(rpc + "/status", timeout=10).json()["result"]["sync_info"]["latest_block_height"])
    txs = blocks = 0
    high = top
    while high >= 1:
        low = max(1, high - 19)
        metas = httpx.get(
            rpc + "/blockchain", params={"minHeight": low, "maxHeight": high}, timeout=10
        ).json()["result"]["block_metas"]
        older = False
        for meta in metas:
            when = _unix(meta["header"]["time"])
            if start <= when <= end:
                txs += int(meta["num_txs"])
                blocks += 1
            elif when < start:
                older = True
        if older:
            break
        high = low - 1
    return txs, blocks


def _unix(text: str) -> float:
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


async def rpc_load(rpc: str, seconds: float, batch: int, concurrency: int) -> tuple[float, float]:
    """kvstore: unique ``key=value`` transactions as fast as the engine takes them; (start, end)."""
    counter = 0
    stop_at = time.time() + seconds

    async def worker(session: aiohttp.ClientSession, me: int) -> None:
        nonlocal counter
        while time.time() < stop_at:
            calls = []
            for _ in range(batch):
                counter += 1
                tx = base64.b64encode(f"k{me}-{counter}={counter}".encode()).decode()
                calls.append(
                    {"jsonrpc": "2.0", "id": counter, "method": "broadcast_tx_sync", "params": {"tx": tx}}
                )
            try:
                async with session.post(rpc, data=orjson.dumps(calls)) as response:
                    await response.read()
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)

    start = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))
    return start, time.time()


async def post_load(
    url: str, envelopes: list[bytes], seconds: float, batch: int, concurrency: int, rate: float = 0.0
) -> dict[str, Any]:
    """``POST /tx`` batches of signed transfers; closed loop, or open loop at ``rate`` tx/s."""
    latencies: list[float] = []
    acked = refused = 0
    position = 0
    start = time.time()
    stop_at = start + seconds

    async def send(session: aiohttp.ClientSession, body: bytes, count: int) -> None:
        nonlocal acked, refused
        sent = time.perf_counter()
        try:
            async with session.post(
                url + "/tx", data=body, headers={"content-type": "application/json"}
            ) as response:
                answers = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError):
            refused += count
            return
        took = time.perf_counter() - sent
        if isinstance(answers, dict):
            refused += count
            return
        for answer in answers:
            if "error" in answer:
                refused += 1
            else:
                acked += 1
                latencies.append(took)

    def next_body() -> tuple[bytes, int] | None:
        nonlocal position
        if position >= len(envelopes):
            return None
        chunk = envelopes[position : position + batch]
        position += len(chunk)
        return b"[" + b",".join(chunk) + b"]", len(chunk)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        if rate <= 0:

            async def worker() -> None:
                while time.time() < stop_at:
                    item = next_body()
                    if item is None:
                        return
                    await send(session, *item)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            pending = []
            interval = batch / rate
            tick = time.time()
            while time.time() < stop_at:
                item = next_body()
                if item is None:
                    break
                pending.append(asyncio.ensure_future(send(session, *item)))
                tick += interval
                await asyncio.sleep(max(0.0, tick - time.time()))
            await asyncio.gather(*pending)
    end = time.time()
    latencies.sort()
    return {
        "start": start,
        "end": end,
        "acked": acked,
        "refused": refused,
        "rate": acked / (end - start),
        "p50": _pct(latencies, 50),
        "p99": _pct(latencies, 99),
    }


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def signed_transfers(url: str, count: int) -> list[bytes]:
    """``count`` unique signed transfers from a few airdropped wallets, at the current slot."""
    wallets = [Keypair.generate() for _ in range(8)]
    slot = httpx.get(url + "/slot", timeout=10).json()["slot"]
    drops = [
        w.sign_transaction(
            {"type": "airdrop", "to": w.public_key, "amount": 1000 * KOII, "recent_slot": slot}
        )
        for w in wallets
    ]
    answers = httpx.post(url + "/tx", content=orjson.dumps(drops), timeout=120).json()
    assert all("error" not in a for a in answers), answers[:2]
    slot = httpx.get(url + "/slot", timeout=10).json()["slot"]
    sink = Keypair.generate().public_key
    return [
        orjson.dumps(
            wallets[i % len(wallets)].sign_transaction(
                {"type": "transfer", "to": sink, "amount": i + 1, "recent_slot": slot}
            )
        )
        for i in range(count)
    ]


def kvstore_ceiling(count: int, seconds: float, folder: Path) -> dict[str, Any]:
    network = ValidatorNetwork(folder / f"kv{count}", count=count)
    network.create()
    engines = []
    try:
        for validator in network.validators:
            log = open(validator.home / "engine.log", "ab")
            engines.append(
                subprocess.Popen(
                    [
                        cometbft_binary(),
                        "node",
                        "--home",
                        str(validator.home / "engine"),
                        "--proxy_app=kvstore",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        network.wait_height(3, timeout=120)
        rpc = network.validators[0].rpc
        start, end = asyncio.run(rpc_load(rpc + "/", seconds, batch=50, concurrency=16))
        time.sleep(3)
        txs, blocks = committed_in_window(rpc, start, end)
        return {"rate": txs / (end - start), "blocks": blocks / (end - start), "txs": txs}
    finally:
        for engine in engines:
            engine.terminate()
        for engine in engines:
            engine.wait(30)


def pykoii_network(count: int, seconds: float, folder: Path, total: int) -> dict[str, Any]:
    with ValidatorNetwork(folder / f"pykoii{count}", count=count, workers=1, ack_timeout=60) as network:
        url, rpc = network.validators[0].url, network.validators[0].rpc
        envelopes = signed_transfers(url, total)
        half = total // 2
        saturated = asyncio.run(post_load(url, envelopes[:half], seconds, batch=100, concurrency=16))
        time.sleep(3)
        txs, blocks = committed_in_window(rpc, saturated["start"], saturated["end"])
        saturated["committed"] = txs / (saturated["end"] - saturated["start"])
        saturated["blocks"] = blocks / (saturated["end"] - saturated["start"])
        rate = max(10.0, saturated["rate"] / 2)
        paced = asyncio.run(post_load(url, envelopes[half:], seconds, batch=10, concurrency=0, rate=rate))
        paced["offered"] = rate
        return {"saturated": saturated, "half": paced}


def sequencer(seconds: float, folder: Path, total: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(folder / "sequencer.log", "ab")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykoii.cli",
            "ledger",
            "serve",
            "--devnet",
            "--data",
            str(folder / "seq"),
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, "the sequencer did not start"
                time.sleep(0.2)
        envelopes = signed_transfers(url, total)
        return asyncio.run(post_load(url, envelopes, seconds, batch=100, concurrency=16))
    finally:
        server.terminate()
        server.wait(30)


def round_on_validators(nodes: int, folder: Path) -> Any:
    """``bench_round``'s whole round of ``nodes`` nodes (fund, stake, proofs, votes, the chunked list,
    payout) driven through validator-1's HTTP API of a 4-validator network."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_round

    bench_round.SLOT_MS = 450  # a slot is a block here (about 450 ms): windows are sized in blocks
    with ValidatorNetwork(folder / "round", count=4, workers=1, ack_timeout=120) as network:
        first = network.validators[0]
        ledger = bench_round.Ledger.__new__(bench_round.Ledger)
        ledger.folder = first.home / "ledger"
        ledger.url = first.url
        ledger.process = first.process.popen
        ledger.http = httpx.Client(base_url=first.url, timeout=300)
        try:
            return bench_round._round(ledger, bench_round.Run(nodes))
        finally:
            ledger.http.close()


def round_text(run: Any) -> str:
    if run is None:
        return ""
    phases = ", ".join(
        f"{name} {phase.seconds:.1f} s ({phase.transactions:,} tx)" for name, phase in run.phases.items()
    )
    return (
        f"A {run.nodes:,}-node round on 4 validators (`bench_round`'s round through validator-1's HTTP API; {run.windows}, "
        f"a slot being a block): {'**paid**' if run.paid else '**not paid**'}; {phases}; {run.log_entries:,} log entries."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="load duration per run (default 15)")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--round-nodes", type=int, default=10_000, help="nodes of the round on 4 validators (0: skip)"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pykoii-bench-validators-"))
    total = 40_000
    try:
        kv = {n: kvstore_ceiling(n, args.seconds, folder) for n in (1, 4)}
        ours = {n: pykoii_network(n, args.seconds, folder, total) for n in (1, 4)}
        seq = sequencer(args.seconds, folder, total)
        run = round_on_validators(args.round_nodes, folder) if args.round_nodes else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for n in (1, 4):
        s, h = ours[n]["saturated"], ours[n]["half"]
        rows.append(
            f"| {n} | {kv[n]['rate']:,.0f} | {s['committed']:,.0f} | {s['rate']:,.0f} | {s['committed'] / kv[n]['rate']:.2f}× "
            f"| {s['p50']:.2f} / {s['p99']:.2f} | {h['offered']:,.0f} → {h['rate']:,.0f} | {h['p50']:.2f} / {h['p99']:.2f} | {s['blocks']:.1f} |"
        )
    text = f"""{SECTION}

Measured {time.strftime("%Y-%m-%d")} on {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}, {engine_version(cometbft_binary())}), all in one run, with `.venv/bin/python benchmarks/bench_validators.py`. Every engine, application, signature worker and the load generator share these cores. Load goes to validator-1 only: for kvstore as JSON-RPC batches of 50 `broadcast_tx_sync` (16 concurrent); for pykoii as `POST /tx` batches of 100 signed transfers (16 concurrent), each answered after its block is committed and the next block built on it. Committed tx/s counts the `num_txs` of the blocks whose time lies in the {args.seconds:.0f} s load window; latency is send → committed receipt. "Half load" offers half the saturated acknowledged rate, open loop, in batches of 10.

| validators | kvstore ceiling tx/s | pykoii committed tx/s | pykoii acked tx/s | pykoii / kvstore | p50 / p99 s (saturated) | half load: offered → acked tx/s | p50 / p99 s (half load) | blocks/s |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Single sequencer (`pykoii ledger serve --workers 1`), same transfers, same client, same run: **{seq["rate"]:,.0f} tx/s** acknowledged (durable), p50 {seq["p50"]:.2f} s / p99 {seq["p99"]:.2f} s.

What bounds it: with 4 validators every transaction is verified (ed25519, about 40-100 µs) by all four applications and applied by all four, and the four engines, four applications and the load generator share 2 cores; with 1 validator, the application's one event loop (JSON decode, CheckTx bookkeeping, apply, the SQLite commit per block) and the engine's mempool/RPC. Latency is at least two block intervals by design (the block, then the next block that confirms its app hash). {round_text(run)}
"""
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_ingest import write_section

        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
