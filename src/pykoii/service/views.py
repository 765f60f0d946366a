"""Read views of the ledger state, as the HTTP API serves them (plain JSON-ready values).

Field names follow Koii's ``TaskState`` (koii-reference §2.1). ``task_view`` implements Koii's
partial fetch: the four ``TaskStateOptions`` flags default to false, and a false flag returns the
maps it gates as ``{}``.
"""

from __future__ import annotations

import dataclasses
import heapq
import operator
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidRequestError, NotFoundError
from ..ledger import (
    Address,
    DistributionList,
    LedgerState,
    TaskId,
    TaskState,
    audit_ring,
    audit_window,
    default_distribution,
    default_distribution_for,
    distribution_audit_window,
    distribution_window,
    judged_submitters,
    judgement_window,
    reveal_window,
    round_of,
    submission_window,
    to_plain,
)
from ..ledger.bounds import MAX_INTEGER
from ..ledger.codec import is_address
from ..ledger.distribution import paid_from, passed_list, round_bounty, selected_submitters

TASK_FLAGS: dict[str, tuple[str, ...]] = {
    "is_submission_required": ("submissions", "submissions_audit_trigger", "round_beacons"),
    "is_distribution_required": (
        "distribution_rewards_submission",
        "distributions_audit_trigger",
        "distributions_audit_record",
        "distribution_lists",
    ),
    "is_available_balances_required": ("available_balances",),
    "is_stake_list_required": ("stake_list", "last_submission_round"),
}
"""Koii's partial-fetch flags and the ``TaskState`` maps each one gates."""


def get_task(state: LedgerState, task_id: str) -> TaskState:
    """The task ``task_id`` or ``NotFoundError`` (404)."""
    task = state.tasks.get(TaskId(task_id))
    if task is None:
        raise NotFoundError(f"no task has id {task_id!r}; GET /tasks lists them", task_id=task_id)
    return task


def task_summary(task: TaskState, slot: int) -> dict[str, Any]:
    """The short form of a task for ``GET /tasks``."""
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "task_manager": task.task_manager,
        "is_active": task.is_active,
        "is_migrated": task.is_migrated,
        "migrated_to": task.migrated_to,
        "total_bounty_amount": task.total_bounty_amount,
        "bounty_amount_per_round": task.bounty_amount_per_round,
        "total_stake_amount": task.total_stake_amount,
        "minimum_stake_amount": task.minimum_stake_amount,
        "round_time": task.round_time,
        "starting_slot": task.starting_slot,
        "current_round": round_of(task, slot),
        "stakers": len(task.stake_list),
        **{name: getattr(task, name) for name in SUMMARY_SCALARS},
        "requirements_tags": to_plain(task.requirements_tags),
        "rounds": round_counts(task),
    }


SUMMARY_SCALARS = (
    "task_description",
    "task_metadata",
    "task_audit_program",
    "task_executable_network",
    "submission_window",
    "audit_window",
    "sample_size",
    "allowed_failed_distributions",
    "migrated_from",
)
"""The rest of a task's settings that its short form carries (every one a short scalar)."""


def round_counts(task: TaskState) -> list[dict[str, Any]]:
    """Per round the task still holds (newest first): how many submissions, audit triggers and
    distribution lists it has, and its payout record; a few rounds at most, whatever the task's size."""
    held = set(task.submissions) | set(task.distributions_audit_record)
    return [
        {
            "round": number,
            "submitters": len(task.submissions.get(number, {})),
            "accused": len(task.submissions_audit_trigger.get(number, {})),
            "lists": len(task.distribution_rewards_submission.get(number, {})),
            "payout_record": task.distributions_audit_record.get(number),
        }
        for number in sorted(held, reverse=True)
    ]


def task_view(task: TaskState, slot: int, flags: dict[str, bool]) -> dict[str, Any]:
    """A task with Koii's field names; maps gated by a false flag come back as ``{}``.

    ``distribution_lists`` holds each list's header (root, chunk count, chunks received, totals,
    capped slashes) with empty ``rewards`` and ``slashes``: a list's per-key detail is read page by
    page from ``GET /tasks/{id}/rounds/{r}/distribution``, so this view stays small at any size."""
    skipped = {name for flag, names in TASK_FLAGS.items() if not flags.get(flag, False) for name in names}
    view: dict[str, Any] = {}
    for field in dataclasses.fields(task):
        if field.name in skipped:
            view[field.name] = {}
        elif field.name == "distribution_lists":
            view[field.name] = {
                str(number): {key: list_header(dist) for key, dist in lists.items()}
                for number, lists in task.distribution_lists.items()
            }
        else:
            view[field.name] = to_plain(getattr(task, field.name))
    view["current_round"] = round_of(task, slot)
    return view


