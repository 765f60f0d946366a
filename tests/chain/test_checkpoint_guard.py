"""A validator's checkpoint is written only when the bytes it encoded hash to the block's app hash."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pykoii.ledger import Roe

from .test_abci import GENESIS, Node, at, envelope
from .test_checkpoints import ALICE, BOB, checkpoints


async def moved_between_finalize_and_commit(folder: Path) -> tuple[bytes, bytes]:
    async with Node(folder, checkpoint_every=1) as node:
        await node.consensus.call("init_chain", chain_id="t", app_state_bytes=GENESIS.to_bytes())
        first = await node.block(1, [envelope(ALICE, "airdrop", to=ALICE.public_key, amount=50)])
        await node.store._checkpointing  # noqa: SLF001 (the background checkpoint of block 1)
        second = await node.consensus.call(
            "finalize_block",
            txs=[envelope(BOB, "airdrop", 1, to=BOB.public_key, amount=3)],
            height=2,
            time=at(2),
        )
        node.store.state.total_supply = Roe(node.store.state.total_supply + 1)  # not the block's state
        await node.consensus.call("commit")
        await node.store._checkpointing  # noqa: SLF001
        node.store.state.total_supply = Roe(node.store.state.total_supply - 1)
    return bytes(first.app_hash), bytes(second.app_hash)


def test_a_state_that_moved_after_finalize_block_is_not_stored_as_the_blocks_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pykoii.chain.checkpoints"):
        first, second = asyncio.run(moved_between_finalize_and_commit(tmp_path))
    assert "not the block's app hash" in caplog.text
    assert checkpoints(tmp_path)[-1] == (1, first.hex())  # block 2's was not written

    async def restart() -> bytes:
        async with Node(tmp_path) as node:
            assert node.store.stats.replayed == 1  # from block 1's checkpoint, entry 2 replayed
            return bytes((await node.consensus.call("info")).last_block_app_hash)

    assert asyncio.run(restart()) == second
