"""The ledger calls the node makes, over ``pykoii.client.LedgerClient``, made awaitable.

The client is synchronous; each call runs in a worker thread so a slow ledger never blocks the
node's event loop (its HTTP server, the other tasks). Tests pass ``transport`` to reach an
in-process ledger app.

What the node reads is bounded by what it needs, not by the task's size: each tick it reads the
slot and ``task()``, its own part of the task (``GET /tasks/{id}/nodes/{key}``); a round's whole
list of submitters only when it computes or audits that round's distribution list (``round_state``,
a page of 5,000 at a time, and once per round: see ``FINAL_ROUNDS_KEPT``); the whole task state only
when task code asks for it (``whole_task``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..client import LedgerClient
from ..ledger.codec import to_plain
from ..ledger.rounds import judgement_window
from ..ledger.state import TaskState
from ..service.views import MAX_PAGE
from . import schedule

FINAL_ROUNDS_KEPT = 2
"""Rounds whose pages ``round_state`` keeps. A round is read for its distribution list from the
slot its judgement window closes, after which its proofs and audit triggers never change; a node
that submits one attempt's list and audits another's (or audits an accused list again) would
otherwise read the same round, every submitter, again for each (about 30 MB at 100,000). Only the
latest few rounds are kept, since each is the size of the round."""


class NodeLedger:
    """Slot, task state, transactions, blobs and balances, as the node needs them."""

    def __init__(
        self, base_url: str, *, key: str = "", client: LedgerClient | None = None, transport: Any = None
    ) -> None:
        self.base_url = base_url
        self.key = key
        """The node's staking key: whose part of each task ``task()`` reads."""
        self.client = client or LedgerClient(base_url, transport=transport, retries=2)
        self.slot_ms = 400
        """The ledger's slot length in ms, as of the last ``slot()`` read."""
        self._final: dict[tuple[str, int], tuple[int, dict[str, dict[str, Any]]]] = {}
        """``(task, round)`` → the task's total stake when read, and the round's pages (``round_state``)."""

    async def slot(self) -> int:
        answer = await asyncio.to_thread(self.client.slot)
        self.slot_ms = int(answer.get("slot_ms", self.slot_ms)) or self.slot_ms
        return int(answer["slot"])

    async def task(self, task_id: str) -> dict[str, Any]:
        """This node's part of the task (``GET /tasks/{id}/nodes/{key}``): the task's settings, the
        node's own entry of each per-key map, the proofs it audits and ``key_rounds``; a
        ``TaskState`` in plain form with only those entries, whatever the task's size."""
        return await asyncio.to_thread(self.client.node, task_id, self.key)

    async def whole_task(self, task_id: str) -> dict[str, Any]:
        """The task's whole ``TaskState`` (every partial-fetch flag set): for task code that asks."""
        return await asyncio.to_thread(
            lambda: self.client.task(
                task_id,
                is_submission_required=True,
                is_distribution_required=True,
                is_available_balances_required=True,
                is_stake_list_required=True,
            )
        )

    async def key_facts(self, task_id: str) -> tuple[dict[str, Any], dict[int, schedule.RoundFacts]]:
        """``task()``, and its ``key_rounds`` as ``schedule.RoundFacts`` per round."""
        state = await self.task(task_id)
        rounds = state.get("key_rounds", {})
        return state, {int(r): schedule.RoundFacts.from_json(facts) for r, facts in rounds.items()}

    async def round_pages(self, task_id: str, round_number: int) -> dict[str, dict[str, Any]]:
        """Every submitter of a round, page after page (``GET /tasks/{id}/rounds/{r}``):
        ``{"submissions", "submissions_audit_trigger", "stakes"}``, each keyed by submitter."""
        found: dict[str, dict[str, Any]] = {"submissions": {}, "submissions_audit_trigger": {}, "stakes": {}}
        after = ""
        while True:
            page = await asyncio.to_thread(self._round_page, task_id, round_number, after)
            for name, part in found.items():
                part.update(page.get(name, {}))
            after = page.get("next_after") or ""
            if not after:
                return found

    def _round_page(self, task_id: str, round_number: int, after: str) -> dict[str, Any]:
        return self.client.round(task_id, round_number, after=after, limit=MAX_PAGE)

    async def round_state(self, task_id: str, round_number: int, task: TaskState, slot: int) -> TaskState:
        """``task`` (the node's part of it, read at ``slot``) with round ``round_number``'s every
        submission, audit trigger and submitter's stake: what ``schedule.submitters_of`` needs for the
        round (its submissions in key order, the pages' order, where the whole state has submission
        order).

        Once the round's judgement window has closed, its pages are read once and kept
        (``FINAL_ROUNDS_KEPT`` rounds, and only rounds the ledger still holds); they are read again
        if the task's total stake changed since, since the pages carry the submitters' stakes (a
        payout's slashes, a stake added). Not guaranteed: a stake added and another withdrawn of
        exactly the same amount in between go unnoticed."""
        key = (task_id, round_number)
        for held in [k for k in self._final if k[0] == task_id and k[1] not in task.submissions]:
            del self._final[held]  # the ledger no longer holds that round
        kept = self._final.get(key)
        if kept is not None and kept[0] == task.total_stake_amount:
            pages = kept[1]
        else:
            pages = await self.round_pages(task_id, round_number)
            if slot >= judgement_window(task, round_number).stop:
                self._final.pop(key, None)
                self._final[key] = (task.total_stake_amount, pages)
                while len(self._final) > FINAL_ROUNDS_KEPT:
                    del self._final[next(iter(self._final))]  # the one kept longest
        plain = {
            **to_plain(task),
            "submissions": {str(round_number): pages["submissions"]},
            "submissions_audit_trigger": {str(round_number): pages["submissions_audit_trigger"]},
            "stake_list": pages["stakes"],
        }
        return schedule.as_task_state(plain)

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.send, envelope))

    async def put_blob(self, data: bytes) -> str:
        return await asyncio.to_thread(self.client.put_blob, data)

    async def blob(self, cid: str) -> bytes:
        return await asyncio.to_thread(self.client.get_blob, cid)

    async def balance(self, public_key: str) -> int:
        account = await asyncio.to_thread(self.client.account, public_key)
        return int(account.get("balance", 0))

    def close(self) -> None:
        self.client.close()
