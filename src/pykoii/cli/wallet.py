"""``pykoii wallet new|show|balance|airdrop|transfer`` and the operator's ``stake``, ``claim``,
``withdraw``: each a real signed transaction sent to the ledger."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..keys import Keypair
from ..node.control import node_info
from .common import (
    DEFAULT_NODE_DATA,
    add_ledger_option,
    add_wallet_option,
    amount,
    client_for,
    koii,
    load_wallet,
    print_receipt,
)

STAKING_KEY = "keys/staking_wallet.json"
MAIN_WALLET = "keys/main_wallet.json"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    wallet = subparsers.add_parser("wallet", help="create a wallet, see balances, airdrop, transfer KOII")
    commands = wallet.add_subparsers(dest="wallet_command", metavar="COMMAND")
    wallet.set_defaults(func=lambda args: wallet.print_help() or 2)

    new = commands.add_parser("new", help="create a keypair file (refuses to overwrite one)")
    add_wallet_option(new, "where to write it")
    new.set_defaults(func=wallet_new)

    show = commands.add_parser("show", help="print the wallet's public key")
    add_wallet_option(show)
    show.set_defaults(func=wallet_show)

    balance = commands.add_parser("balance", help="the wallet's balance, stakes and claimable rewards")
    add_wallet_option(balance)
    balance.add_argument("--address", help="look up this public key instead of the wallet's")
    add_ledger_option(balance)
    balance.set_defaults(func=wallet_balance)

    airdrop = commands.add_parser("airdrop", help="mint KOII to the wallet (devnet ledgers only)")
    airdrop.add_argument("amount", type=amount, help="amount in KOII")
    airdrop.add_argument("--to", help="recipient public key (default: the wallet)")
    add_wallet_option(airdrop)
    add_ledger_option(airdrop)
    airdrop.set_defaults(func=wallet_airdrop)

    transfer = commands.add_parser("transfer", help="send KOII to another public key")
    transfer.add_argument("to", help="recipient public key")
    transfer.add_argument("amount", type=amount, help="amount in KOII")
    add_wallet_option(transfer)
    add_ledger_option(transfer)
    transfer.set_defaults(func=wallet_transfer)

    stake = subparsers.add_parser("stake", help="stake KOII on a task with a staking key")
    stake.add_argument("task_id")
    stake.add_argument("amount", type=amount, help="amount in KOII")
    stake.add_argument("--url", default="", help="this node's public URL, registered with the stake")
    _staking_key_option(stake)
    add_ledger_option(stake)
    stake.set_defaults(func=stake_command)

    claim = subparsers.add_parser(
        "claim", help="move a task's available balance to the node's main wallet (or --beneficiary)"
    )
    claim.add_argument("task_id")
    claim.add_argument(
        "--beneficiary", help="public key to pay (default: the main wallet of the node that owns --data)"
    )
    _staking_key_option(claim)
    add_ledger_option(claim)
    claim.set_defaults(func=claim_command)

    withdraw = subparsers.add_parser(
        "withdraw", help="unstake from a task (the stake becomes claimable; then run `pykoii claim`)"
    )
    withdraw.add_argument("task_id")
    _staking_key_option(withdraw)
    add_ledger_option(withdraw)
    withdraw.set_defaults(func=withdraw_command)


def _staking_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help=f"the node's data folder: its staking key and main wallet (default: the folder of "
        f"--staking-key DIR/{STAKING_KEY}, else {DEFAULT_NODE_DATA})",
    )
    parser.add_argument(
        "--staking-key",
        type=Path,
        metavar="FILE",
        help=f"the staking keypair (default: DATA/{STAKING_KEY})",
    )


def _node_data(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return Path(args.data)
    key = args.staking_key
    if key is not None and key.parent.name == "keys":
        return Path(key.parent.parent)
    return DEFAULT_NODE_DATA


def _staking_key(args: argparse.Namespace) -> Keypair:
    return load_wallet(args.staking_key or _node_data(args) / STAKING_KEY)


def node_main_wallet(data_dir: Path) -> str:
    """The public key of the main wallet of the node that owns ``data_dir``: from the
    ``operator.json`` it wrote, else its ``keys/main_wallet.json``."""
    try:
        return str(node_info(data_dir)["main_account"])
    except ConfigError:
        path = data_dir.expanduser() / MAIN_WALLET
        if path.exists():
            return Keypair.load(path).public_key
        raise ConfigError(
            f"no node main wallet found in --data {data_dir} (neither operator.json nor {MAIN_WALLET}); "
            "pass the node's --data folder or --beneficiary PUBKEY",
            path=str(data_dir),
        ) from None


def wallet_new(args: argparse.Namespace) -> int:
    path = Keypair.generate().save(args.wallet.expanduser())
    print(f"wrote {path}\npublic key: {Keypair.load(path).public_key}")
    return 0


def wallet_show(args: argparse.Namespace) -> int:
    print(load_wallet(args.wallet).public_key)
    return 0


def wallet_balance(args: argparse.Namespace) -> int:
    address = args.address or load_wallet(args.wallet).public_key
    account = client_for(args).account(address)
    print(f"{address}: {koii(account['balance'])}")
    for task_id, entry in sorted(account.get("tasks", {}).items()):
        print(
            f"  task {task_id}: staked {koii(entry.get('stake', 0))}, "
            f"claimable {koii(entry.get('available_balance', 0))}"
        )
    return 0


def wallet_airdrop(args: argparse.Namespace) -> int:
    keypair = load_wallet(args.wallet)
    tx = {"type": "airdrop", "to": args.to or keypair.public_key, "amount": args.amount}
    print_receipt(client_for(args).send_transaction(keypair, tx))
    return 0


def wallet_transfer(args: argparse.Namespace) -> int:
    tx = {"type": "transfer", "to": args.to, "amount": args.amount}
    print_receipt(client_for(args).send_transaction(load_wallet(args.wallet), tx))
    return 0


def stake_command(args: argparse.Namespace) -> int:
    tx = {"type": "stake", "task_id": args.task_id, "amount": args.amount, "ip_address": args.url}
    print_receipt(client_for(args).send_transaction(_staking_key(args), tx))
    return 0


def claim_command(args: argparse.Namespace) -> int:
    staking = _staking_key(args)
    beneficiary = args.beneficiary or node_main_wallet(_node_data(args))
    tx = {"type": "claim_reward", "task_id": args.task_id, "beneficiary": beneficiary}
    print(f"claiming to {beneficiary}{'' if args.beneficiary else ' (the node main wallet)'}")
    print_receipt(client_for(args).send_transaction(staking, tx))
    return 0


def withdraw_command(args: argparse.Namespace) -> int:
    tx = {"type": "withdraw", "task_id": args.task_id}
    print_receipt(client_for(args).send_transaction(_staking_key(args), tx))
    print("the stake is now claimable: run `pykoii claim TASK_ID` to move it to your wallet")
    return 0
