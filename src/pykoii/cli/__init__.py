"""The ``pykoii`` command: one entry point, one subcommand module per area.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its subcommands and sets
``func`` on each parser to a function ``(args) -> int``. Errors that pykoii raises on purpose are
printed as one line on stderr and exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import PykoiiError

COMMAND_MODULES = (
    "pykoii.cli.author",
    "pykoii.cli.ledger",
    "pykoii.cli.validator",
    "pykoii.cli.node",
    "pykoii.cli.task",
    "pykoii.cli.wallet",
    "pykoii.cli.network",
)
"""Modules that add subcommands, in the order ``pykoii --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The whole ``pykoii`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="pykoii",
        description="Koii tasks in Python: run a ledger, nodes, and tasks that audit each other.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pykoii`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except PykoiiError as exc:
        print(f"pykoii: error: {exc.name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pykoii: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
