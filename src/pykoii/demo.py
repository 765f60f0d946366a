"""``pykoii demo``: the seed's lesson on a real local network.

A ledger service (embedded SQLite log) and five node processes run the Hello-World task on fast
slots; one node is faulty and submits "Goodbye, World!". The demo prints each round as gradual
consensus unfolds — work, proofs, audits, the distribution list, its audit, the payout — then a
reward/slash table checked against the seed's rule: each valid submitter gets
``floor(bounty_amount_per_round / valid submitters)`` per paid round, each invalid one loses 70 % of
its stake.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import LedgerClient
from .config import roe_to_koii
from .devnet import Devnet
from .errors import PykoiiError
from .ledger.audits import is_judged_valid
from .ledger.codec import from_plain
from .ledger.state import AuditTrigger
from .ledger.types import ROE_PER_KOII, SLASH_PERCENT

HELLO_WORLD = Path(__file__).resolve().parents[2] / "examples" / "hello_world"
STAKE = 5 * ROE_PER_KOII
VALIDATOR_WINDOWS: dict[str, Any] = {"round_time": 60, "submission_window": 20, "audit_window": 20}
"""Hello World's windows, in slots (400 ms), on a validator network: 8 s each (reveals 4 s), room for two
transactions one after the other (about two blocks each) on a loaded machine."""


@dataclass
class RoundWatch:
    """What the demo saw of one round."""

    number: int
    printed: set[str] = field(default_factory=set)
    submitters: dict[str, str] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)
    stakes_at_list: dict[str, int] = field(default_factory=dict)
    list_submitter: str = ""
    record: str = ""
    windows: dict[str, Any] = field(default_factory=dict)
    record_slot: int = 0


@dataclass
class DemoResult:
    """The outcome: per staking key, the rewards and slashes seen and those the seed's rule expects."""

    task_id: str
    names: dict[str, str]
    rewards: dict[str, int]
    slashes: dict[str, int]
    expected_rewards: dict[str, int]
    expected_slashes: dict[str, int]
    paid_rounds: list[int]
    rounds: list[RoundWatch] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.rewards == self.expected_rewards and self.slashes == self.expected_slashes


def koii(roe: int) -> str:
    return f"{roe_to_koii(roe)} KOII"


def run_demo(
    *,
    nodes: int = 5,
    faulty: int = 1,
    rounds: int = 3,
    slot_ms: int = 300,
    folder: Path | None = None,
    keep: bool = False,
    out: Callable[[str], None] = print,
    timeout: float = 240.0,
    validators: int = 0,
) -> DemoResult:
    """Run the demo network until ``rounds`` rounds are paid; return what was paid and expected.

    ``validators`` > 0 runs the ledger on that many CometBFT validators instead of one sequencer:
    slots are those of the blocks' BFT time (400 ms), and the task's windows are widened to
    ``VALIDATOR_WINDOWS`` slots to leave room for a transaction's two blocks to acknowledgement."""
    temp = None if folder is not None else tempfile.TemporaryDirectory(prefix="pykoii-demo-")
    root = folder or Path(temp.name)  # type: ignore[union-attr]
    slot_ms = 400 if validators else slot_ms
    net = Devnet(root, nodes_count=nodes, slot_ms=slot_ms, poll=0.05, validators=validators)
    try:
        where = f"{validators} CometBFT validators" if validators else "a local ledger"
        out(f"pykoii demo: {nodes} nodes ({faulty} faulty) run the Hello-World task on {where}")
        if validators:
            out(f"starting {validators} validators (engine + application each, in {root / 'validators'})…")
        else:
            out(f"starting the ledger (SQLite log in {root / 'ledger'}) and {nodes} node processes…")
        net.start()
        if net.network is not None:
            for validator in net.network.validators:
                out(f"  {validator.info.name}  {validator.url}   engine RPC {validator.rpc}")
            out(
                f"  the task is deployed through {net.ledger_url}; node i uses validator "
                f"(i - 1) % {validators} + 1 (blobs are fetched between validators); slots of {slot_ms} ms "
                "of the blocks' time"
            )
        else:
            out(f"  ledger  {net.ledger_url}   slots of {slot_ms} ms")
        task_id = net.deploy(HELLO_WORLD, **(VALIDATOR_WINDOWS if validators else {}))
        assert net.client is not None
        task = net.client.task(task_id)
        out(
            f"deployed task {task_id}: bounty {koii(task['total_bounty_amount'])}, "
            f"{koii(task['bounty_amount_per_round'])} per round, rounds of {task['round_time']} slots "
            f"(submission window {task['submission_window']}, audit window {task['audit_window']})"
        )
        names: dict[str, str] = {}
        for node in net.nodes:
            is_faulty = node.index > nodes - faulty
            net.add_task(node, task_id, stake=STAKE, variables={"FAULTY": "1" if is_faulty else "0"})
            names[node.staking_key()] = node.name + (" (faulty)" if is_faulty else "")
            role = 'faulty: submits "Goodbye, World!"' if is_faulty else "honest"
            out(f"  {node.name}  {node.url}  staked {koii(STAKE)}  {role}")
        out("")
        out(
            "gradual consensus: work in round r → proofs submitted and audited in r+1 → "
            "distribution list submitted, audited and paid in r+2"
        )
        result = _watch(net, task_id, names, rounds, out, timeout)
        _print_table(result, out)
        if keep:
            out("")
            out("the network keeps running (Ctrl-C stops it):")
            out(f"  ledger explorer  {net.ledger_url}/explorer")
            for node in net.nodes:
                out(f"  {node.name} dashboard  {node.url}/")
            _wait_forever()
        return result
    finally:
        net.stop()
        if temp is not None:
            temp.cleanup()


