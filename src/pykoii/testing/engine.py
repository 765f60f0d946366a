"""The simulator's engine: N virtual nodes follow ``pykoii.node.schedule`` slot by slot.

Each node runs the author's ``Task`` (its own instance and ``MemoryStore``); every transaction is
signed with the node's seed-derived key, checked with ``verify_envelope`` and applied with
``apply_transaction`` to one in-process ``LedgerState``. Nodes act in index order within a slot.

Time: slot ``s`` begins at ``s * slot_ms`` virtual milliseconds. Each node has the node's two lanes
(``pykoii.node.schedule``: ``waits_for_work``, ``is_work``); a phase begins when its lane is free and
lasts as long as the author's code really took, so its transaction is sent in the slot the phase
ended, and a phase that ends after its window is reported (``schedule.overrun``) and refused by the
ledger as on a real network. Phases far shorter than a slot change nothing, so runs stay
byte-identical; phases near a slot boundary may land in different slots from run to run.
Use ``pykoii.testing.simulate``; this module is for stepping a run yourself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..clock import SystemClock
from ..config import TaskConfig, create_task_fields
from ..errors import ConfigError, InvalidTransactionError
from ..keys import Keypair, reveal_body, sign_payload, submit_body, verify_envelope
from ..ledger import LedgerParams, LedgerState, apply_transaction
from ..ledger.distribution import distribution_transactions
from ..ledger.events import event_to_plain
from ..ledger.rounds import audit_window, round_start, submission_window
from ..ledger.state import TaskState
from ..ledger.types import Roe
from ..node.schedule import (
    Action,
    ActionKind,
    clear_memos,
    decide_vote,
    distribution_bounty,
    due_actions,
    is_triggered,
    is_work,
    list_matches,
    overrun,
    submitters_of,
    waits_for_work,
)
from ..sdk import RoundContext, Task, as_distribution_list, invoke
from .nodes import (
    COLLUDER,
    FAULTY,
    LAZY,
    OFFLINE,
    WITHHOLDER,
    FaultyBehaviour,
    LogCollector,
    MemoryBlobs,
    MemoryStore,
    SimulatedNode,
    StateReader,
    corrupt,
    node_roles,
    task_factory,
)
from .result import PHASES, PROPERTY_SUPPLY, PropertyCheck, RoundReport, SimulationResult, check_properties
from .routes import NodeServer

DEFAULT_SLOT_MS = 400.0
"""Virtual slot length: the ledger's default (``pykoii ledger run --slot-ms``)."""


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
        colluding: float = 0.0,
        withholding: int = 0,
        seed: int = 0,
        stake: int | None = None,
        variables: Mapping[str, str] | None = None,
        node_variables: Mapping[int, Mapping[str, str]] | None = None,
        roles: Mapping[int, str] | None = None,
        faulty_behaviour: Any = None,
        slot_ms: float = DEFAULT_SLOT_MS,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not 0 <= colluding < 1:
            raise ConfigError(
                f"--colluding is {colluding}; accepted: a fraction of the nodes from 0 to below 1",
                field="colluding",
                received=colluding,
            )
        counts = {
            "faulty": faulty,
            "lazy-auditors": lazy_auditors,
            "offline": offline,
            "colluding": round(nodes * colluding),
            "withholding": withholding,
        }
        assigned = node_roles(nodes, seed, counts, dict(roles or {}))
        if rounds < 1:
            raise ConfigError(f"--rounds is {rounds}; accepted: 1 or more", field="rounds", received=rounds)
        if not slot_ms > 0:
            raise ConfigError(
                f"--slot-ms is {slot_ms}; accepted: more than 0", field="slot_ms", received=slot_ms
            )
        for index in node_variables or {}:
            if not 0 <= index < nodes:
                raise ConfigError(
                    f"--node-var for node {index}; accepted: a node index 0-{nodes - 1}",
                    field="node_variables",
                    received=index,
                )
        self.config = config
        self.rounds = rounds
        self.seed = seed
        self.slot_ms = float(slot_ms)
        self.stake = stake if stake is not None else max(2 * config.minimum_stake_amount, 1)
        self.variables = dict(variables or {})
        self.progress = progress
        self.clock = SystemClock()
        self.faulty = FaultyBehaviour.of(faulty_behaviour)
        self.logs = LogCollector()
        self.blobs = MemoryBlobs()
        make = task_factory(task)
        self.nodes = []
        for index, role in enumerate(assigned):
            keypair = Keypair.from_seed(_seed_bytes(seed, "node", str(index)))
            own = role == FAULTY and self.faulty.make_task is not None
            node = SimulatedNode(
                index,
                keypair.public_key,
                role,
                keypair,
                (self.faulty.make_task or make)() if own else make(),
                MemoryStore(),
            )
            node.log = self.logs.logger(id(self), index)
            node.variables = {
                **self.variables,
                **(self.faulty.variables if role == FAULTY else {}),
                **dict((node_variables or {}).get(index, {})),
            }
            self.nodes.append(node)
        self.colluders = {node.public_key for node in self.nodes if node.role == COLLUDER}
        self.manager = Keypair.from_seed(_seed_bytes(seed, "manager"))
        self.state = LedgerState(
            params=LedgerParams(devnet=True, airdrop_limit=10**30, airdrop_cooldown_slots=0)  # type: ignore[arg-type]
        )
        self.log: list[dict[str, Any]] = []
        self.timings: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self.task_errors: list[str] = []
        self.overruns: list[str] = []
        self.task_id = ""
        self.reports: dict[int, RoundReport] = {}
        self.rewards: dict[str, int] = {}
        self.slashes: dict[str, int] = {}
        self.corrupted: dict[int, set[str]] = {}
        self.urls: dict[str, str] = {}
        self.server: NodeServer | None = None
        self.pending: dict[int, list[tuple[Keypair, list[dict[str, Any]]]]] = {}
        """Transactions of phases that end in a later slot than they began: sent in that slot."""
        self.cursor_ms = 0.0
        """The virtual time of the lane running a phase now (advanced by each phase's duration)."""
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
            held = self.task_state.submissions.get(event.round, {})
            report.caught |= {key for key in held if not paid.rewards.get(key)}
            report.caught |= {key for key, listed in paid.slashes.items() if listed}
            for staker, listed in paid.slashes.items():
                amount = paid.capped.get(staker, listed)
                if amount:
                    self.slashes[staker] = self.slashes.get(staker, 0) + amount
                    report.slashed[staker] = amount
        elif kind == "RoundFailed":
            report.outcome, report.payout_slot = "failed", slot
        elif kind == "VotePenalized":  # a losing vote's cost counts as stake lost, like a slash
            self.slashes[event.voter] = self.slashes.get(event.voter, 0) + event.amount
            report.penalized[event.voter] = report.penalized.get(event.voter, 0) + event.amount

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

    def serve_routes(self) -> None:
        """Start the nodes' HTTP server; the URLs they registered resolve to it."""
        self.server = NodeServer(
            self.nodes, self.task_id, lambda node: StateReader(self.state, self.task_id, self.urls)
        )
        for node in self.nodes:
            self.urls[f"http://node-{node.index}.simulated"] = node.url
        self.server.start()

    # --- phases -----------------------------------------------------------------------------

    def context(self, node: SimulatedNode, round_number: int, slot: int) -> RoundContext:
        return RoundContext(
            task_id=self.task_id,
            round=round_number,
            slot=slot,
            public_key=node.public_key,
            store=node.store,
            ledger=StateReader(self.state, self.task_id, self.urls),
            variables=node.variables,
            log=node.log,
            blobs=self.blobs,
            slot_time=self.slot_ms,
            signer=lambda data: sign_payload(node.keypair, data),
        )

    async def call(self, phase: str, node: SimulatedNode, method: Any, *args: Any) -> tuple[bool, Any]:
        """Run one phase of the author's code, timed; its duration moves the lane's clock
        (``cursor_ms``). An exception is reported, not raised."""
        start = self.clock.now()
        try:
            value = await invoke(method, *args)
        except Exception as exc:  # noqa: BLE001 - author code: report and go on, as a node does
            self.task_errors.append(
                f"node {node.index} {phase} round {args[0].round}: {type(exc).__name__}: {exc}"
            )
            return False, None
        finally:
            elapsed = (self.clock.now() - start) * 1000
            self.timings[phase].append(elapsed)
            self.cursor_ms += elapsed
        return True, value

    def emit(self, node: SimulatedNode, bodies: dict[str, Any] | list[dict[str, Any]], slot: int) -> None:
        """Send a phase's transactions in the slot its phase ended (now, or queued for that slot), in
        order, stopping at the first the ledger refuses."""
        batch = [bodies] if isinstance(bodies, dict) else list(bodies)
        at = max(slot, int(self.cursor_ms // self.slot_ms))
        if at == slot:
            self.send_all(node.keypair, batch, slot)
        else:
            self.pending.setdefault(at, []).append((node.keypair, batch))

    def send_all(self, keypair: Keypair, batch: list[dict[str, Any]], slot: int) -> None:
        for body in batch:
            if not self.send(keypair, body, slot):
                break

    def submitters(self, round_number: int) -> Any:
        # Public state read by every auditor at the same moment: the same list for all of them.
        key = (round_number, len(self.log))
        cached = self._submitters_cache.get(key)
        if cached is None:
            self._submitters_cache.clear()
            cached = self._submitters_cache[key] = submitters_of(self.task_state, round_number)
        return cached

    async def step(self, node: SimulatedNode, action: Action, slot: int) -> None:
        """Run one action on its lane (``pykoii.node.schedule``'s two-lane rule) in virtual time."""
        now = slot * self.slot_ms
        work = is_work(action)
        self.cursor_ms = max(now, node.work_until_ms if work else node.round_free_ms)
        begun = self.cursor_ms
        if work:
            node.working = action.round
        await self.execute(node, action, slot)
        if work:
            node.work_until_ms = self.cursor_ms
        else:
            node.round_free_ms = self.cursor_ms
        ended = int(self.cursor_ms // self.slot_ms)
        late = overrun(
            self.task_state, action, int(begun // self.slot_ms), ended, (self.cursor_ms - begun) / 1000
        )
        if late is not None:
            self.overruns.append(f"node {node.index}: {late}")

    async def execute(self, node: SimulatedNode, action: Action, slot: int) -> None:
        kind, r = action.kind, action.round
        record = node.record
        if kind is ActionKind.RUN_TASK:
            record.mark(action.key)
            await self.call("task", node, node.task.task, self.context(node, r, slot))
        elif kind is ActionKind.SUBMIT_PROOF:
            record.mark(action.key)
            ctx = self.context(node, r, slot)
            ok, value = await self.call("submission", node, node.task.submission, ctx)
            if not ok or value is None:  # None: this node skips the round
                return
            value = str(value)
            if node.role == COLLUDER:
                value = corrupt(value, node.public_key)
                self.corrupted.setdefault(r, set()).add(node.public_key)
            elif node.role == FAULTY and not self.faulty.runs_own_code:
                own = value
                if self.faulty.hook is not None:
                    ok, value = await self.call("submission", node, self.faulty.hook, ctx, value)
                    if not ok or value is None:
                        return
                    value = str(value)
                else:
                    value = corrupt(value, node.public_key)
                if value != own:
                    self.corrupted.setdefault(r, set()).add(node.public_key)
            elif node.role == FAULTY:
                self.corrupted.setdefault(r, set()).add(node.public_key)
            self.emit(node, submit_body(node.keypair, self.task_id, r, value), slot)
        elif kind is ActionKind.REVEAL:
            record.mark(action.key)
            if node.role == WITHHOLDER:  # its proof is invalid: it must be slashed, like garbage
                self.corrupted.setdefault(r, set()).add(node.public_key)
                return
            self.emit(node, reveal_body(node.keypair, self.task_id, r), slot)
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
            if node.role == COLLUDER:  # a wrong list: the bounty to the coalition, no slash
                held = self.task_state.submissions.get(r, {})  # type: ignore[call-overload]
                ours = sorted(key for key in held if key in self.colluders)
                dist.rewards = {key: Roe(bounty // len(ours)) for key in ours}
                dist.slashes = {}
            self.emit(node, distribution_transactions(self.task_id, r, dist.rewards, dist.slashes), slot)
        elif kind is ActionKind.PAYOUT:
            record.mark(action.key)
            self.emit(node, {"type": "payout", "task_id": self.task_id, "round": r}, slot)

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
            if node.role == COLLUDER:  # defend the coalition, accuse everyone else
                result = candidate in self.colluders
                node.record.note_verdict(kind, r, candidate, result)
                vote = decide_vote(
                    result, is_triggered(self.task_state, r, candidate, distribution=distribution)
                )
                if vote is not None:
                    votes.append((candidate, vote))
                continue
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
            self.emit(node, body, slot)

    # --- the run ------------------------------------------------------------------------------

    def settled(self) -> bool:
        task = self.task_state
        return not self.pending and all(
            r in task.distributions_audit_record or not task.submissions.get(r)  # type: ignore[call-overload]
            for r in range(self.rounds)
        )

    async def run_async(self) -> SimulationResult:
        clear_memos()
        self.setup_ledger()
        self.serve_routes()
        try:
            return await self._run()
        finally:
            if self.server is not None:
                self.server.stop()
            for node in self.nodes:
                logging.Logger.manager.loggerDict.pop(node.log.name, None)

    async def _run(self) -> SimulationResult:
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
            for keypair, batch in self.pending.pop(slot, []):
                self.send_all(keypair, batch, slot)
            for node in active:
                for action in due_actions(task, slot, node.record, node.public_key):
                    if (
                        action.kind in (ActionKind.RUN_TASK, ActionKind.SUBMIT_PROOF)
                        and action.round >= self.rounds
                    ):
                        continue
                    if waits_for_work(action, node.working_at(slot, self.slot_ms)):
                        continue
                    if not is_work(action) and node.round_busy(slot, self.slot_ms):
                        continue
                    await self.step(node, action, slot)
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

    def supply_check(self) -> PropertyCheck:
        """No ROE created or stranded: everything held adds up to what was minted, and no retired
        (migrated) task's pot holds any."""
        held: int = sum(self.state.balances.values())
        stranded = 0
        for task in self.state.tasks.values():
            held += (
                task.total_bounty_amount
                + sum(task.stake_list.values())
                + sum(task.available_balances.values())
            )
            stranded += task.total_bounty_amount if task.is_migrated else 0
        ok = held == self.state.total_supply and not stranded
        detail = f"held {held} ROE of {self.state.total_supply} minted; {stranded} ROE in retired pots"
        return PropertyCheck(PROPERTY_SUPPLY, ok, detail if not ok else "every ROE is where the rules put it")

    def result(self, slots: int) -> SimulationResult:
        task = self.task_state
        errors = self.task_errors + (self.server.errors if self.server is not None else [])
        reports = [self.reports[r] for r in range(self.rounds)]
        faulty = {key for keys in self.corrupted.values() for key in keys}
        faulty |= {
            node.public_key for node in self.nodes if node.role == FAULTY and self.faulty.runs_own_code
        }
        return SimulationResult(
            task_id=self.task_id,
            config=self.config,
            nodes=self.nodes,
            rounds=self.rounds,
            seed=self.seed,
            stake=self.stake,
            log=self.log,
            reports=reports,
            rewards=dict(self.rewards),
            slashes=dict(self.slashes),
            final_stakes={n.public_key: task.stake_list.get(n.public_key, 0) for n in self.nodes},  # type: ignore[call-overload]
            timings=self.timings,
            task_errors=errors,
            properties=[
                *check_properties(
                    self.nodes,
                    reports,
                    self.slashes,
                    self.corrupted,
                    faulty,
                    self.config.bounty_amount_per_round,
                    errors,
                    self.overruns,
                ),
                self.supply_check(),
            ],
            slots=slots,
            final_state=self.state,
            overruns=self.overruns,
            slot_ms=self.slot_ms,
            logs=self.logs.lines,
        )


__all__ = ["DEFAULT_SLOT_MS", "Simulation"]
