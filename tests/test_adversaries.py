"""Issue 16: adversaries an author can mix in the simulator, and the incentive properties per run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pykoii.testing import COLLUDER, HONEST, WITHHOLDER, simulate

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "examples" / "hello_world"


def test_twenty_percent_colluders_and_a_withholder_lose_and_honest_nodes_do_not() -> None:
    result = simulate(HELLO, nodes=40, rounds=3, colluding=0.2, withholding=1, seed=7)
    roles = {node.public_key: node.role for node in result.nodes}
    assert sum(role == COLLUDER for role in roles.values()) == 8
    assert sum(role == WITHHOLDER for role in roles.values()) == 1
    assert all(check.ok for check in result.properties), [c for c in result.properties if not c.ok]
    first = result.reports[0]
    assert first.outcome == "paid"
    garbage = {key for key, role in roles.items() if role in (COLLUDER, WITHHOLDER)}
    assert garbage <= first.caught  # every colluder's garbage and the withheld reveal, not paid
    assert set(first.slashed) == garbage  # and slashed 70 %
    # false accusations of honest nodes cost the colluders their votes' penalty, never the honest
    assert first.penalized and {roles[key] for key in first.penalized} == {COLLUDER}
    assert all(result.final_stakes[key] == result.stake for key, role in roles.items() if role == HONEST)


def test_the_cli_takes_the_adversary_mix() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pykoii.cli",
            "simulate",
            str(HELLO),
            "--nodes",
            "12",
            "--rounds",
            "2",
            "--colluding",
            "0.25",
            "--withholding",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "pykoii.cli", "simulate", str(HELLO), "--colluding", "1.5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "--colluding is 1.5" in bad.stderr


@pytest.mark.slow
def test_must_show_garbage_caught_and_honest_never_slashed_over_1000_rounds() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_adversaries import measure

    totals = measure(runs=250, nodes=40, rounds=4, colluding=0.2, escalation=True)
    assert totals["rounds"] >= 1000
    assert totals["caught"] / totals["garbage"] >= 0.999
    assert totals["honest_slashed"] / totals["honest"] <= 1e-3