def _wait_forever() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _watch(
    net: Devnet, task_id: str, names: dict[str, str], rounds: int, out: Callable[[str], None], timeout: float
) -> DemoResult:
    assert net.client is not None
    client = net.client
    watches: dict[int, RoundWatch] = {}
    paid: list[int] = []
    deadline = time.monotonic() + timeout
    while len(paid) < rounds:
        if time.monotonic() > deadline:
            raise PykoiiError(
                f"the demo saw only {len(paid)} of {rounds} rounds paid in {timeout:.0f} s; "
                f"node logs are in {net.folder}"
            )
        _check_alive(net)
        slot = client.slot()["slot"]
        task = client.task(task_id, is_stake_list_required=True)
        current = (slot - task["starting_slot"]) // task["round_time"]
        # Every round from the task's first: a round that began before the first look (a slow start on
        # a busy machine) is paid into the same balances, so it must be counted too.
        for number in range(0, current + 1):
            if number in paid:
                continue
            watch = watches.setdefault(number, RoundWatch(number))
            view = client.round(task_id, number)
            _report(client, watch, view, task, slot, names, out)
            if watch.record:
                if watch.record == "PayoutSuccessful":
                    paid.append(number)
                elif "failed" not in watch.printed:
                    watch.printed.add("failed")
                    out(f"round {number}: payout failed ({watch.record})")
        time.sleep(net.slot_ms / 1000)
    account = client.task(task_id, is_available_balances_required=True, is_stake_list_required=True)
    keys = sorted(names, key=lambda k: names[k])
    rewards = {k: account["available_balances"].get(k, 0) for k in keys}
    slashes = {k: STAKE - account["stake_list"].get(k, 0) for k in keys}
    expected_rewards = dict.fromkeys(keys, 0)
    expected_slashes = dict.fromkeys(keys, 0)
    for number in paid:
        watch = watches[number]
        valid = [k for k in watch.submitters if k not in watch.invalid]
        bounty = account["bounty_amount_per_round"]
        for key in valid:
            expected_rewards[key] += bounty // len(valid)
        for key in watch.invalid:
            expected_slashes[key] += watch.stakes_at_list.get(key, 0) * SLASH_PERCENT // 100
    return DemoResult(
        task_id,
        names,
        rewards,
        slashes,
        expected_rewards,
        expected_slashes,
        sorted(paid),
        [watches[n] for n in sorted(paid)],
    )


def _check_alive(net: Devnet) -> None:
    for process in [net.ledger, *(n.process for n in net.nodes)]:
        if process is not None and not process.running():
            raise PykoiiError(f"{process.name} stopped; its log ends with:\n{process.log_tail()}")


