# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""A whole round of an N-node task through a real ``pykoii ledger serve``: each phase's ledger time.

For each size (default 10,000 and 30,000 nodes; ``--sizes 10000,30000,100000``) a fresh ledger
service is started as its own process (100 ms slots, devnet, 2 signature workers, SQLite WAL with
``synchronous=FULL``); this process funds N staking keys, creates a task whose windows are sized for
N from the funding rate (``windows_for``: a healthy ledger is never shown late), stakes them all, and
then drives one round as the nodes would, 1 % of them faulty:

1. ``submit``: N proofs (the faulty ones garbage), in the round's submission window, then
   ``reveal``: N beacon secrets in the reveal window (a refused one is counted and reported);
2. ``first vote``: the first ``audit_submission`` of the round, alone (it fixes the round's beacon
   and audit ring);
3. ``audit``: every assigned auditor of a faulty node votes false (``sample_size`` votes each);
4. ``list``: the selected node sends the round's distribution list (the default rule);
5. ``payout``: one ``payout`` transaction pays and slashes every key of the list.

Every envelope is signed before its phase's clock starts; a phase's *ledger time* is the wall time
from sending its first request to the durable acknowledgement of its last (batches of 500
envelopes over 4 connections), and the service's CPU time over the same span is reported beside it
(the machine is shared, so CPU time is the steadier figure). Also reported: tx/s per phase, the
growth ratio of each phase between consecutive sizes (1.0 = linear), the service's RSS and its
growth per staked node, and the log's growth over the round (bytes of log rows written).

Writes the "## Rounds" section of BENCHMARKS.md. Run::

    .venv/bin/python benchmarks/bench_round.py [--sizes 10000,30000] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from bench_ingest import free_port, tree_cpu, write_section

from pykoii.keys import Keypair
from pykoii.ledger import (
    LedgerParams,
    LedgerState,
    TaskState,
    apply_transaction,
    audit_ring,
    decode_transaction,
    default_distribution_for,
    from_plain,
    selected_submitter,
    to_plain,
)
from pykoii.ledger.audits import beacon_commitment
from pykoii.ledger.codec import derive_address
from pykoii.ledger.distribution import distribution_transactions
from pykoii.ledger.rounds import (
    audit_window,
    distribution_window,
    reveal_window,
    settle_slot,
    submission_window,
)

ROOT = Path(__file__).resolve().parents[1]
KOII = 1_000_000_000
SECTION = "## Rounds"
SLOT_MS = 100
BATCH = 500
CONNECTIONS = 4
SLICE = 16_000
"""Envelopes signed at a time (each with a fresh ``recent_slot``) and sent before the next are signed."""
FAULTY_SHARE = 100
"""One node in this many is faulty (1 %)."""
PHASES = ("submit", "reveal", "first vote", "audit", "list", "payout")


@dataclass
class Phase:
    transactions: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    body_bytes: int = 0
    """Bytes of the requests sent."""
    answer_bytes: int = 0
    """Bytes of the answers (receipts)."""
    refused: str = ""
    refused_count: int = 0
    """Envelopes refused (each one's error, counted; ``refused`` is the first)."""

    @property
    def tx_per_s(self) -> float:
        return self.transactions / self.seconds if self.seconds else float("nan")


