"""Real node processes against a real ledger service subprocess: rounds, payouts, restarts, proxy."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from pykoii.keys import Keypair

from .conftest import write_task
from .harness import Ledger, NodeProcess, add_task, nodes_on_task, proofs_sent, wait_until, watch_rounds

BOUNTY = 10**9
STAKE_KOII = 5


def test_five_nodes_one_faulty_four_rounds_paid_by_the_seed_rule(ledger: Ledger, sandbox_root: Path) -> None:
    task_id = ledger.create_hello_world(
        Keypair.generate(), round_time=24, submission_window=9, audit_window=9, minimum_stake=10**7
    )
    with nodes_on_task(
        sandbox_root, ledger, task_id, 5, stake=STAKE_KOII, options={4: ("--var", "FAULTY=1")}
    ) as nodes:
        everyone = {n.info["staking_key"] for n in nodes}
        faulty = nodes[4].info["staking_key"]
        honest = everyone - {faulty}

        def enough(paid: list[int], submissions: dict[int, dict]) -> bool:
            return sum(1 for r in paid if set(submissions.get(r, {})) == everyone) >= 4

        state, paid, submissions, lists = watch_rounds(ledger, task_id, enough, 150)
        expected_balance = {key: 0 for key in honest}
        stake = STAKE_KOII * 10**9
        full_rounds = 0
        # A round paid before the watch began (five add-tasks take a while on a loaded machine) was
        # pruned unseen: checked are the rounds seen, and the balances only if every paid one was.
        seen = [r for r in paid if r in submissions and r in lists]
        for r in seen:
            valid = [key for key in submissions[r] if key != faulty]
            assert set(valid) <= honest
            assert lists[r]["rewards"] == {key: BOUNTY // len(valid) for key in valid}  # the seed's rule
            for key in valid:
                expected_balance[key] += BOUNTY // len(valid)
            if faulty in submissions[r]:
                assert lists[r]["slashes"] == {faulty: stake * 70 // 100}  # 70 % of its stake
                stake -= stake * 70 // 100
            else:
                assert lists[r]["slashes"] == {}
            full_rounds += set(submissions[r]) == everyone
        assert full_rounds >= 4
        final = ledger.task(task_id)
        settled = sorted(
            int(r) for r, v in final["distributions_audit_record"].items() if v == "PayoutSuccessful"
        )
        if settled == paid == seen:  # nothing more paid since we looked, all seen: balances match exactly
            assert {k: final["available_balances"].get(k, 0) for k in honest} == expected_balance
            assert final["stake_list"][faulty] == stake
        assert faulty not in final["available_balances"]
        assert final["stake_list"][faulty] < STAKE_KOII * 10**9 * 30 // 100 + 1


def test_killed_node_restarts_without_double_submission_and_catches_up(
    ledger: Ledger, sandbox_root: Path
) -> None:
    # 10 s rounds (100 ms slots). The node is killed right after it sent a proof, inside the submission
    # window; restarted, it must reveal that proof before the reveal window (half the audit window,
    # 4 s) closes, or the proof is judged invalid and the stake slashed. It reveals before it starts
    # its task child; its own start-up takes 1-2 s, several on a loaded machine.
    timing = {"round_time": 100, "submission_window": 10, "audit_window": 80}
    task_id = ledger.create_hello_world(Keypair.generate(), **timing)
    with nodes_on_task(sandbox_root, ledger, task_id, 3) as nodes:
        victim = nodes[0]
        me = victim.info["staking_key"]
        wait_until(
            lambda: any(me in subs for subs in ledger.task(task_id)["submissions"].values()),
            120,
            "a first submission",
        )
        # kill it inside a submission window, right after it has sent work: mid-round
        number, state = wait_until(
            lambda: proofs_sent(ledger, task_id, {me}, timing, 1), 60, "the victim's proof, inside a window"
        )
        victim.kill()
        stake, killed_round = state["stake_list"][me], number + 1
        time.sleep(0.5)
        victim.start()
        wait_until(
            lambda: me in ledger.task(task_id)["submissions"].get(str(killed_round + 2), {}),
            120,
            "the restarted node to submit again",
        )
        # the round it was killed in was paid before this proof's window: a restart cost no stake
        assert ledger.task(task_id)["stake_list"][me] == stake
        actions = [a for a in victim.actions() if a["kind"] == "submit_proof"]
        rounds = [a["round"] for a in actions]
        assert len(rounds) == len(set(rounds))
        assert all(a["status"] == "done" for a in actions), [(a["round"], a["status"]) for a in actions]
        log = victim.logs(task_id)
        assert not any("submit_proof" in line and "refused" in line for line in log.splitlines()), log
        assert "re-sending" in log or all(a["status"] == "done" for a in actions)


CRASHER = """
    import os
    from pykoii import sdk
    class Crasher(sdk.Task):
        def task(self, ctx):
            os._exit(1)
