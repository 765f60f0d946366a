"""``pykoii validator run``: one validator = the application, its engine, and the HTTP API.

One process (asyncio, uvloop) serves the ABCI socket and the ledger's HTTP API (``create_app`` over
the ``ChainStore``: every route of docs/service.md) and supervises ``cometbft node`` as a child. The
two live and die together, as CometBFT requires:

- the engine exits (killed, crashed): the application reports it and exits with status 1;
- the engine's consensus halts (``CONSENSUS FAILURE``, e.g. the network committed a block whose
  header carries another app hash than this validator computed): the application reports the
  height at which its state diverged and exits with status 1, acknowledging nothing;
- the application dies: the engine loses its ABCI connection and exits on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .abci import serve
from .app import ChainApp
from .engine import ValidatorInfo, cometbft_binary, read_genesis
from .store import ChainStore, open_chain_store

DIVERGE_VARIABLE = "PYKOII_TEST_DIVERGE_AT"
"""Test-only: a height at which this validator corrupts its own state (fault tests)."""


def say(text: str) -> None:
    print(f"pykoii validator: {text}", file=sys.stderr, flush=True)


async def run_validator(
    home: Path, *, host: str, workers: int, ack_timeout: float, retain_blocks: int
) -> int:
    info = ValidatorInfo.load(home / "validator.json")
    _, genesis = read_genesis(home)
    store = open_chain_store(
        home / "ledger",
        genesis=genesis,
        rpc_url=f"http://127.0.0.1:{info.rpc_port}",
        workers=workers,
        ack_timeout=ack_timeout,
        retain_blocks=retain_blocks,
        diverge_at=int(os.environ.get(DIVERGE_VARIABLE, "0") or 0),
    )
    await store.start()
    app = ChainApp(store)
    server = await serve(app, f"unix://{(home / 'app.sock').resolve()}")
    log_file = open(home / "engine.log", "ab")
    engine = await asyncio.create_subprocess_exec(
        cometbft_binary(),
        "node",
        "--home",
        str(home / "engine"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    say(
        f"{info.name}: height {store.height}, seq {store.seq}; HTTP API http://{host}:{info.http_port}, "
        f"engine RPC http://127.0.0.1:{info.rpc_port}, p2p {info.p2p}"
    )
    import uvicorn

    from ..service.server import server_options

    http = uvicorn.Server(uvicorn.Config(_app(store), **server_options(host=host, port=info.http_port)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = {
        "engine": loop.create_task(_watch_engine(engine, log_file, store)),
        "http": loop.create_task(http.serve()),
        "signal": loop.create_task(stop.wait()),
    }
    done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    status = 0 if tasks["signal"] in done else 1
    if tasks["engine"] in done and store.halted:
        say(store.halted)
    http.should_exit = True
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(tasks["http"]), 10)
    if engine.returncode is None:
        engine.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.wait(), 10)
        if engine.returncode is None:
            engine.kill()
    for task in tasks.values():
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    server.close()
    async with app.consensus:  # a FinalizeBlock or Commit under way finishes first
        app.closed = True
        await store.close()
    log_file.close()
    return status


def _app(store: ChainStore) -> Any:
    from ..service import create_app

    return create_app(store, close_store=False)  # closed by run_validator, after the engine


async def _watch_engine(engine: asyncio.subprocess.Process, log_file: Any, store: ChainStore) -> None:
    """Copy the engine's output to engine.log; stop on its exit or a consensus failure."""
    assert engine.stdout is not None
    while True:
        line = await engine.stdout.readline()
        if not line:
            break
        log_file.write(line)
        log_file.flush()
        if b"CONSENSUS FAILURE" in line:
            text = line.decode(errors="replace")
            store.mark_halted(
                f"HALTED: the network committed block {store.height + 1}, whose header does not carry "
                f"the app hash {store.app_hash} this validator computed at height {store.height}: its "
                f"state diverged from the network's at height {store.height}; it acknowledges nothing "
                f"more. Restore its folder from a healthy validator. Engine: {text.strip()[:400]}"
            )
            return
    code = await engine.wait()
    store.mark_halted(
        f"the engine exited with status {code} at height {store.height}; its log is {log_file.name}"
    )


def main_run(home: Path, *, host: str, workers: int, ack_timeout: float, retain_blocks: int) -> int:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    return int(
        runner(
            run_validator(
                home, host=host, workers=workers, ack_timeout=ack_timeout, retain_blocks=retain_blocks
            )
        )
    )
