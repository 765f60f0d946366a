"""The CLI end to end against a real ledger and real nodes:
deploy → node add-task → rounds → claim → withdraw (refused while locked, then accepted) → claim."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pykoii.devnet import Devnet
from pykoii.keys import Keypair

from .node.harness import wait_until

REPO = Path(__file__).resolve().parents[1]
KOII = 10**9
SLOT_MS = 150
WINDOWS = {"round_time": 40, "submission_window": 12, "audit_window": 16}
"""The example's windows widened for this test: its own (12/4/4 slots) leave a 2-slot (0.3 s) reveal
window at 150 ms slots, which a starved node misses (it is then judged invalid and slashed, and its
stake comes back short). 8 reveal slots are 1.2 s; the rounds are 6 s."""


def widened_example(folder: Path) -> Path:
    """A copy of examples/hello_world whose config-task.yml has ``WINDOWS``."""
    shutil.copytree(REPO / "examples" / "hello_world", folder)
    config = folder / "config-task.yml"
    text = config.read_text()
    for name, value in WINDOWS.items():
        text, count = re.subn(rf"^{name}: .*$", f"{name}: {value}", text, flags=re.MULTILINE)
        assert count == 1, f"{config} has no single {name} line"
    config.write_text(text)
    return folder


def cli(*args: str, env_ledger: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pykoii.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYKOII_LEDGER": env_ledger},
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def node_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pykoii.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def devnet(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Devnet(tmp_path / "net", nodes_count=2, slot_ms=SLOT_MS, poll=0.05) as net:
        yield net


def test_deploy_run_claim_withdraw_through_the_cli(devnet: Devnet, tmp_path: Path) -> None:
    ledger = devnet.ledger_url
    author = tmp_path / "author.json"
    cli("wallet", "new", "--wallet", str(author), env_ledger=ledger)
    cli("wallet", "airdrop", "150", "--wallet", str(author), env_ledger=ledger)
    deployed = cli(
        "task",
        "deploy",
        str(widened_example(tmp_path / "hello_world")),
        "--wallet",
        str(author),
        env_ledger=ledger,
    )
    task_id = re.search(r"task id: (\w+)", deployed.stdout).group(1)  # type: ignore[union-attr]
    assert task_id in cli("task", "list", env_ledger=ledger).stdout
    info = cli("task", "info", task_id, env_ledger=ledger).stdout
    assert "bounty left       100 KOII" in info and "FAULTY" in info

    for node in devnet.nodes:
        cli(
            "wallet",
            "airdrop",
            "10",
            "--to",
            node.wallet.public_key,
            "--wallet",
            str(author),
            env_ledger=ledger,
        )
        node_cli(
            "node", "add-task", task_id, "--stake", "5", "--var", "FAULTY=0", "--data", str(node.data_dir)
        )

    assert devnet.client is not None
    client = devnet.client
    wait_until(
        lambda: (
            "PayoutSuccessful"
            in client.task(task_id, is_distribution_required=True)["distributions_audit_record"].values()
        ),
        120,
        "a paid round",
    )
    node = devnet.nodes[0]
    staking = str(node.data_dir / "keys" / "staking_wallet.json")
    before = client.account(node.wallet.public_key)["balance"]
    claimed = cli("claim", task_id, "--staking-key", staking, env_ledger=ledger)
    assert "RewardClaimed" in claimed.stdout
    assert client.account(node.wallet.public_key)["balance"] > before

    refused = cli("withdraw", task_id, "--staking-key", staking, env_ledger=ledger, check=False)
    assert refused.returncode == 1
    assert "StakeLockedError" in refused.stderr and "which is not settled yet" in refused.stderr

    node_cli("node", "stop-task", task_id, "--data", str(node.data_dir))
    unlock = wait_until(
        lambda: (
            cli("withdraw", task_id, "--staking-key", staking, env_ledger=ledger, check=False).returncode == 0
        ),
        180,
        "the stake lock to pass",
    )
    assert unlock
    stake_back = cli(
        "claim",
        task_id,
        "--staking-key",
        staking,
        "--beneficiary",
        Keypair.load(author).public_key,
        env_ledger=ledger,
    )
    amount = re.search(r"RewardClaimed: .*amount=([0-9.]+) KOII", stake_back.stdout)
    assert amount is not None and float(amount.group(1)) >= 5  # the stake, plus rewards paid since the claim