"""

HANGER = """
    import time
    from pykoii import sdk
    class Hanger(sdk.Task):
        def task(self, ctx):
            time.sleep(3600)
"""


def test_node_proxies_routes_and_survives_crashing_and_hanging_tasks(
    ledger: Ledger, sandbox_root: Path
) -> None:
    creator = Keypair.generate()
    hello = ledger.create_hello_world(creator, round_time=10, submission_window=4, audit_window=4)
    crash = ledger.create_hello_world(creator, round_time=10, submission_window=4, audit_window=4)
    hang = ledger.create_hello_world(creator, round_time=10, submission_window=4, audit_window=4)
    node = NodeProcess(sandbox_root / "node", ledger.url, extra=("--phase-timeout", "1", "--grace", "0.5"))
    try:
        add_task(node, ledger, hello)
        add_task(node, ledger, crash, "--code", str(write_task(sandbox_root / "crasher", CRASHER)))
        add_task(node, ledger, hang, "--code", str(write_task(sandbox_root / "hanger", HANGER)))
        assert httpx.get(f"{node.url}/task/unknown-task/value").status_code == 422
        assert httpx.get(f"{node.url}/task/unknown-task/value").json() == {
            "message": "Task unknown-task not running"
        }
        value = wait_until(
            lambda: httpx.get(f"{node.url}/task/{hello}/value").json().get("value"), 20, "the value"
        )
        assert value == "Hello, World!"

        def tasks() -> dict[str, dict]:
            return {t["TaskID"]: t for t in httpx.get(f"{node.url}/tasks").json()}

        wait_until(
            lambda: tasks()[crash]["restarts"] >= 2 and tasks()[hang]["restarts"] >= 1,
            40,
            "the crashing and the hanging task to be restarted",
        )

        def exits(task_id: str) -> list[str]:  # the node's events: every exit, whatever came after
            return [
                e["detail"] for e in node.operator("GET", f"/tasks/{task_id}/events") if e["kind"] == "exit"
            ]

        # Why each child ended, from the node's events (last_error holds only the latest problem: on
        # a loaded machine a late submission of the crashing task's short-lived child may follow).
        assert any("exit code 1" in detail for detail in exits(crash)), exits(crash)
        assert any("ran over its 1 s limit" in detail for detail in exits(hang)), exits(hang)
        listed = tasks()
        assert listed[crash]["last_error"] and listed[hang]["last_error"]
        assert listed[hello]["status"] == "running" and listed[hello]["restarts"] == 0
        assert httpx.get(f"{node.url}/task/{hello}/value").json() == {"value": "Hello, World!"}
        assert httpx.get(f"{node.url}/").json()["status"] == "OK"
        logs = node.logs(crash)
        assert "restarting the task child" in logs
        assert "exit code 1" in logs

        result = node.cli("stop-task", hello)
        assert result.returncode == 0, result.stderr
        assert httpx.get(f"{node.url}/task/{hello}/value").status_code == 422
        assert node.cli("start-task", hello).returncode == 0
        wait_until(lambda: httpx.get(f"{node.url}/task/{hello}/value").status_code == 200, 20, "restart")
        assert node.cli("remove-task", hang).returncode == 0
        assert hang not in tasks()
        assert httpx.post(f"{node.url}/tasks/{hello}/stop").status_code == 404  # nothing acts on 30017
        unauthorized = httpx.post(f"{node.operator_url}/tasks/{hello}/stop")
        assert unauthorized.status_code == 401
    finally:
        node.stop()


def test_node_refuses_code_that_does_not_match_its_cid(ledger: Ledger, sandbox_root: Path) -> None:
    creator = Keypair.generate()
    ledger.airdrop(creator.public_key, 200)
    receipt = ledger.send(
        creator,
        {
            "type": "create_task",
            "task_name": "Forged",
            "task_audit_program": "b" + "a" * 58,
            "total_bounty_amount": 10 * 10**9,
            "bounty_amount_per_round": 10**9,
            "round_time": 10,
            "audit_window": 4,
            "submission_window": 4,
            "minimum_stake_amount": 10**9,
            "allowed_failed_distributions": 3,
            "requirements_tags": [],
            "sample_size": 5,
        },
    )
    task_id = next(e["task_id"] for e in receipt["events"] if e.get("task_id"))
    node = NodeProcess(sandbox_root / "node", ledger.url)
    try:
        ledger.airdrop(node.info["main_account"], 50)
        result = node.cli("add-task", task_id, "--stake", "2")
        assert result.returncode == 1
        assert "Error" in result.stderr
        assert httpx.get(f"{node.url}/tasks").json() == []
    finally:
        node.stop()
