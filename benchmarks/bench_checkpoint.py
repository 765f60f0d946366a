# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""What one checkpoint and one ``durable_root`` cost on a large ledger state, split into its parts.

The state is built in process with the ledger's own ``apply_transaction``: N funded keys staked on
one task, then one round's N proofs and N reveals (a 100,000-node round's state, about 58 MB of
canonical JSON). Then, in the same process, each part of taking the state, best of ``--repeat``:

- ``copy``: ``to_plain`` of the whole state (what the sequencer did on the event loop before);
- ``encode the copy``: its canonical bytes (``canonical_bytes``, orjson with sorted keys);
- ``encode the live state``: ``plain_bytes`` (what it does now, in one C call, no copy);
- ``hash``: SHA-256 of the bytes; ``write``: one checkpoint row into a fresh SQLite log.

and, through a real ``LedgerStore`` holding that state with its sequencer running, one
``checkpoint()`` (its mark goes through the sequencer) and one ``durable_root()``: the process's CPU
time and the event loop's longest stall meanwhile (a task that sleeps 1 ms in a loop measures it;
what holds the GIL on another thread stalls it too). With ``--baseline-src DIR`` (the ``src`` of an
older checkout, e.g. ``git worktree add /tmp/old 3331e03``) the store's part also runs on that code,
in its own process, interleaved with this tree's: an A/B of the same sitting.

Writes the "## Checkpoints" section of BENCHMARKS.md. Run::

    .venv/bin/python benchmarks/bench_checkpoint.py [--nodes 100000] [--baseline-src /tmp/old/src] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Checkpoints"
KOII = 1_000_000_000


def build_state(nodes: int) -> Any:
    """N funded keys staked on one task, then round 0's N proofs and N reveals, applied in process."""
    from pykoii.ledger import LedgerParams, LedgerState, apply_transaction, decode_transaction
    from pykoii.ledger.audits import beacon_commitment
    from pykoii.ledger.codec import derive_address
    from pykoii.ledger.rounds import reveal_window, submission_window

    state = LedgerState(
        params=LedgerParams(devnet=True, airdrop_limit=10**6 * KOII, airdrop_cooldown_slots=0)
    )
    manager = derive_address("bench", "manager")
    keys = [derive_address("bench", str(i)) for i in range(nodes)]

    def run(bodies: list[dict[str, Any]], slot: int, signer: str | None = None) -> None:
        for body in bodies:
            tx = decode_transaction({"signer": signer or body.pop("signer"), "recent_slot": slot, **body})
            apply_transaction(state, tx, slot)

    run([{"type": "airdrop", "signer": k, "to": k, "amount": 3 * KOII} for k in keys], 0)
    run([{"type": "airdrop", "to": manager, "amount": 1000 * KOII}], 0, manager)
    create = {
        "type": "create_task",
        "task_name": "Bench checkpoint",
        "task_audit_program": "bafkbench",
        "total_bounty_amount": 100 * KOII,
        "bounty_amount_per_round": 10 * KOII,
        "round_time": 830,
        "submission_window": 400,
        "audit_window": 400,
        "minimum_stake_amount": KOII,
        "allowed_failed_distributions": 1,
    }
    run([create], 1, manager)
    task_id = next(iter(state.tasks))
    task = state.tasks[task_id]
    run([{"type": "stake", "signer": k, "task_id": task_id, "amount": 2 * KOII} for k in keys], 1)
    head = {"task_id": task_id, "round": 0}
    secret = "ab" * 32
    slot = submission_window(task, 0).start
    submits = [
        {
            "type": "submit",
            "signer": k,
            **head,
            "submission_value": "bafy" + k,
            "commitment": beacon_commitment(task_id, 0, k, secret),
        }
        for k in keys
    ]
    run(submits, slot)
    run(
        [{"type": "reveal", "signer": k, **head, "secret": secret} for k in keys],
        reveal_window(task, 0).start,
    )
    return state


def best(repeat: int, work: Any) -> tuple[float, float, Any]:
    """``(CPU seconds, wall seconds, result)`` of the fastest of ``repeat`` calls (by CPU)."""
    runs = []
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        result = work()
        runs.append((time.process_time() - cpu, time.perf_counter() - wall, result))
    return min(runs, key=lambda run: run[0])


async def _stall_while(work: Any) -> tuple[float, float, float]:
    """``(CPU seconds, wall seconds, longest event-loop stall)`` while awaiting ``work()``."""
    stalls = [0.0]
    running = True

    async def ticker() -> None:
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - before - 0.001)

    tick = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0.01)
    cpu, wall = time.process_time(), time.perf_counter()
    await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    running = False
    await tick
    return cpu, wall, max(stalls)


def store_part(state: Any, repeat: int) -> dict[str, float]:
    """One ``checkpoint()`` and one ``durable_root()`` of a real ``LedgerStore`` holding ``state``
    (of ``repeat`` calls, the lowest of each figure). The state is put in place of the one the store
    replayed (empty): a benchmark shortcut, the store is thrown away after."""
    from pykoii.clock import SystemClock
    from pykoii.ledger import LedgerParams
    from pykoii.service import Genesis, open_store

    folder = tempfile.mkdtemp(prefix="bench-checkpoint-")
    genesis = Genesis(params=LedgerParams(devnet=True), slot_ms=400)
    store = open_store(folder, clock=SystemClock(), genesis=genesis, checkpoint_every=0)
    store.state = state
    out: dict[str, float] = {}

    async def run() -> None:
        await store.start()
        for name, work in (("checkpoint", store.checkpoint), ("durable_root", store.durable_root)):
            runs = []
            for _ in range(repeat):
                store._root_cache = None  # noqa: SLF001 (durable_root caches per seq: every call computes)
                gc.collect()
                runs.append(await _stall_while(work))
            for index, figure in enumerate(("cpu", "wall", "stall")):
                out[f"{name} {figure}"] = min(run[index] for run in runs)
        await store.close()

    asyncio.run(run())
    shutil.rmtree(folder, ignore_errors=True)
    return out