def _report(
    client: LedgerClient,
    watch: RoundWatch,
    view: dict[str, Any],
    task: dict[str, Any],
    slot: int,
    names: dict[str, str],
    out: Callable[[str], None],
) -> None:
    windows = watch.windows = view["windows"]
    r = watch.number

    def once(key: str, text: str) -> None:
        if key not in watch.printed:
            watch.printed.add(key)
            out(text)

    once(
        "work",
        f"round {r}  slots {windows['round']['first_slot']}–{windows['round']['last_slot']}: "
        'work — every node stores "Hello, World!"',
    )
    submissions = view["submissions"]
    if slot > windows["submission"]["last_slot"] and submissions:
        watch.submitters = {k: v["submission_value"] for k, v in submissions.items()}
        values = ", ".join(
            f"{names.get(k, k[:8])}={v!r}"
            for k, v in sorted(watch.submitters.items(), key=lambda i: names.get(i[0], ""))
        )
        missing = [names[k] for k in task.get("stake_list", {}) if k in names and k not in submissions]
        absent = f"; no proof from {', '.join(missing)}" if missing else ""
        if missing and any("faulty" in name for name in missing):
            absent += " (slashed below minimum_stake_amount, the ledger refuses its proofs)"
        once(
            "proofs",
            f"round {r}  proofs in slots {windows['submission']['first_slot']}–"
            f"{windows['submission']['last_slot']}: {len(submissions)} submitted ({values}){absent}",
        )
    if slot > windows["audit"]["last_slot"] and submissions:
        triggers = view["submissions_audit_trigger"]
        watch.invalid = {k for k, t in triggers.items() if not is_judged_valid(from_plain(AuditTrigger, t))}
        accused = (
            "; ".join(
                f"{names.get(k, k[:8])} accused by {len(t['votes'])} auditor(s)" for k, t in triggers.items()
            )
            or "nobody accused"
        )
        once(
            "audits",
            f"round {r}  audits in slots {windows['audit']['first_slot']}–"
            f"{windows['audit']['last_slot']}: {accused}",
        )
    lists = view["distribution_rewards_submission"]
    if lists and "list" not in watch.printed:
        watch.list_submitter = next(iter(lists))
        watch.stakes_at_list = dict(task.get("stake_list", {}))
        once("list", f"round {r}  distribution list submitted by {names.get(watch.list_submitter, '?')}")
    record = view.get("payout_record")
    if record:
        watch.record = str(record)
        watch.record_slot = slot
        entries = []
        if record == "PayoutSuccessful" and "payout" not in watch.printed:
            entries = list(client.distribution_entries(view["task_id"], r))
        rewards = {e["key"]: e["reward"] for e in entries if e["reward"]}
        slashes = {e["key"]: e["slash"] for e in entries if e["slash"]}
        paid = ", ".join(
            f"{names.get(k, k[:8])} +{koii(v)}"
            for k, v in sorted(rewards.items(), key=lambda i: names.get(i[0], ""))
        )
        slashed = ", ".join(f"{names.get(k, k[:8])} −{koii(v)}" for k, v in slashes.items())
        once("payout", f"round {r}  payout ({record}): {paid}" + (f"; slashed {slashed}" if slashed else ""))


def span(window: dict[str, int]) -> str:
    """A window from the API as ``first–last``."""
    return f"{window['first_slot']}–{window['last_slot']}"


def _print_timeline(result: DemoResult, out: Callable[[str], None]) -> None:
    """The gradual-consensus diagram as a table: one row per paid round, one column per stage."""
    out("")
    out("timeline (slots):")
    header = f"{'round':<6} {'work':<9} {'proofs':<15} {'audits':<16} {'list':<15} {'list audit':<11} payout"
    out(header)
    out("-" * len(header))
    for watch in result.rounds:
        w = watch.windows
        attempt = 0  # the demo's lists pass their first audit
        proofs = f"{span(w['submission'])} ×{len(watch.submitters)}"
        audits = f"{span(w['audit'])} ✗{len(watch.invalid)}"
        author = result.names.get(watch.list_submitter, "?").split()[0]
        dist = f"{span(w['distribution'][attempt])} {author}"
        out(
            f"{watch.number:<6} {span(w['round']):<9} {proofs:<15} {audits:<16} {dist:<15} "
            f"{span(w['distribution_audit'][attempt]):<11} by {watch.record_slot}"
        )


def _print_table(result: DemoResult, out: Callable[[str], None]) -> None:
    _print_timeline(result, out)
    out("")
    out(
        f"rewards and slashes after {len(result.paid_rounds)} paid rounds "
        f"({', '.join(map(str, result.paid_rounds))}), checked against the seed's rule:"
    )
    header = f"{'node':<18} {'rewards':>14} {'expected':>14} {'slashed':>14} {'expected':>14}  ok"
    out(header)
    out("-" * len(header))
    for key, name in sorted(result.names.items(), key=lambda i: i[1]):
        ok = (
            result.rewards[key] == result.expected_rewards[key]
            and result.slashes[key] == result.expected_slashes[key]
        )
        out(
            f"{name:<18} {koii(result.rewards[key]):>14} {koii(result.expected_rewards[key]):>14} "
            f"{koii(result.slashes[key]):>14} {koii(result.expected_slashes[key]):>14}  "
            f"{'yes' if ok else 'NO'}"
        )
    out("")
    out("the table matches the seed's rule" if result.matches else "MISMATCH with the seed's rule")


def main_demo(args: Any) -> int:
    """Entry for ``pykoii demo``."""
    result = run_demo(
        nodes=args.nodes,
        faulty=args.faulty,
        rounds=args.rounds,
        slot_ms=args.slot_ms,
        keep=args.keep,
        out=lambda line: print(line, flush=True),
        validators=args.validators,
        timeout=240.0 if not args.validators else 480.0,
    )
    return 0 if result.matches else 1
