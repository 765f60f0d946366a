"""Creating, updating (migrating), activating and funding tasks.

A task's fields follow ``config-task.yml`` and Koii's ``TaskState``. The rules checked here are
Koii's create-task-cli rules that make sense on a ledger:

- ``task_name`` 1–24 characters, ``task_description`` at most 64, ``task_audit_program`` 1–64;
- ``task_executable_network`` one of IPFS, ARWEAVE, DEVELOPMENT;
- ``round_time`` ≥ ``submission_window`` + ``audit_window``, each window at least one slot;
- ``0 < bounty_amount_per_round ≤ total_bounty_amount`` (the creator must hold the total);
- ``minimum_stake_amount ≥ 0``; ``0 ≤ allowed_failed_distributions ≤ 16``; ``1 ≤ sample_size ≤ 64``.

The task id is derived from the creating transaction's id, so anyone can recompute it, and it is
shaped like a public key, as Koii's task ids are.
"""

from __future__ import annotations

from ..errors import InsufficientFundsError, InvalidTaskConfigError, UnauthorizedSignerError
from .accounts import debit, get_task, koii, require_amount
from .bounds import FIELDS
from .codec import derive_address
from .events import Event, TaskActivationChanged, TaskCreated, TaskFunded, TaskMigrated
from .state import LedgerState, RequirementTag, TaskState, assign, put
from .transactions import CreateTask, FundTask, SetActive, TaskFields, UpdateTask
from .types import Address, Roe, Slot, TaskId

EXECUTABLE_NETWORKS = ("IPFS", "ARWEAVE", "DEVELOPMENT")
REQUIREMENT_TYPES = (
    "GLOBAL_VARIABLE",
    "TASK_VARIABLE",
    "CPU",
    "RAM",
    "STORAGE",
    "NETWORK",
    "ARCHITECTURE",
    "OS",
    "ADDON",
)


def _config_error(name: str, value: object, accepted: str) -> InvalidTaskConfigError:
    return InvalidTaskConfigError(f"{name} is {value!r}; accepted: {accepted}", field=name, received=value)


_CONFIG_STRINGS = (
    "task_name",
    "task_description",
    "task_audit_program",
    "task_executable_network",
    "task_metadata",
    "task_vars",
    "koii_vars",
)
_CONFIG_INTEGERS = (
    "submission_window",
    "audit_window",
    "round_time",
    "bounty_amount_per_round",
    "minimum_stake_amount",
    "allowed_failed_distributions",
    "sample_size",
    "escalation_size",
    "vote_penalty_percent",
)


def _check_length(name: str, text: str) -> None:
    bound = FIELDS[name]
    if not bound.low <= len(text) <= bound.high:
        accepted = f"{bound.low} to {bound.high}" if bound.low else f"at most {bound.high}"
        raise _config_error(name, text, f"{accepted} characters ({bound.description})")


def _check_range(name: str, value: int) -> None:
    bound = FIELDS[name]
    if not bound.low <= value <= bound.high:
        raise _config_error(name, value, f"{bound.low} to {bound.high} ({bound.description})")


def validate_task_fields(tx: TaskFields, total_bounty_amount: int) -> None:
    """Check a task's configuration against ``bounds.FIELDS`` and the rules between fields; raise
    ``InvalidTaskConfigError`` naming the first bad field."""
    for name in _CONFIG_STRINGS:
        _check_length(name, getattr(tx, name))
    if tx.task_executable_network not in EXECUTABLE_NETWORKS:
        raise _config_error(
            "task_executable_network", tx.task_executable_network, ", ".join(EXECUTABLE_NETWORKS)
        )
    for name in _CONFIG_INTEGERS:
        _check_range(name, getattr(tx, name))
    if tx.round_time < tx.submission_window + tx.audit_window + 2:
        raise _config_error(
            "round_time",
            tx.round_time,
            f"at least submission_window + audit_window + 2 = {tx.submission_window + tx.audit_window + 2} "
            "slots (the rest of the round is the judgement window, then one slot for payout)",
        )
    if tx.escalation_size < tx.sample_size:
        raise _config_error("escalation_size", tx.escalation_size, f"at least sample_size = {tx.sample_size}")
    if tx.bounty_amount_per_round > total_bounty_amount:
        raise _config_error(
            "bounty_amount_per_round",
            tx.bounty_amount_per_round,
            f"at most total_bounty_amount = {koii(total_bounty_amount)}",
        )
    if len(tx.requirements_tags) > FIELDS["requirements_tags"].high:
        raise _config_error(
            "requirements_tags", len(tx.requirements_tags), f"at most {FIELDS['requirements_tags'].high} tags"
        )
    for tag in tx.requirements_tags:
        if tag.type not in REQUIREMENT_TYPES:
            raise _config_error("requirements_tags.type", tag.type, ", ".join(REQUIREMENT_TYPES))
        for name in ("value", "description"):
            if len(getattr(tag, name)) > FIELDS[name].high:
                raise _config_error(
                    f"requirements_tags.{name}", getattr(tag, name), f"at most {FIELDS[name].high} characters"
                )


