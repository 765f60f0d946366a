"""Small builders for ledger tests: deterministic addresses and transactions without signatures."""

from __future__ import annotations

from typing import Any

from pykoii.ledger import LedgerParams, LedgerState, apply_transaction, decode_transaction
from pykoii.ledger.codec import derive_address
from pykoii.ledger.events import Receipt
from pykoii.ledger.transactions import Transaction

KOII = 1_000_000_000


def address(name: str) -> str:
    """A deterministic, valid base58 address for a test actor."""
    return derive_address("test", name)


def make_tx(kind: str, signer: str, slot: int, **fields: Any) -> Transaction:
    body = {"type": kind, "signer": signer, "recent_slot": fields.pop("recent_slot", slot), **fields}
    return decode_transaction(body)


def apply(state: LedgerState, kind: str, signer: str, slot: int, **fields: Any) -> Receipt:
    return apply_transaction(state, make_tx(kind, signer, slot, **fields), slot)


def devnet() -> LedgerState:
    return LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0))


HELLO_TASK = dict(
    task_name="Hello World",
    task_description="Stores and submits Hello, World!",
    task_audit_program="bafkreihelloworld",
    total_bounty_amount=100 * KOII,
    bounty_amount_per_round=10 * KOII,
    round_time=10,
    submission_window=3,
    audit_window=3,
    minimum_stake_amount=2 * KOII,
    allowed_failed_distributions=3,
)


def secret(task_id: str, round_number: int, node: str) -> str:
    """A test node's beacon secret for a round (real nodes derive theirs from a signature)."""
    from pykoii.ledger.codec import sha256_hex

    return sha256_hex(f"secret:{task_id}:{round_number}:{node}".encode())


def commitment(task_id: str, round_number: int, node: str) -> str:
    """The commitment a test node sends with its proof."""
    from pykoii.ledger.audits import beacon_commitment

    return beacon_commitment(task_id, round_number, node, secret(task_id, round_number, node))


# --- worlds: a task at a known point of its life, built by running the machine -----------------

STAKE = 5 * KOII
NODE_COUNT = 5


