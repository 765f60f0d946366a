"""``pykoii node run | add-task | stop-task | start-task | remove-task | status``: operate a node.

``node run`` starts the node in the foreground; SIGINT or SIGTERM stop it and its task children.
The other commands talk to a running node over its operator port (``--node``, default: the URL the
node wrote to ``<data>/operator.json``) with the operator secret in ``<data>/operator.token``, so
they need the same ``--data`` folder as the node. Amounts are typed in KOII.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ..config import koii_to_roe
from ..errors import ConfigError
from ..ports import listen_socket

DEFAULT_DATA = Path(os.path.expanduser("~/.pykoii/node"))
RED, RESET = "\033[31m", "\033[0m"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("node", help="run a node and manage the tasks it runs")
    commands = parser.add_subparsers(dest="node_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    run = commands.add_parser("run", help="run the node (port 30017) until interrupted")
    run.add_argument("--ledger", default="http://127.0.0.1:8899", help="ledger service URL")
    run.add_argument(
        "--wallet", type=Path, help="main wallet keypair file (default: DATA/keys/main_wallet.json)"
    )
    run.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data folder (default {DEFAULT_DATA})")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    run.add_argument(
        "--port",
        type=int,
        default=30017,
        help="the public port (tasks' routes); 0: one the OS picks (see DATA/operator.json)",
    )
    run.add_argument(
        "--dashboard-port",
        type=int,
        default=30018,
        help="the operator port: dashboard and control API, on 127.0.0.1 only; 0: one the OS picks",
    )
    run.add_argument("--public-url", default="", help="URL registered with stakes (default http://HOST:PORT)")
    run.add_argument("--poll", type=float, default=0.25, help="seconds between looks at the ledger")
    run.add_argument("--phase-timeout", type=float, default=60.0, help="seconds a task phase may run")
    run.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    run.add_argument("--task-memory-mb", type=int, default=1024, help="memory of a whole task (MiB)")
    run.add_argument("--task-processes", type=int, default=256, help="processes and threads of a whole task")
    run.add_argument("--task-cpus", type=float, default=1.0, help="CPU cores a task may use at once (root)")
    run.add_argument(
        "--task-disk-mb", type=int, default=64, help="disk floor of a task (MiB; its `space` if larger)"
    )
    run.add_argument("--task-cpu-seconds", type=int, default=3600, help="CPU-time limit of one task process")
    run.add_argument(
        "--isolation",
        choices=["bubblewrap", "none"],
        default="bubblewrap",
        help="task sandbox: bubblewrap (default; no task runs without it) or none (task code runs "
        "with the node's rights)",
    )
    run.add_argument(
        "--follow-migrations",
        choices=["ask", "auto"],
        default="ask",
        help="when a task is migrated to a new version: ask (default; stop it and wait for the operator: "
        "dashboard or `pykoii node follow`), auto (stake the same amount on the new version and start it)",
    )
    run.set_defaults(func=run_node)

    add = commands.add_parser("add-task", help="download and verify a task's code, stake, and start it")
    add.add_argument("task_id")
    add.add_argument("--stake", required=True, help="stake in KOII")
    add.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a task variable")
    add.add_argument(
        "--code", type=Path, help="run this local folder instead of the published code (development only)"
    )
    _control_options(add)
    add.set_defaults(func=add_task)

    for verb, text in (
        ("stop-task", "stop a task (its stake stays)"),
        ("start-task", "start a stopped task"),
        ("remove-task", "stop a task and forget it (withdraw the stake separately)"),
        ("follow", "follow a migrated task: stake on its new version and start it, stop the old one"),
    ):
        command = commands.add_parser(verb, help=text)
        command.add_argument("task_id")
        _control_options(command)
        command.set_defaults(func=control_task, verb=verb)

    status = commands.add_parser("status", help="the node's status and its tasks")
    _control_options(status)
    status.set_defaults(func=show_status)


def _control_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the node's data folder (for its token)"
    )
    parser.add_argument(
        "--node",
        default=None,
        help="the node's operator URL (default: the one in DATA/operator.json, written by `node run`)",
    )


def run_node(args: argparse.Namespace) -> int:
    from ..node import isolation
    from ..node.app import serve
    from ..node.limits import limits_kind
    from ..node.runtime import Node, NodeConfig
    from ..node.sandbox import SandboxLimits

    limits = SandboxLimits(
        memory_bytes=args.task_memory_mb * 1024 * 1024,
        processes=args.task_processes,
        cpus=args.task_cpus,
        disk_bytes=args.task_disk_mb * 1024 * 1024,
        cpu_seconds=args.task_cpu_seconds,
        phase_timeout=args.phase_timeout,
        grace=args.grace,
        isolation=args.isolation,
    )
    config = NodeConfig(
        data_dir=args.data,
        ledger_url=args.ledger,
        wallet_path=args.wallet,
        host=args.host,
        port=args.port,
        dashboard_port=args.dashboard_port,
        public_url=args.public_url,
        poll_interval=args.poll,
        limits=limits,
        follow_migrations=args.follow_migrations,
    )
    sockets = [
        listen_socket(args.host, args.port),
        listen_socket("127.0.0.1", args.dashboard_port, "--dashboard-port"),
    ]
    args.port, args.dashboard_port = (int(sock.getsockname()[1]) for sock in sockets)  # 0: the OS's pick
    config.port, config.dashboard_port = args.port, args.dashboard_port
    try:
        node = Node(config)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(
            f"--data {args.data}: cannot create or write the node's folder: {exc.strerror}"
            f"{f' ({exc.filename})' if exc.filename else ''}; pass a folder this user can write",
            received=str(args.data),
        ) from None
    print(f"node {node.wallet.public_key} (staking key {node.staking.public_key})")
    if args.isolation == isolation.NONE:
        print(
            f"{RED}WARNING: --isolation none: task code runs as this node's user, unsandboxed; it can read "
            f"its keys and act for it{RESET}",
            flush=True,
        )
    else:
        why = isolation.unavailable_reason()
        if why is not None:
            print(
                f"{RED}ERROR: this node cannot isolate task code ({why}); it will refuse to start any "
                f"task. To fix it, {isolation.FIX_HINT}{RESET}",
                flush=True,
            )
        else:
            print(f"isolation: bubblewrap for every task child; limits by {limits_kind()}")
    print(
        f"serving http://{args.host}:{args.port}/ · ledger {args.ledger} · data {node.data_dir}", flush=True
    )
    print(f"dashboard (operator only; this link holds the operator secret): {node.login_link()}", flush=True)
    try:
        asyncio.run(serve(node, sockets))
    except KeyboardInterrupt:
        pass
    print("node stopped", flush=True)
    return 0


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    from ..node.control import operator_request

    return operator_request(Path(args.data), method, path, body, url=args.node)


def add_task(args: argparse.Namespace) -> int:
    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--var {item!r} must be NAME=VALUE", received=item)
        variables[name] = value
    body = {"task_id": args.task_id, "stake": koii_to_roe(args.stake, "--stake"), "variables": variables}
    if args.code is not None:
        body["code"] = str(args.code.resolve())
    info = _request(args, "POST", "/tasks", body)
    print(f"task {info['TaskID']} added: {info['status']} (stake {args.stake} KOII)")
    if info.get("message"):
        print(info["message"])
    return 0


def control_task(args: argparse.Namespace) -> int:
    if args.verb == "remove-task":
        info = _request(args, "DELETE", f"/tasks/{args.task_id}")
    else:
        info = _request(args, "POST", f"/tasks/{args.task_id}/{args.verb.split('-')[0]}")
    if args.verb == "follow":
        print(f"task {info['TaskID']}: {info.get('status')}")
        print(info["message"])
        return 0
    print(f"task {args.task_id}: {info.get('status')}")
    if info.get("message"):
        print(info["message"])
    return 0


def show_status(args: argparse.Namespace) -> int:
    status = _request(args, "GET", "/")
    tasks = _request(args, "GET", "/tasks")
    print(json.dumps({"node": status, "tasks": tasks}, indent=2))
    return 0
