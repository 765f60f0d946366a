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
        "timeline, phase timing and the reward/slash table, and exits 1 naming any property that failed "
        "(honest nodes never slashed, payouts within bounty, faulty submitters caught, phases end within "
        "their windows, task code and routes ran without errors).",
    )
    sim.add_argument("path", metavar="PATH", help="task folder with task.py and config-task.yml")
    sim.add_argument("--nodes", type=int, default=5, help="simulated nodes (default 5)")
    sim.add_argument("--rounds", type=int, default=3, help="rounds of work (default 3); all are then settled")
    sim.add_argument(
        "--faulty", type=int, default=0, help="faulty nodes (default: they submit a corrupted proof)"
    )
    sim.add_argument(
        "--faulty-task", metavar="PATH", help="faulty nodes run this task (task.py or its folder) instead"
    )
    sim.add_argument(
        "--faulty-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="faulty nodes run your task with this variable (e.g. FAULTY=1) instead of corrupting",
    )
    sim.add_argument("--lazy-auditors", type=int, default=0, help="nodes that never vote in audits")
    sim.add_argument("--offline", type=int, default=0, help="nodes that stake and then do nothing")
    sim.add_argument(
        "--colluding",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of nodes that collude: garbage proofs, mutual defence, false accusations, wrong lists",
    )
    sim.add_argument("--withholding", type=int, default=0, help="nodes that never reveal their beacon secret")
    sim.add_argument("--seed", type=int, default=0, help="seed for keys and behaviours (default 0)")
    sim.add_argument("--stake", metavar="KOII", help="each node's stake in KOII (default: 2 x minimum)")
    sim.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a task variable")
    sim.add_argument(
        "--node-var", action="append", default=[], metavar="N:NAME=VALUE", help="a variable of node N only"
    )
    sim.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="N=ROLE",
        help="give node N a behaviour: honest, faulty, lazy or offline",
    )
    sim.add_argument(
        "--slot-ms", type=float, default=400.0, help="virtual slot length phase times count in (default 400)"
    )
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

    def pair(option: str, item: str, accepted: str) -> tuple[str, str]:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{option} is {item!r}; accepted: {accepted}", field=option, received=item)
        return name, value

    def node_index(option: str, text: str, item: str) -> int:
        if not text.isdigit():
            raise ConfigError(
                f"{option} is {item!r}; accepted: a node index (0, 1, ...) first", field=option, received=item
            )
        return int(text)

    variables = dict(pair("--var", item, "NAME=VALUE") for item in args.var)
    faulty_vars = dict(pair("--faulty-var", item, "NAME=VALUE") for item in args.faulty_var)
    node_variables: dict[int, dict[str, str]] = {}
    for item in args.node_var:
        index, sep, rest = item.partition(":")
        if not sep:
            raise ConfigError(
                f"--node-var is {item!r}; accepted: N:NAME=VALUE", field="--node-var", received=item
            )
        name, value = pair("--node-var", rest, "N:NAME=VALUE")
        node_variables.setdefault(node_index("--node-var", index, item), {})[name] = value
    roles = {}
    for item in args.role:
        index, role = pair("--role", item, "N=ROLE")
        roles[node_index("--role", index, item)] = role
    if args.faulty_task and faulty_vars:
        raise ConfigError("--faulty-task and --faulty-var are both given; accepted: one of them")
    behaviour = args.faulty_task or faulty_vars or None
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
        colluding=args.colluding,
        withholding=args.withholding,
        seed=args.seed,
        stake=stake,
        variables=variables,
        node_variables=node_variables,
        roles=roles,
        faulty_behaviour=behaviour,
        slot_ms=args.slot_ms,
        progress=None if args.quiet else progress,
    )
    print(render(result))
    if not result.ok:
        print(f"pykoii: error: incentive property failed: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0
