"""Operator commands run as a user runs them (real processes, real ports, real signals):

- a busy port makes ``ledger serve``, ``devnet up`` and ``node run`` fail before they print where
  they listen; an unwritable ``--data`` is one clear line, no traceback;
- ``devnet up`` funds its nodes and an author wallet, prints their keys, and its printed hints work
  as typed: deploy, then ``node add-task --data`` reaches the node that owns that folder;
- ``claim`` pays the node's main wallet by default;
- ``devnet up`` (SIGTERM) and ``node run`` started in the background (SIGINT ignored by the shell)
  stop every process they started, task children included.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pykoii.keys import Keypair

from .node.harness import HELLO_WORLD, Ledger, wait_until

PYKOII = [sys.executable, "-m", "pykoii.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYKOII, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def task_children(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if b"pykoii.node.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(pid)
        except OSError:
            pass
    return out


def published(data: Path) -> dict[str, str]:
    """``DATA/operator.json`` once ``node run`` wrote it whole: its two ports are bound by then (0: the
    OS picked them, race-free), and its URLs say which."""

    def read() -> dict[str, str] | None:
        try:
            return dict(json.loads((data / "operator.json").read_text()))
        except (OSError, ValueError):
            return None

    return wait_until(read, 90, f"{data}/operator.json")  # type: ignore[no-any-return]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_port_fails_cleanly_before_anything_claims_to_listen(busy_port: int, tmp_path: Path) -> None:
    for args, option in (
        (("ledger", "serve", "--data", str(tmp_path / "ledger"), "--port", str(busy_port)), "--port"),
        (("devnet", "up", "--data", str(tmp_path / "net"), "--ledger-port", str(busy_port)), "--ledger-port"),
        (("devnet", "up", "--data", str(tmp_path / "net"), "--ledger-port", "0",
          "--node-port", str(busy_port)), "--node-port"),
        (("node", "run", "--data", str(tmp_path / "node"), "--port", str(busy_port)), "--port"),
        (("node", "run", "--data", str(tmp_path / "node"), "--port", "0",
          "--dashboard-port", str(busy_port)), "--dashboard-port"),
    ):  # fmt: skip
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in result.stderr
        assert f"pass another {option}" in result.stderr
        assert "Traceback" not in result.stderr
        assert "listening" not in result.stdout and "serving" not in result.stdout
        assert "devnet in" not in result.stdout
    assert not (tmp_path / "ledger").exists() and not (tmp_path / "node").exists()


def test_node_run_on_an_unwritable_data_folder_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(
        "node", "run", "--data", str(blocker / "node"), "--port", "0", "--dashboard-port", "0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"--data {blocker / 'node'}: cannot create or write the node's folder: Not a directory"
        in result.stderr
    )


def test_devnet_hints_work_as_printed_claim_pays_the_node_and_sigterm_leaves_no_process(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "net"
    out = tmp_path / "devnet.out"
    devnet = subprocess.Popen(  # every port 0: the OS picks them (race-free), the hints say which
        [*PYKOII, "devnet", "up", "--nodes", "2", "--slot-ms", "100", "--data", str(folder),
         "--ledger-port", "0", "--node-port", "0"],
        stdout=open(out, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        text = wait_until(
            lambda: "stops every process" in out.read_text() and out.read_text(), 90, "the devnet's hints"
        )
        ledger_url = re.search(r"ledger +(http://\S+)", text).group(1)  # type: ignore[union-attr]
        node_urls = re.findall(r"node-\d +(http://\S+)/", text)
        wallets = re.findall(r"main wallet (\w+) \(100 KOII\)", text)
        staking = re.findall(r"staking key (\w+)", text)
        assert len(wallets) == 2 and len(staking) == 2
        for key in wallets:  # funded: the node can stake right away
            assert httpx.get(f"{ledger_url}/accounts/{key}").json()["balance"] == 100 * 10**9

        # The deploy hint, exactly as printed (environment assignments, then the command).
        deploy = shlex.split(re.search(r"deploy a task:\s+(.*)", text).group(1))  # type: ignore[union-attr]
        env = dict(word.split("=", 1) for word in deploy if "=" in word and not word.startswith("/"))
        command = [word for word in deploy if word not in {f"{k}={v}" for k, v in env.items()}]
        assert command[:3] == ["pykoii", "task", "deploy"] and Path(command[3]) == HELLO_WORLD
        deployed = run(*command[1:], env=env)
        assert deployed.returncode == 0, deployed.stderr
        task_id = re.search(r"task id: (\w+)", deployed.stdout).group(1)  # type: ignore[union-attr]

        # The add-task hint, with TASK_ID filled in: no --node, the folder leads to its node.
        hint = re.search(r"then add it:\s+(.*)", text).group(1)  # type: ignore[union-attr]
        add = shlex.split(hint.replace("TASK_ID", task_id))
        added = run(*add[1:])
        assert added.returncode == 0, added.stderr
        assert f"task {task_id} added" in added.stdout
        node_1 = folder / "node-1"
        assert [t["TaskID"] for t in httpx.get(node_urls[0] + "/tasks").json()] == [task_id]
        assert httpx.get(f"{node_urls[1]}/tasks").json() == []

        # A wrong --node with this folder: the error names the real problem, not the token.
        wrong = run(
            "node", "add-task", task_id, "--stake", "5", "--data", str(node_1),
            "--node", json.loads((folder / "node-2" / "operator.json").read_text())["url"],
        )  # fmt: skip
        assert wrong.returncode == 1
        assert "is not the node whose --data is" in wrong.stderr and staking[0] in wrong.stderr

        # A paid round, then `claim` with only --data pays the node's main wallet.
        wait_until(
            lambda: (
                httpx.get(f"{ledger_url}/tasks/{task_id}", params={"is_available_balances_required": "true"})
                .json()["available_balances"]
                .get(staking[0], 0)
            ),
            90,
            "node-1 to have a claimable reward",
        )
        before = httpx.get(f"{ledger_url}/accounts/{wallets[0]}").json()["balance"]
        claimed = run("claim", task_id, "--data", str(node_1), "--ledger", ledger_url)
        assert claimed.returncode == 0, claimed.stderr
        assert f"claiming to {wallets[0]} (the node main wallet)" in claimed.stdout
        assert httpx.get(f"{ledger_url}/accounts/{wallets[0]}").json()["balance"] > before

        started = descendants(devnet.pid)
        assert task_children(started), "the task child should be running"
    finally:
        started = descendants(devnet.pid)
        devnet.send_signal(signal.SIGTERM)
        assert devnet.wait(90) == 0
    wait_until(lambda: not any(alive(pid) for pid in started), 30, "every devnet process to exit")
    assert "stopping the devnet" in out.read_text()


def test_node_run_in_the_background_stops_with_its_task_children_on_sigint(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    ledger = Ledger(tmp_path / "ledger", slot_ms=100)
    try:
        task_id = ledger.create_hello_world(
            Keypair.generate(),
            round_time=12,
            submission_window=4,
            audit_window=4,
        )
        data = tmp_path / "node"
        node = subprocess.Popen(  # as `pykoii node run &` in a script: SIGINT ignored on entry
            [*PYKOII, "node", "run", "--ledger", ledger.url, "--data", str(data), "--port", "0",
             "--dashboard-port", "0"],
            stdout=open(tmp_path / "node.out", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
        main = published(data)["main_account"]
        ledger.airdrop(main, 20)
        added = run("node", "add-task", task_id, "--stake", "5", "--data", str(data))
        assert added.returncode == 0, added.stderr
        children = wait_until(lambda: task_children(descendants(node.pid)), 90, "the task child")
        everything = descendants(node.pid)
        node.send_signal(signal.SIGINT)
        assert node.wait(60) == 0
        assert not any(alive(pid) for pid in children | everything)
        assert "node stopped" in (tmp_path / "node.out").read_text()
    finally:
        ledger.stop()


def test_add_task_refuses_a_missing_task_variable_and_a_new_var_restarts_the_child(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    ledger = Ledger(tmp_path / "ledger", slot_ms=100)
    node = None
    try:
        author = tmp_path / "author.json"
        Keypair.generate().save(author)
        ledger.airdrop(Keypair.load(author).public_key, 200)
        env = {"PYKOII_LEDGER": ledger.url, "PYKOII_WALLET": str(author)}
        deployed = run("task", "deploy", str(HELLO_WORLD), env=env)
        assert deployed.returncode == 0, deployed.stderr
        task_id = re.search(r"task id: (\w+)", deployed.stdout).group(1)  # type: ignore[union-attr]
        data = tmp_path / "node"
        node = subprocess.Popen(
            [*PYKOII, "node", "run", "--ledger", ledger.url, "--data", str(data), "--port", "0",
             "--dashboard-port", "0", "--poll", "0.05"],
            stdout=open(tmp_path / "node.out", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        keys = published(data)
        url = keys["public_url"]
        ledger.airdrop(keys["main_account"], 20)

        refused = run("node", "add-task", task_id, "--stake", "5", "--data", str(data))
        assert refused.returncode == 1
        assert "needs the task variable(s) FAULTY (Set to 1 to submit a wrong value" in refused.stderr
        assert "received none" in refused.stderr and "nothing was staked" in refused.stderr
        assert httpx.get(f"{ledger.url}/accounts/{keys['main_account']}").json()["balance"] == 20 * 10**9
        assert httpx.get(f"{ledger.url}/accounts/{keys['staking_key']}").json()["balance"] == 0
        assert httpx.get(f"{url}/tasks").json() == []

        honest = run("node", "add-task", task_id, "--stake", "5", "--var", "FAULTY=0", "--data", str(data))
        assert honest.returncode == 0, honest.stderr
        first = wait_until(lambda: task_children(descendants(node.pid)), 90, "a task child")
        wait_until(
            lambda: "Hello, World!" in json.dumps(ledger.task(task_id)["submissions"]),
            90,
            "an honest submission",
        )

        faulty = run("node", "add-task", task_id, "--stake", "5", "--var", "FAULTY=1", "--data", str(data))
        assert faulty.returncode == 0, faulty.stderr
        assert "the task child was restarted" in faulty.stdout
        second = wait_until(lambda: task_children(descendants(node.pid)) - first, 90, "a new task child")
        assert not any(alive(pid) for pid in first) and second

        def wrong_value_submitted() -> bool:
            rounds = ledger.task(task_id)["submissions"].values()
            return any(s.get("submission_value") != "Hello, World!" for r in rounds for s in r.values())

        wait_until(wrong_value_submitted, 90, "a submission made with FAULTY=1")
        info = httpx.get(f"{url}/tasks/{task_id}").json()
        assert info["variables"] == ["FAULTY"] and info["restarts"] == 1
    finally:
        if node is not None:
            node.send_signal(signal.SIGTERM)
            node.wait(60)
        ledger.stop()


def start_node(
    tmp_path: Path, name: str, ledger: Ledger, *extra: str
) -> tuple[subprocess.Popen[bytes], Path, str]:
    data = tmp_path / name
    process = subprocess.Popen(
        [*PYKOII, "node", "run", "--ledger", ledger.url, "--data", str(data), "--port", "0",
         "--dashboard-port", "0", "--poll", "0.05", *extra],
        stdout=open(tmp_path / f"{name}.out", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return process, data, str(published(data)["public_url"])


def test_task_update_is_followed_by_auto_nodes_and_offered_to_ask_nodes(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    ledger = Ledger(tmp_path / "ledger", slot_ms=100)
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        author = tmp_path / "author.json"
        Keypair.generate().save(author)
        ledger.airdrop(Keypair.load(author).public_key, 200)
        env = {"PYKOII_LEDGER": ledger.url, "PYKOII_WALLET": str(author)}
        deployed = run("task", "deploy", str(HELLO_WORLD), env=env)
        assert deployed.returncode == 0, deployed.stderr
        old_id = re.search(r"task id: (\w+)", deployed.stdout).group(1)  # type: ignore[union-attr]
        auto, auto_data, auto_url = start_node(tmp_path, "auto", ledger, "--follow-migrations", "auto")
        ask, ask_data, ask_url = start_node(tmp_path, "ask", ledger)
        nodes += [auto, ask]
        keys = {}
        for data in (auto_data, ask_data):
            keys[data] = json.loads((data / "operator.json").read_text())
            ledger.airdrop(keys[data]["main_account"], 50)
            added = run("node", "add-task", old_id, "--stake", "5", "--var", "FAULTY=0", "--data", str(data))
            assert added.returncode == 0, added.stderr
        wait_until(
            lambda: all(
                any(keys[d]["staking_key"] in s for s in ledger.task(old_id)["submissions"].values())
                for d in (auto_data, ask_data)
            ),
            90,
            "both nodes to submit on the old version",
        )

        updated = run("task", "update", old_id, str(HELLO_WORLD), env=env)
        assert updated.returncode == 0, updated.stderr
        new_id = re.search(r"new task id: (\w+)", updated.stdout).group(1)  # type: ignore[union-attr]
        assert (
            "--follow-migrations auto" in updated.stdout and f"pykoii node follow {old_id}" in updated.stdout
        )

        def tasks(url: str) -> dict[str, dict[str, object]]:
            return {t["TaskID"]: t for t in httpx.get(url + "/tasks").json()}

        # auto: the node stakes the same amount on the new version and runs it; the old one stops.
        wait_until(
            lambda: tasks(auto_url).get(new_id, {}).get("running"), 90, "the auto node to run the new version"
        )
        old = tasks(auto_url)[old_id]
        assert old["status"] == "migrated" and old["migrated_to"] == new_id and not old["running"]
        auto_key = keys[auto_data]["staking_key"]
        assert ledger.task(new_id)["stake_list"][auto_key] == 5 * 10**9
        wait_until(
            lambda: any(auto_key in s for s in ledger.task(new_id)["submissions"].values()),
            90,
            "a submission on the new version",
        )

        # ask (the default): the node stops the old version and offers the choice; nothing is staked.
        wait_until(lambda: tasks(ask_url)[old_id]["status"] == "migrated", 90, "the ask node to notice")
        assert new_id not in tasks(ask_url)
        ask_key = keys[ask_data]["staking_key"]
        assert ask_key not in ledger.task(new_id)["stake_list"]
        operator = keys[ask_data]["url"]
        secret = (ask_data / "operator.token").read_text().strip()
        with httpx.Client(base_url=operator, headers={"Accept": "text/html"}) as browser:
            assert browser.get(f"/login?token={secret}").status_code == 303  # the session cookie
            page = browser.get(f"/dashboard/tasks/{old_id}").text
        assert "This task was migrated to a new version" in page and 'id="follow"' in page
        logs = httpx.get(f"{operator}/tasks/{old_id}/logs", headers={"Authorization": f"Bearer {secret}"})
        assert "the task was migrated to" in logs.text
        followed = run("node", "follow", old_id, "--data", str(ask_data))
        assert followed.returncode == 0, followed.stderr
        assert f"was migrated to {new_id}: staked" in followed.stdout
        assert ledger.task(new_id)["stake_list"][ask_key] == 5 * 10**9
        wait_until(
            lambda: tasks(ask_url).get(new_id, {}).get("running"), 90, "the ask node to run the new version"
        )
    finally:
        for process in nodes:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        ledger.stop()
