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

Every envelope is signed before its phase's clock starts (the proofs and reveals by ``Signers``,
processes on every core, just before their window opens, with a ``recent_slot`` read from the
ledger then: ``presign``); a phase's *ledger time* is the wall time from sending its first request
to the durable acknowledgement of its last (batches of 500 envelopes over 4 keep-alive connections,
requests pre-encoded), and the service's CPU time over the same span is reported beside it, and
this process's. What else ran on the machine meanwhile is measured (``Machine``) and said. Also reported: tx/s per phase, the
growth ratio of each phase between consecutive sizes (1.0 = linear), the service's RSS and its
growth per staked node, and the log's growth over the round (bytes of log rows written).

Writes the "## Rounds" section of BENCHMARKS.md. Run::

    .venv/bin/python benchmarks/bench_round.py [--sizes 10000,30000] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_ingest import RawHTTP, _proc_stat, free_port, tree_cpu, write_section

from pykoii.cli.ledger import settle_heap
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
from pykoii.ledger.types import REPLAY_HORIZON_SLOTS

ROOT = Path(__file__).resolve().parents[1]
KOII = 1_000_000_000
SECTION = "## Rounds"
SLOT_MS = 100
BATCH = 500
CONNECTIONS = 4
SLICE = 16_000
"""Setup only (funding, staking): envelopes signed at a time (each slice with a fresh ``recent_slot``)
and sent before the next are signed."""
SIGNERS = 2
"""Signing processes: the proofs and reveals are signed in them before their window opens (in a real
network each node signs on its own machine), on every core while the ledger waits."""
FAULTY_SHARE = 100
"""One node in this many is faulty (1 %)."""
PHASES = ("submit", "reveal", "first vote", "audit", "list", "payout")


@dataclass
class Phase:
    transactions: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    main_cpu: float = 0.0
    """The part of ``server_cpu`` in the service's main process (the rest: its signature workers)."""
    body_bytes: int = 0
    """Bytes of the requests sent."""
    answer_bytes: int = 0
    """Bytes of the answers (receipts)."""
    refused: str = ""
    refused_count: int = 0
    """Envelopes refused (each one's error, counted; ``refused`` is the first)."""
    client_cpu: float = 0.0
    """This process's CPU over the same span (sending, reading the answers)."""
    signed_slot: int = -1
    """Pre-signed phases (``presign``): the ``recent_slot`` of their first slice (the oldest)."""
    newest_slot: int = -1
    """... and of their last slice."""
    horizon_at_open: int = 0
    """Slots of the first slice's replay horizon left when sending began."""
    last_slot: int = 0
    """The slot once the last envelope was acknowledged."""
    seqs: tuple[int, int] = (-1, -1)
    """The ledger's last log seq before the phase's first request and after its last answer."""

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
    machine: Machine = field(default_factory=lambda: Machine())
    checkpoints: list[str] = field(default_factory=list)
    """The service's periodic checkpoints during the round: the phase whose entries the state
    covers up to, and in which its mark was logged ("between phases": taken in a pause)."""

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

    def __init__(self, folder: Path, checkpoint_every: int) -> None:
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
                "--checkpoint-every",
                str(checkpoint_every),
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

    def marks(self, after: int) -> list[tuple[int, int]]:
        """``(mark seq, seq it checkpoints)`` of the checkpoint marks logged after ``after``."""
        with sqlite3.connect(f"file:{self.folder / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT seq, tx FROM log WHERE seq > ? AND signature = ''", (after,)).fetchall()
        return [(int(seq), int(orjson.loads(tx)["at"])) for seq, tx in rows]

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