def _new_task(tx: TaskFields, task_id: TaskId, total: int, slot: int) -> TaskState:
    return TaskState(
        task_id=task_id,
        task_name=tx.task_name,
        task_manager=tx.signer,
        is_allowlisted=False,
        is_active=True,
        task_audit_program=tx.task_audit_program,
        task_executable_network=tx.task_executable_network,
        stake_pot_account=Address(derive_address("stake_pot", task_id)),
        total_bounty_amount=Roe(total),
        bounty_amount_per_round=tx.bounty_amount_per_round,
        task_metadata=tx.task_metadata,
        task_description=tx.task_description,
        total_stake_amount=Roe(0),
        minimum_stake_amount=tx.minimum_stake_amount,
        round_time=tx.round_time,
        starting_slot=Slot(slot),
        audit_window=tx.audit_window,
        submission_window=tx.submission_window,
        allowed_failed_distributions=tx.allowed_failed_distributions,
        task_vars=tx.task_vars,
        koii_vars=tx.koii_vars,
        sample_size=tx.sample_size,
        escalation_size=tx.escalation_size,
        vote_penalty_percent=tx.vote_penalty_percent,
        requirements_tags=[RequirementTag(t.type, t.value, t.description) for t in tx.requirements_tags],
    )


def task_id_for(tx_id: str) -> TaskId:
    """The id of the task created (or created by update) by transaction ``tx_id``."""
    return TaskId(derive_address("task", tx_id))


def create_task(state: LedgerState, tx: CreateTask, slot: int) -> list[Event]:
    """Create a task; its bounty moves from the creator's wallet into the task's pot."""
    validate_task_fields(tx, tx.total_bounty_amount)
    task_id = task_id_for(tx.tx_id)
    debit(state, tx.signer, tx.total_bounty_amount)
    put(state, state.tasks, task_id, _new_task(tx, task_id, tx.total_bounty_amount, slot))
    return [TaskCreated(task_id=task_id, task_manager=tx.signer, total_bounty_amount=tx.total_bounty_amount)]


def _managed_task(state: LedgerState, task_id: str, signer: str) -> TaskState:
    task = get_task(state, task_id)
    if task.task_manager != signer:
        raise UnauthorizedSignerError(
            f"only the task manager {task.task_manager} may change task {task_id}; signed by {signer}",
            signer=signer,
        )
    return task


def update_task(state: LedgerState, tx: UpdateTask, slot: int) -> list[Event]:
    """Migrate a task to a new version: new id, the remaining bounty moved, the old one retired.

    Stakes stay on the old task, where they can be withdrawn; nodes stake again on the new one.
    """
    old = _managed_task(state, tx.task_id, tx.signer)
    if old.is_migrated:
        raise InvalidTaskConfigError(
            f"task {old.task_id} was already migrated to {old.migrated_to}; update that one",
            field="task_id",
            received=old.task_id,
        )
    remaining = old.total_bounty_amount
    if remaining <= 0:
        raise InsufficientFundsError(f"task {old.task_id} has no bounty left to move", amount=remaining)
    validate_task_fields(tx, remaining)
    task_id = task_id_for(tx.tx_id)
    new = _new_task(tx, task_id, remaining, slot)
    new.migrated_from = old.task_id
    put(state, state.tasks, task_id, new)
    assign(state, old, "total_bounty_amount", Roe(0))
    assign(state, old, "is_migrated", True)
    assign(state, old, "migrated_to", task_id)
    assign(state, old, "is_active", False)
    return [
        TaskMigrated(task_id=old.task_id, migrated_to=task_id, bounty_moved=remaining),
        TaskCreated(task_id=task_id, task_manager=tx.signer, total_bounty_amount=remaining),
    ]


def set_active(state: LedgerState, tx: SetActive, slot: int) -> list[Event]:
    """Activate or deactivate a task. A migrated task cannot be activated again."""
    task = _managed_task(state, tx.task_id, tx.signer)
    if tx.is_active and task.is_migrated:
        raise InvalidTaskConfigError(
            f"task {task.task_id} was migrated to {task.migrated_to}; activate that one",
            field="is_active",
            received=True,
        )
    assign(state, task, "is_active", tx.is_active)
    return [TaskActivationChanged(task_id=task.task_id, is_active=tx.is_active)]


def fund_task(state: LedgerState, tx: FundTask, slot: int) -> list[Event]:
    """Add bounty to a task from the signer's wallet (anyone may fund)."""
    task = get_task(state, tx.task_id)
    if task.is_migrated:
        raise InvalidTaskConfigError(
            f"task {task.task_id} was migrated to {task.migrated_to}; fund that one",
            field="task_id",
            received=task.task_id,
        )
    require_amount(tx.amount, "fund amount")
    debit(state, tx.signer, tx.amount)
    assign(state, task, "total_bounty_amount", Roe(task.total_bounty_amount + tx.amount))
    return [TaskFunded(task_id=task.task_id, funder=tx.signer, amount=tx.amount)]


def newest_version(state: LedgerState, task: TaskState) -> TaskState:
    """The task that ``task`` was migrated to, following ``migrated_to`` to the newest version."""
    while task.is_migrated and task.migrated_to in state.tasks:
        task = state.tasks[TaskId(task.migrated_to)]
    return task
