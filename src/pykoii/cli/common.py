"""Options and helpers shared by the ``pykoii`` subcommands: ledger URL, wallet file, KOII amounts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..client import LedgerClient
from ..config import koii_to_roe, roe_to_koii
from ..keys import Keypair

DEFAULT_LEDGER = "http://127.0.0.1:8899"
DEFAULT_WALLET = Path("~/.config/pykoii/id.json")
DEFAULT_NODE_DATA = Path("~/.pykoii/node")


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    """``--ledger URL`` (default ``$PYKOII_LEDGER`` or http://127.0.0.1:8899)."""
    parser.add_argument(
        "--ledger",
        default=os.environ.get("PYKOII_LEDGER", DEFAULT_LEDGER),
        metavar="URL",
        help="ledger service URL (default: $PYKOII_LEDGER or %(default)s)",
    )


def add_wallet_option(parser: argparse.ArgumentParser, help_text: str = "the wallet that signs") -> None:
    """``--wallet FILE`` (default ``$PYKOII_WALLET`` or ~/.config/pykoii/id.json)."""
    parser.add_argument(
        "--wallet",
        type=Path,
        default=Path(os.environ.get("PYKOII_WALLET", DEFAULT_WALLET)),
        metavar="FILE",
        help=f"{help_text}: a Solana-style keypair file (default: $PYKOII_WALLET or %(default)s)",
    )


def amount(text: str) -> int:
    """An argparse type: an amount typed in KOII, returned in ROE."""
    try:
        return koii_to_roe(text)
    except Exception as exc:  # argparse turns this into a usage error naming the option
        raise argparse.ArgumentTypeError(str(exc)) from None


def client_for(args: argparse.Namespace) -> LedgerClient:
    """The ledger client for ``--ledger``."""
    return LedgerClient(args.ledger, retries=2)


def load_wallet(path: Path) -> Keypair:
    """The keypair at ``path`` (``~`` expanded)."""
    return Keypair.load(path.expanduser())


def koii(roe: int) -> str:
    """ROE shown as ``1.5 KOII``."""
    return f"{roe_to_koii(roe)} KOII"


def print_receipt(receipt: Mapping[str, Any]) -> None:
    """One line per event of a receipt, amounts in KOII."""
    print(f"accepted at slot {receipt['slot']} (tx {receipt['tx_id'][:16]}…)")
    for event in receipt["events"]:
        fields = ", ".join(
            f"{k}={koii(v) if k in AMOUNT_FIELDS else v}" for k, v in event.items() if k != "kind"
        )
        print(f"  {event['kind']}: {fields}")


AMOUNT_FIELDS = frozenset(
    {"amount", "stake", "total_bounty_amount", "bounty_moved", "reward_total", "slash_total"}
)
