"""Checkpoints and ``durable_root`` taken while writes go on hold exactly the state after their seq."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from pykoii.clock import ManualClock
from pykoii.keys import Keypair
from pykoii.ledger import (
    LedgerParams,
    LedgerState,
    apply_transaction,
    decode_transaction,
    from_plain,
    state_root,
)
from pykoii.service.log import KEPT_CHECKPOINT_STATES
from pykoii.service.store import LedgerStore

from .conftest import KOII, make_store

KEYS = [Keypair.from_seed(bytes([i + 1]) * 32) for i in range(6)]


async def busy(store: LedgerStore, roots: list[dict[str, Any]]) -> None:
    """Six writers sending transfers concurrently (so passes hold several and checkpoints fall
    between them) and a reader asking for the durable root meanwhile."""
    await store.start()
    await asyncio.gather(
        *(
            store.submit(
                key.sign_transaction(
                    {"type": "airdrop", "to": key.public_key, "amount": 10 * KOII, "recent_slot": 0}
                )
            )
            for key in KEYS
        )
    )

    async def writer(index: int) -> None:
        for count in range(15):
            to = KEYS[(index + 1) % len(KEYS)].public_key
            body = {"type": "transfer", "to": to, "amount": 100 * count + index + 1, "recent_slot": 0}
            await store.submit(KEYS[index].sign_transaction(body))

    async def reader() -> None:
        for _ in range(25):
            roots.append(await store.durable_root())
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(index) for index in range(len(KEYS))), reader())
    await store.close()


def roots_by_seq(folder: Path, seqs: set[int]) -> dict[int, str]:
    """The state root after each of ``seqs``, applying the log's transactions from genesis here."""
    state = LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0))
    db = sqlite3.connect(folder / "ledger.sqlite3")
    roots = {}
    try:
        for seq, slot, tx, signature in db.execute("SELECT seq, slot, tx, signature FROM log ORDER BY seq"):
            if signature:  # a checkpoint mark changes no state
                apply_transaction(state, decode_transaction(orjson.loads(tx)), slot)
            if seq in seqs:
                roots[seq] = state_root(state)
    finally:
        db.close()
    return roots


def test_checkpoints_and_durable_roots_taken_while_writes_go_on_hold_their_seqs_state(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    store = make_store(tmp_path, clock, checkpoint_every=7)
    served: list[dict[str, Any]] = []
    asyncio.run(busy(store, served))
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    rows = db.execute("SELECT seq, state_root, state FROM checkpoints ORDER BY seq").fetchall()
    db.close()
    assert len(rows) >= 2  # periodic ones (how many depends on how passes group) and the final one
    # Only the newest keep their state (service/log.py KEPT_CHECKPOINT_STATES); older rows keep their root.
    assert [seq for seq, _, data in rows if data] == [seq for seq, _, _ in rows[-KEPT_CHECKPOINT_STATES:]]
    for _, root, data in rows[-KEPT_CHECKPOINT_STATES:]:
        # The bytes stored are the state's canonical bytes, hashing to the root recorded and marked.
        assert hashlib.sha256(data).hexdigest() == root
        assert state_root(from_plain(LedgerState, orjson.loads(data))) == root
    expected = roots_by_seq(tmp_path, {seq for seq, _, _ in rows} | {r["state_root_seq"] for r in served})
    assert {seq: root for seq, root, _ in rows} == {seq: expected[seq] for seq, _, _ in rows}
    assert len({r["state_root_seq"] for r in served}) > 1  # the reader saw the state move
    for answer in served:
        assert answer["state_root"] == expected[answer["state_root_seq"]]
    # Start-up from the newest checkpoint, and a replay from genesis that checks every
    # checkpoint root on the way (`ledger verify`), reach the state the writers left.
    for options in ({}, {"use_checkpoint": False}):
        again = make_store(tmp_path, clock, **options)
        assert (again.root(), again.seq) == (store.root(), store.seq)
        again.backend.close()
