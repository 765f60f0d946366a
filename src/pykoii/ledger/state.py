"""The ledger's state: plain dataclasses with Koii's field names, and all-or-nothing updates.

``LedgerState`` holds wallet balances and every task. A ``TaskState`` carries the fields of Koii's
``TaskState`` (koii-reference §2.1) plus the few pykoii adds, each marked below.

Updates are all or nothing. ``transition.apply_transaction`` opens a snapshot before it runs an
instruction; every write goes through ``put``/``put_all``/``remove``/``assign``, which record the old value in
the snapshot's journal; a refused instruction is rolled back by replaying the journal backwards.
Nothing else calls ``snapshot``, ``commit`` or ``rollback``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .types import Address, Roe, RoundNumber, Slot, TaskId

PAYOUT_SUCCESSFUL = "PayoutSuccessful"
PAYOUT_FAILED = "PayoutFailed"


@dataclass(slots=True)
class Submission:
    """A proof (or a distribution list's digest) recorded for one node in one round."""

    submission_value: str
    slot: Slot
    round: RoundNumber
    commitment: str = ""
    """A proof's beacon commitment (``audits.beacon_commitment``); empty for a list's record."""
    reveal: str = ""
    """The beacon secret, once revealed; a proof whose secret is never revealed is invalid."""


@dataclass(slots=True)
class Vote:
    """One auditor's vote on a candidate."""

    is_valid: bool
    voter: Address
    slot: Slot


@dataclass(slots=True)
class AuditTrigger:
    """An accusation against a candidate, raised by a ``false`` vote, with every vote since.

    Unlike Koii's shim, the raiser's own ``false`` vote is recorded in ``votes`` too, so a tally
    reads one map. ``votes`` is keyed by voter, in arrival order.
    """

    trigger_by: Address
    slot: Slot
    votes: dict[Address, Vote] = field(default_factory=dict)


@dataclass(slots=True)
class DistributionList:
    """What a distribution pays (``rewards``) and takes (``slashes``), per staking key, in ROE.

    On the ledger a list is committed by the Merkle ``root`` of its ``chunks`` chunks and filled in
    as they arrive (``received``: chunk index → number of keys in it); it is complete when every chunk
    arrived. ``reward_total`` and ``slash_total`` are the sums of what arrived. ``capped`` records,
    after payout, the keys whose slash was cut to the stake still there (the amount applied).
    """

    rewards: dict[Address, Roe] = field(default_factory=dict)
    slashes: dict[Address, Roe] = field(default_factory=dict)
    root: str = ""
    chunks: int = 0
    received: dict[int, int] = field(default_factory=dict)
    reward_total: Roe = Roe(0)
    slash_total: Roe = Roe(0)
    capped: dict[Address, Roe] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every chunk of the committed list arrived."""
        return len(self.received) == self.chunks


@dataclass(slots=True)
class RequirementTag:
    """One of ``config-task.yml``'s ``requirementsTags``: a task variable, an add-on or a hint."""

    type: str
    value: str = ""
    description: str = ""


@dataclass(slots=True)
class TaskState:
    """One task, with Koii's ``TaskState`` field names. Rounds are keyed by number."""

    task_id: TaskId
    task_name: str
    task_manager: Address
    is_allowlisted: bool
    is_active: bool
    task_audit_program: str
    task_executable_network: str
    stake_pot_account: Address
    total_bounty_amount: Roe
    bounty_amount_per_round: Roe
    task_metadata: str
    task_description: str
    total_stake_amount: Roe
    minimum_stake_amount: Roe
    round_time: int
    starting_slot: Slot
    audit_window: int
    submission_window: int
    allowed_failed_distributions: int
    task_vars: str = ""
    koii_vars: str = ""
    is_migrated: bool = False
    migrated_to: str = ""
    available_balances: dict[Address, Roe] = field(default_factory=dict)
    stake_list: dict[Address, Roe] = field(default_factory=dict)
    ip_address_list: dict[Address, str] = field(default_factory=dict)
    submissions: dict[RoundNumber, dict[Address, Submission]] = field(default_factory=dict)
    submissions_audit_trigger: dict[RoundNumber, dict[Address, AuditTrigger]] = field(default_factory=dict)
    distribution_rewards_submission: dict[RoundNumber, dict[Address, Submission]] = field(
        default_factory=dict
    )
    distributions_audit_trigger: dict[RoundNumber, dict[Address, AuditTrigger]] = field(default_factory=dict)
    distributions_audit_record: dict[RoundNumber, str] = field(default_factory=dict)
    # --- pykoii additions -------------------------------------------------------------------
    sample_size: int = 5
    """Auditors assigned to each candidate by the round beacon (they may accuse)."""
    escalation_size: int = 33
    """The panel that judges an accused candidate (the sample first)."""
    vote_penalty_percent: int = 10
    """Share of its stake a voter on the losing side of an accused proof's judgement loses."""
    requirements_tags: list[RequirementTag] = field(default_factory=list)
    """``config-task.yml``'s ``requirementsTags``, kept on the ledger so nodes can show them."""
    migrated_from: str = ""
    """The task id this version replaced, if it was created by ``update_task``."""
    distribution_lists: dict[RoundNumber, dict[Address, DistributionList]] = field(default_factory=dict)
    """The lists themselves (Koii keeps them in a separate data account)."""
    round_beacons: dict[RoundNumber, str] = field(default_factory=dict)
    """Each round's beacon, fixed once its submission window has closed."""
    last_submission_round: dict[Address, RoundNumber] = field(default_factory=dict)
    """The last round each staker submitted for; drives the withdraw lock."""


@dataclass(slots=True)
class LedgerParams:
    """Genesis settings, fixed for the life of a ledger."""

    devnet: bool = False
    """Whether ``airdrop`` is accepted."""
    airdrop_limit: Roe = Roe(1_000 * 1_000_000_000)
    """The most one airdrop may mint."""
    airdrop_cooldown_slots: int = 10
    """Slots a recipient waits between two airdrops."""


@dataclass(slots=True)
class LedgerState:
    """The whole ledger: wallets, tasks, and what replay protection remembers."""

    params: LedgerParams = field(default_factory=LedgerParams)
    balances: dict[Address, Roe] = field(default_factory=dict)
    tasks: dict[TaskId, TaskState] = field(default_factory=dict)
    total_supply: Roe = Roe(0)
    """Every ROE ever minted by airdrops; equals balances plus everything held by tasks."""
    last_airdrop_slot: dict[Address, Slot] = field(default_factory=dict)
    recent_transactions: dict[Slot, dict[str, Slot]] = field(default_factory=dict)
    """Accepted transaction ids, bucketed by their ``recent_slot``; pruned past the replay horizon."""
    journal: list[tuple[Any, Any, Any]] | None = field(default=None, metadata={"encode": False})


_MISSING = object()
_MANY = object()
"""The journal key of a ``put_all`` entry: its old value is ``(keys, old values)``."""


def snapshot(state: LedgerState) -> None:
    """Start recording writes so that ``rollback`` can undo them."""
    state.journal = []


def commit(state: LedgerState) -> None:
    """Keep the writes made since ``snapshot``."""
    state.journal = None


def rollback(state: LedgerState) -> None:
    """Undo every write made since ``snapshot``, newest first."""
    journal = state.journal or []
    state.journal = None
    for target, key, old in reversed(journal):
        if key is _MANY:  # one ``put_all``/``add_all``: every key it wrote
            for one_key, one_old in zip(*old, strict=True):
                _undo(target, one_key, one_old)
        elif isinstance(target, dict):
            _undo(target, key, old)
        else:
            setattr(target, key, old)


def _undo(mapping: dict[Any, Any], key: Any, old: Any) -> None:
    """Put ``mapping[key]`` back to its old value, or drop it if it had none."""
    if old is _MISSING:
        del mapping[key]
    else:
        mapping[key] = old


def put(state: LedgerState, mapping: dict[Any, Any], key: Any, value: Any) -> None:
    """Set ``mapping[key] = value``, journaled."""
    if state.journal is not None:
        state.journal.append((mapping, key, mapping.get(key, _MISSING)))
    mapping[key] = value


def remove(state: LedgerState, mapping: dict[Any, Any], key: Any) -> None:
    """Delete ``mapping[key]`` if present, journaled."""
    if key in mapping:
        if state.journal is not None:
            state.journal.append((mapping, key, mapping[key]))
        del mapping[key]


def assign(state: LedgerState, obj: Any, name: str, value: Any) -> None:
    """Set attribute ``obj.name = value``, journaled."""
    if state.journal is not None:
        state.journal.append((obj, name, getattr(obj, name)))
    setattr(obj, name, value)


_K = TypeVar("_K")
_N = TypeVar("_N", bound=int)


def add(state: LedgerState, mapping: dict[_K, _N], key: _K, amount: int) -> None:
    """Add ``amount`` to ``mapping[key]`` (missing counts as 0); drop the entry when it reaches 0."""
    new = mapping.get(key, 0) + amount
    if new:
        put(state, mapping, key, new)
    else:
        remove(state, mapping, key)


def put_all(state: LedgerState, mapping: dict[Any, Any], items: Mapping[Any, Any]) -> None:
    """``put`` of every item of ``items``, in its order, journaled as one entry."""
    keys, olds = _journal_many(state, mapping)
    get = mapping.get
    for key, value in items.items():
        keys.append(key)
        olds.append(get(key, _MISSING))
        mapping[key] = value


def add_all(state: LedgerState, mapping: dict[_K, _N], amounts: Mapping[_K, int]) -> None:
    """``add`` of every ``(key, amount)`` of ``amounts``, in its order, journaled as one entry; a
    zero amount is skipped (it adds nothing)."""
    keys, olds = _journal_many(state, mapping)
    get = mapping.get
    for key, amount in amounts.items():
        if not amount:
            continue
        old = get(key)  # the amounts are integers: None is a missing entry
        new = amount if old is None else old + amount
        if new:
            mapping[key] = new  # type: ignore[assignment]
        elif old is None:
            continue
        else:
            del mapping[key]
        keys.append(key)
        olds.append(_MISSING if old is None else old)


def _journal_many(state: LedgerState, mapping: dict[Any, Any]) -> tuple[list[Any], list[Any]]:
    """The journal entry of a ``put_all`` or ``add_all``: two lists the caller fills, each key with
    its old value, before it writes it. One pass over the items, each key touched once: a round's
    list and payout write one entry per submitter, and one ``put`` each cost a journal tuple apiece
    (a young collection in a 100,000-node payout walked them all, reading every key again)."""
    keys: list[Any] = []
    olds: list[Any] = []
    if state.journal is not None:
        state.journal.append((mapping, _MANY, (keys, olds)))
    return keys, olds


def round_map(state: LedgerState, rounds: dict[Any, dict[Any, Any]], round_number: int) -> dict[Any, Any]:
    """The per-round map ``rounds[round_number]``, created (journaled) when missing."""
    per_round = rounds.get(round_number)
    if per_round is None:
        per_round = {}
        put(state, rounds, round_number, per_round)
    return per_round


def copy_state(state: LedgerState) -> LedgerState:
    """A deep, independent copy of ``state`` (for tests and simulations, not the hot path)."""
    if state.journal is not None:
        raise ValueError("copy_state called inside an open snapshot")
    return copy.deepcopy(state)
