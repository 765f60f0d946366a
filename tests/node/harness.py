"""Real processes for node tests: a ledger service and `pykoii node run`, on free local ports."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from pykoii.keys import Keypair
from pykoii.packaging import build_archive

REPO = Path(__file__).resolve().parents[2]
HELLO_WORLD = REPO / "examples" / "hello_world"

LEDGER_SCRIPT = """
import os, sys, uvicorn
from pykoii.clock import SystemClock
from pykoii.ledger.state import LedgerParams
from pykoii.ports import listen_socket
from pykoii.service.app import create_app
from pykoii.service.store import Genesis, open_store
folder, port, port_file, slot_ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sock = listen_socket("127.0.0.1", port)  # 0: the OS picks it, so no other process can have taken it
params = LedgerParams(devnet=True, airdrop_cooldown_slots=0)
store = open_store(folder, clock=SystemClock(), genesis=Genesis(params=params, slot_ms=slot_ms))
with open(port_file + ".new", "w") as handle:
    handle.write(str(sock.getsockname()[1]))
os.replace(port_file + ".new", port_file)
uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning")).run(sockets=[sock])
"""


def wait_file(path: Path, what: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The text of ``path`` once a started process has written it (``what`` names it in the error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before it wrote {what}")
        with contextlib.suppress(FileNotFoundError):
            return path.read_text()
        time.sleep(0.05)
    raise TimeoutError(f"no {what} ({path}) within {timeout} s")


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


def watch_rounds(ledger: Ledger, task_id: str, enough, timeout: float):  # type: ignore[no-untyped-def]
    """Poll the ledger, keeping every round's submissions and list before settled rounds are pruned."""
    submissions: dict[int, dict] = {}
    lists: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ledger.task(task_id)
        for r, subs in state["submissions"].items():
            submissions[int(r)] = subs
        paid = sorted(
            int(r) for r, v in state["distributions_audit_record"].items() if v == "PayoutSuccessful"
        )
        for r in paid:
            if r not in lists:  # the paid list's entries, from the paginated route, while it is held
                page = ledger.http.get(f"/tasks/{task_id}/rounds/{r}/distribution").json()
                entries = page.get("entries", [])
                lists[r] = {
                    "rewards": {e["key"]: e["reward"] for e in entries if e["reward"]},
                    "slashes": {e["key"]: e["slash"] for e in entries if e["slash"]},
                }
        if enough(paid, submissions):
            return state, paid, submissions, lists
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s; paid so far: {paid}")


