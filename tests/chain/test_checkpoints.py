"""Checkpoints on a validator, driven over the ABCI socket as the engine drives it (no engine needed):
a restart from a checkpoint reaches the app hash a whole-log replay reaches, an edited checkpoint is
refused naming what does not match, and a process killed between FinalizeBlock and Commit recovers
from its newest checkpoint plus the log."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykoii.chain.store import open_chain_store
from pykoii.errors import LogCorruptionError
from pykoii.keys import Keypair
from pykoii.ledger import LedgerState, from_plain, state_root

from .test_abci import GENESIS, AbciClient, Node, at, envelope

ALICE, BOB = Keypair.from_seed(bytes([1]) * 32), Keypair.from_seed(bytes([2]) * 32)


def blocks() -> list[list[bytes]]:
    """Four blocks: every one but the third holds a transaction (3 log entries in all)."""
    return [
        [envelope(ALICE, "airdrop", to=ALICE.public_key, amount=50)],
        [envelope(ALICE, "transfer", 1, to=BOB.public_key, amount=5)],
        [],
        [envelope(BOB, "airdrop", 3, to=BOB.public_key, amount=3)],
    ]


def fifth() -> bytes:
    return envelope(BOB, "transfer", 4, to=ALICE.public_key, amount=1)


def checkpoints(folder: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(folder / "ledger" / "ledger.sqlite3")
    try:
        return [(int(seq), str(root)) for seq, root in db.execute("SELECT seq, state_root FROM checkpoints")]
    finally:
        db.close()


async def run_blocks(folder: Path, **options: Any) -> bytes:
    async with Node(folder, **options) as node:
        await node.consensus.call("init_chain", chain_id="t", app_state_bytes=GENESIS.to_bytes())
        for height, txs in enumerate(blocks(), 1):
            await node.block(height, txs)
        return bytes((await node.consensus.call("info")).last_block_app_hash)


def test_restart_from_a_checkpoint_reaches_the_same_app_hash(tmp_path: Path) -> None:
    asyncio.run(restart_from_a_checkpoint(tmp_path))


async def restart_from_a_checkpoint(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    app_hash = await run_blocks(first, checkpoint_every=1)
    # One after each block with entries, the last at block 4 (seq 3); only the newest two are kept.
    kept = checkpoints(first)
    assert len(kept) == 2 and kept[-1] == (3, app_hash.hex())
    shutil.copytree(first / "ledger", second / "ledger")
    results = []
    for folder, options in ((first, {}), (second, {"replay_log": True})):
        async with Node(folder, **options) as node:
            info = await node.consensus.call("info")
            assert (info.last_block_height, info.last_block_app_hash) == (4, app_hash)
            # From the checkpoint, nothing replayed; or (--replay-log) the whole log, checkpoints dropped.
            assert (node.store.seq, node.store.stats.replayed) == (3, 0 if folder == first else 3)
            results.append(await node.block(5, [fifth()]))
    with_checkpoint, replayed = results
    assert with_checkpoint.tx_results[0].code == 0
    assert with_checkpoint.app_hash == replayed.app_hash
    assert with_checkpoint.tx_results[0].data == replayed.tx_results[0].data


def edit_checkpoint(folder: Path, change: Any) -> None:
    db = sqlite3.connect(folder / "ledger" / "ledger.sqlite3")
    seq, entry_hash, root, state = db.execute(
        "SELECT seq, entry_hash, state_root, state FROM checkpoints ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    row = change({"entry_hash": entry_hash, "state_root": root, "state": orjson.loads(state)})
    db.execute(
        "UPDATE checkpoints SET entry_hash = ?, state_root = ?, state = ? WHERE seq = ?",
        (row["entry_hash"], row["state_root"], orjson.dumps(row["state"]), seq),
    )
    db.commit()
    db.close()


def richer(row: dict[str, Any]) -> dict[str, Any]:
    row["state"]["balances"][ALICE.public_key] += 1000
    row["state"]["total_supply"] += 1000
    return row


def richer_with_its_root(row: dict[str, Any]) -> dict[str, Any]:
    row = richer(row)
    row["state_root"] = state_root(from_plain(LedgerState, row["state"]))
    return row


def test_an_edited_checkpoint_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    app_hash = asyncio.run(run_blocks(pristine, checkpoint_every=0)).hex()  # the shutdown checkpoint

    def opened(folder: Path, **options: Any) -> Any:
        return open_chain_store(
            folder / "ledger", genesis=GENESIS, rpc_url="http://127.0.0.1:1", workers=0, **options
        )

    edits = [
        (richer, f"holds a state whose root is [0-9a-f]{{64}}, not the app hash {app_hash} of block 4"),
        (
            richer_with_its_root,
            f"records state root [0-9a-f]{{64}}, but block 4 was committed with app hash {app_hash}",
        ),
        (lambda row: {**row, "entry_hash": "0" * 64}, "records entry hash 0{64}, but log entry 3 has"),
    ]
    for index, (change, message) in enumerate(edits):
        folder = tmp_path / f"edited-{index}"
        shutil.copytree(pristine / "ledger", folder / "ledger")
        edit_checkpoint(folder, change)
        with pytest.raises(LogCorruptionError, match=message) as refused:
            opened(folder)
        assert "the checkpoint at seq 3" in refused.value.message and "--replay-log" in refused.value.message
    # --replay-log drops the edited checkpoint and rebuilds the state from the log.
    store = opened(folder, replay_log=True)
    assert store.stats.replayed == 3 and store.root() == app_hash and store.app_hash == app_hash
    asyncio.run(store.close())
    assert checkpoints(folder) == [(3, app_hash)]  # a good one again, written at shutdown


CHILD = """
import asyncio, sys
from pykoii.chain.abci import serve
from pykoii.chain.app import ChainApp
from pykoii.chain.store import open_chain_store
from pykoii.service.records import Genesis

