"""``pykoii ledger serve | verify | follow``: run and check the ledger service."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("ledger", help="run, verify or follow a ledger service")
    commands = parser.add_subparsers(dest="ledger_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    del commands  # serve, verify and follow are added with the ledger service