def list_header(dist: DistributionList) -> dict[str, Any]:
    """A list without its per-key entries (the ``DistributionList`` plain form, ``rewards`` and
    ``slashes`` empty), plus ``complete``."""
    plain: dict[str, Any] = to_plain(dataclasses.replace(dist, rewards={}, slashes={}))
    plain["complete"] = dist.complete
    return plain


def _window(window: range) -> dict[str, int]:
    return {"first_slot": window.start, "last_slot": window.stop - 1}


ROUND_PAGE = 1000
"""Submitters per page of ``GET /tasks/{id}/rounds/{r}`` (and entries of a list's detail page), by default."""
MAX_PAGE = 5000
"""The most a page may hold."""


def _page(keys: Iterable[str], after: str, limit: int) -> tuple[list[str], str | None]:
    """The keys above ``after`` in sorted order, at most ``limit``, and the cursor of the next page:
    one pass over ``keys`` (O(n log limit)), for sets that change too freely to keep sorted."""
    chosen = heapq.nsmallest(limit + 1, (key for key in keys if key > after))
    page = chosen[:limit]
    return page, (page[-1] if len(chosen) > limit else None)


ROUNDS_CACHED = 8
"""Per-round key sets ``SortedKeys`` keeps (the most recently read): a round's submitters, a list's
keys. Each holds its sorted keys and their positions (about 12 bytes per key on top of the state's
own strings) and keeps the maps it was read from alive until it is dropped, so at most this many
rounds' maps outlive their pruning."""


@dataclasses.dataclass(slots=True)
class SortedKeys:
    """The keys of one or more maps of a round, sorted, with each key's position in the first map's
    order; ``derived`` holds values computed from the round once they can no longer change."""

    sources: tuple[Mapping[Any, Any], ...]
    sizes: tuple[int, ...]
    keys: list[str]
    positions: array[int]
    derived: dict[Any, Any] = dataclasses.field(default_factory=dict)

    def page(self, after: str, limit: int) -> tuple[int, int, str | None]:
        """``(start, stop, cursor)``: ``keys[start:stop]`` are the ``limit`` keys above ``after``
        (what ``_page`` returns, found by bisection), and the cursor of the next page."""
        start = bisect_right(self.keys, after)
        stop = min(start + limit, len(self.keys))
        return start, stop, (self.keys[stop - 1] if stop < len(self.keys) else None)

    def in_map_order(self, start: int, stop: int) -> list[str]:
        """``keys[start:stop]`` in the order of the first map (its insertion order)."""
        order = sorted(range(start, stop), key=self.positions.__getitem__)
        return [self.keys[i] for i in order]


_SORTED: OrderedDict[tuple[Any, ...], SortedKeys] = OrderedDict()


def sorted_keys(name: tuple[Any, ...], *maps: Mapping[Any, Any]) -> SortedKeys:
    """The sorted union of ``maps``' keys, kept under ``name`` (``ROUNDS_CACHED`` at most).

    Only for maps that only ever gain keys while the ledger serves them (a round's submissions, a
    list's rewards and slashes: nothing deletes one key of them; a round is pruned whole, and a
    rebuilt state is new maps): the same map objects with the same sizes then hold the same keys,
    so a kept entry is reused exactly when they match, and rebuilt otherwise (O(n log n), once per
    change of the round)."""
    sizes = tuple(len(m) for m in maps)
    held = _SORTED.get(name)
    if held is not None and held.sizes == sizes and all(map(operator.is_, held.sources, maps)):
        _SORTED.move_to_end(name)
        return held
    if not any(sizes):  # a round nobody submitted to: nothing worth keeping (its map may be a new {})
        return SortedKeys(maps, sizes, [], array("I"))
    first = list(maps[0]) if maps else []
    rest = {key for m in maps[1:] for key in m}.difference(first) if len(maps) > 1 else set()
    everything = first + sorted(rest)
    order = sorted(range(len(everything)), key=everything.__getitem__)
    held = SortedKeys(maps, sizes, [everything[i] for i in order], array("I", order))
    _SORTED[name] = held
    _SORTED.move_to_end(name)
    while len(_SORTED) > ROUNDS_CACHED:
        _SORTED.popitem(last=False)
    return held