async def main():
    store = open_chain_store(sys.argv[1], genesis=Genesis.from_bytes(bytes.fromhex(sys.argv[2])),
                             rpc_url="http://127.0.0.1:1", workers=0, checkpoint_every=1)
    await store.start()
    await serve(ChainApp(store), "unix://" + sys.argv[3])
    print(store.seq, store.stats.replayed, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Child:
    """The application in a process of its own, on ``folder``, killed with SIGKILL (no shutdown)."""

    def __init__(self, folder: Path) -> None:
        self.socket = folder / "app.sock"
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder / "ledger"), GENESIS.to_bytes().hex(), str(self.socket)],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        seq, replayed = self.process.stdout.readline().split()
        self.seq, self.replayed = int(seq), int(replayed)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


def test_a_crash_between_finalize_block_and_commit_recovers_from_the_checkpoint(tmp_path: Path) -> None:
    asyncio.run(crash_between_finalize_block_and_commit(tmp_path))


async def crash_between_finalize_block_and_commit(tmp_path: Path) -> None:
    child = Child(tmp_path)
    try:
        engine = await AbciClient.connect(child.socket)
        await engine.call("init_chain", chain_id="t", app_state_bytes=GENESIS.to_bytes())
        for height, txs in enumerate(blocks(), 1):
            await engine.call("finalize_block", txs=txs, height=height, time=at(height))
            await engine.call("commit")
        committed = (await engine.call("info")).last_block_app_hash
        finalized = await engine.call(
            "finalize_block", txs=[fifth()], height=5, time=at(5)
        )  # no Commit: killed
        for _ in range(100):  # the background checkpoint of block 4 is on disk (or of an earlier block)
            if checkpoints(tmp_path) and checkpoints(tmp_path)[-1][0] == 3:
                break
            await asyncio.sleep(0.05)
        engine.close()
    finally:
        child.kill()
    written = checkpoints(tmp_path)
    assert written and all(root for _, root in written)
    child = Child(tmp_path)
    try:
        assert child.seq == 3 and child.replayed == 3 - written[-1][0] < 3  # from a checkpoint
        engine = await AbciClient.connect(child.socket)
        info = await engine.call("info")
        assert (info.last_block_height, info.last_block_app_hash) == (4, committed)
        again = await engine.call(
            "finalize_block", txs=[fifth()], height=5, time=at(5)
        )  # the engine sends it again
        assert again.app_hash == finalized.app_hash and again.tx_results[0].code == 0
        await engine.call("commit")
        engine.close()
    finally:
        child.kill()
