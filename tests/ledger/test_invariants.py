"""Hypothesis drives the ledger through random lives of a small world and checks its invariants.

The world: a manager, four nodes and an outsider on a devnet, one or two tasks with short rounds,
and a slot that moves forward through the windows. Each rule builds one instruction, mostly valid
(the right round for the slot, an assigned auditor, the selected distribution submitter, the default
list) and sometimes not. Invariants, checked after every step:

- total supply is conserved: ``total_supply`` = wallets + every task's pot, stakes and available
  balances; and each task's ``total_stake_amount`` is the sum of its stakes;
- no balance, stake, pot or available balance is negative;
- each round is settled at most once, and no payout exceeds ``bounty_amount_per_round``;
- a refused transaction leaves ``state_root`` unchanged;
- replaying the accepted ``(tx, slot)`` list from genesis reaches the same ``state_root``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pykoii.errors import InvalidTransactionError
from pykoii.ledger import (
    LedgerParams,
    LedgerState,
    Phase,
    apply_transaction,
    audit_ring,
    decode_transaction,
    default_distribution_for,
    distribution_round,
    from_plain,
    selected_submitter,
    state_root,
    submission_round,
    to_plain,
)
from pykoii.ledger.distribution import distribution_transactions, list_root
from pykoii.ledger.rounds import distribution_attempt, phase_of, round_of, round_start

from .helpers import KOII, address

TASK = dict(
    task_name="Invariant",
    task_audit_program="bafkinvariant",
    total_bounty_amount=40 * KOII,
    bounty_amount_per_round=10 * KOII,
    round_time=6,
    submission_window=2,
    audit_window=2,
    minimum_stake_amount=2 * KOII,
    allowed_failed_distributions=1,
    sample_size=2,
)

aligned = st.sampled_from([True, True, True, False])
"""Whether a round rule first moves the slot to the window its instruction needs."""
actor_index = st.integers(0, 5)  # 0 manager, 1-4 nodes, 5 outsider
round_offset = st.sampled_from([0, 0, 0, 0, -1, 1])
waits = st.sampled_from([0, 0, 1, 1, 2])
task_index = st.sampled_from([0, 0, 0, 1, 2, 3])
amounts = st.sampled_from([1, KOII, 2 * KOII, 3 * KOII, 50 * KOII, 0])


def honest_root(task: Any, round_number: int) -> str:
    """The root an honest auditor computes: that of the default list."""
    dist = default_distribution_for(task, round_number)
    return list_root(dist.rewards, dist.slashes)


def genesis() -> LedgerState:
    return LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0))


class LedgerLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = genesis()
        self.slot = 0
        self.actors = [address("inv-manager")] + [address(f"inv-node-{i}") for i in range(4)]
        self.actors.append(address("inv-outsider"))
        self.accepted: list[tuple[dict[str, Any], int]] = []
        self.settled: set[tuple[str, int]] = set()
        self.counter = 0

    # --- plumbing -------------------------------------------------------------------------------------
    def send(self, kind: str, signer: str, **fields: Any) -> bool:
        self.counter += 1  # distinct tx ids for otherwise identical transactions
        body = {"type": kind, "signer": signer, "recent_slot": max(0, self.slot - self.counter % 3), **fields}
        before = state_root(self.state)
        # A receipt is a function of the log: the same transaction on the state reloaded from its
        # canonical (sorted) form gives the same events, in the same order.
        reloaded = from_plain(LedgerState, to_plain(self.state)) if kind == "payout" else None
        try:
            receipt = apply_transaction(self.state, decode_transaction(body), self.slot)
        except InvalidTransactionError:
            assert state_root(self.state) == before, f"refused {kind} changed the state"
            return False
        if reloaded is not None:
            again = apply_transaction(reloaded, decode_transaction(body), self.slot)
            assert again.events == receipt.events, "a payout's receipt depends on the state's dict order"
            assert state_root(reloaded) == state_root(self.state)
        self.accepted.append((body, self.slot))
        for event in receipt.events:
            if event.kind in ("RoundPaid", "RoundFailed"):
                key = (event.task_id, event.round)
                assert key not in self.settled, f"round {key} settled twice"
                self.settled.add(key)
            if event.kind == "RoundPaid":
                task = self.state.tasks[event.task_id]
                assert event.reward_total <= task.bounty_amount_per_round
                if task.is_migrated:
                    assert event.reward_total == 0, "a migrated task's in-flight round paid"
        return True

    def send_list(self, signer: str, task_id: str, round_number: int, dist: Any, chunks: bool = True) -> bool:
        """Send a list's commitment and (unless ``chunks`` is false) every chunk; True if all went in."""
        bodies = distribution_transactions(task_id, round_number, dist["rewards"], dist["slashes"])
        if not chunks:
            bodies = bodies[:1]
        return all([self.send(body.pop("type"), signer, **body) for body in bodies])

    def task_ids(self) -> list[str]:
        return list(self.state.tasks)

    def step(self, wait: int, align: bool, index: int, phase: Phase, lag: int = 1) -> Any:
        """Wait ``wait`` slots and pick a task. When ``align``, move on to the task's next slot in
        ``phase`` of a round at least ``lag`` (1 for proofs, 2 for lists), so there is a round to act on."""
        self.slot += wait
        task = self.pick_task(index)
        if task is None or not align:
            return task
        self.slot = max(self.slot, round_start(task, lag))
        if phase_of(task, self.slot) is not phase:
            start = round_start(task, round_of(task, self.slot))
            offset = {
                Phase.SUBMISSION: 0,
                Phase.AUDIT: task.submission_window,
                Phase.DELAY: task.submission_window + task.audit_window,
            }[phase]
            self.slot = start + offset if start + offset > self.slot else start + task.round_time + offset
        return task

    def pick_task(self, index: int) -> Any:
        ids = self.task_ids()
        return self.state.tasks[ids[index % len(ids)]] if ids else None

    def actor(self, index: int) -> str:
        return self.actors[index]

    @initialize()
    def fund_everyone(self) -> None:
        for index, actor in enumerate(self.actors):
            self.send("airdrop", actor, to=actor, amount=(200 if index == 0 else 20) * KOII)
        self.send("create_task", self.actors[0], **TASK)
        task_id = self.task_ids()[0]
        for node in self.actors[1:5]:
            self.send("stake", node, task_id=task_id, amount=3 * KOII, ip_address="http://node.example")

    # --- time ---------------------------------------------------------------------------------------
    @rule(slots=st.integers(1, 4))
    def advance_slot(self, slots: int) -> None:
        self.slot += slots

    # --- wallets and tasks --------------------------------------------------------------------------
    @rule(wait=waits, who=actor_index, amount=amounts)
    def airdrop(self, wait: int, who: int, amount: int) -> None:
        self.slot += wait
        self.send("airdrop", self.actor(who), to=self.actor(who), amount=amount)

    @rule(wait=waits, source=actor_index, receiver=actor_index, amount=amounts)
    def transfer(self, wait: int, source: int, receiver: int, amount: int) -> None:
        self.slot += wait
        self.send("transfer", self.actor(source), to=self.actor(receiver), amount=amount)

    @rule(
        wait=waits,
        who=st.sampled_from([0, 0, 0, 5]),
        bounty=st.sampled_from([20 * KOII, 5 * KOII, 500 * KOII]),
    )
    def create_task(self, wait: int, who: int, bounty: int) -> None:
        self.slot += wait
        if len(self.state.tasks) < 2:
            self.send("create_task", self.actor(who), **{**TASK, "total_bounty_amount": bounty})

    @rule(wait=waits, task=task_index, who=st.sampled_from([0, 0, 5]))
    def update_task(self, wait: int, task: int, who: int) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None and not any(t.is_migrated for t in self.state.tasks.values()):
            fields = {k: v for k, v in TASK.items() if k != "total_bounty_amount"}
            self.send("update_task", self.actor(who), task_id=target.task_id, **fields)

    @rule(
        wait=waits,
        task=task_index,
        who=st.sampled_from([0, 0, 5]),
        active=st.sampled_from([True, True, False]),
    )
    def set_active(self, wait: int, task: int, who: int, active: bool) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None:
            self.send("set_active", self.actor(who), task_id=target.task_id, is_active=active)

    @rule(wait=waits, task=task_index, who=actor_index, amount=amounts)
    def fund_task(self, wait: int, task: int, who: int, amount: int) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None:
            self.send("fund_task", self.actor(who), task_id=target.task_id, amount=amount)

    # --- staking ------------------------------------------------------------------------------------
    @rule(wait=waits, task=task_index, who=actor_index, amount=amounts)
    def stake(self, wait: int, task: int, who: int, amount: int) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None:
            self.send("stake", self.actor(who), task_id=target.task_id, amount=amount)

    @rule(wait=waits, task=task_index, who=actor_index)
    def withdraw(self, wait: int, task: int, who: int) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None:
            self.send("withdraw", self.actor(who), task_id=target.task_id)

    @rule(wait=waits, task=task_index, who=st.sampled_from([1, 2, 3, 4, 5]), beneficiary=actor_index)
    def claim_reward(self, wait: int, task: int, who: int, beneficiary: int) -> None:
        self.slot += wait
        target = self.pick_task(task)
        if target is not None:
            self.send(
                "claim_reward", self.actor(who), task_id=target.task_id, beneficiary=self.actor(beneficiary)
            )

    # --- the round ----------------------------------------------------------------------------------
    # Each round rule usually first moves the slot to the window its instruction needs (``align``).

    @rule(
        wait=waits,
        align=aligned,
        task=task_index,
        who=st.integers(1, 5),
        offset=round_offset,
        honest=st.booleans(),
    )
    def submit(self, wait: int, align: bool, task: int, who: int, offset: int, honest: bool) -> None:
        target = self.step(wait, align, task, Phase.SUBMISSION)
        if target is not None:
            value = "Hello, World!" if honest else "Goodbye"
            self.send(
                "submit",
                self.actor(who),
                task_id=target.task_id,
                round=submission_round(target, self.slot) + offset,
                submission_value=value,
            )

    @rule(task=task_index, wrong=st.sampled_from([None, None, 1, 2, 3, 4]), stingy=st.sampled_from([0, 0, 1]))
    def honest_round(self, task: int, wrong: int | None, stingy: int) -> None:
        """One whole round of honest nodes: in the submission window every staked node submits its
        proof and the selected node the default list; in the audit window assigned auditors accuse
        wrong proofs and lists; in the delay anyone asks for payouts. ``wrong`` sends a bad proof."""
        target = self.step(0, True, task, Phase.SUBMISSION, lag=1)
        if target is None:
            return
        proofs, lists = submission_round(target, self.slot), distribution_round(target, self.slot)
        stakers = [self.actor(i) for i in range(1, 5) if self.actor(i) in target.stake_list]
        for index, node in enumerate(stakers, start=1):
            value = "Goodbye" if index == wrong else "Hello, World!"
            self.send("submit", node, task_id=target.task_id, round=proofs, submission_value=value)
        for back in (0, 1):  # attempt 0 of round lists, or attempt 1 of the round before
            attempt = distribution_attempt(target, lists - back, self.slot)
            chosen = selected_submitter(None, target, lists - back, attempt)
            if chosen is not None and target.submissions.get(lists - back):
                dist = to_plain(default_distribution_for(target, lists - back))
                if stingy:  # a list that pays 1 ROE each: its auditors reject it
                    dist["rewards"] = dict.fromkeys(dist["rewards"], 1)
                if self.send_list(chosen, target.task_id, lists - back, dist):
                    break
        self.step(0, True, task, Phase.AUDIT)
        ring = audit_ring(None, target, proofs)
        for auditor in stakers:
            for candidate in ring.candidates_of(auditor):
                if target.submissions[proofs][candidate].submission_value != "Hello, World!":
                    self.send(
                        "audit_submission",
                        auditor,
                        task_id=target.task_id,
                        round=proofs,
                        candidate=candidate,
                        is_valid=False,
                    )
        for back in (0, 1):
            for candidate, submitted in target.distribution_lists.get(lists - back, {}).items():
                if submitted.root != honest_root(target, lists - back):
                    for auditor in stakers:
                        if auditor != candidate:
                            self.send(
                                "audit_distribution",
                                auditor,
                                task_id=target.task_id,
                                round=lists - back,
                                candidate=candidate,
                                is_valid=False,
                            )
        self.step(0, True, task, Phase.DELAY)
        for back in (0, 1):
            if target.submissions.get(lists - back) and lists - back not in target.distributions_audit_record:
                self.send("payout", self.actor(5), task_id=target.task_id, round=lists - back)

    @rule(wait=waits, task=task_index, wrong=st.sampled_from([None, None, 1, 2, 3, 4]))
    def submit_all_nodes(self, wait: int, task: int, wrong: int | None) -> None:
        """Every node staked on the task submits for the current round; one may send a wrong value."""
        target = self.step(wait, True, task, Phase.SUBMISSION)
        if target is None:
            return
        for index in range(1, 5):
            if self.actor(index) in target.stake_list:
                value = "Goodbye" if index == wrong else "Hello, World!"
                self.send(
                    "submit",
                    self.actor(index),
                    task_id=target.task_id,
                    round=submission_round(target, self.slot),
                    submission_value=value,
                )

    @rule(
        wait=waits,
        align=aligned,
        task=task_index,
        who=st.integers(1, 5),
        pick=st.integers(0, 3),
        offset=round_offset,
        is_valid=st.sampled_from([False, True, True]),
    )
    def audit_submission(
        self, wait: int, align: bool, task: int, who: int, pick: int, offset: int, is_valid: bool
    ) -> None:
        target = self.step(wait, align, task, Phase.AUDIT)
        if target is None:
            return
        round_number = submission_round(target, self.slot) + offset
        voter = self.actor(who)
        candidates = audit_ring(None, target, round_number).candidates_of(voter) or list(
            target.submissions.get(round_number, {})
        )
        candidate = candidates[pick % len(candidates)] if candidates else self.actor(5)
        triggered = candidate in target.submissions_audit_trigger.get(round_number, {})
        honest_value = target.submissions.get(round_number, {}).get(candidate)
        if align and honest_value is not None:
            # An honest auditor: accuse a wrong proof, defend a right one that was accused.
            is_valid = honest_value.submission_value == "Hello, World!"
            if is_valid and not triggered:
                return
        self.send(
            "audit_submission",
            voter,
            task_id=target.task_id,
            round=round_number,
            candidate=candidate,
            is_valid=is_valid,
        )

    @rule(
        wait=waits,
        align=aligned,
        task=task_index,
        attempt_offset=st.sampled_from([0, 0, 1]),
        tamper=st.sampled_from([0, 0, 0, 1, 2, 3]),
        impostor=st.sampled_from([False, False, False, True]),
    )
    def submit_distribution(
        self, wait: int, align: bool, task: int, attempt_offset: int, tamper: int, impostor: bool
    ) -> None:
        target = self.step(wait, align, task, Phase.SUBMISSION, lag=2)
        if target is None:
            return
        round_number = distribution_round(target, self.slot) - attempt_offset
        attempt = distribution_attempt(target, round_number, self.slot)
        chosen = selected_submitter(None, target, round_number, attempt)
        signer = self.actor(1) if impostor or chosen is None else chosen
        dist = to_plain(default_distribution_for(target, round_number))
        if tamper == 1 and dist["rewards"]:
            first = next(iter(dist["rewards"]))
            dist["rewards"][first] += target.bounty_amount_per_round  # over the bounty: refused
        elif tamper == 2:
            dist["rewards"] = dict.fromkeys(dist["rewards"], 1)  # a stingy list that auditors reject
        # tamper 3: the commitment without its chunks, a list that can never be paid
        self.send_list(signer, target.task_id, round_number, dist, chunks=tamper != 3)

    @rule(
        wait=waits,
        align=aligned,
        task=task_index,
        who=st.integers(1, 5),
        offset=st.sampled_from([0, 0, 1]),
        is_valid=st.booleans(),
        honest=st.booleans(),
    )
    def audit_distribution(
        self, wait: int, align: bool, task: int, who: int, offset: int, is_valid: bool, honest: bool
    ) -> None:
        target = self.step(wait, align, task, Phase.AUDIT, lag=2)
        if target is None:
            return
        round_number = distribution_round(target, self.slot) - offset
        lists = target.distribution_lists.get(round_number, {})
        candidate = next(reversed(lists)) if lists else self.actor(1)
        if align and lists and honest:
            # An honest auditor compares the list with the default one it computes itself.
            is_valid = lists[candidate].root == honest_root(target, round_number)
            if is_valid and candidate not in target.distributions_audit_trigger.get(round_number, {}):
                return
        self.send(
            "audit_distribution",
            self.actor(who),
            task_id=target.task_id,
            round=round_number,
            candidate=candidate,
            is_valid=is_valid,
        )

    @rule(wait=waits, align=aligned, task=task_index, back=st.integers(0, 3), who=actor_index)
    def payout(self, wait: int, align: bool, task: int, back: int, who: int) -> None:
        target = self.step(wait, align, task, Phase.DELAY, lag=2)
        if target is not None:
            round_number = distribution_round(target, self.slot) - back
            self.send("payout", self.actor(who), task_id=target.task_id, round=round_number)

    # --- invariants ---------------------------------------------------------------------------------
    @invariant()
    def supply_is_conserved(self) -> None:
        held = sum(self.state.balances.values())
        for task in self.state.tasks.values():
            stakes = sum(task.stake_list.values())
            assert task.total_stake_amount == stakes
            held += task.total_bounty_amount + stakes + sum(task.available_balances.values())
        assert held == self.state.total_supply

    @invariant()
    def nothing_is_negative(self) -> None:
        assert all(value >= 0 for value in self.state.balances.values())
        for task in self.state.tasks.values():
            assert task.total_bounty_amount >= 0 and task.total_stake_amount >= 0
            assert all(value > 0 for value in task.stake_list.values())
            assert all(value > 0 for value in task.available_balances.values())

    @invariant()
    def no_roe_is_stranded(self) -> None:
        """A migrated task can no longer be funded or pay, so its pot must stay empty."""
        for task in self.state.tasks.values():
            if task.is_migrated:
                assert task.total_bounty_amount == 0, (
                    f"{task.total_bounty_amount} ROE stranded in a retired pot"
                )

    @invariant()
    def records_match_settlements(self) -> None:
        for task in self.state.tasks.values():
            for round_number in task.distributions_audit_record:
                assert (task.task_id, round_number) in self.settled

    def teardown(self) -> None:
        replayed = genesis()
        for body, slot in self.accepted:
            apply_transaction(replayed, decode_transaction(body), slot)
        assert state_root(replayed) == state_root(self.state), "replaying the accepted log diverged"


LedgerLife.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerLife = LedgerLife.TestCase