def _round_keys(task: TaskState, round_number: int, submissions: Mapping[Address, Any]) -> SortedKeys:
    return sorted_keys(("submissions", task.task_id, round_number), submissions)


def _page_default(
    task: TaskState, round_number: int, slot: int, keys: SortedKeys, start: int, stop: int
) -> dict[str, dict[str, int]]:
    """The default distribution's entries of ``keys[start:stop]`` (in the round's submission
    order, as the whole list has them). Once the round's judgement window has closed, which proofs
    stood is fixed: the whole list is kept with what else it depends on (the bounty the round may
    pay, the stakes of the submitters it slashes) and rebuilt only when one of those changed;
    before that it is computed for each page."""
    ordered = keys.in_map_order(start, stop)
    if slot < judgement_window(task, round_number).stop:
        default = default_distribution_for(task, round_number)
    else:
        if "judged" not in keys.derived:
            judged = judged_submitters(task, round_number)
            keys.derived["judged"] = judged, [k for k, ok in judged.items() if not ok]
        judged, slashed = keys.derived["judged"]
        inputs = (round_bounty(task), [task.stake_list.get(k, 0) for k in slashed])
        kept = keys.derived.get("default")
        if kept is None or kept[0] != inputs:
            kept = keys.derived["default"] = inputs, default_distribution(judged, task.stake_list, inputs[0])
        default = kept[1]
    rewards: Mapping[Any, int] = default.rewards
    slashes: Mapping[Any, int] = default.slashes
    return {
        "rewards": {k: rewards[k] for k in ordered if k in rewards},
        "slashes": {k: slashes[k] for k in ordered if k in slashes},
    }


def round_view(
    task: TaskState, round_number: int, slot: int, after: str = "", limit: int = ROUND_PAGE, key: str = ""
) -> dict[str, Any]:
    """One round of a task: windows, a page of its submitters (their proofs, audit triggers, assigned
    auditors and default-rule amounts, sorted by key, ``limit`` after ``after``; only ``key`` if
    given), the selected distribution submitters, each list's header, and the payout record."""
    if not 0 <= round_number <= MAX_INTEGER:
        raise InvalidRequestError(
            f"round must be an integer from 0 to {MAX_INTEGER}, got {round_number}", round=round_number
        )
    last = task.starting_slot + (round_number + 3 + task.allowed_failed_distributions) * task.round_time
    if last > MAX_INTEGER:
        raise InvalidRequestError(
            f"round {round_number} of task {task.task_id} ends past the last slot {MAX_INTEGER} "
            f"(round_time {task.round_time}); no transaction can ever reach it",
            round=round_number,
        )
    closed = slot >= reveal_window(task, round_number).stop  # the beacon is fixed
    attempts = range(task.allowed_failed_distributions + 1)
    record = task.distributions_audit_record.get(round_number)  # type: ignore[call-overload]
    submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    keys = _round_keys(task, round_number, submissions)
    if key:
        at = bisect_right(keys.keys, key) - 1
        start, stop = (at, at + 1) if at >= 0 and keys.keys[at] == key else (0, 0)
        next_after = None
    else:
        start, stop, next_after = keys.page(after, limit)
    page = keys.keys[start:stop]
    triggers = task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    ring = _closed_ring(task, round_number, keys) if closed and submissions else None
    stakes = task.stake_list
    return {
        "task_id": task.task_id,
        "round": round_number,
        "slot": slot,
        "windows": {
            "round": _window(
                range(
                    task.starting_slot + round_number * task.round_time,
                    task.starting_slot + (round_number + 1) * task.round_time,
                )
            ),
            "submission": _window(submission_window(task, round_number)),
            "reveal": _window(reveal_window(task, round_number)),
            "audit": _window(audit_window(task, round_number)),
            "judgement": _window(judgement_window(task, round_number)),
            "distribution": [_window(distribution_window(task, round_number, k)) for k in attempts],
            "distribution_audit": [
                _window(distribution_audit_window(task, round_number, k)) for k in attempts
            ],
        },
        "submitters": len(submissions),
        "accused": len(triggers),
        "next_after": next_after,
        "submissions": {k: to_plain(submissions[k]) for k in page},
        "stakes": {k: stakes.get(Address(k), 0) for k in page},
        "submissions_audit_trigger": {k: to_plain(triggers[k]) for k in page if k in triggers},
        "assignments_final": closed,
        "assignments": {k: ring.auditors_of(k) for k in page if k in ring.position}
        if ring is not None
        else {},
        "panels": {k: ring.panel_of(k) for k in page if k in ring.position and k in triggers}
        if ring is not None
        else {},
        "selected_distribution_submitters": (
            selected_submitters(task, round_number) if closed and submissions else []
        ),
        "default_distribution": (
            _page_default(task, round_number, slot, keys, start, stop) if submissions else None
        ),
        "distribution_rewards_submission": to_plain(
            task.distribution_rewards_submission.get(round_number, {})  # type: ignore[call-overload]
        ),
        "distributions_audit_trigger": to_plain(
            task.distributions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
        ),
        "distribution_lists": {
            submitter: list_header(dist)
            for submitter, dist in task.distribution_lists.get(round_number, {}).items()  # type: ignore[call-overload]
        },
        "payout_record": record,
    }


