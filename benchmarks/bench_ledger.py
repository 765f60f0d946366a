"""Ledger core benchmark: ``apply_transaction`` per instruction type, next to an ed25519 verify.

Signature checks are excluded from the apply figures (they happen once, in ``keys.verify_envelope``);
decoding a transaction's JSON object is measured separately. ``submit`` and ``audit_submission``
(a vote) run against a task with 10,000 staked nodes. Run::

    .venv/bin/python benchmarks/bench_ledger.py [--nodes 10000] [--no-write]

It prints a table and writes the "## Ledger core" section of BENCHMARKS.md, keeping other sections.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from pykoii.ledger import (
    LedgerParams,
    LedgerState,
    apply_transaction,
    audit_ring,
    decode_transaction,
    default_distribution_for,
    distribution_window,
    selected_submitter,
    submission_window,
    to_plain,
)
from pykoii.ledger.codec import canonical_bytes, derive_address
from pykoii.ledger.rounds import audit_window, distribution_audit_window

KOII = 1_000_000_000
ROOT = Path(__file__).resolve().parent.parent
COMMAND = "make setup && .venv/bin/python benchmarks/bench_ledger.py"


def body(kind: str, signer: str, slot: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "signer": signer, "recent_slot": slot, **fields}


def timed(state: LedgerState, bodies: Sequence[dict[str, Any]], slot: int) -> float:
    """µs per apply_transaction over pre-decoded transactions (decode and signatures excluded)."""
    txs = [decode_transaction(b) for b in bodies]
    start = time.perf_counter_ns()
    for tx in txs:
        apply_transaction(state, tx, slot)
    return (time.perf_counter_ns() - start) / 1000 / len(txs)


def per_call(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeat):
        fn()
    return (time.perf_counter_ns() - start) / 1000 / repeat


def verify_us(samples: int = 3000) -> float:
    key = SigningKey(b"\1" * 32)
    message = canonical_bytes(
        body("submit", "x" * 44, 1, task_id="y" * 44, round=7, submission_value="z" * 46)
    )
    signature = key.sign(message).signature
    verify = key.verify_key.verify
    return per_call(lambda: verify(message, signature), samples)


def run(nodes: int) -> tuple[list[tuple[str, str, float]], float]:
    rows: list[tuple[str, str, float]] = []
    state = LedgerState(
        params=LedgerParams(devnet=True, airdrop_limit=10**9 * KOII, airdrop_cooldown_slots=0)
    )
    manager = derive_address("bench", "manager")
    keys = [derive_address("bench", str(i)) for i in range(nodes)]

    rows.append(
        (
            "airdrop",
            f"{nodes} recipients",
            timed(
                state,
                [
                    body("airdrop", k, 0, to=k, amount=(10**6 if k == manager else 50) * KOII)
                    for k in [manager, *keys]
                ],
                0,
            ),
        )
    )
    rows.append(
        (
            "transfer",
            "wallet to wallet",
            timed(state, [body("transfer", k, 0, to=manager, amount=1) for k in keys[:2000]], 0),
        )
    )
    task_fields = dict(
        task_name="Bench",
        task_audit_program="bafkbench",
        total_bounty_amount=1_000 * KOII,
        bounty_amount_per_round=10 * KOII,
        round_time=100,
        submission_window=40,
        audit_window=40,
        minimum_stake_amount=KOII,
        allowed_failed_distributions=3,
    )
    creates = [
        body("create_task", manager, 1, **{**task_fields, "task_name": f"Bench {i}"}) for i in range(200)
    ]
    rows.append(("create_task", "config validation + pot", timed(state, creates, 1)))
    task_id = next(iter(state.tasks))
    task = state.tasks[task_id]
    rows.append(
        (
            "stake",
            f"{nodes} stakers on one task",
            timed(
                state,
                [
                    body("stake", k, 1, task_id=task_id, amount=2 * KOII, ip_address="http://n.example")
                    for k in keys
                ],
                1,
            ),
        )
    )
    rows.append(
        (
            "fund_task",
            "",
            timed(state, [body("fund_task", k, 1, task_id=task_id, amount=1) for k in keys[:2000]], 1),
        )
    )
    rows.append(
        (
            "set_active",
            "",
            timed(
                state,
                [
                    body("set_active", manager, 1 + i % 100, task_id=task_id, is_active=True)
                    for i in range(100)
                ],
                100,
            ),
        )
    )

    slot = submission_window(task, 0).start
    rows.append(
        (
            "submit",
            f"{nodes} nodes, one round",
            timed(
                state,
                [
                    body("submit", k, slot, task_id=task_id, round=0, submission_value="bafy" + k)
                    for k in keys
                ],
                slot,
            ),
        )
    )

    slot = audit_window(task, 0).start
    ring = audit_ring(None, task, 0)
    first_auditor = ring.auditors_of(keys[0])[0]
    beacon_start = time.perf_counter_ns()
    apply_transaction(
        state,
        decode_transaction(
            body(
                "audit_submission",
                first_auditor,
                slot,
                task_id=task_id,
                round=0,
                candidate=keys[0],
                is_valid=False,
            )
        ),
        slot,
    )
    beacon_ms = (time.perf_counter_ns() - beacon_start) / 1e6
    votes = []
    for index, candidate in enumerate(keys[1:], start=1):
        auditor = ring.auditors_of(candidate)[0]
        votes.append(
            body(
                "audit_submission",
                auditor,
                slot,
                task_id=task_id,
                round=0,
                candidate=candidate,
                is_valid=False,
            )
        )
        if index % 5 == 0:  # a defender on every fifth accused node
            votes.append(
                body(
                    "audit_submission",
                    ring.auditors_of(candidate)[1],
                    slot,
                    task_id=task_id,
                    round=0,
                    candidate=candidate,
                    is_valid=True,
                )
            )
    rows.append(("audit_submission", f"vote, {nodes} nodes (accuse + defend)", timed(state, votes, slot)))

    decode_submit = body("submit", keys[0], slot, task_id=task_id, round=0, submission_value="bafy" + keys[0])
    decode_vote = votes[0]
    rows.append(
        ("decode submit", "JSON object -> Submit", per_call(lambda: decode_transaction(decode_submit), 5000))
    )
    rows.append(
        (
            "decode vote",
            "JSON object -> AuditSubmission",
            per_call(lambda: decode_transaction(decode_vote), 5000),
        )
    )

    slot = distribution_window(task, 0).start
    chosen = selected_submitter(None, task, 0, 0)
    dist = to_plain(default_distribution_for(task, 0))
    rows.append(
        (
            "submit_distribution",
            f"list of {nodes} keys",
            timed(state, [body("submit_distribution", chosen, slot, task_id=task_id, round=0, **dist)], slot),
        )
    )
    slot = distribution_audit_window(task, 0).start
    voters = [k for k in keys[:2001] if k != chosen][:2000]
    rows.append(
        (
            "audit_distribution",
            "vote on the list",
            timed(
                state,
                [
                    body(
                        "audit_distribution",
                        voters[0],
                        slot,
                        task_id=task_id,
                        round=0,
                        candidate=chosen,
                        is_valid=False,
                    )
                ]
                + [
                    body(
                        "audit_distribution",
                        v,
                        slot,
                        task_id=task_id,
                        round=0,
                        candidate=chosen,
                        is_valid=True,
                    )
                    for v in voters[1:]
                ],
                slot,
            ),
        )
    )
    slot = distribution_audit_window(task, 0).stop
    rows.append(
        (
            "payout",
            f"pays/slashes {nodes} keys",
            timed(state, [body("payout", manager, slot, task_id=task_id, round=0)], slot),
        )
    )
    paid = [k for k in keys if k in task.available_balances][:2000]
    rows.append(
        (
            "claim_reward",
            "",
            timed(state, [body("claim_reward", k, slot, task_id=task_id, beneficiary=k) for k in paid], slot),
        )
    )
    late = slot + 4 * task.round_time
    rows.append(
        (
            "withdraw",
            "",
            timed(state, [body("withdraw", k, late, task_id=task_id) for k in keys[:2000]], late),
        )
    )
    others = list(state.tasks)[1:101]
    update_fields = {k: v for k, v in task_fields.items() if k != "total_bounty_amount"}
    rows.append(
        (
            "update_task",
            "migration",
            timed(
                state, [body("update_task", manager, late, task_id=t, **update_fields) for t in others], late
            ),
        )
    )
    rows.append(
        ("(first vote of a round)", "builds the beacon and audit ring, once per round", beacon_ms * 1000)
    )
    return rows, verify_us()


def table(rows: list[tuple[str, str, float]], verify: float, nodes: int) -> str:
    lines = [
        f"ed25519 verify (PyNaCl), same run: **{verify:.1f} µs**",
        "",
        "| instruction | case | µs/tx | share of one verify |",
        "|---|---|---:|---:|",
    ]
    for name, case, micros in rows:
        lines.append(f"| {name} | {case} | {micros:.1f} | {micros / verify:.0%} |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"## Ledger core\n\n{text}\n"
    pattern = re.compile(r"^## Ledger core\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: section + "\n", current).rstrip() + "\n"
    else:
        updated = current.rstrip() + "\n\n" + section
    path.write_text(updated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    results = [run(args.nodes) for _ in range(3)]
    rows = [
        (name, case, statistics.median(r[0][i][2] for r in results))
        for i, (name, case, _) in enumerate(results[0][0])
    ]
    verify = statistics.median(r[1] for r in results)
    body_text = table(rows, verify, args.nodes)
    print(body_text)
    if not args.no_write:
        machine = platform.processor() or platform.machine()
        header = (
            f"Measured {datetime.date.today().isoformat()} on 2 cores ({machine}, "
            f"Python {platform.python_version()}), median of 3 runs, with `{COMMAND}`. "
            f"`submit` and `audit_submission` run on a task with {args.nodes:,} staked nodes; "
            "signature checks are excluded (they happen once, in `keys.verify_envelope`); "
            "decoding is measured on its own rows. "
            "Target: well under one verify; < 15 µs for submit and vote at 10,000 nodes."
        )
        write_section(header + "\n\n" + body_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
