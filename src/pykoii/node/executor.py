"""How a node carries out one ``schedule.Action``: run the phase, sign, journal, send.

Every transaction is journaled (signed envelope, status ``sending``) and its action marked done in
the schedule's ``NodeRecord`` *before* it is sent, and set to ``done`` or ``failed`` after. A
``sending`` row left by a killed node is re-sent unchanged on the next tick; the ledger accepts it or
refuses it as a replay or duplicate, which counts as done. So no round is ever submitted twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import (
    AlreadyPaidError,
    DuplicateSubmissionError,
    DuplicateTransactionError,
    DuplicateVoteError,
    InvalidTransactionError,
    PayoutNotReadyError,
    PykoiiError,
    TaskCodeError,
)
from ..keys import reveal_body, submit_body
from ..ledger.distribution import distribution_transactions
from ..ledger.rounds import reveal_window
from ..ledger.state import DistributionList
from . import schedule
from .journal import DONE, FAILED, SENDING

if TYPE_CHECKING:
    from .model import TaskRuntime
    from .sandbox import TaskProcess

ALREADY_DONE = (DuplicateSubmissionError, DuplicateTransactionError, DuplicateVoteError, AlreadyPaidError)
"""Refusals that mean "this was already done": the action counts as done."""


class RoundExecutor:
    """The part of ``Node`` that executes actions (a mixin; ``Node`` provides the attributes)."""

    slot: int
    journal: Any
    ledger: Any
    staking: Any

    async def _execute(self, runtime: TaskRuntime, task: Any, record: Any, action: Any) -> None:
        """Carry out one round-lane ``schedule.Action``: run its phase in the child, sign, journal,
        send. (``RUN_TASK`` runs on the work lane: ``Node._start_work``.)"""
        kind, round_number = action.kind, action.round
        process = runtime.process
        task_id = runtime.record.task_id
        K = schedule.ActionKind
        if kind is K.REVEAL:  # no phase: the node reveals while its child is stopped or starting
            body = reveal_body(self.staking, task_id, round_number)
            await self._sign_and_send(runtime, record, action.key, kind.value, round_number, "", body)
            return
        assert process is not None
        if kind is K.SUBMIT_PROOF:
            value = (await process.run_phase("submission", round_number, self.slot)).value
            if value is None:
                record.mark(action.key)
                self.journal.save_record(task_id, record.to_json())
                runtime.logger.info("submission() returned None: no proof for round %d", round_number)
                return
            body = submit_body(self.staking, task_id, round_number, value)
            await self._sign_and_send(runtime, record, action.key, kind.value, round_number, "", body)
        elif kind is K.SUBMIT_DISTRIBUTION:
            # Read the task again: a payout sent just before (by this tick) changed the stakes the
            # list's slashes are computed from, and the auditors will read them after it.
            task = schedule.as_task_state(await self.ledger.task(task_id))
            listed = await self._distribution(process, task_id, task, round_number)
            bodies = distribution_transactions(task_id, round_number, listed["rewards"], listed["slashes"])
            await self._sign_and_send_list(runtime, record, action.key, kind.value, round_number, bodies)
        elif kind is K.PAYOUT:
            body = {"type": "payout", "task_id": task_id, "round": round_number}
            await self._sign_and_send(runtime, record, action.key, kind.value, round_number, "", body)
        elif kind in (K.AUDIT_PROOFS, K.AUDIT_DISTRIBUTION):
            distribution = kind is K.AUDIT_DISTRIBUTION
            votes = list(action.votes)
            recomputed = None
            for candidate, value in action.candidates:
                try:
                    if distribution:
                        if recomputed is None:
                            recomputed = DistributionList(
                                **await self._distribution(process, task_id, task, round_number)
                            )
                        verdict = schedule.list_matches(task, round_number, candidate, recomputed)
                    else:
                        verdict = bool(
                            (
                                await process.run_phase(
                                    "audit",
                                    round_number,
                                    self.slot,
                                    {"submission": value, "submitter": candidate},
                                )
                            ).value
                        )
                except TaskCodeError as exc:  # Koii swallows audit failures: no vote on that candidate
                    record.mark_vote(kind, round_number, candidate)
                    self.journal.save_record(task_id, record.to_json())
                    runtime.logger.error(
                        "audit of %s for round %d failed, no vote: %s", candidate, round_number, exc
                    )
                    if not process.running:
                        raise
                    continue
                record.note_verdict(kind, round_number, candidate, verdict)
                self.journal.save_record(task_id, record.to_json())
                vote = schedule.decide_vote(
                    verdict, schedule.is_triggered(task, round_number, candidate, distribution=distribution)
                )
                if vote is not None:
                    votes.append((candidate, vote))
            for candidate, vote in votes:
                body = {
                    "type": "audit_distribution" if distribution else "audit_submission",
                    "task_id": task_id,
                    "round": round_number,
                    "candidate": candidate,
                    "is_valid": vote,
                }
                key = schedule.action_key(kind, round_number, candidate)
                await self._sign_and_send(runtime, record, key, kind.value, round_number, candidate, body)

    async def _distribution(
        self, process: TaskProcess, task_id: str, task: Any, round_number: int
    ) -> dict[str, Any]:
        """Run ``distribution`` for a round: its every submitter, read page by page (once per round:
        ``NodeLedger.round_state``)."""
        whole_round = await self.ledger.round_state(task_id, round_number, task, self.slot)
        submitters = [dataclasses.asdict(s) for s in schedule.submitters_of(whole_round, round_number)]
        args = {"submitters": submitters, "bounty": schedule.distribution_bounty(task)}
        value = (await process.run_phase("distribution", round_number, self.slot, args)).value
        return {"rewards": dict(value.get("rewards", {})), "slashes": dict(value.get("slashes", {}))}

    async def _sign_and_send(
        self,
        runtime: TaskRuntime,
        record: Any,
        key: str,
        kind: str,
        round_number: int,
        candidate: str,
        body: dict[str, Any],
    ) -> None:
        """Journal the signed envelope and mark the action done, *then* send it."""
        await self._sign_and_send_all(runtime, record, key, kind, round_number, [(candidate, body)])

    async def _sign_and_send_list(
        self,
        runtime: TaskRuntime,
        record: Any,
        key: str,
        kind: str,
        round_number: int,
        bodies: list[dict[str, Any]],
    ) -> None:
        """A list's commitment (journaled as candidate ``""``), then its chunks (``chunk 0``, …)."""
        parts = [("" if index == 0 else f"chunk {index - 1}", body) for index, body in enumerate(bodies)]
        await self._sign_and_send_all(runtime, record, key, kind, round_number, parts)

    async def _sign_and_send_all(
        self,
        runtime: TaskRuntime,
        record: Any,
        key: str,
        kind: str,
        round_number: int,
        parts: list[tuple[str, dict[str, Any]]],
    ) -> None:
        """Sign and journal every envelope of one action (``(candidate, body)`` each) and mark the
        action done *before* the first is sent, so a node killed half way re-sends the rest (unchanged)
        after its restart."""
        task_id = runtime.record.task_id
        envelopes = []
        for candidate, body in parts:
            body["recent_slot"] = self.slot
            envelope = self.staking.sign_transaction(body)
            self.journal.record(
                task_id, kind, round_number, candidate, SENDING, envelope=envelope, slot=self.slot
            )
            envelopes.append((candidate, envelope))
        record.mark(key)
        self.journal.save_record(task_id, record.to_json())
        for candidate, envelope in envelopes:
            await self._send(runtime, kind, round_number, candidate, envelope)

    async def _send(
        self, runtime: TaskRuntime, kind: str, round_number: int, candidate: str, envelope: dict[str, Any]
    ) -> None:
        task_id = runtime.record.task_id
        try:
            await self.ledger.send(envelope)
        except ALREADY_DONE as exc:
            self.journal.record(task_id, kind, round_number, candidate, DONE, slot=self.slot)
            who = "by another node" if isinstance(exc, AlreadyPaidError) else "before"
            runtime.logger.info(
                "%s for round %d%s was already done %s (%s); nothing sent",
                kind,
                round_number,
                _vote_text(candidate, envelope),
                who,
                exc.name,
            )
            return
        except InvalidTransactionError as exc:
            self.journal.record(
                task_id, kind, round_number, candidate, FAILED, error=f"{exc.name}: {exc}", slot=self.slot
            )
            runtime.logger.warning("%s for round %d refused: %s: %s", kind, round_number, exc.name, exc)
            if isinstance(exc, PayoutNotReadyError):  # try again on a later tick
                record = schedule.NodeRecord.from_json(self.journal.load_record(task_id))
                record.done.discard(schedule.action_key(schedule.ActionKind.PAYOUT, round_number))
                self.journal.save_record(task_id, record.to_json())
            return
        self.journal.record(task_id, kind, round_number, candidate, DONE, slot=self.slot)
        if kind == schedule.ActionKind.SUBMIT_PROOF.value:
            runtime.last_submitted_round = max(runtime.last_submitted_round or round_number, round_number)
        runtime.logger.info("sent %s for round %d%s", kind, round_number, _vote_text(candidate, envelope))

    async def _reveal_due(self, runtime: TaskRuntime) -> list[tuple[int, range]]:
        """Re-send what a previous run left unsent, then send each reveal due now: neither needs the
        task child, so the node does this before it starts the child (a restart, a backoff), after
        ``stop-task`` and ``remove-task`` and when it shuts down, where a proof left unrevealed would
        be judged invalid and slashed. The proofs of this node the ledger held unrevealed, with a
        reveal window still to come or open, as ``(round, reveal window)`` (also kept in
        ``runtime.unrevealed``): empty once every proof sent is revealed (a reveal sent by this
        call is listed until the next call reads it back)."""
        task_id = runtime.record.task_id
        await self._resend_pending(runtime)
        self.slot = await self.ledger.slot()
        state, facts = await self.ledger.key_facts(task_id)
        runtime.state = state
        task = schedule.as_task_state(state)
        me = self.staking.public_key
        record = schedule.NodeRecord.from_json(self.journal.load_record(task_id))
        for action in schedule.due_actions(task, self.slot, record, me, facts):
            if action.kind is schedule.ActionKind.REVEAL:
                await self._execute(runtime, task, record, action)
        runtime.unrevealed = sorted(
            (number, reveal_window(task, number))
            for number, proofs in task.submissions.items()
            if me in proofs and not proofs[me].reveal and self.slot < reveal_window(task, number).stop
        )
        return runtime.unrevealed

    async def _resend_pending(self, runtime: TaskRuntime) -> None:
        """Re-send, unchanged, every envelope a previous run wrote but may not have sent."""
        for action in self.journal.actions(runtime.record.task_id, status=SENDING):
            if action.envelope is not None:
                runtime.logger.info("re-sending %s for round %d after a restart", action.kind, action.round)
                with contextlib.suppress(PykoiiError):
                    await self._send(runtime, action.kind, action.round, action.candidate, action.envelope)


def _vote_text(candidate: str, envelope: dict[str, Any]) -> str:
    """`` on CANDIDATE: voted valid|invalid`` for an audit vote, ``""`` otherwise."""
    if not candidate:
        return ""
    vote = envelope.get("tx", {}).get("is_valid")
    verdict = "" if vote is None else f": voted {'valid' if vote else 'invalid'}"
    return f" on {candidate}{verdict}"
