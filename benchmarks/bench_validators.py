# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""The validator network's throughput, against the engine's own ceiling, all in one run.

1. CometBFT v0.38.25 with its Go ``kvstore`` application, 1 and 4 validators, twice: built into the
   engine's process (the issue's ceiling), and as its own process per validator over the ABCI socket
   (``abci-cli kvstore``, the fair ceiling for an out-of-process application): unique
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
import contextlib
import itertools
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


async def rpc_load(
    rpc: str, next_tx: Callable[[], bytes | None], seconds: float, batch: int, concurrency: int
) -> tuple[float, float, int]:
    """Transactions from ``next_tx`` broadcast as JSON-RPC batches of ``broadcast_tx_sync`` to one
    engine's RPC, ``concurrency`` batches in flight, for ``seconds`` (or until ``next_tx`` runs
    out); (start, end, transactions sent). The same client loads kvstore and pykoii."""
    sent = 0
    stop_at = time.time() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while time.time() < stop_at:
            calls = []
            for _ in range(batch):
                tx = next_tx()
                if tx is None:
                    break
                sent += 1
                calls.append(
                    {
                        "jsonrpc": "2.0",
                        "id": sent,
                        "method": "broadcast_tx_sync",
                        "params": {"tx": base64.b64encode(tx).decode()},
                    }
                )
            if not calls:
                return
            try:
                async with session.post(rpc, data=orjson.dumps(calls)) as response:
                    await response.read()
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)

    start = time.time()
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120), connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return start, time.time(), sent


def kv_txs() -> Callable[[], bytes | None]:
    """Unique ``key=value`` transactions for kvstore, without end."""
    counter = itertools.count()
    return lambda: f"k{(n := next(counter))}={n}".encode()


def from_list(txs: list[bytes]) -> Callable[[], bytes | None]:
    items = iter(txs)
    return lambda: next(items, None)


# --- CPU time per process --------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, command name, CPU seconds used so far)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def left_behind(mark: str) -> list[int]:
    """Processes still running whose environment holds ``PYKOII_BENCH_RUN=mark``: every program this
    run started (validators, engines, their signature workers, kvstores, the sequencer) inherits it
    (``/proc/PID/environ`` is the environment a program was started with, so processes this one
    forks without exec, such as bench_round's signers, do not show it)."""
    needle = f"PYKOII_BENCH_RUN={mark}".encode()
    found = []
    for pid, (parent, _, _) in _processes().items():
        try:
            if pid == os.getpid() or needle not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            if parent == os.getpid() and b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # multiprocessing's helper of this very process: it ends when this one does
        except OSError:
            continue
        found.append(pid)
    return found


def cpu_by_role(roots: list[int]) -> dict[str, float]:
    """CPU seconds so far of the process trees under ``roots``, by role: ``engine`` (cometbft),
    ``app`` (the root pykoii process), ``verify`` (its signature workers); plus ``client`` (this
    process, the load generator)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    roles = {"engine": 0.0, "app": 0.0, "verify": 0.0}
    for root in roots:
        stack = [root]
        while stack:
            pid = stack.pop()
            stack.extend(children.get(pid, ()))
            if pid not in table:
                continue
            _, name, seconds = table[pid]
            role = "engine" if name.startswith("cometbft") else "app" if pid == root else "verify"
            roles[role] += seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    roles["client"] = usage.ru_utime + usage.ru_stime
    return roles


def cpu_per_tx(before: dict[str, float], after: dict[str, float], txs: int) -> dict[str, float]:
    """Microseconds of CPU per committed transaction, by role."""
    return {role: (after[role] - before[role]) / max(txs, 1) * 1e6 for role in after}


def mempool_backlog(rpc: str) -> int:
    """Transactions waiting in the engine's mempool (the load outran the chain if > 0)."""
    result = httpx.get(rpc + "/num_unconfirmed_txs", timeout=10).json()["result"]
    return int(result["n_txs"])


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
    deadline = time.time() + 120
    while True:  # a network just started may answer 503 until its first blocks are committed
        answers = httpx.post(url + "/tx", content=orjson.dumps(drops), timeout=120).json()
        if isinstance(answers, list) and all("error" not in a for a in answers):
            break
        assert time.time() < deadline, f"the airdrops were refused: {str(answers)[:300]}"
        time.sleep(1)
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


