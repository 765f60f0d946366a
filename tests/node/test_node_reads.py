"""What a node reads from the ledger per tick does not grow with the task's stakers.

From outside, with real processes: a real `pykoii ledger serve`, two real `pykoii node run` (one
faulty, so the honest one audits, accuses and is paid while the faulty one is slashed), each talking
to the ledger through a counting HTTP proxy of this test. A tick is everything a node asks between
two `GET /slot`; its bytes are the bytes of the ledger's answers. Then 3,000 more accounts stake on
the task and the ticks are counted again: the most a tick read stays the same (give or take the
digits of the counts), while the whole task state the node used to read each tick is far larger.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from pykoii.keys import Keypair
from pykoii.ledger.distribution import ROUNDS_KEPT

from .harness import Ledger, NodeProcess, free_port, paid_rounds, wait_http, wait_until

EXTRA_STAKERS = 3000


class ServedLedger(Ledger):
    """`pykoii ledger serve --devnet` (the CLI, as an operator runs it) with the harness's calls."""

    def __init__(self, folder: Path, slot_ms: int = 100) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "pykoii.cli", "ledger", "serve", "--data", str(folder)]
        command += ["--port", str(self.port), "--slot-ms", str(slot_ms), "--devnet", "--workers", "1"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=open(folder.parent / "ledger.err", "wb")
        )
        wait_http(self.url + "/slot", timeout=60, process=self.process)
        self.http = httpx.Client(base_url=self.url, timeout=60.0)


class CountingProxy:
    """Forwards every request to the ledger and records ``(method, path, answer bytes)``."""

    def __init__(self, target_port: int) -> None:
        self.seen: list[tuple[str, str, int]] = []
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
                with proxy.lock:
                    proxy.seen.append((self.command, self.path.split("?")[0], len(data)))
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
        with self.lock:
            seen = self.seen[start:]
        starts = [i for i, (method, path, _) in enumerate(seen) if method == "GET" and path == "/slot"]
        return [sum(size for _, _, size in seen[a:b]) for a, b in zip(starts, starts[1:], strict=False)]

    def paths(self, start: int) -> set[str]:
        with self.lock:
            return {f"{method} {path}" for method, path, _ in self.seen[start:]}

    def sizes(self, start: int, end: int | None = None) -> dict[str, int]:
        """The largest answer per route recorded from ``start`` to ``end``."""
        with self.lock:
            seen = self.seen[start:end]
        largest: dict[str, int] = {}
        for method, path, size in seen:
            largest[f"{method} {path}"] = max(size, largest.get(f"{method} {path}", 0))
        return largest

    def accepted(self, start: int) -> list[tuple[str, str]]:
        """``(tx type, candidate)`` of each transaction sent through and accepted after ``start``."""
        with self.lock:
            return [(kind, candidate) for index, kind, candidate in self.sent if index > start]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stake_many(ledger: Ledger, task_id: str, count: int) -> None:
    """``count`` new accounts, funded and staked on the task, sent in batches of 1,000."""
    stakers = [Keypair.generate() for _ in range(count)]
    funder = Keypair.generate()
    for kind in ("airdrop", "stake"):
        for start in range(0, count, 1000):
            slot = ledger.slot()
            batch = []
            for keypair in stakers[start : start + 1000]:
                if kind == "airdrop":
                    body = {"type": "airdrop", "to": keypair.public_key, "amount": 10**9, "recent_slot": slot}
                    batch.append(funder.sign_transaction(body))
                else:
                    body = {"type": "stake", "task_id": task_id, "amount": 10**8, "recent_slot": slot}
                    batch.append(keypair.sign_transaction(body))
            answers = ledger.http.post("/tx", json=batch).json()
            refused = [a for a in answers if "error" in a]
            assert not refused, refused[:3]


