"""Real processes for node tests: a ledger service and `pykoii node run`, on free local ports."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pykoii.keys import Keypair
from pykoii.packaging import build_archive

REPO = Path(__file__).resolve().parents[2]
HELLO_WORLD = REPO / "examples" / "hello_world"

LEDGER_SCRIPT = """
import sys, uvicorn
from pykoii.clock import SystemClock
from pykoii.ledger.state import LedgerParams
from pykoii.service.app import create_app
from pykoii.service.store import Genesis, open_store
folder, port, slot_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = LedgerParams(devnet=True, airdrop_cooldown_slots=0)
store = open_store(folder, clock=SystemClock(), genesis=Genesis(params=params, slot_ms=slot_ms))
uvicorn.run(create_app(store), host="127.0.0.1", port=port, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def paid_rounds(ledger: Ledger, task_id: str) -> list[int]:
    """The rounds of ``task_id`` whose payout succeeded."""
    record = ledger.task(task_id)["distributions_audit_record"]
    return sorted(int(r) for r, v in record.items() if v == "PayoutSuccessful")


class Ledger:
    """A ledger service subprocess on fast slots, plus the few calls tests need."""

    def __init__(self, folder: Path, slot_ms: int = 100) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", LEDGER_SCRIPT, str(folder), str(self.port), str(slot_ms)],
            stdout=subprocess.DEVNULL,
            stderr=open(folder.parent / "ledger.err", "wb"),
        )
        wait_http(self.url + "/slot", process=self.process)
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def slot(self) -> int:
        return int(self.http.get("/slot").json()["slot"])

    def send(self, keypair: Keypair, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "recent_slot": self.slot()}
        response = self.http.post("/tx", json=keypair.sign_transaction(body))
        assert response.status_code < 400, response.text
        return dict(response.json())

    def airdrop(self, to: str, koii: int) -> None:
        funder = Keypair.generate()
        self.send(funder, {"type": "airdrop", "to": to, "amount": koii * 10**9})

    def task(self, task_id: str) -> dict[str, Any]:
        flags = {
            f: "true"
            for f in (
                "is_submission_required",
                "is_distribution_required",
                "is_available_balances_required",
                "is_stake_list_required",
            )
        }
        return dict(self.http.get(f"/tasks/{task_id}", params=flags).json())

    def create_hello_world(
        self,
        creator: Keypair,
        *,
        round_time: int,
        submission_window: int,
        audit_window: int,
        bounty_per_round: int = 10**9,
        minimum_stake: int = 2 * 10**9,
        code: Path = HELLO_WORLD,
    ) -> str:
        data = build_archive(code)
        response = self.http.put("/blobs", content=data)
        assert response.status_code < 400, response.text
        cid = response.json()["cid"]
        self.airdrop(creator.public_key, 200)
        receipt = self.send(
            creator,
            {
                "type": "create_task",
                "task_name": f"Hello World {next(_NAMES)}",
                "task_audit_program": cid,
                "total_bounty_amount": 100 * 10**9,
                "bounty_amount_per_round": bounty_per_round,
                "round_time": round_time,
                "audit_window": audit_window,
                "submission_window": submission_window,
                "minimum_stake_amount": minimum_stake,
                "allowed_failed_distributions": 3,
                "requirements_tags": [],
                "sample_size": 5,
            },
        )
        task_ids = [e.get("task_id") for e in receipt.get("events", []) if e.get("task_id")]
        return str(task_ids[0])

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(10)


class NodeProcess:
    """`python -m pykoii node run` in its own data folder."""

    def __init__(
        self,
        folder: Path,
        ledger_url: str,
        *,
        poll: float = 0.05,
        extra: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        """``prefix`` runs the node (and its CLI) through e.g. ``runuser -u USER --``; ``env`` is the
        environment of both."""
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dashboard_port = free_port()
        self.operator_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.ledger_url = ledger_url
        self.prefix, self.python, self.env = prefix, python, env
        self.args = [
            *prefix,
            python,
            "-m",
            "pykoii.cli",
            "node",
            "run",
            "--ledger",
            ledger_url,
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            "--dashboard-port",
            str(self.dashboard_port),
            "--poll",
            str(poll),
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.args, stdout=open(self.folder / "node.out", "ab"), stderr=subprocess.STDOUT, env=self.env
        )
        wait_http(self.url + "/", process=self.process)
        self.info = httpx.get(self.url + "/").json()

    def operator(self, method: str, path: str, body: Any = None) -> Any:
        """A call to the node's operator port with its operator secret (as the CLI makes it)."""
        from pykoii.node.control import operator_request

        return operator_request(self.data, method, path, body)

    def login_link(self) -> str:
        """The dashboard login link `node run` prints (it holds the operator secret)."""
        secret = (self.data / "operator.token").read_text().strip()
        return f"{self.operator_url}/login?token={secret}"

    def logs(self, task_id: str, lines: int = 5000) -> str:
        return str(self.operator("GET", f"/tasks/{task_id}/logs?lines={lines}")["message"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, self.python, "-m", "pykoii.cli", "node", *args, "--data", str(self.data)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def actions(self) -> list[dict[str, Any]]:
        import sqlite3

        db = sqlite3.connect(self.data / "node.sqlite3")
        rows = db.execute("SELECT task_id, kind, round, candidate, status FROM actions").fetchall()
        db.close()
        return [dict(zip(("task_id", "kind", "round", "candidate", "status"), r, strict=True)) for r in rows]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


_NAMES = itertools.count(1)
