"""``pykoii node run | add-task | stop-task | start-task | remove-task | status``: operate a node.

``node run`` starts the node in the foreground. The other commands talk to a running node over its
control API (``--node``, default ``http://127.0.0.1:30017``) with the token in ``<data>/control.token``,
so they need the same ``--data`` folder as the node. Amounts are typed in KOII.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ..config import koii_to_roe
from ..errors import ConfigError, PykoiiError

DEFAULT_DATA = Path(os.path.expanduser("~/.pykoii/node"))


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
    run.add_argument("--port", type=int, default=30017)
    run.add_argument("--public-url", default="", help="URL registered with stakes (default http://HOST:PORT)")
    run.add_argument("--poll", type=float, default=0.25, help="seconds between looks at the ledger")
    run.add_argument("--phase-timeout", type=float, default=60.0, help="seconds a task phase may run")
    run.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    run.add_argument("--task-memory-mb", type=int, default=1024, help="address-space limit of a task child")
    run.add_argument("--task-cpu-seconds", type=int, default=3600, help="CPU-time limit of a task child")
    run.add_argument(
        "--isolation",
        choices=["auto", "strict", "off"],
        default="auto",
        help="task sandbox: auto (namespaces when root), strict (refuse without), off",
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
    parser.add_argument("--node", default="http://127.0.0.1:30017", help="the node's URL")


def run_node(args: argparse.Namespace) -> int:
    from ..node.runtime import Node, NodeConfig
    from ..node.sandbox import SandboxLimits

    limits = SandboxLimits(
        memory_bytes=args.task_memory_mb * 1024 * 1024,
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
        public_url=args.public_url,
        poll_interval=args.poll,
        limits=limits,
    )
    node = Node(config)
    print(f"node {node.wallet.public_key} (staking key {node.staking.public_key})")
    print(
        f"serving http://{args.host}:{args.port}/ · ledger {args.ledger} · data {node.data_dir}", flush=True
    )
    try:
        asyncio.run(node.run())
    except KeyboardInterrupt:
        pass
    return 0


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx

    token_path = Path(args.data) / "control.token"
    try:
        token = token_path.read_text().strip()
    except OSError:
        raise ConfigError(
            f"no control token at {token_path}; pass the node's --data folder", path=str(token_path)
        ) from None
    try:
        response = httpx.request(
            method,
            args.node.rstrip("/") + path,
            json=body,
            timeout=120.0,
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        raise PykoiiError(
            f"node {args.node} cannot be reached: {exc}; is `pykoii node run` running?"
        ) from None
    data = response.json()
    if response.status_code >= 400:
        raise PykoiiError(f"node refused: {data.get('error', response.status_code)}: {data.get('message')}")
    return data


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
    return 0


def control_task(args: argparse.Namespace) -> int:
    if args.verb == "remove-task":
        info = _request(args, "DELETE", f"/tasks/{args.task_id}")
    else:
        info = _request(args, "POST", f"/tasks/{args.task_id}/{args.verb.split('-')[0]}")
    print(f"task {args.task_id}: {info.get('status')}")
    if info.get("message"):
        print(info["message"])
    return 0


def show_status(args: argparse.Namespace) -> int:
    import httpx

    status = httpx.get(args.node.rstrip("/") + "/", timeout=10).json()
    tasks = httpx.get(args.node.rstrip("/") + "/tasks", timeout=10).json()
    print(json.dumps({"node": status, "tasks": tasks}, indent=2))
    return 0