LOAD_BATCH = 50
LOAD_CONCURRENCY = 128
"""Batches in flight. The engine answers the calls of one JSON-RPC batch one after the other, each
after its ``CheckTx`` answer, and its ABCI socket client flushes ``CheckTx`` requests to an
out-of-process application on a 20 ms timer: with 16 batches in flight pykoii's CheckTx stream
was bounded by that (16 transactions per flush), not by the application."""


def saturate(
    rpc: str, roots: list[int], next_tx: Callable[[], bytes | None], seconds: float
) -> dict[str, Any]:
    """Load one engine's RPC for ``seconds`` (``rpc_load``, batches of 50, 16 in flight); committed
    tx/s from the blocks whose time lies in the load window, and CPU per committed tx by role."""
    before = cpu_by_role(roots)
    start, end, sent = asyncio.run(
        rpc_load(rpc + "/", next_tx, seconds, batch=LOAD_BATCH, concurrency=LOAD_CONCURRENCY)
    )
    after = cpu_by_role(roots)
    backlog = mempool_backlog(rpc)
    time.sleep(3)
    txs, blocks = committed_in_window(rpc, start, end)
    return {
        "rate": txs / (end - start),
        "blocks": blocks / (end - start),
        "txs": txs,
        "sent": sent,
        "backlog": backlog,
        "cpu": cpu_per_tx(before, after, txs),
        "seconds": end - start,
    }


ABCI_CLI = str(ROOT / ".bin" / "abci-cli")


def abci_cli_binary() -> str:
    """CometBFT's ``abci-cli`` (same version as the engine), built into ``.bin/`` on first use
    (``make abci-cli``; ``make setup`` and ``make test`` do not build it)."""
    if not os.access(ABCI_CLI, os.X_OK):
        subprocess.run(["make", "-C", str(ROOT), "abci-cli"], check=True)
    return ABCI_CLI


