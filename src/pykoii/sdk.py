"""What task authors write: a ``Task`` subclass with one method per phase.

>>> class HelloWorld(Task):
...     def task(self, ctx):
...         ctx.store.set("value", "Hello, World!")
...     def submission(self, ctx):
...         return ctx.store.get("value")
...     def audit(self, ctx, submission, submitter):
...         return submission == "Hello, World!"

Each phase gets a ``RoundContext`` and may be a plain or an ``async`` method. In round R a node runs
``task`` for R, then ``submission`` and (for others' proofs) ``audit`` for R-1, then
``distribution`` for R-2; ``ctx.round`` is always the round the phase is about. The same code runs
in the simulator (``pykoii simulate``) and, on a node, in a sandboxed child process that holds no key.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, TaskCodeError
from .ledger.distribution import default_distribution
from .ledger.state import DistributionList
from .ledger.types import Address, Roe


class KeyValueStore(Protocol):
    """The task's own persistent store on this node (values are JSON-serializable)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class BlobAccess(Protocol):
    """The ledger's content-addressed store (Koii: IPFS), with the ledger's limits."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (at most 8 MiB); return its CID (``b...``, CIDv1 raw sha2-256)."""
        ...

    def get(self, cid: str) -> bytes:
        """The bytes named by ``cid``, checked against it."""
        ...


class LedgerReader(Protocol):
    """Read-only access to the public ledger state of this task, with Koii's field names."""

    def task_state(self) -> dict[str, Any]:
        """The task's ``TaskState`` (submission and distribution maps may be partial)."""
        ...

    def submissions(self, round_number: int) -> dict[str, dict[str, Any]]:
        """``{staking key: {"submission_value", "slot", "round"}}`` of a round."""
        ...

    def audit_triggers(self, round_number: int) -> dict[str, dict[str, Any]]:
        """``{candidate: {"trigger_by", "slot", "votes": [...]}}`` of a round."""
        ...

    def stakes(self) -> dict[str, int]:
        """``{staking key: stake in ROE}``."""
        ...

    def node_urls(self) -> dict[str, str]:
        """``{staking key: public URL}`` registered when nodes staked (Koii's ``ip_address_list``)."""
        ...


@dataclass
class RoundContext:
    """Everything a phase may use. It carries no key and no wallet path."""

    task_id: str
    round: int
    slot: int
    public_key: str
    """This node's staking public key (base58)."""
    store: KeyValueStore
    ledger: LedgerReader
    variables: Mapping[str, str] = field(default_factory=dict)
    """Task variables the operator set (``requirementsTags`` of type TASK_VARIABLE)."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pykoii.task"))
    """Lines logged here reach the operator: the node's task log and the dashboard's log view."""
    blobs: BlobAccess | None = None
    """``put(bytes) -> cid`` and ``get(cid) -> bytes`` on the ledger's CID store."""
    slot_time: float = 400.0
    """The ledger's slot length in milliseconds (Koii's ``getAverageSlotTime``)."""
    signer: Callable[[bytes], str] | None = field(default=None, repr=False)
    """How ``sign`` reaches the node's key (the node signs; the task never holds a key)."""

    def nodes(self) -> dict[str, str]:
        """The task's nodes: ``{staking key: URL}`` as each registered it when it staked (Koii's
        ``getNodes``). A node's task routes answer at ``<URL>/task/<task_id>/...``."""
        return dict(self.ledger.node_urls())

    def sign(self, payload: Any) -> str:
        """This node's base58 signature of ``payload`` (bytes, text, or a JSON value), made by the node
        with its staking key under a task-payload domain prefix, so it can never sign a transaction.
        Check it with ``pykoii.verify(payload, signature, public_key)``."""
        from .keys import payload_bytes

        if self.signer is None:
            raise TaskCodeError("ctx.sign is not available here: no node signs for this context")
        return self.signer(payload_bytes(payload))

    def task_state(
        self,
        *,
        is_submission_required: bool = False,
        is_distribution_required: bool = False,
        is_available_balances_required: bool = False,
        is_stake_list_required: bool = False,
    ) -> dict[str, Any]:
        """The task's state with Koii's ``TaskStateOptions``: a false flag gives its maps as ``{}``,
        as the ledger's ``GET /tasks/<id>`` does (``ctx.ledger.task_state()`` is the whole state)."""
        from .service.views import TASK_FLAGS

        flags = {
            "is_submission_required": is_submission_required,
            "is_distribution_required": is_distribution_required,
            "is_available_balances_required": is_available_balances_required,
            "is_stake_list_required": is_stake_list_required,
        }
        state = dict(self.ledger.task_state())
        for flag, fields in TASK_FLAGS.items():
            if not flags[flag]:
                state.update({name: {} for name in fields if name in state})
        return state

    def distribution_info(self, round_number: int) -> dict[str, Any]:
        """Round ``round_number``'s distribution (Koii's ``getTaskDistributionInfo``): the lists
        submitted (``distribution_rewards_submission``, ``distribution_lists``), their audit triggers
        and the payout record (``distributions_audit_record``: ``PayoutSuccessful``/``PayoutFailed``)."""
        state = self.ledger.task_state()
        key = str(round_number)
        return {
            name: _of_round(state.get(name, {}), key)
            for name in (
                "distribution_rewards_submission",
                "distribution_lists",
                "distributions_audit_trigger",
                "distributions_audit_record",
            )
        }


