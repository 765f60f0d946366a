"""``pykoii demo`` and ``pykoii devnet up``: a whole network on this machine, as real processes."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = subparsers.add_parser(
        "demo", help="5 nodes (one faulty) run Hello-World on a local ledger; prints rounds and rewards"
    )
    demo.add_argument("--nodes", type=int, default=5, help="nodes to run (default 5)")
    demo.add_argument(
        "--faulty", type=int, default=1, help="how many of them submit a wrong value (default 1)"
    )
    demo.add_argument("--rounds", type=int, default=3, help="stop after this many paid rounds (default 3)")
    demo.add_argument("--slot-ms", type=int, default=150, help="slot length in ms (default 150)")
    demo.add_argument("--keep", action="store_true", help="leave the network up and print its URLs")
    demo.set_defaults(func=demo_command)

    devnet = subparsers.add_parser("devnet", help="run a ledger and K nodes on localhost")
    commands = devnet.add_subparsers(dest="devnet_command", metavar="COMMAND")
    devnet.set_defaults(func=lambda args: devnet.print_help() or 2)
    up = commands.add_parser("up", help="start a ledger and K node processes; Ctrl-C stops them all")
    up.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    up.add_argument("--slot-ms", type=int, default=400, help="slot length in ms (default 400)")
    up.add_argument("--data", type=Path, help="folder for every process's data (default: a new temp folder)")
    up.add_argument("--ledger-port", type=int, default=8899, help="ledger port (default 8899)")
    up.add_argument(
        "--node-port", type=int, default=30017, help="first node's port; the others follow (default 30017)"
    )
    up.set_defaults(func=devnet_up)


def demo_command(args: argparse.Namespace) -> int:
    from ..demo import main_demo

    if not 1 <= args.faulty < args.nodes:
        raise ConfigError(
            f"--faulty is {args.faulty}; accepted: 1 to --nodes - 1 = {args.nodes - 1}", received=args.faulty
        )
    return main_demo(args)


def devnet_up(args: argparse.Namespace) -> int:
    from ..devnet import Devnet

    folder = args.data or Path(tempfile.mkdtemp(prefix="pykoii-devnet-"))
    net = Devnet(
        folder,
        nodes_count=args.nodes,
        slot_ms=args.slot_ms,
        ledger_port=args.ledger_port,
        node_ports=[args.node_port + i for i in range(args.nodes)],
    )
    try:
        net.start()
        print(f"devnet in {folder}")
        print(f"  ledger     {net.ledger_url}  (explorer: {net.ledger_url}/explorer)")
        for node in net.nodes:
            print(f"  {node.name}     {node.url}/  data {node.data_dir}")
        print(f"deploy a task: PYKOII_LEDGER={net.ledger_url} pykoii task deploy examples/hello_world")
        print(
            "then: pykoii node add-task TASK_ID --stake 5 --node URL --data DATA   (Ctrl-C stops all)",
            flush=True,
        )
        while all(p.running() for p in [net.ledger, *(n.process for n in net.nodes)] if p is not None):
            time.sleep(0.5)
        print("a process stopped; stopping the devnet")
        return 1
    except KeyboardInterrupt:
        print("stopping the devnet…")
        return 0
    finally:
        net.stop()
