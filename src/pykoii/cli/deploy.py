"""``pykoii task deploy|update|activate|deactivate|fund|info|list``: the author's side of a task's life.

``deploy`` reads ``config-task.yml``, uploads the code (``packaging.publish``: a CID given as
``task_audit_program`` is kept; a file name packs the folder, whose CID the ledger records) and the
metadata blob (its CID is ``task_metadata``), then creates and funds the task in one signed
``create_task``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..client import LedgerClient
from ..config import create_task_fields, load_config, update_task_fields
from ..packaging import Published, publish
from .common import add_ledger_option, add_wallet_option, amount, client_for, koii, load_wallet, print_receipt


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the task-life subcommands to ``pykoii task``."""
    deploy = commands.add_parser("deploy", help="upload the code and create the task from config-task.yml")
    deploy.add_argument("folder", type=Path, nargs="?", default=Path("."), help="task folder (default: .)")
    _signed(deploy, "the task manager's wallet; pays the bounty")
    deploy.set_defaults(func=deploy_command)

    update = commands.add_parser("update", help="migrate a task to new code/config (the bounty moves over)")
    update.add_argument("task_id")
    update.add_argument("folder", type=Path, nargs="?", default=Path("."), help="task folder (default: .)")
    _signed(update, "the task manager's wallet")
    update.set_defaults(func=update_command)

    for name, active in (("activate", True), ("deactivate", False)):
        sub = commands.add_parser(name, help=f"{name} a task (manager only)")
        sub.add_argument("task_id")
        _signed(sub, "the task manager's wallet")
        sub.set_defaults(func=set_active_command, is_active=active)

    fund = commands.add_parser("fund", help="add KOII to a task's bounty")
    fund.add_argument("task_id")
    fund.add_argument("amount", type=amount, help="amount in KOII")
    _signed(fund, "the wallet that pays")
    fund.set_defaults(func=fund_command)

    info = commands.add_parser("info", help="a task's configuration, bounty, stakes and recent rounds")
    info.add_argument("task_id")
    add_ledger_option(info)
    info.set_defaults(func=info_command)

    listing = commands.add_parser("list", help="every task on the ledger")
    add_ledger_option(listing)
    listing.set_defaults(func=list_command)


def _signed(parser: argparse.ArgumentParser, wallet_help: str) -> None:
    add_wallet_option(parser, wallet_help)
    add_ledger_option(parser)


def _publish(client: LedgerClient, folder: Path, config: Any) -> Published:
    published = publish(client, folder, config)
    for note in published.notes:
        print(note)
    return published


def deploy_command(args: argparse.Namespace) -> int:
    config = load_config(args.folder)
    wallet = load_wallet(args.wallet)
    client = client_for(args)
    out = _publish(client, args.folder, config)
    fields = create_task_fields(
        config, task_audit_program=out.task_audit_program, task_metadata=out.task_metadata
    )
    tx: dict[str, Any] = {"type": "create_task", **fields}
    receipt = client.send_transaction(wallet, tx)
    print_receipt(receipt)
    task_id = next(e["task_id"] for e in receipt["events"] if e["kind"] == "TaskCreated")
    print(f"task id: {task_id}")
    return 0


def update_command(args: argparse.Namespace) -> int:
    config = load_config(args.folder)
    wallet = load_wallet(args.wallet)
    client = client_for(args)
    out = _publish(client, args.folder, config)
    fields = update_task_fields(
        config, args.task_id, task_audit_program=out.task_audit_program, task_metadata=out.task_metadata
    )
    tx = {"type": "update_task", **fields}
    receipt = client.send_transaction(wallet, tx)
    print_receipt(receipt)
    new_id = next(e["task_id"] for e in receipt["events"] if e["kind"] == "TaskCreated")
    print(f"new task id: {new_id}")
    print(
        f"the old task {args.task_id} is now inactive; its stakes stay on it. Nodes running it notice "
        "migrated_to: with `--follow-migrations auto` they stake on the new task and start it; by "
        "default (ask) they stop it and their operator follows it from the dashboard or with "
        f"`pykoii node follow {args.task_id}`"
    )
    return 0


def set_active_command(args: argparse.Namespace) -> int:
    tx = {"type": "set_active", "task_id": args.task_id, "is_active": args.is_active}
    print_receipt(client_for(args).send_transaction(load_wallet(args.wallet), tx))
    return 0


def fund_command(args: argparse.Namespace) -> int:
    tx = {"type": "fund_task", "task_id": args.task_id, "amount": args.amount}
    print_receipt(client_for(args).send_transaction(load_wallet(args.wallet), tx))
    return 0


def info_command(args: argparse.Namespace) -> int:
    client = client_for(args)
    task = client.task(
        args.task_id,
        is_stake_list_required=True,
        is_available_balances_required=True,
        is_distribution_required=True,
    )
    state = "active" if task["is_active"] else "inactive"
    if task.get("is_migrated"):
        state = f"migrated to {task['migrated_to']}"
    records = task.get("distributions_audit_record", {})
    rows = [
        ("task", f"{task['task_name']} ({task['task_id']})"),
        ("status", state),
        ("manager", task["task_manager"]),
        ("code", f"{task['task_audit_program']} ({task['task_executable_network']})"),
        ("bounty left", koii(task["total_bounty_amount"])),
        ("bounty per round", koii(task["bounty_amount_per_round"])),
        ("minimum stake", koii(task["minimum_stake_amount"])),
        ("total staked", f"{koii(task['total_stake_amount'])} by {len(task.get('stake_list', {}))} nodes"),
        (
            "rounds",
            f"{task['round_time']} slots from slot {task['starting_slot']}; submission window "
            f"{task['submission_window']}, audit window {task['audit_window']}",
        ),
        ("payouts", ", ".join(f"round {r}: {s}" for r, s in records.items()) or "none yet"),
    ]
    variables = [t["value"] for t in task.get("requirements_tags", []) if t["type"] == "TASK_VARIABLE"]
    if variables:
        rows.append(("task variables", ", ".join(variables)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    tasks = client_for(args).tasks()
    if not tasks:
        print("no tasks on this ledger yet (create one with `pykoii task deploy`)")
        return 0
    for task in tasks:
        status = "active" if task.get("is_active") else "inactive"
        print(
            f"{task['task_id']}  {task['task_name']:<24}  {status:<8}  "
            f"bounty {koii(task['total_bounty_amount'])}  stakers {task.get('stakers', 0)}"
        )
    return 0