class Ledger:
    """A ledger service subprocess on fast slots, plus the few calls tests need."""

    def __init__(self, folder: Path, slot_ms: int = 100) -> None:
        self.folder, self.slot_ms, self.port = folder, slot_ms, 0
        self.start()
        self.http = httpx.Client(base_url=self.url, timeout=60.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process: on a port the OS picks the first time, on the same port after that
        (the same ledger, folder and port, coming back)."""
        port_file = self.folder.parent / "ledger.port"
        port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LEDGER_SCRIPT,
                str(self.folder),
                str(self.port),
                str(port_file),
                str(self.slot_ms),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder.parent / "ledger.err", "ab"),
        )
        self.port = int(wait_file(port_file, "its port", self.process))
        wait_http(self.url + "/slot", timeout=60, process=self.process)

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
        self.port = self.dashboard_port = 0
        """0 until the first start: the node binds ports the OS picks (race-free) and says which in
        its ``operator.json``; a restart binds the same two again, as a restarted node would."""
        self.ledger_url = ledger_url
        self.prefix, self.python, self.env = prefix, python, env
        self.poll, self.extra = poll, extra
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> None:
        from pykoii.node.control import OPERATOR_FILE

        self.folder.mkdir(parents=True, exist_ok=True)
        (self.data / OPERATOR_FILE).unlink(missing_ok=True)
        args = [*self.prefix, self.python, "-m", "pykoii.cli", "node", "run", "--ledger", self.ledger_url]
        args += [
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            "--dashboard-port",
            str(self.dashboard_port),
        ]
        args += ["--poll", str(self.poll), *self.extra]
        self.process = subprocess.Popen(
            args, stdout=open(self.folder / "node.out", "ab"), stderr=subprocess.STDOUT, env=self.env
        )
        while True:  # written (0600, by the node's user) once both ports are bound
            text = wait_file(self.data / OPERATOR_FILE, OPERATOR_FILE, self.process)
            with contextlib.suppress(ValueError):
                published = json.loads(text)
                break
        self.port = int(published["public_url"].rsplit(":", 1)[1])
        self.dashboard_port = int(published["url"].rsplit(":", 1)[1])
        wait_http(self.url + "/", timeout=60, process=self.process)
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

    def output(self) -> str:
        """What `node run` printed (every start of it)."""
        return (self.folder / "node.out").read_text(errors="replace")

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


def add_task(
    node: NodeProcess, ledger: Ledger, task_id: str, *extra: str, stake: int = 5, fund: int = 50
) -> None:
    """Airdrop ``fund`` KOII to the node's main wallet, then ``pykoii node add-task`` with ``stake`` KOII
    (``extra``: more options, e.g. ``--var NAME=VALUE``)."""
    ledger.airdrop(node.info["main_account"], fund)
    result = node.cli("add-task", task_id, "--stake", str(stake), *extra)
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def nodes_on_task(
    root: Path,
    ledger: Ledger,
    task_id: str,
    count: int,
    *,
    stake: int = 5,
    options: dict[int, tuple[str, ...]] | None = None,
) -> Iterator[list[NodeProcess]]:
    """``count`` nodes (``root/node0``, ...), each running ``task_id`` with ``stake`` KOII (``add_task``,
    with ``options[index]`` for some, e.g. ``("--var", "FAULTY=1")``); stopped when the block ends."""
    nodes: list[NodeProcess] = []
    try:
        for index in range(count):
            nodes.append(NodeProcess(root / f"node{index}", ledger.url))
            add_task(nodes[-1], ledger, task_id, *(options or {}).get(index, ()), stake=stake)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def proofs_sent(
    ledger: Ledger, task_id: str, keys: set[str], timing: dict[str, int], margin: int
) -> tuple[int, dict[str, Any]] | None:
    """``(round, task)`` once every key in ``keys`` sent its proof for the round whose submission
    window is open, with at least ``margin`` slots of that window left; None before (poll it with
    ``wait_until``)."""
    slot, state = ledger.slot(), ledger.task(task_id)
    offset = (slot - state["starting_slot"]) % timing["round_time"]
    current = (slot - state["starting_slot"]) // timing["round_time"]
    sent = set(state["submissions"].get(str(current - 1), {})) >= keys
    return (current - 1, state) if sent and offset < timing["submission_window"] - margin else None


def revealed(ledger: Ledger, task_id: str, number: int, key: str) -> bool:
    """Whether ``key``'s proof of round ``number`` is revealed on the ledger (while the round is held)."""
    return bool(ledger.task(task_id)["submissions"].get(str(number), {}).get(key, {}).get("reveal"))


def held_rounds(path: str, data: bytes) -> str:
    """For a node's view of a task (``GET /tasks/{id}/nodes/{key}``): `` (N unsettled)``, the rounds
    it holds that are not settled yet (each holds the round's lists and the proofs the node audits:
    a payout that lags on a loaded machine leaves one more, some 750 B); ``""`` for other routes."""
    if "/nodes/" not in path:
        return ""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        view = json.loads(data)
        return f" ({len(set(view['submissions']) - set(view['distributions_audit_record']))} unsettled)"
    return ""


class CountingProxy:
    """Forwards every request to the ledger and records ``(method, path, answer bytes)``, and, for a
    node's view of a task, how many unsettled rounds it held (``held_rounds``) in ``held``."""

    def __init__(self, target_port: int) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.held: dict[int, str] = {}
        """Index in ``seen`` -> ``held_rounds`` of that answer (node views only)."""
        self.sent: list[tuple[int, str, str]] = []
        """``(index in seen, tx type, candidate)`` of each transaction the ledger accepted."""
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                path = self.path.split("?")[0]
                held = held_rounds(path, data) if answer.status == 200 else ""
                with proxy.lock:
                    if held:
                        proxy.held[len(proxy.seen)] = held
                    proxy.seen.append((self.command, path, len(data)))
                    if self.path == "/tx" and answer.status == 200 and body:
                        sent = json.loads(body)
                        for envelope in sent if isinstance(sent, list) else [sent]:
                            tx = envelope["tx"]
                            proxy.sent.append((len(proxy.seen), tx["type"], tx.get("candidate", "")))
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def ticks(self, start: int) -> list[int]:
        """The bytes of each whole tick recorded after ``start`` (from one ``GET /slot`` to the next)."""
        return [size for _, size in self.requests_per_tick(start)]

    def _named(self, start: int, end: int | None) -> list[tuple[str, int]]:
        """``("METHOD path", bytes)`` of each request from ``start`` to ``end``, a node view's name
        followed by the unsettled rounds it held (``held_rounds``)."""
        with self.lock:
            seen = self.seen[start:end]
            held = dict(self.held)
        return [(f"{m} {p}{held.get(start + i, '')}", size) for i, (m, p, size) in enumerate(seen)]

    def requests_per_tick(self, start: int, end: int | None = None) -> list[tuple[tuple[str, ...], int]]:
        """Each whole tick recorded from ``start`` to ``end``: its requests (``METHOD path``, sorted;
        a node view's with the unsettled rounds it held) and its bytes."""
        named = self._named(start, end)
        starts = [i for i, (name, _) in enumerate(named) if name == "GET /slot"]
        return [
            (tuple(sorted(name for name, _ in named[a:b])), sum(size for _, size in named[a:b]))
            for a, b in zip(starts, starts[1:], strict=False)
        ]

    def paths(self, start: int) -> set[str]:
        with self.lock:
            return {f"{method} {path}" for method, path, _ in self.seen[start:]}

    def sizes(self, start: int, end: int | None = None) -> dict[str, int]:
        """The largest answer per route recorded from ``start`` to ``end`` (a node view's route with
        the unsettled rounds it held)."""
        largest: dict[str, int] = {}
        for name, size in self._named(start, end):
            largest[name] = max(size, largest.get(name, 0))
        return largest

    def accepted(self, start: int) -> list[tuple[str, str]]:
        """``(tx type, candidate)`` of each transaction sent through and accepted after ``start``."""
        with self.lock:
            return [(kind, candidate) for index, kind, candidate in self.sent if index > start]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


_NAMES = itertools.count(1)
