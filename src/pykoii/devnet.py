"""A local network of real processes: one ledger service and K nodes on localhost.

``Devnet`` starts ``pykoii ledger serve --devnet`` and ``pykoii node run`` as child processes, each
with its own data folder and log file under one folder, funds wallets by airdrop, deploys tasks and
adds them to nodes through each node's control API. ``pykoii devnet up`` and ``pykoii demo`` are
built on it, and so are the end-to-end tests.

>>> # with Devnet(Path("/tmp/net"), nodes=3, slot_ms=100) as net:
>>> #     task_id = net.deploy(Path("examples/hello_world"))
>>> #     for node in net.nodes: net.add_task(node, task_id, stake=5 * ROE_PER_KOII)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .client import LedgerClient
from .config import create_task_fields, load_config
from .errors import PykoiiError, SandboxError
from .keys import Keypair
from .ledger.types import ROE_PER_KOII
from .node.control import OPERATOR_FILE
from .packaging import publish
from .ports import free_port as free_port  # re-exported: chain/network.py and tests/chain import it here

LISTENING = re.compile(r"listening on (http://\S+)")
"""The line ``ledger serve`` prints once it has bound its port (the one the OS picked, on 0)."""

AIRDROP_LIMIT = 1_000 * ROE_PER_KOII


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that nobody listens on right now
    (``devnet up --node-port`` numbers its nodes from it)."""
    from .errors import ConfigError
    from .ports import check_ports_free

    while True:
        first = free_port()
        try:
            check_ports_free("127.0.0.1", {str(i): first + i for i in range(count)})
        except ConfigError:
            continue
        return first


