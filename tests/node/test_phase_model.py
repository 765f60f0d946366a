"""Koii's phase model on real node processes: a task() longer than the submission window is paid
every round; the two example tasks (proof-of-work oracle, audits through the submitter's route) run
on a local network of node processes against a ledger service, with faulty nodes, and are paid."""

from __future__ import annotations

import re
from pathlib import Path

from pykoii.keys import Keypair

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


def test_task_longer_than_the_submission_window_is_paid_every_round(
    ledger: Ledger, sandbox_root: Path
) -> None:
    # task() works 1.0 s = 10 slots; the submission window is 5 slots (0.5 s). One node cheats.
    # 4 s rounds: four nodes searching for 1 s each would keep both cores of a 2-core machine busy
    # in 2 s rounds, starving the very submissions and reveals this test is about.
    slow = ["WORK_SECONDS=1.0", "DIFFICULTY=8"]
    nodes, state, paid, submissions, lists, logs = run_network(
        ledger, sandbox_root, POW, [slow, slow, slow, [*slow, "CHEAT=1"]], rounds=3, windows=(40, 5, 10)
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
    for log in logs[:3]:
        assert "zero bits after" in log  # the work really ran, for the whole second
        # A node that joins late in a round starts that round's work late, so its first task() or two
        # may end after their round (reported with the numbers); none of the paid rounds' may.
        late = [
            int(match.group(1))
            for match in re.finditer(r"(?:task|submission) of round (\d+) took \d+ slots", log)
        ]
        assert all(r < first for r in late), (first, late)
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
