"""What an accepted transaction did, as frozen dataclasses returned in ``Receipt.events``.

The ledger never logs; it returns events. The service streams them, the node and the dashboard read
them, and conformance vectors compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import to_plain
from .types import Address, Roe, RoundNumber, Slot, TaskId, TxId


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events."""

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class Airdropped(Event):
    to: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class Transferred(Event):
    source: Address
    to: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class TaskCreated(Event):
    task_id: TaskId
    task_manager: Address
    total_bounty_amount: Roe


@dataclass(frozen=True, slots=True)
class TaskMigrated(Event):
    task_id: TaskId
    migrated_to: TaskId
    bounty_moved: Roe


@dataclass(frozen=True, slots=True)
class TaskActivationChanged(Event):
    task_id: TaskId
    is_active: bool


@dataclass(frozen=True, slots=True)
class TaskFunded(Event):
    task_id: TaskId
    funder: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class Staked(Event):
    task_id: TaskId
    staker: Address
    amount: Roe
    stake: Roe


@dataclass(frozen=True, slots=True)
class Withdrawn(Event):
    task_id: TaskId
    staker: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class Submitted(Event):
    task_id: TaskId
    round: RoundNumber
    submitter: Address


@dataclass(frozen=True, slots=True)
class Revealed(Event):
    """A submitter revealed the beacon secret committed with its proof."""

    task_id: TaskId
    round: RoundNumber
    submitter: Address


@dataclass(frozen=True, slots=True)
class VotePenalized(Event):
    """``voter`` voted on the losing side of ``candidate``'s judgement and lost ``amount``."""

    task_id: TaskId
    round: RoundNumber
    voter: Address
    candidate: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class AuditTriggered(Event):
    """A first ``false`` vote accused ``candidate``; ``target`` is ``submission`` or ``distribution``."""

    task_id: TaskId
    round: RoundNumber
    target: str
    candidate: Address
    trigger_by: Address


@dataclass(frozen=True, slots=True)
class VoteCast(Event):
    task_id: TaskId
    round: RoundNumber
    target: str
    candidate: Address
    voter: Address
    is_valid: bool


@dataclass(frozen=True, slots=True)
class DistributionSubmitted(Event):
    """A list was committed: its Merkle ``root`` over ``chunks`` chunks, which follow."""

    task_id: TaskId
    round: RoundNumber
    submitter: Address
    attempt: int
    root: str
    chunks: int


@dataclass(frozen=True, slots=True)
class DistributionChunkUploaded(Event):
    """Chunk ``index`` of a committed list arrived; ``received`` of ``chunks`` are in, and the totals
    are those of the chunks received so far."""

    task_id: TaskId
    round: RoundNumber
    submitter: Address
    index: int
    received: int
    chunks: int
    reward_total: Roe
    slash_total: Roe


@dataclass(frozen=True, slots=True)
class RoundPaid(Event):
    """A round was paid from the list with ``root``: ``rewarded`` keys were paid ``reward_total`` in
    all and ``slashed`` keys lost ``slash_total``. ``capped`` names the keys whose slash was cut to the
    stake still there, with the amount taken (usually empty). The per-key detail is the list itself
    (``GET /tasks/{id}/rounds/{r}/distribution``)."""

    task_id: TaskId
    round: RoundNumber
    attempt: int
    distribution_submitter: Address
    root: str
    rewarded: int
    slashed: int
    reward_total: Roe
    slash_total: Roe
    capped: dict[Address, Roe]


@dataclass(frozen=True, slots=True)
class RoundFailed(Event):
    task_id: TaskId
    round: RoundNumber
    reason: str


@dataclass(frozen=True, slots=True)
class RewardClaimed(Event):
    task_id: TaskId
    staker: Address
    beneficiary: Address
    amount: Roe


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one accepted transaction."""

    tx_id: TxId
    slot: Slot
    events: tuple[Event, ...]


def event_to_plain(event: Event) -> dict[str, Any]:
    """An event as JSON: its fields plus ``kind``."""
    plain: dict[str, Any] = to_plain(event)
    plain["kind"] = event.kind
    return plain


def receipt_to_plain(receipt: Receipt) -> dict[str, Any]:
    """A receipt as JSON."""
    return {
        "tx_id": receipt.tx_id,
        "slot": receipt.slot,
        "events": [event_to_plain(event) for event in receipt.events],
    }
