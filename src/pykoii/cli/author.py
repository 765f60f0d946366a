"""``pykoii new NAME`` and ``pykoii simulate PATH``: the task author's commands."""

from __future__ import annotations

import argparse
import sys

from ..config import koii_to_roe


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    new = subparsers.add_parser(
        "new",
        help="create a task folder (task.py, config-task.yml, tests)",
        description="Create NAME/ with a working Hello-World task, its config-task.yml and pytest "
        "tests that run it in the simulator.",
    )
    new.add_argument("name", metavar="NAME", help="folder and task name (letters, digits, - and _)")
    new.add_argument("--dir", default=".", help="where to create the folder (default: here)")
    new.set_defaults(func=run_new)

    sim = subparsers.add_parser(
        "simulate",
        help="run a task on N simulated nodes against the real ledger state machine",
        description="Run the task's real code on N virtual nodes in this process, against the ledger "
        "state machine on a manual slot clock (no sleeps; deterministic for a seed). Prints the round "
        "timeline, phase timing and the reward/slash table, and exits 1 naming any incentive property "
        "that failed (honest nodes never slashed, payouts within bounty, faulty submitters caught).",
    )
    sim.add_argument("path", metavar="PATH", help="task folder with task.py and config-task.yml")
    sim.add_argument("--nodes", type=int, default=5, help="simulated nodes (default 5)")
    sim.add_argument("--rounds", type=int, default=3, help="rounds of work (default 3); all are then settled")
    sim.add_argument("--faulty", type=int, default=0, help="nodes that submit a corrupted proof")
    sim.add_argument("--lazy-auditors", type=int, default=0, help="nodes that never vote in audits")
    sim.add_argument("--offline", type=int, default=0, help="nodes that stake and then do nothing")
    sim.add_argument("--seed", type=int, default=0, help="seed for keys and behaviours (default 0)")
    sim.add_argument("--stake", metavar="KOII", help="each node's stake in KOII (default: 2 x minimum)")
    sim.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a task variable")
    sim.add_argument("--quiet", action="store_true", help="print only the final tables")
    sim.set_defaults(func=run_simulate)


def run_new(args: argparse.Namespace) -> int:
    from ..scaffold import create_task_folder

    folder = create_task_folder(args.name, args.dir)
    print(f"created {folder}/ (task.py, config-task.yml, tests/test_task.py, README.md)")
    print(f"next: cd {folder} && pykoii simulate . --nodes 5 --rounds 3 --faulty 1 && python -m pytest tests")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..testing import render, simulate

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--var is {item!r}; accepted: NAME=VALUE", field="var", received=item)
        variables[name] = value
    stake = koii_to_roe(args.stake, "--stake") if args.stake is not None else None

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = simulate(
        args.path,
        nodes=args.nodes,
        rounds=args.rounds,
        faulty=args.faulty,
        lazy_auditors=args.lazy_auditors,
        offline=args.offline,
        seed=args.seed,
        stake=stake,
        variables=variables,
        progress=None if args.quiet else progress,
    )
    print(render(result))
    if not result.ok:
        print(f"pykoii: error: incentive property failed: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0
