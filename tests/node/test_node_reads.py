"""What a node reads from the ledger per tick does not grow with the task's stakers.

From outside, with real processes: a real `pykoii ledger serve`, two real `pykoii node run` (one
faulty, so the honest one audits, accuses and is paid while the faulty one is slashed), each talking
to the ledger through a counting HTTP proxy of this test. A tick is everything a node asks between
two `GET /slot`; its bytes are the bytes of the ledger's answers. Then 3,000 more accounts stake on
the task and the ticks are counted again: the most a tick read stays the same (give or take the
digits of the counts), while the whole task state the node used to read each tick is far larger.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pykoii.devnet import LISTENING
from pykoii.keys import Keypair
from pykoii.ledger.distribution import ROUNDS_KEPT

from .conftest import write_task
from .harness import CountingProxy, Ledger, NodeProcess, add_task, paid_rounds, wait_http, wait_until

EXTRA_STAKERS = 3000


class ServedLedger(Ledger):
    """`pykoii ledger serve --devnet` (the CLI, as an operator runs it) with the harness's calls."""

    def start(self) -> None:
        command = [sys.executable, "-m", "pykoii.cli", "ledger", "serve", "--data", str(self.folder)]
        command += ["--port", str(self.port), "--slot-ms", str(self.slot_ms), "--devnet", "--workers", "1"]
        out = self.folder.parent / "ledger.out"
        self.process = subprocess.Popen(
            command, stdout=open(out, "wb"), stderr=open(self.folder.parent / "ledger.err", "wb")
        )
        url = wait_until(
            lambda: (found := LISTENING.search(out.read_text())) and found.group(1),
            60,
            "its 'listening on' line",
        )
        self.port = int(url.rsplit(":", 1)[1])
        wait_http(self.url + "/slot", timeout=60, process=self.process)


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
            # the faulty one is slashed 70 % a round: 50 KOII stay over the 1 ROE minimum all along
            add_task(
                node, ledger, task_id, *(["--var", "FAULTY=1"] if index == 1 else []), stake=50, fund=100
            )
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
        small, counted = counter.ticks(before), counter.mark()

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
        # What a tick reads does not grow with 3,000 more stakers (a few digits of the counts may),
        # and it is a small fraction of the whole state a tick used to read (3,000 stakers' entries
        # would be some 150 KB). Ticks are compared by the requests they made, and a node view by
        # the unsettled rounds it held (`held_rounds`): on a loaded machine more actions fall in one
        # tick (two reads of the node's view and a round's pages: 12,952 -> 15,045 B, with no read
        # grown by 2 KB), and each payout that lags holds one more unsettled round in the view, some
        # 750 B (three lagged at load 8.6: the plain tick 6,046 -> 8,275 B). That is the machine's
        # pace, not the stakers: compared at the same number of held rounds, nothing grows.
        route = f"GET /tasks/{task_id}/nodes/{honest}"
        views = [
            {name: size for name, size in counter.sizes(*span).items() if name.startswith(route)}
            for span in ((before, after), (after, None))
        ]
        held = views[0].keys() & views[1].keys()
        assert held, views  # the node's view read at the same number of unsettled rounds in both
        for name in held:
            assert views[1][name] <= views[0][name] + 2048, (name, views)
        most: dict[tuple[str, ...], list[int]] = {}
        for phase, (start, end) in enumerate(((before, counted), (after, None))):
            for requests, size in counter.requests_per_tick(start, end):
                sizes = most.setdefault(requests, [0, 0])
                sizes[phase] = max(sizes[phase], size)
        both = {requests: sizes for requests, sizes in most.items() if all(sizes)}
        plain = [r for r in both if len(r) == 2 and r[0] == "GET /slot" and r[1].startswith(route)]
        assert plain, sorted(most)  # the plain tick (the slot and the node's view), in both
        for requests, (at_two, at_many) in both.items():
            assert at_many <= at_two + 2048, (requests, at_two, at_many)
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


LISTER = """
    from pykoii.sdk import Task

    VALUE = "Hello, World!"

    class Lister(Task):
        '''Hello World, except that with BADLIST=1 its distribution list pays the whole bounty to one
        submitter: the other nodes reject that list, and the next attempt's list is computed.'''

        def task(self, ctx):
            ctx.store.set("value", VALUE)

        def submission(self, ctx):
            return ctx.store.get("value") or ""

        def audit(self, ctx, submission, submitter):
            return submission == VALUE

        def distribution(self, ctx, submitters, bounty):
            if ctx.variables.get("BADLIST") == "1" and submitters:
                return {"rewards": {submitters[0].public_key: bounty}, "slashes": {}}
            return super().distribution(ctx, submitters, bounty)
"""


def test_a_node_reads_a_final_round_once_for_all_its_lists_and_audits(
    ledger: Ledger, sandbox_root: Path
) -> None:
    """A node that computes a round's list more than once (it audits one attempt's list and submits
    or audits another's) reads the round's submitters from the ledger once: counted by a proxy."""
    code = write_task(sandbox_root / "lister", LISTER)
    task_id = ledger.create_hello_world(
        Keypair.generate(), round_time=24, submission_window=9, audit_window=9, code=code
    )
    proxies = [CountingProxy(ledger.port) for _ in range(3)]
    nodes: list[NodeProcess] = []
    try:
        for index, proxy in enumerate(proxies):
            node = NodeProcess(sandbox_root / f"node{index}", proxy.url)
            nodes.append(node)
            add_task(node, ledger, task_id, *(["--var", "BADLIST=1"] if index == 2 else []))

        def lists_computed(node: NodeProcess) -> dict[int, int]:
            """Per round, the distribution actions the node carried out (each computes the list):
            its own list, and each other attempt's list it voted on."""
            acts: dict[int, set[str]] = {}
            for action in node.actions():
                if action["kind"] == "submit_distribution" and action["candidate"] == "":
                    acts.setdefault(action["round"], set()).add("own list")
                elif action["kind"] == "audit_distribution":
                    acts.setdefault(action["round"], set()).add(action["candidate"])
            return {r: len(kinds) for r, kinds in acts.items()}

        def computed_twice() -> list[tuple[int, int]] | None:
            found = [(i, r) for i in (0, 1) for r, n in lists_computed(nodes[i]).items() if n >= 2]
            return found or None

        twice = wait_until(computed_twice, 150, "an honest node computing one round's list twice")
        total = ledger.task(task_id)["total_stake_amount"]
        assert total == 3 * 5 * 10**9, total  # no stake moved: nothing else made a node read again
        for index, number in twice:
            path = f"/tasks/{task_id}/rounds/{number}"
            reads = [size for method, seen, size in proxies[index].seen if method == "GET" and seen == path]
            assert len(reads) == 1, (index, number, lists_computed(nodes[index]), len(reads))
    finally:
        for node in nodes:
            node.stop()
        for proxy in proxies:
            proxy.close()