def _closed_ring(task: TaskState, round_number: int, keys: SortedKeys) -> Any:
    """The round's audit ring once its reveal window has closed (the beacon is fixed), kept with the
    round's keys: a read whose beacon no vote has stored yet would otherwise count the reveals of
    the whole round for each page."""
    name = ("ring", task.sample_size, task.escalation_size)
    ring = keys.derived.get(name)
    if ring is None:
        ring = keys.derived[name] = audit_ring(None, task, round_number)
    return ring


def distribution_view(
    task: TaskState,
    round_number: int,
    submitter: str,
    after: str = "",
    limit: int = ROUND_PAGE,
    key: str = "",
) -> dict[str, Any]:
    """A page of one list's entries, sorted by key: ``{key, reward, slash}`` (after payout the slash
    is the amount taken), with the list's header and the cursor of the next page (only ``key``'s
    entry if given). Without ``submitter``, the list that was paid."""
    lists = task.distribution_lists.get(round_number, {})  # type: ignore[call-overload]
    paid = paid_from(task, round_number)
    if not submitter and paid is not None:
        submitter = paid[0]
    dist = lists.get(submitter)
    if dist is None:
        raise NotFoundError(
            f"round {round_number} of task {task.task_id} holds no distribution list"
            + (f" by {submitter}" if submitter else " that was paid; name its submitter")
            + " (lists of rounds settled long ago are pruned)",
            round=round_number,
        )
    if key:
        listed = Address(key) in dist.rewards or Address(key) in dist.slashes
        page, next_after = ([key] if listed else []), None
    else:
        held = sorted_keys(("list", task.task_id, round_number, submitter), dist.rewards, dist.slashes)
        start, stop, next_after = held.page(after, limit)
        page = held.keys[start:stop]
    return {
        "task_id": task.task_id,
        "round": round_number,
        "submitter": submitter,
        "paid": paid is not None and paid[0] == submitter,
        **list_header(dist),
        "entries": [
            {
                "key": k,
                "reward": dist.rewards.get(Address(k), 0),
                "slash": dist.capped.get(Address(k), dist.slashes.get(Address(k), 0)),
            }
            for k in page
        ],
        "next_after": next_after,
    }


def stakers_view(task: TaskState, after: str = "", limit: int = ROUND_PAGE, key: str = "") -> dict[str, Any]:
    """A page of a task's accounts (its stakers, and keys with a claimable balance left after they
    unstaked), sorted by key: stake, available balance, last round with an accepted proof, node URL;
    with the counts and the cursor of the next page (only ``key``'s entry if given)."""
    accounts = task.stake_list.keys() | task.available_balances.keys()
    if key:
        page, next_after = ([key] if key in accounts else []), None
    else:
        page, next_after = _page(accounts, after, limit)
    return {
        "task_id": task.task_id,
        "stakers": len(task.stake_list),
        "accounts": len(accounts),
        "entries": [
            {
                "key": k,
                "stake": task.stake_list.get(Address(k), 0),
                "available_balance": task.available_balances.get(Address(k), 0),
                "last_submission_round": task.last_submission_round.get(Address(k)),
                "node_url": task.ip_address_list.get(Address(k), ""),
            }
            for k in page
        ],
        "next_after": next_after,
    }


