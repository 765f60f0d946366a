"""The simulator's engine: N virtual nodes follow ``pykoii.node.schedule`` slot by slot.

Each node runs the author's ``Task`` (its own instance and ``MemoryStore``); every transaction is
signed with the node's seed-derived key, checked with ``verify_envelope`` and applied with
``apply_transaction`` to one in-process ``LedgerState``. Nodes act in index order within a slot.
Use ``pykoii.testing.simulate``; this module is for stepping a run yourself.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable
from typing import Any

from ..clock import SystemClock
from ..config import TaskConfig, create_task_fields
from ..errors import ConfigError, InvalidTransactionError
from ..keys import Keypair, verify_envelope
from ..ledger import LedgerParams, LedgerState, apply_transaction
from ..ledger.distribution import distribution_transactions
from ..ledger.events import event_to_plain
from ..ledger.rounds import audit_window, round_start, submission_window
from ..ledger.state import TaskState
from ..node.schedule import (
    Action,
    ActionKind,
    decide_vote,
    distribution_bounty,
    due_actions,
    is_triggered,
    list_matches,
    submitters_of,
)
from ..sdk import RoundContext, Task, as_distribution_list, invoke
from .nodes import FAULTY, HONEST, LAZY, OFFLINE, MemoryStore, SimulatedNode, StateReader, corrupt
from .result import (
    PHASES,
    PROPERTY_BOUNTY,
    PROPERTY_CAUGHT,
    PROPERTY_HONEST,
    PropertyCheck,
    RoundReport,
    SimulationResult,
)


def _seed_bytes(seed: int, *parts: str) -> bytes:
    return hashlib.sha256(":".join(("pykoii-simulate", str(seed), *parts)).encode()).digest()


class Simulation:
    """The engine behind ``simulate``; use ``simulate`` unless you need to step it yourself."""

    def __init__(
        self,
        task: Task | Callable[[], Task],
        config: TaskConfig,
        *,
        nodes: int,
        rounds: int,
        faulty: int = 0,
        lazy_auditors: int = 0,
        offline: int = 0,
        seed: int = 0,
        stake: int | None = None,
        variables: dict[str, str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if nodes < 1:
            raise ConfigError(f"--nodes is {nodes}; accepted: 1 or more", field="nodes", received=nodes)
        if rounds < 1:
            raise ConfigError(f"--rounds is {rounds}; accepted: 1 or more", field="rounds", received=rounds)
        for name, count in (("faulty", faulty), ("lazy-auditors", lazy_auditors), ("offline", offline)):
            if count < 0:
                raise ConfigError(f"--{name} is {count}; accepted: 0 or more", field=name, received=count)
        if faulty + lazy_auditors + offline > nodes:
            raise ConfigError(
                f"--faulty + --lazy-auditors + --offline is {faulty + lazy_auditors + offline}; accepted: at "
                f"most --nodes ({nodes}), since each node has one behaviour",
                field="faulty",
                received=faulty + lazy_auditors + offline,
            )
        self.config = config
        self.rounds = rounds
        self.seed = seed
        self.stake = stake if stake is not None else max(2 * config.minimum_stake_amount, 1)
        self.variables = dict(variables or {})
        self.progress = progress
        self.clock = SystemClock()
        roles = [FAULTY] * faulty + [LAZY] * lazy_auditors + [OFFLINE] * offline
        roles += [HONEST] * (nodes - len(roles))
        random.Random(seed).shuffle(roles)
        make = task if callable(task) and not isinstance(task, Task) else _copier(task)
        self.nodes = []
        for index, role in enumerate(roles):
            keypair = Keypair.from_seed(_seed_bytes(seed, "node", str(index)))
            self.nodes.append(SimulatedNode(index, keypair.public_key, role, keypair, make(), MemoryStore()))
        self.manager = Keypair.from_seed(_seed_bytes(seed, "manager"))
        self.state = LedgerState(
            params=LedgerParams(devnet=True, airdrop_limit=10**30, airdrop_cooldown_slots=0)  # type: ignore[arg-type]
        )
        self.log: list[dict[str, Any]] = []
        self.timings: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self.task_errors: list[str] = []
        self.task_id = ""
        self.reports: dict[int, RoundReport] = {}
        self.rewards: dict[str, int] = {}
        self.slashes: dict[str, int] = {}
        self.paid_rounds: dict[int, int] = {}
        self.slashed_by_round: dict[int, dict[str, int]] = {}
        self.corrupted: dict[int, set[str]] = {}
        self._submitters_cache: dict[tuple[int, int], Any] = {}

    # --- ledger -----------------------------------------------------------------------------

    def send(self, keypair: Keypair, body: dict[str, Any], slot: int) -> bool:
        """Sign, verify and apply one transaction at ``slot``; log it. Returns whether it was accepted."""
        envelope = keypair.sign_transaction({**body, "recent_slot": slot})
        tx = verify_envelope(envelope)
        try:
            receipt = apply_transaction(self.state, tx, slot)
        except InvalidTransactionError as exc:
            self.log.append({"slot": slot, "tx": envelope, "error": exc.name, "message": str(exc)})
            return False
        self.log.append({"slot": slot, "tx": envelope, "events": [event_to_plain(e) for e in receipt.events]})
        for event in receipt.events:
            self._observe(event, slot)
        return True

    def _observe(self, event: Any, slot: int) -> None:
        kind = event.kind
        if kind == "TaskCreated":
            self.task_id = event.task_id
            return
        report = self.reports.get(getattr(event, "round", -1))
        if report is None:
            return
        if kind == "Submitted":
            report.submissions += 1
        elif kind == "VoteCast" and event.target == "submission":
            if event.is_valid:
                report.true_votes += 1
            else:
                report.false_votes += 1
        elif kind == "VoteCast":
            report.list_votes += 1
        elif kind == "AuditTriggered" and event.target == "submission":
            report.triggered.append(event.candidate)
        elif kind == "DistributionSubmitted":
            report.lists.append((event.attempt, slot, event.submitter))
        elif kind == "RoundPaid":
            report.outcome, report.payout_slot = "paid", slot
            report.reward_total, report.slash_total = event.reward_total, event.slash_total
            # The receipt holds totals; the per-key amounts are the paid list in the ledger state.
            paid = self.task_state.distribution_lists[event.round][event.distribution_submitter]
            for staker, amount in paid.rewards.items():
                if amount:
                    self.rewards[staker] = self.rewards.get(staker, 0) + amount
                    report.rewarded += 1
            for staker, listed in paid.slashes.items():
                amount = paid.capped.get(staker, listed)
                if amount:
                    self.slashes[staker] = self.slashes.get(staker, 0) + amount
                    report.slashed[staker] = amount
        elif kind == "RoundFailed":
            report.outcome, report.payout_slot = "failed", slot

    @property
    def task_state(self) -> TaskState:
        return self.state.tasks[self.task_id]  # type: ignore[index]

    def setup_ledger(self) -> None:
        """Slot 0: fund the manager and the nodes, create the task, stake every node."""
        bounty = self.config.total_bounty_amount
        self.send(self.manager, {"type": "airdrop", "to": self.manager.public_key, "amount": bounty + 1}, 0)
        self.send(self.manager, {"type": "create_task", **create_task_fields(self.config)}, 0)
        if not self.task_id:
            raise ConfigError(f"the ledger refused the task: {self.log[-1].get('message')}")
        for node in self.nodes:
            self.send(node.keypair, {"type": "airdrop", "to": node.public_key, "amount": self.stake}, 0)
            url = f"http://node-{node.index}.simulated"
            stake = {"type": "stake", "task_id": self.task_id, "amount": self.stake, "ip_address": url}
            self.send(node.keypair, stake, 0)
        task = self.task_state
        for r in range(self.rounds):
            work = range(round_start(task, r), round_start(task, r + 1))
            self.reports[r] = RoundReport(r, work, submission_window(task, r), audit_window(task, r))

    # --- phases -----------------------------------------------------------------------------

    def context(self, node: SimulatedNode, round_number: int, slot: int) -> RoundContext:
        return RoundContext(
            task_id=self.task_id,
            round=round_number,
            slot=slot,
            public_key=node.public_key,
            store=node.store,
            ledger=StateReader(self.state, self.task_id),
            variables=self.variables,
        )

    async def call(self, phase: str, node: SimulatedNode, method: Any, *args: Any) -> tuple[bool, Any]:
        """Run one phase of the author's code, timed; an exception is reported, not raised."""
        start = self.clock.now()
        try:
            value = await invoke(method, *args)
        except Exception as exc:  # noqa: BLE001 - author code: report and go on, as a node does
            self.task_errors.append(
                f"node {node.index} {phase} round {args[0].round}: {type(exc).__name__}: {exc}"
            )
            return False, None
        finally:
            self.timings[phase].append((self.clock.now() - start) * 1000)
        return True, value

    def submitters(self, round_number: int) -> Any:
        # Public state read by every auditor at the same moment: the same list for all of them.
        key = (round_number, len(self.log))
        cached = self._submitters_cache.get(key)
        if cached is None:
            self._submitters_cache.clear()
            cached = self._submitters_cache[key] = submitters_of(self.task_state, round_number)
        return cached

    async def execute(self, node: SimulatedNode, action: Action, slot: int) -> None:
        kind, r = action.kind, action.round
        record = node.record
        if kind is ActionKind.RUN_TASK:
            record.mark(action.key)
            await self.call("task", node, node.task.task, self.context(node, r, slot))
        elif kind is ActionKind.SUBMIT_PROOF:
            record.mark(action.key)
            ok, value = await self.call("submission", node, node.task.submission, self.context(node, r, slot))
            if not ok:
                return
            value = "" if value is None else str(value)
            if node.role == FAULTY:
                value = corrupt(value, node.public_key)
                self.corrupted.setdefault(r, set()).add(node.public_key)
            body = {"type": "submit", "task_id": self.task_id, "round": r, "submission_value": value}
            self.send(node.keypair, body, slot)
        elif kind in (ActionKind.AUDIT_PROOFS, ActionKind.AUDIT_DISTRIBUTION):
            await self.audit(node, action, slot)
        elif kind is ActionKind.SUBMIT_DISTRIBUTION:
            record.mark(action.key)
            ctx = self.context(node, r, slot)
            bounty = distribution_bounty(self.task_state)
            ok, value = await self.call(
                "distribution", node, node.task.distribution, ctx, self.submitters(r), bounty
            )
            if not ok:
                return
            try:
                dist = as_distribution_list(value)
            except Exception as exc:  # noqa: BLE001 - TaskCodeError from the author's return value
                self.task_errors.append(f"node {node.index} distribution round {r}: {exc}")
                return
            for body in distribution_transactions(self.task_id, r, dist.rewards, dist.slashes):
                if not self.send(node.keypair, body, slot):
                    break
        elif kind is ActionKind.PAYOUT:
            record.mark(action.key)
            self.send(node.keypair, {"type": "payout", "task_id": self.task_id, "round": r}, slot)

    async def audit(self, node: SimulatedNode, action: Action, slot: int) -> None:
        kind, r = action.kind, action.round
        distribution = kind is ActionKind.AUDIT_DISTRIBUTION
        tx_type = "audit_distribution" if distribution else "audit_submission"
        if node.role == LAZY:
            for candidate, _ in (*action.candidates, *action.votes):
                node.record.mark_vote(kind, r, candidate)
            return
        votes = list(action.votes)
        for candidate, value in action.candidates:
            ctx = self.context(node, r, slot)
            if distribution:
                ok, mine = await self.call(
                    "distribution audit",
                    node,
                    node.task.distribution,
                    ctx,
                    self.submitters(r),
                    distribution_bounty(self.task_state),
                )
                try:
                    result = ok and list_matches(self.task_state, r, candidate, as_distribution_list(mine))
                except Exception:  # noqa: BLE001 - a malformed own list: vote nothing
                    ok = False
            else:
                ok, verdict = await self.call("audit", node, node.task.audit, ctx, value, candidate)
                result = bool(verdict)
            if not ok:
                node.record.mark_vote(kind, r, candidate)  # Koii swallows audit errors: no vote
                continue
            node.record.note_verdict(kind, r, candidate, result)
            vote = decide_vote(result, is_triggered(self.task_state, r, candidate, distribution=distribution))
            if vote is not None:
                votes.append((candidate, vote))
        for candidate, vote in votes:
            node.record.mark_vote(kind, r, candidate)
            body = {
                "type": tx_type,
                "task_id": self.task_id,
                "round": r,
                "candidate": candidate,
                "is_valid": vote,
            }
            self.send(node.keypair, body, slot)

    # --- the run ------------------------------------------------------------------------------

    def settled(self) -> bool:
        task = self.task_state
        return all(
            r in task.distributions_audit_record or not task.submissions.get(r)  # type: ignore[call-overload]
            for r in range(self.rounds)
        )

    async def run_async(self) -> SimulationResult:
        self.setup_ledger()
        task = self.task_state
        for node in self.nodes:
            if node.role != OFFLINE:
                await self.call("task", node, node.task.setup, self.context(node, 0, 0))
        self.timings["task"].clear()  # setup is not a round's work
        last_slot = round_start(task, self.rounds + 3 + task.allowed_failed_distributions)
        active = [node for node in self.nodes if node.role != OFFLINE]
        slot = 0
        reported = -1
        while slot < last_slot:
            current = (slot - task.starting_slot) // task.round_time
            if current != reported and self.progress is not None:
                reported = current
                self.progress(self._progress_line(current))
            for node in active:
                for action in due_actions(task, slot, node.record, node.public_key):
                    if (
                        action.kind in (ActionKind.RUN_TASK, ActionKind.SUBMIT_PROOF)
                        and action.round >= self.rounds
                    ):
                        continue
                    await self.execute(node, action, slot)
            slot += 1
            if current >= self.rounds + 1 and slot == round_start(task, current + 1) and self.settled():
                break
        return self.result(slot)

    def _progress_line(self, current: int) -> str:
        paid = sum(1 for report in self.reports.values() if report.outcome == "paid")
        where = (
            f"round {current}/{self.rounds - 1}" if current < self.rounds else f"settling (round {current})"
        )
        return f"{where}: {len(self.log)} transactions, {paid}/{self.rounds} rounds paid"

    def result(self, slots: int) -> SimulationResult:
        task = self.task_state
        return SimulationResult(
            task_id=self.task_id,
            config=self.config,
            nodes=self.nodes,
            rounds=self.rounds,
            seed=self.seed,
            stake=self.stake,
            log=self.log,
            reports=[self.reports[r] for r in range(self.rounds)],
            rewards=dict(self.rewards),
            slashes=dict(self.slashes),
            final_stakes={n.public_key: task.stake_list.get(n.public_key, 0) for n in self.nodes},  # type: ignore[call-overload]
            timings=self.timings,
            task_errors=self.task_errors,
            properties=self.check_properties(),
            slots=slots,
            final_state=self.state,
        )

    def check_properties(self) -> list[PropertyCheck]:
        honest_slashed = sorted(key for key in self.slashes if not self._is_faulty(key))
        over = [
            f"round {r.round} paid {r.reward_total} ROE"
            for r in self.reports.values()
            if r.reward_total > self.config.bounty_amount_per_round
        ]
        missed = []
        for report in self.reports.values():
            if report.outcome != "paid":
                continue
            for key in sorted(self.corrupted.get(report.round, ())):
                if key not in report.slashed:
                    missed.append(f"round {report.round}: node {self._index(key)} ({key[:8]}…)")
        unpaid = [r.round for r in self.reports.values() if r.outcome != "paid" and r.submissions]
        caught_detail = "; ".join(missed) if missed else "every corrupted proof of a paid round was slashed"
        if unpaid and not missed:
            caught_detail += f" (rounds not paid: {', '.join(map(str, unpaid))})"
        return [
            PropertyCheck(
                PROPERTY_HONEST,
                not honest_slashed,
                "slashed: " + ", ".join(f"node {self._index(k)}" for k in honest_slashed)
                if honest_slashed
                else "no honest node lost stake",
            ),
            PropertyCheck(
                PROPERTY_BOUNTY,
                not over,
                "; ".join(over) if over else "every round paid at most bounty_amount_per_round",
            ),
            PropertyCheck(PROPERTY_CAUGHT, not missed, caught_detail),
        ]

    def _is_faulty(self, key: str) -> bool:
        return any(key in keys for keys in self.corrupted.values())

    def _index(self, key: str) -> int:
        return next(node.index for node in self.nodes if node.public_key == key)


def _copier(task: Task) -> Callable[[], Task]:
    cls = type(task)

    def make() -> Task:
        try:
            return cls()
        except TypeError:
            return copy.deepcopy(task)

    return make


__all__ = ["Simulation"]
