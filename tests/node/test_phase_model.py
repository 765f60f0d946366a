"""Koii's phase model on real node processes: a task() longer than the submission window is paid
every round; the two example tasks (proof-of-work oracle, audits through the submitter's route) run
on a local network of node processes against a ledger service, with faulty nodes, and are paid."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pykoii.keys import Keypair

from .conftest import write_task
from .harness import REPO, Ledger, NodeProcess, add_task, watch_rounds

POW = REPO / "examples" / "proof_of_work"
SHARED = REPO / "examples" / "shared_results"


def run_network(  # type: ignore[no-untyped-def]
    ledger: Ledger,
    root: Path,
    code: Path,
    variables: list[list[str]],
    rounds: int,
    windows: tuple[int, int, int] = (20, 5, 5),
):
    """Start one node per entry of ``variables`` (its ``--var`` options) on a task with ``windows``
    (round, submission, audit; slots of 100 ms), and wait until ``rounds`` rounds are paid with every
    node in."""
    round_time, submission_window, audit_window = windows
    task_id = ledger.create_hello_world(
        Keypair.generate(),
        round_time=round_time,
        submission_window=submission_window,
        audit_window=audit_window,
        minimum_stake=10**7,
        code=code,
    )
    nodes = [NodeProcess(root / f"node{i}", ledger.url) for i in range(len(variables))]
    try:
        for node, options in zip(nodes, variables, strict=True):
            add_task(node, ledger, task_id, *[arg for pair in options for arg in ("--var", pair)])
        everyone = {n.info["staking_key"] for n in nodes}

        def enough(paid: list[int], submissions: dict[int, dict]) -> bool:
            return sum(1 for r in paid if set(submissions.get(r, {})) == everyone) >= rounds

        state, paid, submissions, lists = watch_rounds(ledger, task_id, enough, 240)
        logs = [node.logs(task_id) for node in nodes]
        return nodes, state, paid, submissions, lists, logs
    finally:
        for node in nodes:
            node.stop()


SLOW_POW = """
    import time
    from proof_of_work import ProofOfWork  # examples/proof_of_work/task.py, copied beside this file

    class SlowProofOfWork(ProofOfWork):
        def task(self, ctx):
            time.sleep(float(ctx.variables["WAIT_SECONDS"]))  # long in time, light on the CPU
            super().task(ctx)

    task = SlowProofOfWork()
"""


def test_task_longer_than_the_submission_window_is_paid_every_round(
    ledger: Ledger, sandbox_root: Path
) -> None:
    # task() takes 1.0 s = 10 slots (the proof-of-work example, after a 1 s wait); the submission
    # window is 5 slots (0.5 s). One node cheats. The second is a wait, not a busy search: four nodes
    # searching for 1 s each in every 4 s round kept both cores of a 2-core machine busy through each
    # submission window, and on a loaded machine starved the very submissions, reveals and audits
    # this test is about (an unaudited cheater, a task started late).
    code = write_task(sandbox_root / "slow_pow", SLOW_POW)
    shutil.copy(POW / "task.py", code / "proof_of_work.py")
    os.chmod(code / "proof_of_work.py", 0o644)
    slow = ["WAIT_SECONDS=1.0", "DIFFICULTY=8"]
    nodes, state, paid, submissions, lists, logs = run_network(
        ledger, sandbox_root, code, [slow, slow, slow, [*slow, "CHEAT=1"]], rounds=3, windows=(40, 5, 10)
    )
    keys = [n.info["staking_key"] for n in nodes]
    cheater, honest = keys[3], keys[:3]
    full = [r for r in paid if set(submissions.get(r, {})) == set(keys)]
    assert len(full) >= 3
    first = min(full)
    for r in range(first, max(full) + 1):  # from the first full round on, no paid round was missed
        assert r in paid, (r, paid)
    for r in full:
        assert set(lists[r]["rewards"]) == set(honest), lists[r]
        assert set(lists[r]["slashes"]) == {cheater}
    round_time = 40
    for log in logs[:3]:
        assert "zero bits after" in log  # the work really ran
        # Each phase that ended after its window is logged with its slots. A task() of 1 s (10 slots)
        # started in the first half of its 40-slot round has 2 s to spare: none may end after its
        # round. One started later (by a node that joined late in the round, or whose loop was
        # starved on a loaded machine) may, and still be submitted in time: a paid round.
        late = re.finditer(r"(task|submission) of round (\d+) took \d+ slots? \([\d.]+ s, slots (\d+)-", log)
        for match in late:
            phase, r, started = match.group(1), int(match.group(2)), int(match.group(3))
            started_late = phase == "task" and started - (state["starting_slot"] + r * round_time) >= 20
            assert r < first or started_late, (first, match.group(0))
        assert not re.search(rf"submit_proof for round ({'|'.join(map(str, full))}) refused", log)


def test_auditors_fetch_results_through_the_submitters_route(ledger: Ledger, sandbox_root: Path) -> None:
    nodes, state, paid, submissions, lists, logs = run_network(
        # each audit makes 3 HTTP requests through the nodes' proxies: a 3 s audit window
        ledger,
        sandbox_root,
        SHARED,
        [[], [], [], ["BAD_RESULT=1"]],
        rounds=2,
        windows=(40, 8, 30),
    )
    keys = [n.info["staking_key"] for n in nodes]
    full = [r for r in paid if set(submissions.get(r, {})) == set(keys)]
    assert len(full) >= 2
    for r in full:
        assert set(lists[r]["rewards"]) == set(keys[:3]), (r, lists[r], logs[0][-3000:])
        assert set(lists[r]["slashes"]) == {keys[3]}