def child(nodes: int, repeat: int, parts: bool) -> dict[str, float]:
    """Everything this process measures on ``nodes``, as a dict of seconds (printed as JSON)."""
    from pykoii.ledger import to_plain
    from pykoii.ledger.codec import canonical_bytes

    cpu = time.process_time()
    state = build_state(nodes)
    out: dict[str, float] = {"build cpu": time.process_time() - cpu}
    gc.collect()
    gc.freeze()  # as `ledger serve` settles its heap after start-up
    if parts:
        from pykoii.ledger.codec import plain_bytes
        from pykoii.service.log import Checkpoint, SQLiteLog

        out["copy cpu"], out["copy wall"], plain = best(repeat, lambda: to_plain(state))
        out["encode copy cpu"], out["encode copy wall"], data = best(repeat, lambda: canonical_bytes(plain))
        del plain
        out["encode live cpu"], out["encode live wall"], live = best(repeat, lambda: plain_bytes(state))
        assert live == data, "plain_bytes differs from canonical_bytes(to_plain(state))"
        out["bytes"] = len(data)
        out["hash cpu"], out["hash wall"], root = best(repeat, lambda: hashlib.sha256(data).hexdigest())
        with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as folder:
            log = SQLiteLog(Path(folder) / "ledger.sqlite3")
            seqs = iter(range(1, repeat + 1))
            out["write cpu"], out["write wall"], _ = best(
                repeat, lambda: log.write_checkpoint(Checkpoint(next(seqs), "0" * 64, root, data))
            )
            log.close()
        del data, live
    out.update(store_part(state, repeat))
    return out


def run_child(src: Path, nodes: int, repeat: int, parts: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", "--nodes", str(nodes), "--repeat", str(repeat)]
    if not parts:
        command.append("--store-only")
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(
    nodes: int, new: dict[str, float], old: dict[str, float] | None, command: str, baseline: str
) -> str:
    load = os.getloadavg()
    copy_then_encode = new["copy cpu"] + new["encode copy cpu"]
    lines = [
        SECTION,
        "",
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load {load[0]:.2f} at the end. A {nodes:,}-node state (N keys staked on one task, "
        f"one round's N proofs and N reveals, built in process): {new['bytes'] / 1e6:.1f} MB of canonical JSON.",
        "",
        "Parts, in process (CPU, best of the runs; the same bytes, checked):",
        "",
        "| part | CPU | wall |",
        "|---|---:|---:|",
        f"| copy (`to_plain`, before: on the event loop) | {ms(new['copy cpu'])} | {ms(new['copy wall'])} |",
        f"| encode the copy (`canonical_bytes`, before: on a thread holding the GIL) | {ms(new['encode copy cpu'])} | {ms(new['encode copy wall'])} |",
        f"| **encode the live state** (`plain_bytes`, now: on the event loop, no copy) | **{ms(new['encode live cpu'])}** | {ms(new['encode live wall'])} |",
        f"| hash (SHA-256, on the checkpoint thread, without the GIL) | {ms(new['hash cpu'])} | {ms(new['hash wall'])} |",
        f"| write (one checkpoint row, SQLite) | {ms(new['write cpu'])} | {ms(new['write wall'])} |",
        "",
        f"Copy then encode {ms(copy_then_encode)} of CPU against {ms(new['encode live cpu'])} for the live state "
        f"({new['encode live cpu'] / copy_then_encode:.2f}×).",
        "",
        "Through a real `LedgerStore` holding the state, sequencer running (CPU of the whole process, and the "
        "event loop's longest stall, measured by a task sleeping 1 ms in a loop; of the runs, the lowest of each):",
        "",
        "| call | " + ("before: CPU / stall | " if old else "") + "CPU | wall | longest stall |",
        "|---|" + ("---:|" if old else "") + "---:|---:|---:|",
    ]
    for name in ("checkpoint", "durable_root"):
        before = f"{ms(old[name + ' cpu'])} / {ms(old[name + ' stall'])} | " if old else ""
        lines.append(
            f"| `{name}()` | {before}{ms(new[name + ' cpu'])} | {ms(new[name + ' wall'])} | {ms(new[name + ' stall'])} |"
        )
    if old:
        lines += ["", f"Before: the same calls on {baseline}, in their own process, in the same sitting."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="the src folder of an older checkout, for the A/B")
    parser.add_argument("--quick", action="store_true", help="10,000 nodes, 2 runs of each")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.repeat = 10_000, 2
    if args.child:
        print(orjson.dumps(child(args.nodes, args.repeat, not args.store_only)).decode())
        return 0
    src = ROOT / "src"
    old = run_child(args.baseline_src, args.nodes, args.repeat, False) if args.baseline_src else None
    new = run_child(src, args.nodes, args.repeat, True)
    baseline = ""
    if args.baseline_src:
        head = subprocess.run(
            ["git", "-C", str(args.baseline_src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        baseline = f"`{head.stdout.strip() or args.baseline_src}`"
    command = "benchmarks/bench_checkpoint.py " + " ".join(sys.argv[1:])
    text = report(args.nodes, new, old, command.strip(), baseline)
    print(text)
    if not args.no_write:
        from bench_ingest import write_section

        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