def node_view(task: TaskState, slot: int, key: str) -> dict[str, Any]:
    """What one node (staking key ``key``) reads of a task each tick, bounded by what it needs and
    not by the task's size: the task's settings (``task_view`` with every flag false), its counts,
    ``key``'s own entry of each per-key map, and per round the ledger still holds submissions of (and
    its payout record), ``key``'s proof and audit trigger, and, while the round is not settled, those
    of the proofs it audits, with their audit triggers, and the round's lists (each list trigger's
    votes cut to ``key``'s own). ``key_rounds`` says what the whole round says to ``key``: the
    proofs it must audit (its sample, once the ring is final), the accused proofs on whose panel it
    sits, and, once the round's judgement window has closed, the distribution submitter of each
    attempt and whether that attempt's list is complete and stood its audit."""
    if not is_address(key):
        raise InvalidRequestError(f"{key[:60]!r} is not a base58 public key (32-44 characters)", key=key[:60])
    view = task_view(task, slot, {})
    me = Address(key)
    for name in ("stake_list", "available_balances", "last_submission_round", "ip_address_list"):
        held = getattr(task, name)
        view[name] = {key: to_plain(held[me])} if me in held else {}
    view["stakers"] = len(task.stake_list)
    rounds = sorted(task.submissions)  # the rounds still held: a few, whatever the task's age
    record = task.distributions_audit_record
    view["distributions_audit_record"] = {str(r): record[r] for r in rounds if r in record}
    view["key_rounds"] = {}
    for number in rounds:
        if number in record:  # settled: only its own proof and audit trigger are left to read
            submissions = task.submissions[number]
            triggers = task.submissions_audit_trigger.get(number, {})
            view["submissions"][str(number)] = {key: to_plain(submissions[me])} if me in submissions else {}
            view["submissions_audit_trigger"][str(number)] = (
                {key: to_plain(triggers[me])} if me in triggers else {}
            )
            continue
        for name, part in _node_round(task, number, slot, me).items():
            view[name][str(number)] = part
    return view


def _node_round(task: TaskState, number: int, slot: int, me: Address) -> dict[str, Any]:
    """One round of ``node_view``: the parts of each round map ``me`` reads, and its ``key_rounds``."""
    submissions = task.submissions.get(number, {})  # type: ignore[call-overload]
    triggers = task.submissions_audit_trigger.get(number, {})  # type: ignore[call-overload]
    candidates: list[str] = []
    panel: list[str] = []
    mine = submissions.get(me)
    if mine is not None and mine.reveal and slot >= reveal_window(task, number).stop:
        # The ledger's own ring cache, not SortedKeys: every node reads this each tick, and with
        # more rounds read than ROUNDS_CACHED a kept round would be re-sorted for each read.
        ring = audit_ring(None, task, number)
        candidates = list(ring.candidates_of(me))
        panel = [c for c in ring.panel_candidates_of(me) if c in triggers]
    selected: list[Address | None] = []
    if submissions and slot >= judgement_window(task, number).stop:
        selected = selected_submitters(task, number)
    keys = [k for k in dict.fromkeys([me, *candidates, *panel]) if k in submissions]
    list_triggers = task.distributions_audit_trigger.get(number, {})  # type: ignore[call-overload]
    return {
        "submissions": {k: to_plain(submissions[k]) for k in keys},
        "submissions_audit_trigger": {k: to_plain(triggers[k]) for k in keys if k in triggers},
        "distribution_rewards_submission": to_plain(
            task.distribution_rewards_submission.get(number, {})  # type: ignore[call-overload]
        ),
        "distributions_audit_trigger": {
            k: to_plain(dataclasses.replace(t, votes={v: t.votes[v] for v in t.votes if v == me}))
            for k, t in list_triggers.items()
        },
        "distribution_lists": {
            k: list_header(dist)
            for k, dist in task.distribution_lists.get(number, {}).items()  # type: ignore[call-overload]
        },
        "key_rounds": {
            "candidates": candidates,
            "panel_candidates": panel,
            "distribution_submitters": selected,
            "distribution_passed": [passed_list(task, number, s) is not None for s in selected],
        },
    }


def account_view(state: LedgerState, pubkey: str) -> dict[str, Any]:
    """A wallet's balance and, per task, its stake and available (claimable) balance."""
    if not is_address(pubkey):
        raise InvalidRequestError(f"{pubkey!r} is not a base58 public key (32-44 characters)", pubkey=pubkey)
    tasks = {}
    for task_id, task in state.tasks.items():
        stake = task.stake_list.get(pubkey)  # type: ignore[call-overload]
        available = task.available_balances.get(pubkey)  # type: ignore[call-overload]
        if stake is not None or available is not None:
            tasks[task_id] = {"stake": stake or 0, "available_balance": available or 0}
    return {"pubkey": pubkey, "balance": state.balances.get(pubkey, 0), "tasks": tasks}  # type: ignore[call-overload]