def requests_for(url: str, bodies: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """Whole HTTP/1.1 ``POST /tx`` requests, encoded before a phase's clock starts, each with its
    number of envelopes."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST /tx HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
    return [(head + b"Content-Length: %d\r\n\r\n" % len(body) + body, count) for body, count in bodies]


async def _post_all(url: str, requests: list[tuple[bytes, int]]) -> tuple[int, int, list[Any]]:
    """Send the requests over ``CONNECTIONS`` keep-alive connections (``bench_ingest.RawHTTP``: one
    request in flight per connection, answers read by ``Content-Length``): ``(accepted, answer
    bytes, errors)``. An answer is parsed only if its text holds ``"error"`` (every refusal does);
    a 200 answer without it is all receipts."""
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    accepted, answer_bytes, errors = 0, 0, []
    position = 0

    async def worker() -> None:
        nonlocal accepted, answer_bytes, position
        transport, connection = await loop.create_connection(RawHTTP, host, int(port))
        try:
            while position < len(requests):
                raw, count = requests[position]
                position += 1
                status, answer = await connection.request(raw)
                answer_bytes += len(answer)
                if status == 200 and b'"error"' not in answer:
                    accepted += count
                    continue
                parsed = orjson.loads(answer)
                for item in parsed if isinstance(parsed, list) else [parsed]:
                    if "error" in item:
                        errors.append(item)
                    else:
                        accepted += 1
        finally:
            transport.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return accepted, answer_bytes, errors


def batches(envelopes: list[bytes], max_bytes: int = 1 << 20) -> list[tuple[bytes, int]]:
    """Request bodies of at most ``BATCH`` encoded envelopes and about ``max_bytes`` (the service
    takes 4 MiB), each with its number of envelopes."""
    bodies: list[tuple[bytes, int]] = []
    part: list[bytes] = []
    size = 0
    for encoded in envelopes:
        if part and (len(part) >= BATCH or size + len(encoded) > max_bytes):
            bodies.append((b"[" + b",".join(part) + b"]", len(part)))
            part, size = [], 0
        part.append(encoded)
        size += len(encoded) + 1
    if part:
        bodies.append((b"[" + b",".join(part) + b"]", len(part)))
    return bodies


def send(
    ledger: Ledger, bodies: list[tuple[bytes, int]], phase: Phase | None = None, may_refuse: bool = False
) -> None:
    """Post request bodies of pre-signed envelopes; add the time, CPU (the service's and this
    process's) and bytes to ``phase``; every one must be accepted, unless ``may_refuse``: then each
    refusal is counted and the first recorded in ``phase.refused``."""
    requests = requests_for(ledger.url, bodies)
    first_seq = ledger.seq() if phase is not None else -1
    cpu, client = tree_cpu(ledger.process.pid), time.process_time()
    main = _proc_stat(ledger.process.pid)[0]
    started = time.perf_counter()
    accepted, answer_bytes, errors = asyncio.run(_post_all(ledger.url, requests))
    elapsed = time.perf_counter() - started
    if phase is not None:
        phase.seqs = (first_seq if phase.seqs[0] < 0 else phase.seqs[0], ledger.seq())
        phase.seconds += elapsed
        phase.server_cpu += tree_cpu(ledger.process.pid) - cpu
        phase.main_cpu += _proc_stat(ledger.process.pid)[0] - main
        phase.client_cpu += time.process_time() - client
        phase.transactions += accepted
        phase.body_bytes += sum(len(body) for body, _ in bodies)
        phase.answer_bytes += answer_bytes
        if errors and may_refuse:
            phase.refused_count += len(errors)
            phase.refused = phase.refused or f"{errors[0]['error']}: {errors[0]['message'][:120]}"
            return
    if errors:
        raise SystemExit(f"{len(errors)} refused, first: {errors[0]}")


def bench_keys(nodes: int) -> list[Keypair]:
    """Index 0: the task manager; index ``i`` (1 to ``nodes``): node ``i``'s staking key."""
    return [Keypair.from_seed(b"\xff" * 32)] + [
        Keypair.from_seed(i.to_bytes(32, "big")) for i in range(1, nodes + 1)
    ]


_KEYS: list[Keypair] = []
"""In a signing process: every key of the run (``bench_keys``)."""
PART = 2_000
"""Envelopes per job of a signing process."""


def _hold_keys(nodes: int) -> None:
    _KEYS[:] = bench_keys(nodes)


def _ready(_: int) -> int:
    time.sleep(0.01)  # long enough that every process gets some of the jobs
    return os.getpid()


def _sign_part(recent_slot: int, pairs: list[tuple[int, dict[str, Any]]]) -> list[bytes]:
    return [
        orjson.dumps(_KEYS[index].sign_transaction({**body, "recent_slot": recent_slot}))
        for index, body in pairs
    ]


def _beacon_part(task_id: str, round_number: int, indices: list[int]) -> list[tuple[str, str]]:
    out = []
    for index in indices:
        key = _KEYS[index]
        secret = key.beacon_secret(task_id, round_number)
        out.append((secret, beacon_commitment(task_id, round_number, key.public_key, secret)))
    return out


class Signers:
    """``SIGNERS`` processes that hold every key of the run and sign envelopes for this process (as
    the nodes would, each on its own machine): the big phases are signed before their window
    opens, and the window then measures the ledger."""

    def __init__(self, nodes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(
            SIGNERS, mp_context=context, initializer=_hold_keys, initargs=(nodes,)
        )
        # Wait until every process has started and holds the keys, so that ``rate`` (which sizes the
        # signing lead before a window) measures signing, not start-up.
        ready: set[int] = set()
        while len(ready) < SIGNERS:
            ready |= set(self.pool.map(_ready, range(4 * SIGNERS)))
        self.signed = 0
        self.seconds = 0.0

    @property
    def rate(self) -> float:
        """Envelopes signed per second so far (wall time, every signing process together)."""
        return self.signed / self.seconds if self.seconds else float("nan")

    def sign(self, recent_slot: int, pairs: list[tuple[int, dict[str, Any]]]) -> list[bytes]:
        """The encoded envelopes of ``(key index, body)`` pairs, in order, with ``recent_slot``."""
        started = time.perf_counter()
        parts = [pairs[i : i + PART] for i in range(0, len(pairs), PART)]
        out = [e for part in self.pool.map(_sign_part, [recent_slot] * len(parts), parts) for e in part]
        self.seconds += time.perf_counter() - started
        self.signed += len(pairs)
        return out

    def beacons(self, task_id: str, round_number: int, indices: list[int]) -> list[tuple[str, str]]:
        """``(beacon secret, proof commitment)`` of each key (they depend on no slot)."""
        parts = [indices[i : i + PART] for i in range(0, len(indices), PART)]
        jobs = self.pool.map(_beacon_part, [task_id] * len(parts), [round_number] * len(parts), parts)
        return [pair for part in jobs for pair in part]

    def close(self) -> None:
        self.pool.shutdown()


def send_in_slices(
    ledger: Ledger, signers: Signers, pairs: list[tuple[int, dict[str, Any]]], phase: Phase | None
) -> None:
    """Setup (funding, staking): sign a slice of ``SLICE`` with the slot just read, send it, and
    so on; only the sending is timed."""
    for start in range(0, len(pairs), SLICE):
        send(ledger, batches(signers.sign(ledger.slot(), pairs[start : start + SLICE])), phase)


def signed(ledger: Ledger, keys: list[Keypair], bodies: list[dict[str, Any]]) -> list[bytes]:
    """Envelopes signed in this process with the slot just read (the small phases), encoded."""
    slot = ledger.slot()
    return [
        orjson.dumps(key.sign_transaction({**body, "recent_slot": slot}))
        for key, body in zip(keys, bodies, strict=True)
    ]


def presign(
    ledger: Ledger, signers: Signers, pairs: list[tuple[int, dict[str, Any]]], opens: int, phase: Phase
) -> list[tuple[bytes, int]]:
    """The request bodies of ``pairs``, signed just before slot ``opens`` (a window's first slot).

    Signing starts once the slot reaches ``opens - lead``, ``lead`` being how long the signers took
    for as many envelopes so far, plus a tenth and 3 slots. It goes in slices of ``SLICE``, in the
    order they will be sent; each slice's ``recent_slot`` is the slot read just before it is signed,
    as a node does (``GET /slot``, then sign), never a slot still to come. An envelope is valid up
    to its ``recent_slot + 150`` (``REPLAY_HORIZON_SLOTS``), so the slices signed last, which are
    sent last, have the most room; a late one is refused by the ledger, counted and reported.
    Recorded in ``phase``: the first and the last slice's slot, and the slots of the first slice's
    horizon left when sending began."""
    lead = math.ceil(1.1 * len(pairs) / signers.rate * 1000 / SLOT_MS) + 3
    ledger.wait_for_slot(opens - lead)
    envelopes: list[bytes] = []
    for start in range(0, len(pairs), SLICE):
        phase.newest_slot = ledger.slot()
        phase.signed_slot = phase.newest_slot if start == 0 else phase.signed_slot
        envelopes += signers.sign(phase.newest_slot, pairs[start : start + SLICE])
    bodies = batches(envelopes)
    ledger.wait_for_slot(opens)
    phase.horizon_at_open = phase.signed_slot + REPLAY_HORIZON_SLOTS - ledger.slot()
    return bodies


MARGIN = 4
"""The submission and reveal windows each give N envelopes ``MARGIN`` times the time the service
took to acknowledge N pre-signed airdrops just before (a proof or a reveal costs the ledger up to
about 1.5 times an airdrop): a healthy ledger is never shown late, even if the machine gets busier
in the meantime. (Sending must end within the replay horizon anyway, ``presign``.)"""


def windows_for(nodes: int, rate: float) -> tuple[int, int]:
    """``(submission_window, audit_window)`` in slots for ``nodes`` acknowledged at ``rate`` per
    second. Reveals get the first half of the audit window (``reveal_slots``), so the audit window is
    twice the reveals' time and at least 150 slots: after its reveals, 7.5 s or more to read the
    round, recompute the ring and sign the votes."""
    slots = math.ceil(MARGIN * nodes / rate * 1000 / SLOT_MS)
    return max(40, slots), max(150, 2 * slots)


READ = "beacon + ring (a read, before the first vote)"
"""The in-process row of the round's beacon and audit ring, computed by a read (as a node's read of
its round in the audit window does) and cached: the first vote then stores that beacon."""
IN_PROCESS_BATCH = 500
"""Transactions decoded, then applied, at a time in ``in_process`` (as a service pass takes up to
500 envelopes): only the applying is timed, on transactions just built, not on N built in advance."""
IN_PROCESS_RUNS = 3
"""``in_process`` runs per size, interleaved across the sizes; each phase's figure is its best."""


def in_process(nodes: int) -> dict[str, float]:
    """The same round applied straight to a ``LedgerState`` in this process (no HTTP, no signatures,
    no log): CPU seconds (``time.process_time``) of each phase's ``apply_transaction`` calls. Steadier
    than wall time on a shared machine; it measures the ledger's own per-round work.

    Before each phase the heap is settled as ``ledger serve`` settles its own after start-up
    (``cli.ledger.settle_heap``: collect, freeze, young generation every 50,000 allocations). Without
    that, a full collection of this process's whole heap (every state object and transaction built
    so far, which the service's collector never scans) fell inside whichever phase happened to pass
    the allocation count: at 100,000 nodes it took 58 of the payout's 204 ms, against 27 of 54 at
    30,000, so a one-transaction phase grew about twice as fast as its work."""
    state = LedgerState(
        params=LedgerParams(devnet=True, airdrop_limit=10**6 * KOII, airdrop_cooldown_slots=0)
    )
    manager, keys = (
        derive_address("bench", "manager"),
        [derive_address("bench", str(i)) for i in range(nodes)],
    )

    def run(bodies: list[dict[str, Any]], slot: int, signer: str | None = None) -> float:
        settle_heap()
        took = 0.0
        for start in range(0, len(bodies), IN_PROCESS_BATCH):
            txs = [
                decode_transaction({"signer": signer or b.pop("signer"), "recent_slot": slot, **b})
                for b in bodies[start : start + IN_PROCESS_BATCH]
            ]
            started = time.process_time()
            for tx in txs:
                apply_transaction(state, tx, slot)
            took += time.process_time() - started
        return took

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
    # One secret for every node (this run only measures the ledger's work), new in each run: the
    # beacon differs, so no run finds the ring of an earlier one in the ledger's ring cache.
    secret = os.urandom(32).hex()
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
    settle_heap()
    started = time.process_time()
    ring = audit_ring(None, task, 0)  # a node's read of its round: the beacon and the ring, cached
    took[READ] = time.process_time() - started
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
    gc.unfreeze()  # what this run froze can be collected again
    return took


IN_PROCESS_NOTE = (
    "The same round applied in this process straight to a `LedgerState` (`apply_transaction` only: no HTTP, "
    "signatures, log or receipts), CPU time by `time.process_time`, each phase's best of "
    f"{IN_PROCESS_RUNS} runs per size, the sizes interleaved; transactions decoded {IN_PROCESS_BATCH} at a time "
    "(as a service pass), only their applying timed: the ledger's "
    "own per-round work, steadier than wall time on a shared machine. The heap is settled before each phase "
    "as `ledger serve` settles its own after start-up (`gc.freeze()`, young generation every 50,000 "
    "allocations), so no full collection of the benchmark's own heap falls inside a phase. Growth as above "
    "(1.00 = linear)."
)


def in_process_best(sizes: list[int]) -> list[dict[str, float]]:
    """Each phase's least CPU over ``IN_PROCESS_RUNS`` runs per size, the sizes interleaved (10k,
    30k, 100k, 10k, ...): the machine's speed drifts (other processes, a shared cache), and runs of
    one size after another put that drift into the growth between sizes."""
    best: list[dict[str, float]] = [{} for _ in sizes]
    for _ in range(IN_PROCESS_RUNS):
        for i, nodes in enumerate(sizes):
            for name, seconds in in_process(nodes).items():
                best[i][name] = min(best[i].get(name, seconds), seconds)
    return best


def in_process_report(sizes: list[int], took: list[dict[str, float]]) -> str:
    lines = [
        "| phase (in process, CPU) | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name in (*took[0], "whole round"):
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


def _cpu_by_process() -> dict[int, tuple[float, int]]:
    """``{pid: (CPU seconds, parent pid)}`` of every process (Linux ``/proc``)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            cpu, parent = _proc_stat(int(name))
            out[int(name)] = (cpu, parent)
    return out


def _ours(root: int) -> float:
    """CPU seconds of ``root`` and every process below it (this benchmark, its signing processes,
    the ledger service and its signature workers)."""
    table = _cpu_by_process()
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0.0, 0))[0]
        todo.extend(children.get(pid, []))
    return total


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``, all cores)."""
    with open("/proc/stat") as file:
        values = [int(v) for v in file.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Machine:
    """What else ran on the machine during one size's run, measured, not assumed: the load average
    (1 min) before and after, and the CPU that every process outside this benchmark used (the
    machine's busy time minus this process tree's), as cores on average over the run."""

    load_before: float = 0.0
    load_after: float = 0.0
    other_cores: float = 0.0
    _busy: float = 0.0
    _ours: float = 0.0
    _started: float = 0.0

    def start(self) -> None:
        self.load_before = os.getloadavg()[0]
        self._busy, self._ours, self._started = _busy_seconds(), _ours(os.getpid()), time.perf_counter()

    def stop(self) -> None:
        elapsed = time.perf_counter() - self._started
        others = (_busy_seconds() - self._busy) - (_ours(os.getpid()) - self._ours)
        self.other_cores = max(0.0, others / elapsed) if elapsed else 0.0
        self.load_after = os.getloadavg()[0]


QUIET_CORES = 0.15
"""Below this many cores of CPU used by other processes on average, a run counts as on a quiet machine."""


def machine_text(runs: list[Run]) -> str:
    """What the report says about the machine, from ``Run.machine`` of every size."""
    worst = max(r.machine.other_cores for r in runs)
    each = "; ".join(
        f"{r.nodes:,}: load {r.machine.load_before:.1f} before, {r.machine.load_after:.1f} after, "
        f"other processes {r.machine.other_cores:.2f} cores"
        for r in runs
    )
    if worst < QUIET_CORES:
        verdict = f"The machine was quiet: other processes used at most {worst:.2f} cores on average during a size's run"
    else:
        verdict = (
            f"**The machine was shared**: other processes used up to {worst:.2f} of the {os.cpu_count()} cores on "
            "average during a size's run, so wall times are noisy; CPU times are the steadier figure"
        )
    return f"{verdict} (measured from `/proc/stat` minus this benchmark's own processes, and the 1-minute load average: {each})."


def run_size(nodes: int, folder: Path, checkpoint_every: int) -> Run:
    run = Run(nodes)
    signers = Signers(nodes)
    ledger = Ledger(folder, checkpoint_every)
    run.machine.start()
    try:
        return _round(ledger, signers, run)
    finally:
        run.machine.stop()
        ledger.stop()
        signers.close()


def _round(ledger: Ledger, signers: Signers, run: Run) -> Run:
    nodes = run.nodes
    pid = ledger.process.pid
    run.rss_start_mb = rss_mb(pid)
    print(f"[{nodes}] keys…", flush=True)
    everyone = bench_keys(nodes)
    manager, keys = everyone[0], everyone[1:]
    index_of = {key.public_key: index for index, key in enumerate(everyone)}
    nodes_at = range(1, nodes + 1)
    setup = Phase()
    started = time.perf_counter()
    send_in_slices(
        ledger,
        signers,
        [(0, {"type": "airdrop", "to": manager.public_key, "amount": 1000 * KOII})]
        + [
            (index_of[k.public_key], {"type": "airdrop", "to": k.public_key, "amount": 3 * KOII})
            for k in keys
        ],
        setup,
    )
    run.baseline_tx_per_s = setup.tx_per_s
    funding = time.perf_counter() - started
    print(
        f"[{nodes}] funded in {funding:.1f} s ({setup.tx_per_s:,.0f} tx/s sent pre-signed, "
        f"{signers.rate:,.0f} envelopes/s signed)",
        flush=True,
    )
    sw, aw = windows_for(nodes, setup.tx_per_s)
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
    send_in_slices(
        ledger,
        signers,
        [(i, {"type": "stake", "task_id": task_id, "amount": 2 * KOII}) for i in nodes_at],
        None,
    )
    run.rss_staked_mb = rss_mb(pid)
    task = ledger.task(task_id)
    print(f"[{nodes}] staked; {run.windows}; now slot {ledger.slot()}", flush=True)

    faulty = {k.public_key for k in keys[::FAULTY_SHARE]}
    window = submission_window(task, 0)
    if ledger.slot() >= window.start:
        raise SystemExit(f"staking {nodes} nodes took longer than round 0; raise the windows")
    beacons = signers.beacons(task_id, 0, list(nodes_at))  # depend on no slot: any time before
    phases = {name: Phase() for name in PHASES}
    run.phases = phases
    head = {"task_id": task_id, "round": 0}
    proofs = [
        (
            index_of[k.public_key],
            {
                "type": "submit",
                **head,
                "submission_value": "garbage" if k.public_key in faulty else "bafy" + k.public_key,
                "commitment": commitment,
            },
        )
        for k, (_, commitment) in zip(keys, beacons, strict=True)
    ]
    seq_before = ledger.seq()
    timed_window(ledger, presign(ledger, signers, proofs, window.start, phases["submit"]), phases["submit"])
    reveals = [
        (index_of[k.public_key], {"type": "reveal", **head, "secret": secret})
        for k, (secret, _) in zip(keys, beacons, strict=True)
    ]
    opens = reveal_window(task, 0).start
    timed_window(ledger, presign(ledger, signers, reveals, opens, phases["reveal"]), phases["reveal"])
    for name in ("submit", "reveal"):
        p = phases[name]
        print(
            f"[{nodes}] {name}: {p.seconds:.2f} s (client CPU {p.client_cpu:.2f} s), signed at slots "
            f"{p.signed_slot}–{p.newest_slot}, {p.horizon_at_open} horizon slots left at the start, acknowledged by slot "
            f"{p.last_slot}; {p.refused_count} refused {p.refused}",
            flush=True,
        )

    ledger.wait_for_slot(audit_window(task, 0).start)
    task = ledger.task(task_id)
    ring = audit_ring(None, task, 0)
    votes = [
        (
            everyone[index_of[auditor]],
            {"type": "audit_submission", **head, "candidate": candidate, "is_valid": False},
        )
        for candidate in sorted(faulty & set(ring.position))  # an unrevealed proof is not audited
        for auditor in ring.auditors_of(candidate)
    ]
    envelopes = signed(ledger, [k for k, _ in votes], [b for _, b in votes])
    send(ledger, batches(envelopes[:1]), phases["first vote"])
    send(ledger, batches(envelopes[1:]), phases["audit"])
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
    selected = everyone[index_of[chosen]]
    for part in (bodies[:1], bodies[1:]):
        send(ledger, batches(signed(ledger, [selected] * len(part), part)), phases["list"], may_refuse=True)
    print(
        f"[{nodes}] list: {len(bodies)} tx, {phases['list'].seconds:.2f} s {phases['list'].refused}",
        flush=True,
    )

    if not phases["list"].refused:
        ledger.wait_for_slot(settle_slot(task, 0, 0))
        payout = {"type": "payout", **head}
        send(ledger, batches(signed(ledger, [manager], [payout])), phases["payout"])
        paid = ledger.http.get(f"/tasks/{task_id}", params={"is_distribution_required": "true"}).json()
        run.paid = paid["distributions_audit_record"].get("0") == "PayoutSuccessful"
        print(f"[{nodes}] payout: {phases['payout'].seconds * 1000:.0f} ms, paid={run.paid}", flush=True)
    run.log_entries, run.log_bytes = ledger.log_rows(seq_before)

    def phase_of(seq: int) -> str:
        if seq <= seq_before:
            return "setup"
        return next((name for name, p in phases.items() if p.seqs[0] < seq <= p.seqs[1]), "between phases")

    run.checkpoints = [
        f"of seq {at:,} ({phase_of(at)}), marked "
        + ("between phases" if phase_of(mark) == "between phases" else f"in {phase_of(mark)}")
        for mark, at in ledger.marks(seq_before)
    ]
    run.rss_end_mb = rss_mb(pid)
    return run


def timed_window(ledger: Ledger, bodies: list[tuple[bytes, int]], phase: Phase) -> None:
    """Send a pre-signed phase (a late envelope is counted, not fatal) and note the slot it ended at."""
    send(ledger, bodies, phase, may_refuse=True)
    phase.last_slot = ledger.slot()


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


def report(runs: list[Run], command: str, checkpoint_every: int) -> str:
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
            text += f" (CPU {p.server_cpu:.2f} s, main process {p.main_cpu:.2f} s, {p.transactions:,} tx"
            text += f", {p.tx_per_s:,.0f} tx/s"
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
    every = (
        f"every {checkpoint_every:,} entries"
        if checkpoint_every
        else "**off for measuring** (`--checkpoint-every 0`: only at shutdown; `ledger serve`'s default is "
        "200,000)"
    )
    lines.append(
        f"| checkpoints in the round ({every}, taken at the first quiet moment after: the state "
        "encoded on the event loop, hashed on a thread, its mark logged, then stored) | "
        + " | ".join("; ".join(r.checkpoints) or "none" for r in runs)
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
    lines.append(
        "| pre-signed submit / reveal: `recent_slot` of the first and last slice; slots of the first slice's horizon left when sending began; slots from the first slice's to the last acknowledgement; this process's CPU inside the window | "
        + " | ".join(
            " / ".join(
                f"{p.signed_slot}–{p.newest_slot}; {p.horizon_at_open} left; {p.last_slot - p.signed_slot} of {REPLAY_HORIZON_SLOTS}; "
                f"{p.client_cpu:.2f} s"
                for p in (r.phases["submit"], r.phases["reveal"])
            )
            for r in runs
        )
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
        "- Refused (a proof or a reveal after its window, `WrongPhaseError`, or past the replay horizon of its "
        "`recent_slot`, `StaleTransactionError`): "
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
from this process over HTTP. Run {time.strftime("%Y-%m-%d %H:%M")} UTC on {os.cpu_count()} cores ({platform.machine()},
{platform.python_implementation()} {platform.python_version()}) with `{command}`. {machine_text(runs)}

**What the load generator does, and when.** In a real network each node signs on its own machine; here one
machine plays every node, so the signing is done *before* a phase's window opens, and inside the window this
process only sends:
- *Before the window* ({SIGNERS} signing processes, both cores, while the ledger waits): the N proof commitments
  and beacon secrets (they depend on no slot) any time before; then, once the slot reaches the window's first slot
  minus the time signing N envelopes took so far (plus a tenth and 3 slots), the proofs (or reveals) are signed in
  slices of {SLICE:,}, in the order they will be sent: for each slice this process reads `GET /slot` and the signing
  processes sign it with that slot as `recent_slot`, as a node does, never a slot still to come. They come back
  encoded; this process joins them into request bodies of {BATCH} envelopes and encodes the HTTP requests. Nothing
  of the ledger's rules changes: an envelope is accepted only while `slot − {REPLAY_HORIZON_SLOTS} ≤ recent_slot ≤ slot`, so each slice
  must be acknowledged within {REPLAY_HORIZON_SLOTS} slots of its signing slot (the row below shows how much of that horizon each
  phase used); a late one is refused, counted and reported.
- *Inside the window*: write the pre-encoded requests over {CONNECTIONS} keep-alive connections, one request in
  flight on each (`bench_ingest.RawHTTP`), read each answer by its `Content-Length`, and count it as accepted
  unless its text holds `"error"` (then it is parsed and each refusal counted). This process's CPU over the window
  is reported beside the service's.
- The votes (5 % of N), the list and the payout are signed in this process before their phase's clock starts;
  funding and staking (setup) are signed in slices of {SLICE:,} by the signing processes, each slice sent before
  the next is signed.

A phase's time is from sending its first request to the durable acknowledgement of its last; CPU is the service's
(main process and signature workers) over the same span, and the main process's part of it (the event loop:
HTTP, sequencer, apply, log). Growth = (time ratio) / (node ratio) from the previous
size: 1.00 is linear.

{chr(10).join(lines)}

Windows per size (the submission window and the audit window's first half, the reveals', each {MARGIN} times what
the service took to acknowledge N pre-signed airdrops just before): {windows}.

{target_text}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000", help="comma-separated node counts")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=200_000,
        help="the service's checkpoint interval in log entries (default 200000, `ledger serve`'s own); "
        "for measuring only: 0 keeps the periodic checkpoint out of the round, and the report says so",
    )
    args = parser.parse_args()
    if args.checkpoint_every < 0:
        parser.error(f"--checkpoint-every is {args.checkpoint_every}; accepted: 0 or a positive count")
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    for nodes in sizes:
        folder = Path(tempfile.mkdtemp(prefix="pykoii-round-"))
        try:
            runs.append(run_size(nodes, folder / "ledger", args.checkpoint_every))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    command = ".venv/bin/python benchmarks/bench_round.py" + (
        f" --sizes {args.sizes}" if args.sizes != "10000,30000" else ""
    )
    if args.checkpoint_every != 200_000:
        command += f" --checkpoint-every {args.checkpoint_every}"
    print("in process…", flush=True)
    took = in_process_best(sizes)
    text = (
        report(runs, command, args.checkpoint_every)
        + "\n"
        + IN_PROCESS_NOTE
        + "\n\n"
        + in_process_report(sizes, took)
        + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
