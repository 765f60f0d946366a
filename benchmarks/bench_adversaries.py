"""Must-show run of issue 16: 20 % colluding adversaries against the ledger's own payouts.

Each run is a fresh simulated network (``pykoii.testing``) of ``--nodes`` nodes running Hello World
for ``--rounds`` rounds, with ``--colluding`` of them colluders (garbage proofs, mutual defence,
false accusations of every honest candidate they may, lists that pay only them) and one reveal
withholder (the only choice the commit-reveal beacon leaves a grinder). Runs differ by seed, so the
colluders, keys and beacons differ. Measured through the ledger's receipts:

- garbage caught: garbage proofs (and withheld reveals) of paid rounds that the paid list did not
  reward (and slashed, while any stake was left);
- honest node-rounds slashed: honest submissions whose node lost stake in that round's payout (a
  slash or a losing-vote penalty).

Baseline, same run, same seeds: the sample-only rule (``escalation_size = sample_size``, no vote
penalty) — what the ledger judged with before the escalation panel. Figures with 95 % Wilson
intervals go to BENCHMARKS.md ("## Adversaries (issue 16)").

    .venv/bin/python benchmarks/bench_adversaries.py [--runs 250 --nodes 40 --rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
import time
from pathlib import Path

from bench_ingest import write_section

from pykoii.config import load_config
from pykoii.sdk import load_task
from pykoii.testing import HONEST, Simulation

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "hello_world"
SECTION = "## Adversaries (issue 16)"


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def measure(runs: int, nodes: int, rounds: int, colluding: float, escalation: bool) -> dict[str, int]:
    config = load_config(TASK)
    if not escalation:
        config = dataclasses.replace(config, escalation_size=config.sample_size, vote_penalty_percent=0)
    totals = {"rounds": 0, "garbage": 0, "caught": 0, "honest": 0, "honest_slashed": 0, "paid": 0}
    for seed in range(runs):
        sim = Simulation(
            load_task(TASK),
            config,
            nodes=nodes,
            rounds=rounds,
            colluding=colluding,
            withholding=1,
            seed=seed,
        )
        result = asyncio.run(sim.run_async())
        roles = {node.public_key: node.role for node in result.nodes}
        totals["rounds"] += rounds
        for report in result.reports:
            if report.outcome != "paid":
                continue
            totals["paid"] += 1
            garbage = sim.corrupted.get(report.round, set())
            totals["garbage"] += len(garbage)
            totals["caught"] += len(garbage & report.caught)
            honest = [k for k, role in roles.items() if role == HONEST]  # honest nodes submit every round
            totals["honest"] += len(honest)
            totals["honest_slashed"] += sum(1 for k in honest if k in report.slashed or k in report.penalized)
    return totals


def row(name: str, t: dict[str, int]) -> str:
    caught = t["caught"] / t["garbage"] if t["garbage"] else 1.0
    lo, hi = wilson(t["caught"], t["garbage"])
    slashed = t["honest_slashed"] / t["honest"] if t["honest"] else 0.0
    slo, shi = wilson(t["honest_slashed"], t["honest"])
    return (
        f"| {name} | {t['rounds']} ({t['paid']} paid) | {t['caught']}/{t['garbage']} = {caught:.4f} "
        f"[{lo:.4f}, {hi:.4f}] | {t['honest_slashed']}/{t['honest']} = {slashed:.5f} [{slo:.5f}, {shi:.5f}] |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=250)
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--colluding", type=float, default=0.2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    panel = measure(args.runs, args.nodes, args.rounds, args.colluding, escalation=True)
    baseline = measure(args.runs, args.nodes, args.rounds, args.colluding, escalation=False)
    took = time.monotonic() - started
    text = "\n".join(
        [
            SECTION,
            "",
            f"`benchmarks/bench_adversaries.py --runs {args.runs} --nodes {args.nodes} "
            f"--rounds {args.rounds} --colluding {args.colluding}`: {args.runs} simulated networks of "
            f"{args.nodes} nodes, "
            f"{round(args.nodes * args.colluding)} colluders (garbage, mutual defence, false accusations, "
            "lists paying only them) and 1 reveal withholder each, through the ledger's own payouts; "
            f"{took:.0f} s. 95 % Wilson intervals in brackets. Baseline in the same run, same seeds: the "
            "sample-only rule (escalation_size = sample_size = 5, no vote penalty).",
            "",
            "| rule | rounds | garbage caught in its round | honest node-rounds that lost stake |",
            "|---|---|---|---|",
            row("escalation panel 33 + 10 % vote penalty (default)", panel),
            row("baseline: sample of 5 only, no penalty", baseline),
            "",
            "Not measured here: lazy honest auditors (the majority is of votes cast), and colluders that",
            "behave honestly to keep their stake (they then do no harm the panel could stop).",
        ]
    )
    print(text)
    if not args.no_write:
        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
