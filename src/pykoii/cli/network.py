"""``pykoii demo`` and ``pykoii devnet up``: a whole network on this machine, as real processes."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    demo.add_argument("--slot-ms", type=int, default=300, help="slot length in ms (default 300)")
    demo.add_argument("--keep", action="store_true", help="leave the network up and print its URLs")
    demo.add_argument(
        "--validators",
        type=int,
        default=0,
        help="run the ledger on N CometBFT validators (default 0: one sequencer)",
    )
    demo.set_defaults(func=demo_command)

    devnet = subparsers.add_parser("devnet", help="run a ledger and K nodes on localhost")
    commands = devnet.add_subparsers(dest="devnet_command", metavar="COMMAND")
    devnet.set_defaults(func=lambda args: devnet.print_help() or 2)
    up = commands.add_parser("up", help="start a ledger and K node processes; Ctrl-C stops them all")
    up.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    up.add_argument("--slot-ms", type=int, default=400, help="slot length in ms (default 400)")
    up.add_argument(
        "--validators",
        type=int,
        default=0,
        help="run the ledger on N CometBFT validators (default 0: one sequencer)",
    )
    up.add_argument("--data", type=Path, help="folder for every process's data (default: a new temp folder)")
    up.add_argument(
        "--ledger-port", type=int, default=8899, help="ledger port (default 8899; 0: one the OS picks)"
    )
    up.add_argument(
        "--node-port",
        type=int,
        default=30017,
        help="first node's port; the others follow (default 30017; 0: each one the OS picks)",
    )
    up.set_defaults(func=devnet_up)


def demo_command(args: argparse.Namespace) -> int:
    from ..demo import main_demo

    if not 1 <= args.faulty < args.nodes:
        raise ConfigError(
            f"--faulty is {args.faulty}; accepted: 1 to --nodes - 1 = {args.nodes - 1}", received=args.faulty
        )
    return main_demo(args)


NODE_FUNDS = 100
"""KOII airdropped to each devnet node's main wallet, so it can stake right away."""
AUTHOR_FUNDS = 200
"""KOII airdropped to the devnet's author wallet (``<data>/author.json``), enough to deploy Hello World."""


def devnet_up(args: argparse.Namespace) -> int:
    from ..devnet import Devnet
    from ..keys import Keypair
    from ..ledger.types import ROE_PER_KOII
    from ..node.control import operator_secret, operator_url
    from ..ports import check_ports_free

    node_ports = [args.node_port + i if args.node_port else 0 for i in range(args.nodes)]
    check_ports_free(
        "127.0.0.1",
        {"--ledger-port": args.ledger_port, **{f"--node-port (+{i})": p for i, p in enumerate(node_ports)}},
    )
    folder = args.data or Path(tempfile.mkdtemp(prefix="pykoii-devnet-"))
    net = Devnet(
        folder,
        nodes_count=args.nodes,
        slot_ms=args.slot_ms,
        ledger_port=args.ledger_port,
        node_ports=node_ports,
        validators=args.validators,
    )

    def interrupted(signum: int, frame: Any) -> None:
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    # Explicitly, so SIGINT works even when the shell started us in the background (SIGINT ignored).
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        net.start()
        author_path = folder / "author.json"
        author = Keypair.load(author_path) if author_path.exists() else None
        if author is None:
            author = Keypair.generate()
            author.save(author_path)
        net.airdrop(author.public_key, AUTHOR_FUNDS * ROE_PER_KOII)
        for node in net.nodes:
            net.airdrop(node.wallet.public_key, NODE_FUNDS * ROE_PER_KOII)
        print(f"devnet in {folder}")
        if net.network is not None:
            for validator in net.network.validators:
                name, url, rpc = validator.info.name, validator.url, validator.rpc
                print(f"  {name}  {url}  engine RPC {rpc}  home {validator.home}")
        print(f"  ledger     {net.ledger_url}  (explorer: {net.ledger_url}/explorer/)")
        print(f"  author     wallet {author.public_key} ({author_path}, {AUTHOR_FUNDS} KOII)")
        for node in net.nodes:
            ledger = net.node_ledger_url(node.index)
            print(f"  {node.name}     {node.url}/  data {node.data_dir}  ledger {ledger}")
            login = f"{operator_url(node.data_dir)}/login?token={operator_secret(node.data_dir)}"
            print(f"             dashboard {login}")
            print(f"             main wallet {node.wallet.public_key} ({NODE_FUNDS} KOII)")
            print(f"             staking key {node.staking_key()}")
        first = net.nodes[0] if net.nodes else None
        print(
            f"deploy a task:  PYKOII_LEDGER={net.ledger_url} PYKOII_WALLET={author_path} "
            f"pykoii task deploy {_hello_world()}"
        )
        if first is not None:
            add = f"pykoii node add-task TASK_ID --stake 5 --var FAULTY=0 --data {first.data_dir}"
            print(f"then add it:    {add}")
        print("Ctrl-C (or SIGTERM) stops every process", flush=True)
        validators = [v.process for v in net.network.validators] if net.network is not None else []
        processes = [net.ledger, *validators, *(n.process for n in net.nodes)]
        while all(p.running() for p in processes if p is not None):
            time.sleep(0.5)
        stopped = [p.name for p in processes if p and not p.running()]
        print(f"{', '.join(stopped)} stopped; stopping the devnet", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the devnet…", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the children
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        net.stop()


def _hello_world() -> str:
    """The Hello-World example's folder: absolute when pykoii runs from a checkout."""
    folder = Path(__file__).resolve().parents[3] / "examples" / "hello_world"
    return str(folder) if (folder / "config-task.yml").exists() else "examples/hello_world"