def kvstore_ceiling(count: int, seconds: float, folder: Path, *, socket: bool = False) -> dict[str, Any]:
    """The engine's kvstore on ``count`` validators, saturated by ``saturate``: built into the
    engine's process (``--proxy_app=kvstore``, no ABCI socket), or with ``socket`` as its own
    process per validator (``abci-cli kvstore``, persisted in goleveldb) reached over the same
    ABCI unix socket as pykoii's application."""
    network = ValidatorNetwork(folder / f"kv{'socket' if socket else ''}{count}", count=count)
    network.create()
    processes = []
    try:
        for validator in network.validators:
            log = open(validator.home / "engine.log", "ab")
            if socket:
                sock = validator.home / "app.sock"  # the engine's proxy_app (init_home)
                processes.append(
                    subprocess.Popen(
                        [
                            abci_cli_binary(),
                            "kvstore",
                            "--address",
                            f"unix://{sock.resolve()}",
                            "--persist",
                            str(validator.home / "kvstore"),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                deadline = time.time() + 30
                while not sock.exists():
                    assert time.time() < deadline, f"abci-cli kvstore did not open {sock}"
                    time.sleep(0.05)
            engine = [cometbft_binary(), "node", "--home", str(validator.home / "engine")]
            processes.append(
                subprocess.Popen(
                    engine if socket else [*engine, "--proxy_app=kvstore"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        network.wait_height(3, timeout=120)
        return saturate(network.validators[0].rpc, [p.pid for p in processes], kv_txs(), seconds)
    finally:  # the engines first: one whose application went away first may not stop
        engines = [p for p in processes if p.args[0] != ABCI_CLI]
        for group in (engines, [p for p in processes if p not in engines]):
            for process in group:
                process.terminate()
            for process in group:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)


def accepted_total(url: str) -> int:
    """Transactions the validator accepted and logged so far (its ``/metrics`` counter)."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("pykoii_ledger_tx_accepted_total "):
            return int(line.split()[1])
    raise AssertionError("no pykoii_ledger_tx_accepted_total in /metrics")


def pykoii_network(count: int, seconds: float, folder: Path, workers: int) -> dict[str, Any]:
    """pykoii on ``count`` validators: saturated the way kvstore is (same client, same RPC method,
    same batches, committed tx/s from the blocks), then ``POST /tx`` latency at half that rate."""
    with ValidatorNetwork(folder / f"pykoii{count}", count=count, workers=workers, ack_timeout=60) as network:
        first = network.validators[0]
        roots = [v.process.popen.pid for v in network.validators]
        envelopes = signed_transfers(first.url, int(seconds * 8000))
        accepted = accepted_total(first.url)
        saturated = saturate(first.rpc, roots, from_list(envelopes), seconds)
        saturated["exhausted"] = saturated["sent"] >= len(envelopes)
        drain_until = time.time() + 120  # the backlog drains: what was sent is then decided
        while mempool_backlog(first.rpc) and time.time() < drain_until:
            time.sleep(1)
        saturated["refused"] = saturated["sent"] - (accepted_total(first.url) - accepted)
        rate = max(10.0, saturated["rate"] / 2)
        paced_txs = signed_transfers(first.url, int(rate * seconds) + 100)
        paced = asyncio.run(post_load(first.url, paced_txs, seconds, batch=10, concurrency=0, rate=rate))
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
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


def round_on_validators(nodes: int, folder: Path) -> Any:
    """``bench_round``'s whole round of ``nodes`` nodes (fund, stake, proofs, votes, the chunked list,
    payout) driven through validator-1's HTTP API of a 4-validator network."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_round

    with ValidatorNetwork(folder / "round", count=4, workers=1, ack_timeout=120) as network:
        bench_round.SLOT_MS = network.slot_ms  # slots of the blocks' BFT time: windows sized in time
        first = network.validators[0]
        ledger = bench_round.Ledger.__new__(bench_round.Ledger)
        ledger.folder = first.home / "ledger"
        ledger.url = first.url
        ledger.process = first.process.popen
        ledger.http = httpx.Client(base_url=first.url, timeout=300)
        run = bench_round.Run(nodes)
        signers = bench_round.Signers(nodes)
        run.machine.start()
        try:
            return bench_round._round(ledger, signers, run)
        finally:
            run.machine.stop()
            signers.close()
            ledger.http.close()


def round_text(run: Any) -> str:
    if run is None:
        return ""
    phases = ", ".join(
        f"{name} {phase.seconds:.1f} s ({phase.transactions:,} tx"
        + (f", **{phase.refused_count:,} refused**)" if getattr(phase, "refused_count", 0) else ")")
        for name, phase in run.phases.items()
    )
    return (
        f"A {run.nodes:,}-node round on 4 validators (`bench_round`'s round through validator-1's HTTP API; {run.windows}, "
        f"slots of {ValidatorNetwork.slot_ms} ms of the blocks' time): {'**paid**' if run.paid else '**not paid**'}; ledger time {sum(p.seconds for p in run.phases.values()):.1f} s in all: {phases}; {run.log_entries:,} log entries."
    )


def cpu_text(cpu: dict[str, float]) -> str:
    parts = [f"{role} {cpu[role]:,.0f}" for role in ("engine", "app", "verify") if cpu.get(role)]
    return " / ".join(parts) + f" (client {cpu['client']:,.0f})"


def backlog_text(ours: dict[int, Any], counts: list[int]) -> str:
    idle = [n for n in counts if not ours[n]["saturated"]["backlog"]]
    if not idle:
        return "pykoii's windows ended with transactions waiting in the mempool (backlog > 0): the chain, not the client, set the rate."
    return f"With {', '.join(map(str, idle))} validator(s) the mempool was empty at the end of the window, so that rate may be the client's."


def bound_text(kv: dict[int, Any], kv_socket: dict[int, Any], ours: dict[int, Any], counts: list[int]) -> str:
    """What bounds each figure, from the CPU each transaction cost (the machine's cores are the
    budget: ``cores`` CPU-seconds per second, shared by every process of the run)."""
    cores = os.cpu_count() or 1
    lines = []
    for n in counts:
        k, ks, s = kv[n], kv_socket[n], ours[n]["saturated"]
        ours_total = sum(s["cpu"].values())
        kv_total = sum(k["cpu"].values())
        socket_total = sum(ks["cpu"].values())
        need = cores * 1e6 / (0.5 * k["rate"])
        lines.append(
            f"- {n} validator(s): a committed pykoii transaction cost {ours_total:,.0f} µs of CPU in all "
            f"(built-in kvstore: {kv_total:,.0f} µs; kvstore over the socket: {socket_total:,.0f} µs, of which its engines "
            f"{ks['cpu']['engine']:,.0f}), so {cores} cores allow at most {cores * 1e6 / ours_total:,.0f} tx/s "
            f"(measured {s['rate']:,.0f}; built-in kvstore at most {cores * 1e6 / kv_total:,.0f}, measured {k['rate']:,.0f}; "
            f"socket kvstore at most {cores * 1e6 / socket_total:,.0f}, measured {ks['rate']:,.0f}). "
            f"0.5× the built-in ceiling would need ≤ {need:,.0f} µs per transaction in all, of which the "
            f"signature workers alone take {s['cpu']['verify']:,.0f} µs and the engines {s['cpu']['engine']:,.0f} µs."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="load duration per run (default 15)")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--round-nodes", type=int, default=10_000, help="nodes of the round on 4 validators (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=1, help="signature workers per validator (default 1)")
    parser.add_argument(
        "--validators", default="1,4", help="validator counts to measure, comma-separated (default 1,4)"
    )
    args = parser.parse_args()
    # SIGTERM (``timeout``, a killed job) unwinds like Ctrl-C, so every network stops its processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = [int(n) for n in args.validators.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="pykoii-bench-validators-"))
    os.environ["PYKOII_BENCH_RUN"] = mark = folder.name
    try:
        kv = {n: kvstore_ceiling(n, args.seconds, folder) for n in counts}
        kv_socket = {n: kvstore_ceiling(n, args.seconds, folder, socket=True) for n in counts}
        ours = {n: pykoii_network(n, args.seconds, folder, args.workers) for n in counts}
        seq = sequencer(args.seconds, folder, int(args.seconds * 8000))
        run = round_on_validators(args.round_nodes, folder) if args.round_nodes else None
    finally:
        time.sleep(1)  # orphans of a process killed last are re-parented by then
        leftovers = left_behind(mark)
        print(f"processes left behind by the run: {len(leftovers)}", file=sys.stderr)
        for pid in leftovers:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                print(f"  killed {pid}: {command[:300]}", file=sys.stderr)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    rows, cpu_rows = [], []
    for n in counts:
        s, h = ours[n]["saturated"], ours[n]["half"]
        rows.append(
            f"| {n} | {kv[n]['rate']:,.0f} | {kv_socket[n]['rate']:,.0f} | {s['rate']:,.0f} | **{s['rate'] / kv[n]['rate']:.2f}×** | {s['rate'] / kv_socket[n]['rate']:.2f}× | {s['blocks']:.1f} "
            f"| {s['backlog']:,} | {s['refused']:,} | {h['offered']:,.0f} → {h['rate']:,.0f} | {h['p50']:.2f} / {h['p99']:.2f} |"
        )
        cpu_rows.append(
            f"| {n} | {cpu_text(kv[n]['cpu'])} | {cpu_text(kv_socket[n]['cpu'])} | {cpu_text(s['cpu'])} |"
        )
    exhausted = [n for n in counts if ours[n]["saturated"]["exhausted"]]
    text = f"""{SECTION}

Measured {time.strftime("%Y-%m-%d")} on {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}, {engine_version(cometbft_binary())}), all in one run, with `.venv/bin/python benchmarks/bench_validators.py --seconds {args.seconds:g} --workers {args.workers}` ({args.workers} signature worker(s) per validator). Every engine, application, signature worker and the load generator share these cores.

**Two ceilings.** The **built-in** kvstore (`cometbft node --proxy_app=kvstore`) is the one the issue's target names: CometBFT's Go kvstore inside the engine's process, called directly (no ABCI socket), in memory. The **socket** kvstore is the same Go application as its own process per validator (`abci-cli kvstore --address unix://… --persist DIR`, v0.38.25, built into `.bin/` by `make bench` or by this script on first use), reached over the same ABCI unix socket as pykoii's application and persisting its state in goleveldb: what the engine allows an out-of-process application that does no work of its own (no signature, tiny transactions). **Throughput, all three loaded the same way**: one Python client sends JSON-RPC batches of {LOAD_BATCH} `broadcast_tx_sync` to validator-1's engine RPC, {LOAD_CONCURRENCY} batches in flight, for {args.seconds:g} s (kvstore: unique `key=value`; pykoii: unique signed transfers, about 300 bytes, pre-signed); committed tx/s counts the `num_txs` of the blocks whose time lies in the load window, for both. "Backlog" is the engine's mempool at the end of the window (> 0: the client offered more than the chain committed, so the figure is the chain's, not the client's{"; the pre-signed transactions ran out for " + ", ".join(map(str, exhausted)) + " validator(s), so that figure is a lower bound" if exhausted else ""}). "Not accepted" counts sent transactions the ledger did not log (mempool full, or refused) once the backlog drained. **Latency** is pykoii's own path: `POST /tx` to validator-1 (batches of 10, open loop at half the saturated committed rate), each answered after its block is committed and the next block built on it; p50/p99 from send to committed receipt.

| validators | built-in kvstore tx/s | socket kvstore tx/s | pykoii committed tx/s | pykoii / built-in (the issue's target: ≥ 0.5×) | pykoii / socket kvstore | pykoii blocks/s | backlog | not accepted | half load: offered → acked tx/s | p50 / p99 s (half load) |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

CPU per committed transaction in the saturated window, µs, summed over all validators (engine = the `cometbft` processes, app = the pykoii application processes, verify = their signature workers; client = the load generator):

| validators | built-in kvstore | socket kvstore | pykoii |
|---:|---|---|---|
{chr(10).join(cpu_rows)}

Single sequencer (`pykoii ledger serve --workers 1`), `POST /tx` batches of 100 signed transfers, 16 in flight, same run: **{seq["rate"]:,.0f} tx/s** acknowledged (durable), p50 {seq["p50"]:.2f} s / p99 {seq["p99"]:.2f} s.

What bounds it: CPU. {backlog_text(ours, counts)} Each rate is then the cores divided by the CPU one committed transaction costs across every process:

{bound_text(kv, kv_socket, ours, counts)}

Every validator verifies (ed25519 in PyNaCl, in its worker processes) and applies every transaction, so on one machine the 4-validator cost is about four times the 1-validator cost, while kvstore's engine-only cost grows less. The engines' share is larger than with kvstore because an out-of-process application is reached over the ABCI socket (one `CheckTx` request and answer per transaction, the client's 20 ms flush timer) and pykoii's larger transactions and indexed events are stored and indexed. Latency is at least two block intervals by design (the block, then the next block that confirms its app hash).

{round_text(run)}
"""
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_ingest import write_section

        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