@dataclass
class Process:
    """One child process of the devnet, with its log file."""

    name: str
    args: list[str]
    log_path: Path
    url: str
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Variables added to this process's environment."""

    def start(self) -> None:
        handle = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.args,
            env={**os.environ, **self.env} if self.env else None,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM): a node then stops its task children."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for(self, read: Callable[[], Any], what: str, timeout: float) -> Any:
        """Poll ``read`` until it returns something other than ``None`` (returned); ``SandboxError``
        with the log's tail if the process exits first, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = read()
            if found is not None:
                return found
            if not self.running():
                raise SandboxError(
                    f"{self.name} exited before {what}; its log ({self.log_path}) ends with:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)
        raise SandboxError(
            f"{self.name}: no {what} within {timeout:.0f} s; its log ends with:\n{self.log_tail()}"
        )

    def wait_http(self, path: str, timeout: float) -> None:
        """Return once ``url + path`` answers HTTP; ``SandboxError`` with the log's tail if the
        process exits first, or after ``timeout`` seconds."""

        def answered() -> bool | None:
            try:
                httpx.get(self.url + path, timeout=1.0)
                return True
            except httpx.HTTPError:
                return None

        self.wait_for(answered, f"an answer on {self.url}{path}", timeout)


@dataclass
class DevnetNode:
    """A node process and what the devnet knows of it."""

    index: int
    process: Process
    data_dir: Path
    wallet: Keypair

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    def staking_key(self) -> str:
        """The node's staking public key (created by the node on its first start)."""
        return Keypair.load(self.data_dir / "keys" / "staking_wallet.json").public_key

    def control(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> Any:
        """Call the node's control API (its operator port) with its operator secret."""
        from .node.control import operator_request

        try:
            return operator_request(self.data_dir, method, path, body, timeout=timeout)
        except PykoiiError as exc:
            raise PykoiiError(f"{self.name}: {exc}") from None


@dataclass
class Devnet:
    """A ledger and ``nodes`` nodes as real processes under ``folder``."""

    folder: Path
    nodes_count: int = 3
    slot_ms: int = 400
    ledger_port: int = 0
    node_ports: list[int] = field(default_factory=list)
    poll: float = 0.1
    validators: int = 0
    """0: one ledger service (the sequencer); N: N CometBFT validators (``pykoii.chain``); node ``i``
    uses validator ``(i - 1) % N + 1``'s HTTP API, tasks are deployed through the first one."""
    ledger: Process | None = None
    nodes: list[DevnetNode] = field(default_factory=list)
    client: LedgerClient | None = None
    network: Any = None
    """The ``ValidatorNetwork`` when ``validators`` > 0."""

    def __enter__(self) -> Devnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ledger_url(self) -> str:
        assert self.ledger is not None
        return self.ledger.url

    def node_ledger_url(self, index: int) -> str:
        """The ledger URL node ``index`` uses: the ledger, or one validator after another."""
        if self.network is None:
            return self.ledger_url
        validators = self.network.validators
        return str(validators[(index - 1) % len(validators)].url)

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pykoii.cli", *args]

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the ledger, then every node; return once all of them answer HTTP."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.validators:
            self._start_validators(timeout)
        else:
            self._start_ledger(timeout)
        self.client = LedgerClient(self.ledger_url, retries=3)
        for index in range(1, self.nodes_count + 1):
            self.nodes.append(self._start_node(index))
        for node in self.nodes:
            self._await_node(node, timeout)

    def _start_validators(self, timeout: float) -> None:
        from .chain.network import ValidatorNetwork

        self.network = ValidatorNetwork(
            self.folder / "validators",
            count=self.validators,
            slot_ms=self.slot_ms,
            http_port=self.ledger_port,
        )
        self.network.start(timeout=timeout)
        self.ledger = self.network.validators[0].process

    def _start_ledger(self, timeout: float) -> None:
        """``ledger serve`` on ``ledger_port``; on 0 it binds a port the OS picks and prints it,
        so no other process can take the port between choosing and binding it."""
        log_path = self.folder / "ledger.log"
        start = log_path.stat().st_size if log_path.exists() else 0  # the log is appended to
        self.ledger = Process(
            "ledger",
            self._cli(
                "ledger",
                "serve",
                "--devnet",
                "--data",
                str(self.folder / "ledger"),
                "--port",
                str(self.ledger_port),
                "--slot-ms",
                str(self.slot_ms),
                "--workers",
                "1",
            ),
            log_path,
            "",
        )
        self.ledger.start()

        def listening() -> str | None:
            with open(log_path, "rb") as handle:
                handle.seek(start)
                found = LISTENING.search(handle.read().decode(errors="replace"))
            return found.group(1) if found else None

        self.ledger.url = self.ledger.wait_for(listening, "its 'listening on' line", timeout)
        self.ledger.wait_http("/health", timeout)

    def _start_node(self, index: int) -> DevnetNode:
        data_dir = self.folder / f"node-{index}"
        wallet_path = data_dir / "keys" / "main_wallet.json"
        wallet = Keypair.load(wallet_path) if wallet_path.exists() else None
        if wallet is None:
            wallet = Keypair.generate()
            wallet.save(wallet_path)
        port = self.node_ports[index - 1] if index <= len(self.node_ports) else 0
        (data_dir / OPERATOR_FILE).unlink(missing_ok=True)  # a last run's: the new one says the ports
        process = Process(
            f"node-{index}",
            self._cli(
                "node",
                "run",
                "--ledger",
                self.node_ledger_url(index),
                "--data",
                str(data_dir),
                "--wallet",
                str(wallet_path),
                "--port",
                str(port),
                "--dashboard-port",
                "0",
                "--poll",
                str(self.poll),
            ),
            self.folder / f"node-{index}.log",
            "",
        )
        process.start()
        return DevnetNode(index=index, process=process, data_dir=data_dir, wallet=wallet)

    def _await_node(self, node: DevnetNode, timeout: float) -> None:
        """Wait for the node's ``operator.json`` (written once it has bound both ports; 0 lets the
        OS pick them, race-free), take its public URL from it, then wait for that to answer."""

        def published() -> str | None:
            try:
                return str(json.loads((node.data_dir / OPERATOR_FILE).read_text())["public_url"])
            except (OSError, ValueError, KeyError):
                return None  # not written yet, or being written

        node.process.url = node.process.wait_for(published, f"its {OPERATOR_FILE}", timeout)
        node.process.wait_http("/", timeout)

    def stop(self) -> None:
        """Stop every node, then the ledger. Safe to call twice."""
        for node in self.nodes:  # all at once, then wait for each
            node.process.terminate()
        for node in self.nodes:
            node.process.stop()
        if self.network is not None:
            self.network.stop()
        elif self.ledger is not None:
            self.ledger.stop()
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- money, tasks ----------------------------------------------------------------------------

    def airdrop(self, to: str, amount: int) -> None:
        """Mint ``amount`` ROE to ``to`` in airdrops of at most the ledger's limit."""
        assert self.client is not None
        while amount > 0:
            part = min(amount, AIRDROP_LIMIT)
            self.client.send_transaction(Keypair.generate(), {"type": "airdrop", "to": to, "amount": part})
            amount -= part
            if amount:
                time.sleep(self.slot_ms * 11 / 1000)  # one airdrop per recipient per 10 slots

    def deploy(self, folder: Path, *, manager: Keypair | None = None, **overrides: Any) -> str:
        """Upload a task folder's code and create the task from its config-task.yml; return its id."""
        assert self.client is not None
        config = load_config(folder)
        manager = manager or Keypair.generate()
        out = publish(self.client, folder, config)
        fields = create_task_fields(
            config, task_audit_program=out.task_audit_program, task_metadata=out.task_metadata
        )
        fields.update(overrides)
        self.airdrop(manager.public_key, fields["total_bounty_amount"])
        receipt = self.client.send_transaction(manager, {"type": "create_task", **fields})
        return str(next(e["task_id"] for e in receipt["events"] if e["kind"] == "TaskCreated"))

    def add_task(
        self, node: DevnetNode, task_id: str, *, stake: int, variables: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Fund the node's wallet, then have it download, verify, stake on and start the task."""
        self.airdrop(node.wallet.public_key, stake + ROE_PER_KOII)
        body = {"task_id": task_id, "stake": stake, "variables": variables or {}}
        result: dict[str, Any] = node.control("POST", "/tasks", body)
        return result
