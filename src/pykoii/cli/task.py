"""``pykoii task build DIR``: pack a task folder into one archive named by its CID."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..packaging import build_archive, cid_of
from .deploy import add_commands


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("task", help="build, deploy, update, fund and inspect tasks")
    commands = parser.add_subparsers(dest="task_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    build = commands.add_parser(
        "build",
        help="pack a task folder into one deterministic .tar.gz; prints its CID (task_audit_program)",
    )
    build.add_argument("folder", type=Path, help="the task folder (holds task.py and config-task.yml)")
    build.add_argument("-o", "--output", type=Path, help="archive path (default: DIR/dist/<CID>.tar.gz)")
    build.add_argument(
        "--upload", metavar="LEDGER_URL", help="also upload the archive to this ledger's blobs"
    )
    build.set_defaults(func=run_build)
    add_commands(commands)


def run_build(args: argparse.Namespace) -> int:
    from ..taskenv import read_requirements, use_environment

    requirements = read_requirements(args.folder)  # refused here as a node would refuse it
    installed = use_environment(args.folder) if requirements is not None else ""
    data = build_archive(args.folder)
    cid = cid_of(data)
    output = args.output or args.folder / "dist" / f"{cid}.tar.gz"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    print(f"built {output} ({len(data)} bytes)")
    if requirements is not None:
        print(
            f"requirements.txt: {len(requirements.pins)} pinned package(s) install with hashes ({installed})"
        )
    if args.upload:
        from ..client import LedgerClient

        stored = LedgerClient(args.upload).put_blob(data)
        print(f"uploaded to {args.upload} as {stored}")
    print(f"task_audit_program: {cid}")
    return 0