@dataclass
class Run:
    nodes: int
    phases: dict[str, Phase] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_staked_mb: float = 0.0
    rss_end_mb: float = 0.0
    log_bytes: int = 0
    log_entries: int = 0
    paid: bool = False
    windows: str = ""
    baseline_tx_per_s: float = 0.0
    """Same-run baseline: airdrops (the simplest transaction) acknowledged per second while funding."""

    @property
    def ledger_seconds(self) -> float:
        return sum(p.seconds for p in self.phases.values())

    @property
    def server_cpu(self) -> float:
        return sum(p.server_cpu for p in self.phases.values())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Ledger:
    """A ``pykoii ledger serve`` process on a free port, in its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pykoii.cli",
                "ledger",
                "serve",
                "--data",
                str(folder),
                "--devnet",
                "--slot-ms",
                str(SLOT_MS),
                "--port",
                str(self.port),
                "--workers",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.http = httpx.Client(base_url=self.url, timeout=300)
        for _ in range(300):
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("the ledger did not start")

    def slot(self) -> int:
        return int(self.http.get("/slot").json()["slot"])

    def wait_for_slot(self, slot: int) -> None:
        while (now := self.slot()) < slot:
            time.sleep(max(0.02, (slot - now) * SLOT_MS / 1000 - 0.05))

    def task(self, task_id: str) -> TaskState:
        """The task's public state as a node reads it (submissions and stakes included)."""
        plain = self.http.get(
            f"/tasks/{task_id}",
            params={"is_submission_required": "true", "is_stake_list_required": "true"},
        ).json()
        plain.pop("current_round", None)
        return from_plain(TaskState, plain)

    def log_rows(self, after: int) -> tuple[int, int]:
        """``(entries, bytes)`` of the log rows with ``seq > after``."""
        with sqlite3.connect(f"file:{self.folder / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(length(tx) + length(receipt) + length(signature) "
                "+ length(tx_id) + length(prev_hash) + length(entry_hash) + 16), 0) FROM log WHERE seq > ?",
                (after,),
            ).fetchone()
        return int(count), int(size)

    def seq(self) -> int:
        return int(self.http.get("/slot").json()["seq"])

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def _post_all(url: str, bodies: list[bytes]) -> tuple[int, int, list[Any]]:
    """Post the bodies over ``CONNECTIONS`` connections: ``(accepted, answer bytes, errors)``."""
    accepted, answer_bytes, errors = 0, 0, []
    position = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, answer_bytes, position
        while position < len(bodies):
            body = bodies[position]
            position += 1
            async with session.post(url + "/tx", data=body) as response:
                raw = await response.read()
            answer_bytes += len(raw)
            answer = orjson.loads(raw)
            for item in answer if isinstance(answer, list) else [answer]:
                if "error" in item:
                    errors.append(item)
                else:
                    accepted += 1

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTIONS), timeout=timeout
    ) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
    return accepted, answer_bytes, errors


def batches(envelopes: list[dict[str, Any]], max_bytes: int = 1 << 20) -> list[bytes]:
    """Request bodies of at most ``BATCH`` envelopes and about ``max_bytes`` (the service takes 4 MiB)."""
    bodies, part, size = [], [], 0
    for envelope in envelopes:
        encoded = orjson.dumps(envelope)
        if part and (len(part) >= BATCH or size + len(encoded) > max_bytes):
            bodies.append(b"[" + b",".join(part) + b"]")
            part, size = [], 0
        part.append(encoded)
        size += len(encoded) + 1
    if part:
        bodies.append(b"[" + b",".join(part) + b"]")
    return bodies


def send(
    ledger: Ledger, envelopes: list[dict[str, Any]], phase: Phase | None = None, may_refuse: bool = False
) -> None:
    """Post pre-signed envelopes in batches; add the time, CPU and bytes to ``phase``; every one must
    be accepted, unless ``may_refuse``: then the first refusal is recorded in ``phase.refused`` (a
    list too big for one request, before lists were chunked)."""
    bodies = batches(envelopes)
    cpu = tree_cpu(ledger.process.pid)
    started = time.perf_counter()
    accepted, answer_bytes, errors = asyncio.run(_post_all(ledger.url, bodies))
    elapsed = time.perf_counter() - started
    if phase is not None:
        phase.seconds += elapsed
        phase.server_cpu += tree_cpu(ledger.process.pid) - cpu
        phase.transactions += accepted
        phase.body_bytes += sum(len(b) for b in bodies)
        phase.answer_bytes += answer_bytes
        if errors and may_refuse:
            phase.refused_count += len(errors)
            phase.refused = phase.refused or f"{errors[0]['error']}: {errors[0]['message'][:120]}"
            return
    if errors:
        raise SystemExit(f"{len(errors)} refused, first: {errors[0]}")


