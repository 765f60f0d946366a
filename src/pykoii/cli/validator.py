"""``pykoii validator init | genesis | run``: a validator of the multi-validator ledger (CometBFT)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path

from ..errors import ConfigError
from .ledger import add_storage_options, storage_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "validator", help="run a validator of the multi-validator ledger (CometBFT engine + pykoii)"
    )
    commands = parser.add_subparsers(dest="validator_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    init = commands.add_parser(
        "init", help="create a validator's folder: keys, engine config, validator.json"
    )
    init.add_argument("--home", type=Path, required=True, help="the validator's folder (must not exist yet)")
    init.add_argument("--name", default="", help="its name (default: the folder's name)")
    init.add_argument("--host", default="127.0.0.1", help="address peers reach it on (default 127.0.0.1)")
    init.add_argument("--p2p-port", type=int, default=26656, help="engine p2p port (default 26656)")
    init.add_argument("--rpc-port", type=int, default=26657, help="engine RPC port, loopback (default 26657)")
    init.add_argument("--http-port", type=int, default=8899, help="ledger HTTP API port (default 8899)")
    init.set_defaults(func=init_command)

    genesis = commands.add_parser(
        "genesis", help="write the network's genesis from every validator's validator.json"
    )
    genesis.add_argument(
        "validators", nargs="+", type=Path, help="validator.json files (or validator folders)"
    )
    genesis.add_argument("--out", type=Path, required=True, help="the genesis.json to write")
    genesis.add_argument("--chain-id", default="", help="chain id (default pykoii-<random>)")
    genesis.add_argument("--devnet", action="store_true", help="the ledger accepts airdrops")
    genesis.add_argument("--slot-ms", type=int, default=400, help="nominal block time in ms (default 400)")
    genesis.set_defaults(func=genesis_command)

    run = commands.add_parser("run", help="run the validator: application, engine and HTTP API")
    run.add_argument("--home", type=Path, required=True, help="the validator's folder")
    run.add_argument("--genesis", type=Path, help="install this genesis.json first (the network's)")
    run.add_argument(
        "--peers", default=None, help="persistent peers id@host:port,... (default: as configured)"
    )
    run.add_argument(
        "--host", default="127.0.0.1", help="address the HTTP API listens on (default 127.0.0.1)"
    )
    run.add_argument(
        "--workers", type=int, default=1, help="signature-checking processes (default 1; 0 checks inline)"
    )
    run.add_argument(
        "--ack-timeout", type=float, default=30.0, help="seconds POST /tx waits for its block (default 30)"
    )
    run.add_argument("--retain-blocks", type=int, default=0, help="blocks the engine keeps (default 0: all)")
    run.add_argument(
        "--peer-apis",
        default=None,
        help="the other validators' HTTP APIs http://HOST:PORT,..., asked for blobs this validator "
        "does not hold (default: as given last time)",
    )
    run.add_argument(
        "--checkpoint-every",
        type=int,
        default=200_000,
        help="write a checkpoint (the state after a committed block) every N log entries, so a "
        "restart replays only what follows it (default 200000; 0: only at shutdown)",
    )
    run.add_argument(
        "--replay-log",
        action="store_true",
        help="drop the checkpoints and replay the whole log at start (e.g. after a checkpoint was refused)",
    )
    add_storage_options(run)
    run.set_defaults(func=run_command)


def init_command(args: argparse.Namespace) -> int:
    from ..chain.engine import init_home

    info = init_home(
        args.home,
        name=args.name or args.home.name,
        host=args.host,
        p2p_port=args.p2p_port,
        rpc_port=args.rpc_port,
        http_port=args.http_port,
    )
    print(f"validator {info.name} in {args.home}")
    print(f"  node id {info.node_id}, peer address {info.peer}")
    print(f"  consensus key {info.pub_key}")
    print(f"send {args.home / 'validator.json'} to whoever writes the genesis (`pykoii validator genesis`)")
    return 0


def genesis_command(args: argparse.Namespace) -> int:
    from ..chain.engine import ValidatorInfo, make_genesis
    from ..ledger import LedgerParams
    from ..service.records import Genesis

    infos = [ValidatorInfo.load(p / "validator.json" if p.is_dir() else p) for p in args.validators]
    if len({i.pub_key for i in infos}) != len(infos):
        raise ConfigError(
            "two validator.json files hold the same consensus key; each validator needs its own"
        )
    document = make_genesis(
        infos,
        chain_id=args.chain_id or f"pykoii-{secrets.token_hex(3)}",
        genesis=Genesis(params=LedgerParams(devnet=args.devnet), slot_ms=args.slot_ms),
    )
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}: chain {document['chain_id']}, {len(infos)} validators")
    print(f"peers: {','.join(i.peer for i in infos)}")
    apis = ",".join(f"http://{i.p2p.rsplit(':', 1)[0]}:{i.http_port}" for i in infos)
    print(f"peer APIs (each validator's --peer-apis: all but its own): {apis}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from ..chain.engine import install_genesis, peer_apis, read_genesis, set_config
    from ..chain.validator import main_run

    if not (args.home / "validator.json").exists():
        raise ConfigError(f"{args.home} is not a validator folder; create it with `pykoii validator init`")
    if args.genesis is not None:
        document = json.loads(args.genesis.read_text())
        install_genesis(args.home, document, args.peers.split(",") if args.peers else [])
    elif args.peers is not None:
        set_config(args.home / "engine" / "config" / "config.toml", {"p2p": {"persistent_peers": args.peers}})
    read_genesis(args.home)  # a clear error now if there is none
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return main_run(
        args.home,
        host=args.host,
        peer_apis=peer_apis(args.home, args.peer_apis),
        workers=args.workers,
        ack_timeout=args.ack_timeout,
        retain_blocks=args.retain_blocks,
        checkpoint_every=args.checkpoint_every,
        replay_log=args.replay_log,
        **storage_options(args),
    )
