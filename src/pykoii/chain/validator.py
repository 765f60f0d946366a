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


async def run_validator(home: Path, *, host: str, peer_apis: list[str], **options: Any) -> int:
    """Run the validator in ``home`` until SIGTERM/SIGINT or its engine stops; ``peer_apis`` are the
    other validators' HTTP APIs (asked for blobs this one does not hold); ``options`` go to
    ``open_chain_store``."""
    info = ValidatorInfo.load(home / "validator.json")
    _, genesis = read_genesis(home)
    store = open_chain_store(
        home / "ledger",
        genesis=genesis,
        rpc_url=f"http://127.0.0.1:{info.rpc_port}",
        diverge_at=int(os.environ.get(DIVERGE_VARIABLE, "0") or 0),
        **options,
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
        f"{info.name}: height {store.height}, seq {store.seq} ({_restored(store)}); "
        f"HTTP API http://{host}:{info.http_port}, "
        f"engine RPC http://127.0.0.1:{info.rpc_port}, p2p {info.p2p}; blobs it does not hold are "
        f"fetched from {', '.join(peer_apis) or 'no other validator (no --peer-apis)'}"
    )
    import uvicorn

    from ..service.server import server_options

    app_http = _app(store, peer_apis)
    http = uvicorn.Server(uvicorn.Config(app_http, **server_options(host=host, port=info.http_port)))
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


def _restored(store: ChainStore) -> str:
    """How start-up rebuilt the state: from which checkpoint, how many entries replayed."""
    start = store.seq - store.stats.replayed
    where = f"from the checkpoint at seq {start}" if start else "from genesis"
    return f"state {where}, {store.stats.replayed} log entries replayed"


def _app(store: ChainStore, peer_apis: list[str]) -> Any:
    from ..service import create_app
    from ..service.follow import blob_source

    # Blobs this validator does not hold: from the other validators, asked with ``local=true``
    # (a validator asked by a peer answers from its own disk only, so no request goes round in circles).
    source = blob_source(peer_apis, local=True) if peer_apis else None
    return create_app(store, close_store=False, blob_source=source)  # closed by run_validator


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


def main_run(home: Path, *, host: str, peer_apis: list[str], **options: Any) -> int:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    return int(runner(run_validator(home, host=host, peer_apis=peer_apis, **options)))