def signed(ledger: Ledger, keys: list[Keypair], bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    slot = ledger.slot()
    return [
        key.sign_transaction({**body, "recent_slot": slot}) for key, body in zip(keys, bodies, strict=True)
    ]


def send_signed(
    ledger: Ledger,
    pairs: list[tuple[Keypair, dict[str, Any]]],
    phase: Phase | None,
    slice_size: int = SLICE,
    may_refuse: bool = False,
    keep_going: bool = False,
) -> None:
    """Sign and send in slices, so that every envelope's ``recent_slot`` is fresh when it arrives
    (the replay horizon is 150 slots = 15 s: a slice is signed in about a second and sent in two,
    even on a crowded machine); only the sending is timed. Between slices the ledger idles (its
    pipeline drains), which counts in the phase: slices are big so that this stays small."""
    for start in range(0, len(pairs), slice_size):
        part = pairs[start : start + slice_size]
        send(ledger, signed(ledger, [k for k, _ in part], [b for _, b in part]), phase, may_refuse)
        if phase is not None and phase.refused and not keep_going:
            return


MARGIN = 4
"""The submission and reveal windows each give N envelopes ``MARGIN`` times the time the funding
took just before, signing and sending (this process signs each slice inside the window; a proof or a
reveal costs the ledger up to about 1.5 times an airdrop): a healthy ledger is never shown late, even
if the machine gets busier in the meantime."""


def windows_for(nodes: int, rate: float) -> tuple[int, int]:
    """``(submission_window, audit_window)`` in slots for ``nodes`` signed and sent at ``rate`` per
    second. Reveals get the first half of the audit window (``reveal_slots``), so the audit window is
    twice the reveals' time and at least 150 slots: after its reveals, 7.5 s or more to read the
    round, recompute the ring and sign the votes."""
    slots = math.ceil(MARGIN * nodes / rate * 1000 / SLOT_MS)
    return max(40, slots), max(150, 2 * slots)


def in_process(nodes: int) -> dict[str, float]:
    """The same round applied straight to a ``LedgerState`` in this process (no HTTP, no signatures,
    no log): CPU seconds (``time.process_time``) of each phase's ``apply_transaction`` calls. Steadier
    than wall time on a shared machine; it measures the ledger's own per-round work."""
    state = LedgerState(
        params=LedgerParams(devnet=True, airdrop_limit=10**6 * KOII, airdrop_cooldown_slots=0)
    )
    manager, keys = (
        derive_address("bench", "manager"),
        [derive_address("bench", str(i)) for i in range(nodes)],
    )

    def run(bodies: list[dict[str, Any]], slot: int, signer: str | None = None) -> float:
        txs = [
            decode_transaction({"signer": signer or b.pop("signer"), "recent_slot": slot, **b})
            for b in bodies
        ]
        started = time.process_time()
        for tx in txs:
            apply_transaction(state, tx, slot)
        return time.process_time() - started

    run([{"type": "airdrop", "signer": k, "to": k, "amount": 3 * KOII} for k in keys], 0)
    run([{"type": "airdrop", "to": manager, "amount": 1000 * KOII}], 0, manager)
    sw = aw = 400
    create = {
        "type": "create_task",
        "task_name": "Bench round",
        "task_audit_program": "bafkbench",
        "total_bounty_amount": 100 * KOII,
        "bounty_amount_per_round": 10 * KOII,
        "round_time": sw + aw + 30,
        "submission_window": sw,
        "audit_window": aw,
        "minimum_stake_amount": KOII,
        "allowed_failed_distributions": 1,
    }
    run([create], 1, manager)
    task_id = next(iter(state.tasks))
    task = state.tasks[task_id]
    run([{"type": "stake", "signer": k, "task_id": task_id, "amount": 2 * KOII} for k in keys], 1)
    faulty = set(keys[::FAULTY_SHARE])
    head = {"task_id": task_id, "round": 0}
    took = {}
    slot = submission_window(task, 0).start
    secret = "ab" * 32  # one secret for every node: this run only measures the ledger's work
    took["submit"] = run(
        [
            {
                "type": "submit",
                "signer": k,
                **head,
                "submission_value": "garbage" if k in faulty else "bafy" + k,
                "commitment": beacon_commitment(task_id, 0, k, secret),
            }
            for k in keys
        ],
        slot,
    )
    slot = reveal_window(task, 0).start
    took["reveal"] = run([{"type": "reveal", "signer": k, **head, "secret": secret} for k in keys], slot)
    slot = audit_window(task, 0).start
    ring = audit_ring(None, task, 0)
    votes = [
        {"type": "audit_submission", "signer": a, **head, "candidate": c, "is_valid": False}
        for c in sorted(faulty)
        for a in ring.auditors_of(c)
    ]
    took["first vote"] = run(votes[:1], slot)
    took["audit"] = run(votes[1:], slot)
    slot = distribution_window(task, 0, 0).start
    chosen = selected_submitter(None, task, 0, 0)
    assert chosen is not None
    dist = default_distribution_for(task, 0)
    took["list"] = run(distribution_transactions(task_id, 0, dist.rewards, dist.slashes), slot, chosen)
    slot = settle_slot(task, 0, 0)
    took["payout"] = run([{"type": "payout", **head}], slot, manager)
    assert task.distributions_audit_record.get(0) == "PayoutSuccessful"  # type: ignore[call-overload]
    return took


IN_PROCESS_NOTE = (
    "The same round applied in this process straight to a `LedgerState` (`apply_transaction` only: no HTTP, "
    "signatures, log or receipts), CPU time by `time.process_time`, best of 2 runs per size: the ledger's "
    "own per-round work, steadier than wall time on a shared machine. Growth as above (1.00 = linear)."
)


def in_process_report(sizes: list[int], took: list[dict[str, float]]) -> str:
    lines = [
        "| phase (in process, CPU) | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name in (*PHASES, "whole round"):
        cells = []
        for i, t in enumerate(took):
            value = sum(t.values()) if name == "whole round" else t[name]
            cell = f"{value * 1000:,.1f} ms"
            if i:
                before = sum(took[i - 1].values()) if name == "whole round" else took[i - 1][name]
                cell += f" (growth {(value / before) / (sizes[i] / sizes[i - 1]):.2f})" if before else ""
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_size(nodes: int, folder: Path) -> Run:
    run = Run(nodes)
    ledger = Ledger(folder)
    try:
        return _round(ledger, run)
    finally:
        ledger.stop()


def _round(ledger: Ledger, run: Run) -> Run:
    nodes = run.nodes
    pid = ledger.process.pid
    run.rss_start_mb = rss_mb(pid)
    print(f"[{nodes}] keys…", flush=True)
    manager = Keypair.from_seed(b"\xff" * 32)
    keys = [Keypair.from_seed(i.to_bytes(32, "big")) for i in range(1, nodes + 1)]
    by_key = {k.public_key: k for k in keys}
    setup = Phase()
    started = time.perf_counter()
    send_signed(
        ledger,
        [(manager, {"type": "airdrop", "to": manager.public_key, "amount": 1000 * KOII})]
        + [(k, {"type": "airdrop", "to": k.public_key, "amount": 3 * KOII}) for k in keys],
        setup,
    )
    run.baseline_tx_per_s = setup.tx_per_s
    funding = time.perf_counter() - started
    print(f"[{nodes}] funded in {funding:.1f} s ({setup.tx_per_s:,.0f} tx/s sent)", flush=True)
    # This process signs the envelopes inside the windows too: size them from signing and sending.
    sw, aw = windows_for(nodes, (nodes + 1) / funding)
    round_time = sw + aw + 30
    run.windows = f"round_time {round_time}, submission_window {sw}, audit_window {aw} slots"
    receipt = ledger.http.post(
        "/tx",
        content=orjson.dumps(
            manager.sign_transaction(
                {
                    "type": "create_task",
                    "task_name": "Bench round",
                    "task_audit_program": "bafkbench",
                    "total_bounty_amount": 100 * KOII,
                    "bounty_amount_per_round": 10 * KOII,
                    "round_time": round_time,
                    "submission_window": sw,
                    "audit_window": aw,
                    "minimum_stake_amount": KOII,
                    "allowed_failed_distributions": 1,
                    "recent_slot": ledger.slot(),
                }
            )
        ),
    ).json()
    task_id = receipt["events"][0]["task_id"]
    send_signed(ledger, [(k, {"type": "stake", "task_id": task_id, "amount": 2 * KOII}) for k in keys], None)
    run.rss_staked_mb = rss_mb(pid)
    task = ledger.task(task_id)
    print(f"[{nodes}] staked; {run.windows}; now slot {ledger.slot()}", flush=True)

    faulty = {k.public_key for k in keys[::FAULTY_SHARE]}
    window = submission_window(task, 0)
    if ledger.slot() >= window.start:
        raise SystemExit(f"staking {nodes} nodes took longer than round 0; raise the windows")
    ledger.wait_for_slot(window.start)
    seq_before = ledger.seq()
    phases = {name: Phase() for name in PHASES}
    run.phases = phases
    send_signed(
        ledger,
        [
            (
                k,
                {
                    "type": "submit",
                    "task_id": task_id,
                    "round": 0,
                    "submission_value": "garbage" if k.public_key in faulty else "bafy" + k.public_key,
                    "commitment": beacon_commitment(task_id, 0, k.public_key, k.beacon_secret(task_id, 0)),
                },
            )
            for k in keys
        ],
        phases["submit"],
        may_refuse=True,
        keep_going=True,
    )
    print(
        f"[{nodes}] submit: {phases['submit'].seconds:.2f} s, {phases['submit'].refused_count} refused",
        flush=True,
    )
    reveals = [
        (k, {"type": "reveal", "task_id": task_id, "round": 0, "secret": k.beacon_secret(task_id, 0)})
        for k in keys
    ]
    ledger.wait_for_slot(reveal_window(task, 0).start)
    send_signed(ledger, reveals, phases["reveal"], may_refuse=True, keep_going=True)
    late = phases["reveal"].refused_count
    print(
        f"[{nodes}] reveal: {phases['reveal'].seconds:.2f} s, {late} refused {phases['reveal'].refused}",
        flush=True,
    )

    ledger.wait_for_slot(audit_window(task, 0).start)
    task = ledger.task(task_id)
    ring = audit_ring(None, task, 0)
    votes = [
        (
            by_key[auditor],
            {
                "type": "audit_submission",
                "task_id": task_id,
                "round": 0,
                "candidate": candidate,
                "is_valid": False,
            },
        )
        for candidate in sorted(faulty & set(ring.position))  # an unrevealed proof is not audited
        for auditor in ring.auditors_of(candidate)
    ]
    envelopes = signed(ledger, [k for k, _ in votes], [b for _, b in votes])
    send(ledger, envelopes[:1], phases["first vote"])
    send(ledger, envelopes[1:], phases["audit"])
    print(
        f"[{nodes}] votes: first {phases['first vote'].seconds * 1000:.0f} ms, "
        f"{len(votes) - 1} more {phases['audit'].seconds:.2f} s",
        flush=True,
    )

    list_window = distribution_window(task, 0, 0)
    ledger.wait_for_slot(audit_window(task, 0).stop)
    task = ledger.task(task_id)
    chosen = selected_submitter(None, task, 0, 0)
    assert chosen is not None
    dist = to_plain(default_distribution_for(task, 0))
    bodies = distribution_transactions(task_id, 0, dist["rewards"], dist["slashes"])
    ledger.wait_for_slot(list_window.start)
    # The commitment first, then the chunks (in any order, over several connections).
    send_signed(ledger, [(by_key[chosen], bodies[0])], phases["list"], may_refuse=True)
    send_signed(ledger, [(by_key[chosen], body) for body in bodies[1:]], phases["list"], may_refuse=True)
    print(
        f"[{nodes}] list: {len(bodies)} tx, {phases['list'].seconds:.2f} s {phases['list'].refused}",
        flush=True,
    )

    if not phases["list"].refused:
        ledger.wait_for_slot(settle_slot(task, 0, 0))
        send_signed(ledger, [(manager, {"type": "payout", "task_id": task_id, "round": 0})], phases["payout"])
        paid = ledger.http.get(f"/tasks/{task_id}", params={"is_distribution_required": "true"}).json()
        run.paid = paid["distributions_audit_record"].get("0") == "PayoutSuccessful"
        print(f"[{nodes}] payout: {phases['payout'].seconds * 1000:.0f} ms, paid={run.paid}", flush=True)
    run.log_entries, run.log_bytes = ledger.log_rows(seq_before)
    run.rss_end_mb = rss_mb(pid)
    return run


def ratio(runs: list[Run], name: str | None, index: int) -> str:
    """Growth of a phase from the previous size to this one, per node (1.00 = linear), of its wall
    time and of the service's CPU time."""
    if index == 0:
        return ""
    before, now = runs[index - 1], runs[index]
    if name is None:
        pairs = [(before.ledger_seconds, now.ledger_seconds), (before.server_cpu, now.server_cpu)]
    else:
        pa, pb = before.phases.get(name), now.phases.get(name)
        if pa is None or pb is None or pa.refused or pb.refused or not pa.seconds:
            return "n/a"
        pairs = [(pa.seconds, pb.seconds), (pa.server_cpu, pb.server_cpu)]
    scale = now.nodes / before.nodes
    wall, cpu = ((b / a) / scale if a else float("nan") for a, b in pairs)
    return f"{wall:.2f} wall, {cpu:.2f} CPU"


def report(runs: list[Run], command: str) -> str:
    header = "| phase | " + " | ".join(f"{r.nodes:,} nodes" for r in runs) + " |"
    lines = [header, "|---|" + "---:|" * len(runs)]
    for name in PHASES:
        cells = []
        for i, r in enumerate(runs):
            p = r.phases[name]
            if p.refused and not p.transactions:
                cells.append(f"refused: {p.refused.split(':')[0]}")
                continue
            text = f"{p.seconds * 1000:,.0f} ms" if p.seconds < 1 else f"{p.seconds:.2f} s"
            text += f" (CPU {p.server_cpu:.2f} s, {p.transactions:,} tx, {p.tx_per_s:,.0f} tx/s"
            growth = ratio(runs, name, i)
            text += f", growth {growth}" if growth else ""
            text += (
                f", **{p.refused_count:,} refused: {p.refused.split(':')[0]}**)" if p.refused_count else ")"
            )
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = []
    for i, r in enumerate(runs):
        growth = ratio(runs, None, i)
        state = "paid" if r.paid else "**not paid**"
        total.append(
            f"**{r.ledger_seconds:.2f} s** (CPU {r.server_cpu:.2f} s), {state}"
            + (f", growth {growth}" if growth else "")
        )
    lines.append("| **whole round** | " + " | ".join(total) + " |")
    lines.append(
        "| baseline, same run: airdrops (simplest tx) | "
        + " | ".join(f"{r.baseline_tx_per_s:,.0f} tx/s" for r in runs)
        + " |"
    )
    lines.append(
        "| list request bytes | " + " | ".join(f"{r.phases['list'].body_bytes:,}" for r in runs) + " |"
    )
    lines.append(
        "| payout receipt bytes | "
        + " | ".join(f"{r.phases['payout'].answer_bytes:,}" if r.paid else "—" for r in runs)
        + " |"
    )
    lines.append(
        "| log growth over the round | "
        + " | ".join(
            f"{r.log_bytes / 1e6:.1f} MB in {r.log_entries:,} entries ({r.log_bytes / r.nodes:,.0f} B/node)"
            for r in runs
        )
        + " |"
    )
    lines.append(
        "| service RSS: start / staked / after payout | "
        + " | ".join(f"{r.rss_start_mb:.0f} / {r.rss_staked_mb:.0f} / {r.rss_end_mb:.0f} MB" for r in runs)
        + " |"
    )
    lines.append(
        "| RSS per staked node (staked − start) / N | "
        + " | ".join(f"{(r.rss_staked_mb - r.rss_start_mb) * 1e6 / r.nodes:,.0f} B" for r in runs)
        + " |"
    )
    lines.append(
        "| RSS per node after the round (end − start) / N | "
        + " | ".join(f"{(r.rss_end_mb - r.rss_start_mb) * 1e6 / r.nodes:,.0f} B" for r in runs)
        + " |"
    )
    windows = "; ".join(f"{r.nodes:,}: {r.windows}" for r in runs)
    late = [
        f"{r.phases[name].refused_count:,} {name}s at {r.nodes:,} nodes"
        for r in runs
        for name in ("submit", "reveal")
        if r.phases[name].refused_count
    ]
    targets = [
        "- Refused (a proof or a reveal after its window, `WrongPhaseError`): "
        + (
            "none, at every size: every proof and every reveal arrived in its window."
            if not late
            else "**"
            + "; ".join(late)
            + "** (a refused proof is not in the round; an unrevealed one is judged invalid)."
        )
    ]
    big = next((r for r in runs if r.nodes == 100_000), None)
    if big is not None:
        met = "met" if big.paid and big.ledger_seconds < 15 else "**not met**"
        targets.append(
            f"- 100,000-node round paid: {'yes' if big.paid else '**no**'}, in {big.ledger_seconds:.2f} s of ledger "
            f"time (service CPU {big.server_cpu:.2f} s over 2 cores); target < 15 s: {met} in this run."
        )
        before = runs[runs.index(big) - 1] if runs.index(big) else None
        if before is not None:
            worst = {
                name: ratio(runs, name, runs.index(big)) for name in PHASES if not big.phases[name].refused
            }
            targets.append(
                f"- Growth per node from {before.nodes:,} to 100,000 (target ≤ 1.2): "
                + "; ".join(f"{name} {value}" for name, value in worst.items())
                + "."
            )
        targets.append(
            f"- Memory: the service's RSS grows by {(big.rss_end_mb - big.rss_start_mb) * 1e6 / big.nodes:,.0f} B per "
            f"staked node over a whole round ({(big.rss_staked_mb - big.rss_start_mb) * 1e6 / big.nodes:,.0f} B once "
            "staked: wallet, stake, node URL, replay-protection ids), the round's proofs, votes and paid list included."
        )
    target_text = "\n".join(targets)
    return f"""{SECTION}

`benchmarks/bench_round.py` — one whole round of an N-node task through a real `pykoii ledger serve` (its own
process: 100 ms slots, 2 signature workers, SQLite WAL with `synchronous=FULL`), 1 % of the nodes faulty, driven
from this process over HTTP (pre-signed in slices of {SLICE:,}, sent in batches of {BATCH} envelopes over {CONNECTIONS}
connections). A phase's time is from sending its first request to the durable acknowledgement of its last; CPU is
the service's (main process and signature workers) over the same span. Growth = (time ratio) / (node ratio) from the previous size: 1.00 is
linear. Run {time.strftime("%Y-%m-%d %H:%M")} UTC on {os.cpu_count()} cores ({platform.machine()},
{platform.python_implementation()} {platform.python_version()}) with `{command}`. **The machine was shared with
other engineers' test runs**, so wall times are noisy; CPU times are the steadier figure.

{chr(10).join(lines)}

Windows per size (the submission window and the audit window's first half, the reveals', each {MARGIN} times what
signing and sending N airdrops took just before): {windows}.

{target_text}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000", help="comma-separated node counts")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    for nodes in sizes:
        folder = Path(tempfile.mkdtemp(prefix="pykoii-round-"))
        try:
            runs.append(run_size(nodes, folder / "ledger"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    command = ".venv/bin/python benchmarks/bench_round.py" + (
        f" --sizes {args.sizes}" if args.sizes != "10000,30000" else ""
    )
    print("in process…", flush=True)
    took = [min((in_process(n) for _ in range(2)), key=lambda t: sum(t.values())) for n in sizes]
    text = report(runs, command) + "\n" + IN_PROCESS_NOTE + "\n\n" + in_process_report(sizes, took) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