def test_bytes_a_node_reads_per_tick_do_not_grow_with_the_stakers(sandbox_root: Path) -> None:
    (sandbox_root / "ledger").mkdir()
    ledger = ServedLedger(sandbox_root / "ledger")
    proxies = [CountingProxy(ledger.port), CountingProxy(ledger.port)]
    nodes: list[NodeProcess] = []
    try:
        task_id = ledger.create_hello_world(
            Keypair.generate(), round_time=24, submission_window=9, audit_window=9, minimum_stake=1
        )
        for index, proxy in enumerate(proxies):
            node = NodeProcess(sandbox_root / f"node{index}", proxy.url)
            nodes.append(node)
            ledger.airdrop(node.info["main_account"], 100)
            # the faulty one is slashed 70 % a round: 50 KOII stay over the 1 ROE minimum all along
            extra = ["--var", "FAULTY=1"] if index == 1 else []
            result = node.cli("add-task", task_id, "--stake", "50", *extra)
            assert result.returncode == 0, result.stderr
        honest, faulty = (n.info["staking_key"] for n in nodes)
        counter = proxies[0]

        def settled_after(first: int, rounds: int) -> bool:
            return len([r for r in paid_rounds(ledger, task_id) if r >= first]) >= rounds

        # Count from the round on which the ledger holds as many rounds as it ever will (it prunes
        # settled rounds older than ROUNDS_KEPT + allowed_failed_distributions).
        steady = ROUNDS_KEPT + 3 + 2
        wait_until(lambda: ledger.task(task_id)["current_round"] >= steady, 120, f"round {steady}")
        before = counter.mark()
        first = ledger.task(task_id)["current_round"]
        wait_until(lambda: settled_after(first, 3), 120, "three more paid rounds")
        small = counter.ticks(before)

        paid_before = ledger.task(task_id)["available_balances"].get(honest, 0)
        stake_many(ledger, task_id, EXTRA_STAKERS)
        whole = ledger.http.get(
            f"/tasks/{task_id}",
            params={f: "true" for f in ("is_stake_list_required", "is_available_balances_required")},
        )
        assert len(whole.json()["stake_list"]) == EXTRA_STAKERS + 2
        after = counter.mark()
        first = ledger.task(task_id)["current_round"]
        wait_until(lambda: settled_after(first, 3), 180, "three paid rounds with the new stakers")
        large = counter.ticks(after)

        assert len(small) > 20 and len(large) > 20, (len(small), len(large))
        # Every tick read the node's own part of the task, never the whole state.
        paths = counter.paths(before)
        assert f"GET /tasks/{task_id}/nodes/{honest}" in paths, paths
        assert f"GET /tasks/{task_id}" not in paths and f"GET /tasks/{task_id}/stakers" not in paths, paths
        # What a tick reads does not grow with 3,000 more stakers (a few digits of the counts may;
        # which actions fell in the counted ticks may differ a little), and it is a small fraction
        # of the whole state a tick used to read.
        route = f"GET /tasks/{task_id}/nodes/{honest}"
        assert counter.sizes(after)[route] <= counter.sizes(before, after)[route] + 512, counter.sizes(after)
        assert max(large) <= max(small) + 2048, (max(small), max(large), counter.sizes(after))
        assert max(large) * 10 < len(whole.content), (max(large), len(whole.content))

        # And the node still did its work while it read so little: it submitted and revealed, accused
        # the faulty node, sent lists and payouts, and was paid, while the faulty one was slashed.
        done = counter.accepted(after)
        kinds = {kind for kind, _ in done}
        assert {"submit", "reveal", "audit_submission", "payout"} <= kinds, kinds
        assert ("audit_submission", faulty) in done, done
        final = ledger.task(task_id)
        assert final["last_submission_round"][honest] >= first
        assert final["available_balances"].get(honest, 0) > paid_before
        assert final["stake_list"][faulty] < 50 * 10**9
        print(
            f"bytes per tick: {len(small)} ticks at 2 stakers: max {max(small)}, mean "
            f"{sum(small) // len(small)}; {len(large)} ticks at {EXTRA_STAKERS + 2} stakers: max "
            f"{max(large)}, mean {sum(large) // len(large)}; the whole state: {len(whole.content)} bytes"
        )
    finally:
        for node in nodes:
            node.stop()
        for proxy in proxies:
            proxy.close()
        ledger.stop()