def _of_round(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


@dataclass(frozen=True)
class Submitter:
    """One submitter of a round, as ``distribution`` sees it."""

    public_key: Address
    submission_value: str
    valid: bool
    """Whether its proof stood its audit (no trigger, or no more false votes than true ones)."""
    votes: int
    """Koii's net vote count: 1 with no trigger, else true votes minus false votes."""
    stake: Roe


class Task:
    """Base class of every task. Override the phases you need; each default is documented."""

    def setup(self, ctx: RoundContext) -> Any:
        """Runs once when the task starts on a node. Default: nothing."""
        return None

    def task(self, ctx: RoundContext) -> Any:
        """The round's work for ``ctx.round``. Default: nothing."""
        return None

    def submission(self, ctx: RoundContext) -> Any:
        """The proof for ``ctx.round``, a string of at most 512 bytes.

        Default: the value the task stored under ``"value"`` (Koii's template stores it there).
        """
        value = ctx.store.get("value")
        return "" if value is None else str(value)

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> Any:
        """Whether ``submitter``'s proof for ``ctx.round`` is right.

        Default: redo the work's proof and compare — right for deterministic tasks only; override it
        for anything else.
        """
        return submission == self.submission(ctx)

    def distribution(self, ctx: RoundContext, submitters: list[Submitter], bounty: int) -> Any:
        """The round's distribution list: ``DistributionList`` or ``{"rewards": {}, "slashes": {}}``.

        Default: the seed's rule — 70 % of each invalid submitter's stake is slashed and ``bounty``
        is split equally, rounded down, among the valid ones.
        """
        return default_distribution(
            {s.public_key: s.valid for s in submitters}, {s.public_key: s.stake for s in submitters}, bounty
        )

    def routes(self) -> list[Any]:
        """Starlette routes served under ``/task/<task_id>/`` on the node. Default: none."""
        return []


async def invoke(method: Any, *args: Any) -> Any:
    """Call a phase that may be sync or async and return its result."""
    result = method(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def as_distribution_list(value: Any) -> DistributionList:
    """Accept what ``Task.distribution`` returned, or raise ``TaskCodeError`` saying what is wrong."""
    if isinstance(value, DistributionList):
        return value
    if isinstance(value, Mapping) and set(value) <= {"rewards", "slashes"}:
        rewards, slashes = value.get("rewards", {}), value.get("slashes", {})
        for name, entries in (("rewards", rewards), ("slashes", slashes)):
            if not isinstance(entries, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in entries.items()
            ):
                raise TaskCodeError(
                    f"distribution() returned {name}={entries!r}; expected a mapping of staking keys to "
                    "non-negative integer ROE"
                )
        return DistributionList(rewards=dict(rewards), slashes=dict(slashes))
    raise TaskCodeError(
        f"distribution() returned {value!r}; expected a DistributionList or "
        '{"rewards": {key: roe}, "slashes": {key: roe}}'
    )


def load_task(path: str | Path) -> Task:
    """Import the author's task and return an instance of its ``Task`` subclass.

    ``path`` is a ``.py`` file or a folder holding ``task.py``; the module must define exactly one
    subclass of ``Task`` (or a module-level ``task`` that is an instance of one).
    """
    path = Path(path)
    file = path / "task.py" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(
            f"no task code at {file}; expected a task.py file or a folder containing one", path=str(file)
        )
    module_name = f"pykoii_task_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {file}", path=str(file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskCodeError(f"importing {file} failed: {type(exc).__name__}: {exc}", path=str(file)) from exc
    finally:
        sys.path.remove(str(file.parent))
    instance = getattr(module, "task", None)
    if isinstance(instance, Task):
        return instance
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Task)
        and value is not Task
        and value.__module__ == module_name
    ]
    if len(classes) != 1:
        names = ", ".join(c.__name__ for c in classes) or "none"
        raise ConfigError(f"{file} must define exactly one Task subclass; found {names}", path=str(file))
    return classes[0]()
