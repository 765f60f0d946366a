"""The simulator runs what the network runs: two lanes in virtual time, windows, routes over HTTP,
per-node variables and behaviours, author-defined faulty nodes, clean reports."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pykoii.cli import main
from pykoii.config import load_config
from pykoii.sdk import Task
from pykoii.testing import FAULTY, HONEST, simulate
from pykoii.testing.result import PROPERTY_ERRORS, PROPERTY_HONEST, PROPERTY_WINDOWS

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello_world"
POW = ROOT / "examples" / "proof_of_work"
SHARED = ROOT / "examples" / "shared_results"
HELLO_CONFIG = load_config(HELLO)  # 12-slot rounds, 4-slot windows
SLOT_MS = 20.0


class SlowWork(Task):
    """task() takes 6 slots of 20 ms: more than the 4-slot submission window, less than the round."""

    def task(self, ctx):
        time.sleep(0.12)
        ctx.store.set(f"value:{ctx.round}", "Hello, World!")

    def submission(self, ctx):
        return ctx.store.get(f"value:{ctx.round}")

    def audit(self, ctx, submission, submitter):
        return submission == "Hello, World!"


class SlowSubmission(SlowWork):
    """submission() takes 6 slots: it cannot meet its 4-slot window."""

    def task(self, ctx):
        ctx.store.set(f"value:{ctx.round}", "Hello, World!")

    def submission(self, ctx):
        time.sleep(0.12)
        return ctx.store.get(f"value:{ctx.round}")


def submitted_slots(result, round_number):
    return [
        entry["slot"]
        for entry in result.log
        if entry["tx"]["tx"]["type"] == "submit" and entry["tx"]["tx"]["round"] == round_number
    ]


def test_task_longer_than_the_submission_window_is_paid_every_round():
    result = simulate(SlowWork(), config=HELLO_CONFIG, nodes=4, rounds=3, slot_ms=SLOT_MS)
    assert result.ok, result.properties
    assert [r.outcome for r in result.reports] == ["paid"] * 3
    assert [r.submissions for r in result.reports] == [4, 4, 4]
    assert max(result.timings["task"]) / SLOT_MS > HELLO_CONFIG.submission_window
    for report in result.reports:  # every proof arrived inside its window, while task(R+1) ran
        assert all(slot in report.submission_window for slot in submitted_slots(result, report.round))
    assert result.overruns == []


def test_a_phase_that_cannot_meet_its_window_is_reported_with_the_numbers():
    result = simulate(SlowSubmission(), config=HELLO_CONFIG, nodes=3, rounds=2, slot_ms=SLOT_MS)
    assert PROPERTY_WINDOWS in result.failed
    late = [line for line in result.overruns if "submission of round 0" in line]
    assert late, result.overruns
    took = int(re.search(r"took (\d+) slots", late[0]).group(1))
    assert took >= 5 and "its window is 4 slots" in late[0]
    assert any(entry["error"] == "WrongPhaseError" for entry in result.refused())
    assert all(r.submissions == 0 for r in result.reports)


def test_the_report_prints_phase_slots_against_windows(capsys):
    code = main(["simulate", str(HELLO), "--nodes", "3", "--rounds", "1", "--slot-ms", "20", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "slots of 20 ms" in out and "window" in out
    assert re.search(r"submission\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\s+4\b", out), out


def test_nothing_paid_gives_a_clean_report(capsys):
    code = main(["simulate", str(HELLO), "--nodes", "3", "--rounds", "2", "--offline", "3", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no round was paid" in captured.out
    assert "Traceback" not in captured.err


def test_auditors_fetch_results_from_the_submitters_route():
    result = simulate(SHARED, nodes=5, rounds=3, faulty=1, faulty_behaviour={"BAD_RESULT": "1"}, seed=2)
    assert result.ok, result.properties
    (bad,) = result.faulty_keys
    assert result.slashed(bad) > 0 and result.reward(bad) == 0
    assert all(result.reward(key) > 0 for key in result.honest_keys)
    assert [r.outcome for r in result.reports] == ["paid"] * 3


def test_a_route_the_auditors_need_that_fails_fails_the_simulation(capsys):
    code = main(
        ["simulate", str(SHARED), "--nodes", "4", "--rounds", "2", "--node-var", "1:ROUTE_FAILS=1", "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"[FAILED] {PROPERTY_ERRORS}: node 1 route /task/" in captured.out
    assert "HTTP 500" in captured.out
    assert PROPERTY_HONEST in captured.err  # the node whose proof could not be checked was slashed


def test_node_urls_answer_the_tasks_routes():
    seen: dict[str, int] = {}

    class Probe(Task):
        def task(self, ctx):
            import httpx

            for key, url in ctx.nodes().items():
                answer = httpx.get(f"{url}/task/{ctx.task_id}/", timeout=10).json()
                assert answer["message"] == "Running" and answer["task_id"] == ctx.task_id
                seen[key] = seen.get(key, 0) + 1
            ctx.store.set("value", "Hello, World!")

        def routes(self):
            return []

        def audit(self, ctx, submission, submitter):
            return submission == "Hello, World!"

    result = simulate(Probe(), config=HELLO_CONFIG, nodes=3, rounds=1)
    assert result.task_errors == [] and result.ok, result.properties
    assert sorted(seen) == sorted(node.public_key for node in result.nodes)
    assert result.final_state.tasks[result.task_id].ip_address_list[result.nodes[0].public_key] == (
        "http://node-0.simulated"  # the ledger keeps the registered URL; the task reads the live one
    )


def test_pow_oracle_cheaters_are_caught():
    result = simulate(POW, nodes=6, rounds=3, faulty=2, faulty_behaviour={"CHEAT": "1"}, seed=5)
    assert result.ok, result.properties
    assert all(result.slashed(key) > 0 for key in result.faulty_keys)
    assert all(result.reward(key) > 0 for key in result.honest_keys)


def test_per_node_variables_and_fixed_roles():
    # node 1 is faulty by role and runs the task's own faulty mode; node 3 gets FAULTY=1 as its own
    # variable while counted honest, so the run rightly reports an honest node slashed.
    result = simulate(
        HELLO,
        nodes=5,
        rounds=2,
        roles={1: FAULTY},
        faulty_behaviour={"FAULTY": "1"},
        node_variables={3: {"FAULTY": "1"}},
    )
    assert result.nodes[1].role == FAULTY and result.nodes[3].role == HONEST
    values = {
        entry["tx"]["tx"]["signer"]: entry["tx"]["tx"]["submission_value"]
        for entry in result.log
        if entry["tx"]["tx"]["type"] == "submit"
    }
    assert values[result.nodes[1].public_key] == values[result.nodes[3].public_key] == "Goodbye, World!"
    assert result.failed == [PROPERTY_HONEST]
    assert "node 3" in next(c.detail for c in result.properties if c.name == PROPERTY_HONEST)


def test_faulty_behaviour_as_a_task_or_a_hook():
    as_task = simulate(
        HELLO, nodes=5, rounds=2, faulty=1, faulty_behaviour=ROOT / "examples" / "hello_world_faulty"
    )
    assert as_task.ok and as_task.slashed(as_task.faulty_keys[0]) > 0
    # a hook that returns the proof unchanged: the node is not expected to be caught, and is not
    same = simulate(HELLO, nodes=4, rounds=2, faulty=1, faulty_behaviour=lambda ctx, proof: proof)
    assert same.ok and same.slashed(same.faulty_keys[0]) == 0
    wrong = simulate(HELLO, nodes=4, rounds=2, faulty=1, faulty_behaviour=lambda ctx, proof: proof.upper())
    assert wrong.ok and wrong.slashed(wrong.faulty_keys[0]) > 0


def test_submission_returning_none_skips_the_round():
    class OddRoundsOnly(Task):
        def task(self, ctx):
            ctx.store.set("value", "Hello, World!")

        def submission(self, ctx):
            return "Hello, World!" if ctx.round % 2 else None

        def audit(self, ctx, submission, submitter):
            return submission == "Hello, World!"

    result = simulate(OddRoundsOnly(), config=HELLO_CONFIG, nodes=3, rounds=4)
    assert result.ok and result.task_errors == []
    assert [r.submissions for r in result.reports] == [0, 3, 0, 3]
    assert [r.outcome for r in result.reports] == ["unsettled", "paid", "unsettled", "paid"]
