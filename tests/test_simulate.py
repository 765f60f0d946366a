"""The simulator: the author's real task code on N nodes against the real ledger state machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pykoii.cli import main
from pykoii.config import load_config
from pykoii.errors import ConfigError
from pykoii.keys import verify_envelope
from pykoii.ledger import state_root
from pykoii.sdk import Task
from pykoii.testing import FAULTY, LAZY, OFFLINE, simulate

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello_world"
KOII = 1_000_000_000


class AlwaysTrueAudit(Task):
    """A broken audit: approves everything, so wrong proofs go unpunished."""

    def task(self, ctx):
        ctx.store.set("value", "Hello, World!")

    def audit(self, ctx, submission, submitter):
        return True


def test_seed_rule_exact_amounts_for_five_nodes_one_faulty():
    result = simulate(HELLO, nodes=5, rounds=4, faulty=1, stake=5 * KOII)
    assert result.ok, result.properties
    (faulty,) = result.faulty_keys
    per_round = KOII // 4  # bounty_amount_per_round 1 KOII split among the 4 valid submitters
    for key in result.honest_keys:
        assert result.reward(key) == 4 * per_round
        assert result.final_stakes[key] == 5 * KOII
    # 70 % of 5 KOII, then (rounds stack: round 1's proof was sent before round 0 was paid) 70 % of
    # the 1.5 KOII left; then its stake (0.45) is below the 2 KOII minimum and it stops submitting.
    first, second = 5 * KOII * 70 // 100, (5 * KOII - 5 * KOII * 70 // 100) * 70 // 100
    assert [r.slashed.get(faulty, 0) for r in result.reports] == [first, second, 0, 0]
    assert result.slashed(faulty) == first + second == 4_550_000_000
    assert result.reward(faulty) == 0
    assert [r.outcome for r in result.reports] == ["paid"] * 4
    assert [r.submissions for r in result.reports] == [5, 5, 4, 4]


def test_same_seed_gives_a_byte_identical_log_and_rewards():
    args = dict(nodes=12, rounds=4, faulty=2, lazy_auditors=2, offline=1, seed=42)
    first, second = simulate(HELLO, **args), simulate(HELLO, **args)
    assert first.log_bytes() == second.log_bytes()
    assert first.rewards == second.rewards and first.slashes == second.slashes
    assert state_root(first.final_state) == state_root(second.final_state)
    other = simulate(HELLO, **{**args, "seed": 43})
    assert other.log_bytes() != first.log_bytes()


def test_every_logged_transaction_is_really_signed():
    result = simulate(HELLO, nodes=4, rounds=2, faulty=1)
    signers = {node.public_key for node in result.nodes}
    manager = result.final_state.tasks[result.task_id].task_manager
    for entry in result.log:
        tx = verify_envelope(entry["tx"])
        assert tx.signer == entry["tx"]["tx"]["signer"] and tx.signer in signers | {manager}
    tampered = dict(result.log[-1]["tx"])
    tampered["tx"] = {**tampered["tx"], "round": 99}
    with pytest.raises(Exception, match="signature"):
        verify_envelope(tampered)


def test_broken_audit_fails_faulty_submitters_caught():
    config = load_config(HELLO)
    result = simulate(AlwaysTrueAudit(), config=config, nodes=5, rounds=3, faulty=1)
    assert not result.ok
    assert result.failed == ["faulty submitters caught"]
    (faulty,) = result.faulty_keys
    assert result.slashed(faulty) == 0 and result.reward(faulty) > 0


def test_cli_exits_non_zero_naming_the_failed_property(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(HELLO / "config-task.yml", folder)
    (folder / "task.py").write_text(
        "from pykoii.sdk import Task\n\n\nclass Broken(Task):\n"
        "    def task(self, ctx):\n        ctx.store.set('value', 'x')\n\n"
        "    def audit(self, ctx, submission, submitter):\n        return True\n"
    )
    assert main(["simulate", str(folder), "--nodes", "5", "--rounds", "3", "--faulty", "1"]) == 1
    captured = capsys.readouterr()
    assert "incentive property failed: faulty submitters caught" in captured.err
    assert "[FAILED] faulty submitters caught" in captured.out


def test_cli_prints_timeline_timing_and_rewards_in_koii(capsys):
    code = main(["simulate", str(HELLO), "--nodes", "5", "--rounds", "3", "--faulty", "1", "--stake", "5"])
    out = capsys.readouterr()
    assert code == 0
    for fragment in (
        "Timeline",
        "Stacking rounds",
        "Phase timing",
        "avg ms",
        "Rewards and slashes (each node staked 5 KOII)",
        "3.5 KOII",
        "[ok] honest nodes never slashed",
        "[ok] faulty submitters caught",
    ):
        assert fragment in out.out, fragment
    assert "round 0/2" in out.err  # live progress


def test_lazy_and_offline_nodes():
    result = simulate(HELLO, nodes=10, rounds=3, faulty=1, lazy_auditors=3, offline=2, seed=3)
    assert result.ok, result.properties
    for key in result.keys(OFFLINE):
        assert result.reward(key) == 0 and result.slashed(key) == 0
        assert not any(entry["tx"]["tx"]["signer"] == key and entry["slot"] > 0 for entry in result.log)
    lazy = set(result.keys(LAZY))
    voters = {e["tx"]["tx"]["signer"] for e in result.log if e["tx"]["tx"]["type"].startswith("audit_")}
    assert voters and not voters & lazy
    assert all(result.reward(key) > 0 for key in lazy)  # lazy auditors still submit and get paid
    assert len(result.keys(FAULTY)) == 1


def test_all_auditors_lazy_means_nobody_is_caught():
    result = simulate(HELLO, nodes=3, rounds=2, faulty=1, lazy_auditors=2)
    assert result.failed == ["faulty submitters caught"]


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="--faulty \\+ --lazy-auditors \\+ --offline is 6"):
        simulate(HELLO, nodes=5, faulty=3, lazy_auditors=3)
    with pytest.raises(ConfigError, match="--nodes is 0"):
        simulate(HELLO, nodes=0)
    with pytest.raises(ConfigError, match="no config"):
        simulate(AlwaysTrueAudit())


def test_async_task_methods_and_task_variables(tmp_path):
    folder = tmp_path / "asyncy"
    folder.mkdir()
    shutil.copy(HELLO / "config-task.yml", folder)
    (folder / "task.py").write_text(
        "from pykoii.sdk import Task\n\n\nclass AsyncTask(Task):\n"
        "    async def task(self, ctx):\n        ctx.store.set('value', ctx.variables['WORD'])\n\n"
        "    async def submission(self, ctx):\n        return ctx.store.get('value')\n\n"
        "    async def audit(self, ctx, submission, submitter):\n        return submission == 'hi'\n"
    )
    result = simulate(folder, nodes=4, rounds=2, faulty=1, variables={"WORD": "hi"})
    assert result.ok and result.task_errors == []
    assert result.slashed(result.faulty_keys[0]) > 0


def test_task_code_errors_are_reported_not_raised(tmp_path):
    folder = tmp_path / "crashy"
    folder.mkdir()
    shutil.copy(HELLO / "config-task.yml", folder)
    (folder / "task.py").write_text(
        "from pykoii.sdk import Task\n\n\nclass Crashy(Task):\n"
        "    def task(self, ctx):\n        raise RuntimeError('boom')\n"
    )
    result = simulate(folder, nodes=3, rounds=1)
    assert any("RuntimeError: boom" in error for error in result.task_errors)
