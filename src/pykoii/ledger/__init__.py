"""The ledger state machine: every rule of Koii tasks, pure and deterministic.

``apply_transaction(state, tx, slot) -> Receipt`` is the only way to change a ``LedgerState``.
Nothing in this package reads a clock, draws random numbers, touches files or the network, or logs:
the same log of transactions at the same slots always gives the same ``state_root``. The ledger
service, the simulator and replicas all run this code.
"""

from .audits import audit_assignments, audit_ring, beacon_of, round_beacon, submission_is_valid
from .codec import canonical_bytes, from_plain, state_root, to_plain
from .distribution import (
    default_distribution,
    default_distribution_for,
    distribution_candidates,
    judged_submitters,
    selected_submitter,
)
from .events import Receipt, event_to_plain, receipt_to_plain
from .rounds import (
    Phase,
    audit_window,
    distribution_audit_window,
    distribution_round,
    distribution_window,
    judgement_window,
    phase_of,
    reveal_window,
    round_of,
    settle_slot,
    submission_round,
    submission_window,
)
from .state import DistributionList, LedgerParams, LedgerState, TaskState, copy_state
from .tasks import task_id_for
from .transactions import INSTRUCTIONS, Transaction, decode_transaction, encode_transaction
from .transition import apply_transaction
from .types import ROE_PER_KOII, Address, Roe, RoundNumber, Slot, TaskId

__all__ = [
    "INSTRUCTIONS",
    "ROE_PER_KOII",
    "Address",
    "DistributionList",
    "LedgerParams",
    "LedgerState",
    "Phase",
    "Receipt",
    "Roe",
    "RoundNumber",
    "Slot",
    "TaskId",
    "TaskState",
    "Transaction",
    "apply_transaction",
    "audit_assignments",
    "audit_ring",
    "audit_window",
    "beacon_of",
    "canonical_bytes",
    "copy_state",
    "decode_transaction",
    "default_distribution",
    "default_distribution_for",
    "distribution_audit_window",
    "distribution_candidates",
    "distribution_round",
    "distribution_window",
    "encode_transaction",
    "event_to_plain",
    "from_plain",
    "judged_submitters",
    "judgement_window",
    "phase_of",
    "receipt_to_plain",
    "reveal_window",
    "round_beacon",
    "round_of",
    "selected_submitter",
    "settle_slot",
    "state_root",
    "submission_is_valid",
    "submission_round",
    "submission_window",
    "task_id_for",
    "to_plain",
]