class World:
    """A devnet ledger with a manager, ``NODE_COUNT`` staked nodes and the Hello-World task.

    The task is created at slot 1, so with ``HELLO_TASK``'s round time 10, submission window 3 and
    audit window 3, round r's proofs are submitted in slots 11+10r..13+10r, audited in 14+10r..16+10r,
    and its first distribution list is submitted in 21+10r..23+10r and audited in 24+10r..26+10r.
    """

    def __init__(self, node_count: int = NODE_COUNT, **task_fields: Any) -> None:
        self.state = devnet()
        self.manager = address("manager")
        self.outsider = address("outsider")
        self.nodes = [address(f"node-{i}") for i in range(node_count)]
        apply(self.state, "airdrop", self.manager, 0, to=self.manager, amount=500 * KOII)
        apply(self.state, "airdrop", self.outsider, 0, to=self.outsider, amount=50 * KOII)
        for node in self.nodes:
            apply(self.state, "airdrop", node, 0, to=node, amount=20 * KOII)
        created = apply(self.state, "create_task", self.manager, 1, **{**HELLO_TASK, **task_fields})
        self.task_id = created.events[0].task_id
        for node in self.nodes:
            apply(
                self.state,
                "stake",
                node,
                2,
                task_id=self.task_id,
                amount=STAKE,
                ip_address=f"http://{node[:8].lower()}.example",
            )

    @property
    def task(self) -> Any:
        return self.state.tasks[self.task_id]

    def apply(self, kind: str, signer: str, slot: int, **fields: Any) -> Receipt:
        fields.setdefault("task_id", self.task_id)
        return apply(self.state, kind, signer, slot, **fields)

    def submit_all(
        self, round_number: int, values: dict[str, str] | None = None, reveal: bool = True
    ) -> None:
        """Every node submits its proof for ``round_number`` at the start of the window, with its
        beacon commitment; then (``reveal``) every node reveals at the start of the reveal window."""
        from pykoii.ledger import submission_window

        slot = submission_window(self.task, round_number).start
        for node in self.nodes:
            value = (values or {}).get(node, "Hello, World!")
            self.apply(
                "submit",
                node,
                slot,
                round=round_number,
                submission_value=value,
                commitment=commitment(self.task_id, round_number, node),
            )
        if reveal:
            self.reveal_all(round_number)

    def reveal_all(self, round_number: int, nodes: list[str] | None = None) -> None:
        """``nodes`` (default all) reveal their beacon secrets at the start of the reveal window."""
        from pykoii.ledger import reveal_window

        slot = reveal_window(self.task, round_number).start
        for node in self.nodes if nodes is None else nodes:
            self.apply(
                "reveal", node, slot, round=round_number, secret=secret(self.task_id, round_number, node)
            )

    def accuse(self, round_number: int, candidate: str, voters: int = 1) -> list[str]:
        """``voters`` of ``candidate``'s assigned auditors vote false; returns who voted."""
        from pykoii.ledger import audit_ring, audit_window

        slot = audit_window(self.task, round_number).start
        auditors = audit_ring(None, self.task, round_number).auditors_of(candidate)[:voters]
        for auditor in auditors:
            self.apply(
                "audit_submission", auditor, slot, round=round_number, candidate=candidate, is_valid=False
            )
        return auditors

    def submit_list(self, round_number: int, attempt: int = 0, **overrides: Any) -> str:
        """The selected node submits the default list for attempt ``attempt`` (its commitment, then
        its chunks); ``overrides`` replace its ``rewards`` or ``slashes``. Returns its key."""
        from pykoii.ledger import default_distribution_for, distribution_window, selected_submitter

        chosen = selected_submitter(None, self.task, round_number, attempt)
        assert chosen is not None
        dist = default_distribution_for(self.task, round_number)
        lists = {"rewards": dist.rewards, "slashes": dist.slashes, **overrides}
        slot = distribution_window(self.task, round_number, attempt).start
        self.send_list(chosen, slot, round_number, lists["rewards"], lists["slashes"])
        return chosen

    def send_list(
        self, signer: str, slot: int, round_number: int, rewards: Any, slashes: Any
    ) -> list[Receipt]:
        """Apply every transaction of a list (``distribution_transactions``) at ``slot``."""
        return send_list(self.state, signer, slot, self.task_id, round_number, rewards, slashes)

    def other_submitter(self, round_number: int, *not_these: str) -> str:
        return next(key for key in self.task.submissions[round_number] if key not in not_these)


def send_list(
    state: LedgerState, signer: str, slot: int, task_id: str, round_number: int, rewards: Any, slashes: Any
) -> list[Receipt]:
    """Apply a whole list to ``state``: its commitment and every chunk, as a node sends them."""
    from pykoii.ledger.distribution import distribution_transactions

    return [
        apply(state, body.pop("type"), signer, slot, **body)
        for body in distribution_transactions(task_id, round_number, rewards, slashes)
    ]


def assert_rejected(
    state: LedgerState,
    error: type[Exception],
    kind: str,
    signer: str,
    slot: int,
    fragments: tuple[str, ...] = (),
    **fields: Any,
) -> Exception:
    """Apply a transaction that must be refused with exactly ``error``, whose message holds every
    fragment (the rule, the received value, what is accepted), and check that the state root did not
    move. Returns the error for further checks."""
    from pykoii.ledger import state_root

    before = state_root(state)
    try:
        apply(state, kind, signer, slot, **fields)
    except Exception as exc:  # noqa: BLE001 - checked precisely below
        assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
        message = str(exc)
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in message {message!r}"
        assert state_root(state) == before, "a refused transaction changed the state"
        return exc
    raise AssertionError(f"{kind} was accepted; expected {error.__name__}")
