"""The ABCI application over a real unix socket, driven the way CometBFT drives it (no engine needed):
uvarint-framed protobuf requests, FIFO answers, Flush; CheckTx, proposals, FinalizeBlock, Commit,
Info, Query, crash recovery, and hostile bytes."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from pykoii import errors
from pykoii.chain.abci import encode_uvarint, pb, serve, split_frames
from pykoii.chain.app import ChainApp
from pykoii.chain.store import MAX_TX_BYTES, error_code, open_chain_store
from pykoii.errors import InvalidSignatureError, MalformedTransactionError
from pykoii.keys import Keypair
from pykoii.ledger import LedgerParams, state_root
from pykoii.service.records import Genesis

GENESIS = Genesis(params=LedgerParams(devnet=True), slot_ms=400, anchor_ms=1_700_000_000_000)


def at(slot: float) -> Any:
    """The BFT time (a ``Timestamp``) ``slot`` slots after the genesis anchor: a block at ``at(n)``
    is in slot ``int(n)``."""
    ms = GENESIS.anchor_ms + round(slot * GENESIS.slot_ms)
    return pb.Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


class AbciClient:
    """One connection of the engine: send requests, read answers in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, path: Path) -> AbciClient:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    def send(self, kind: str, **fields: Any) -> None:
        request = pb.Request()
        getattr(request, kind).CopyFrom(getattr(pb, "Request" + _camel(kind))(**fields))
        data = request.SerializeToString()
        self.writer.write(encode_uvarint(len(data)) + data)

    async def read(self) -> tuple[str, Any]:
        while True:
            frames, _ = split_frames(self.buffer)
            if frames:
                first = frames[0]
                del self.buffer[: len(encode_uvarint(len(first))) + len(first)]
                response = pb.Response()
                response.ParseFromString(first)
                kind = response.WhichOneof("value")
                return kind, getattr(response, kind)
            data = await asyncio.wait_for(self.reader.read(1 << 16), 30)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data

    async def call(self, kind: str, **fields: Any) -> Any:
        self.send(kind, **fields)
        self.send("flush")
        got, answer = await self.read()
        assert got == kind, (got, answer)
        assert (await self.read())[0] == "flush"
        return answer

    def close(self) -> None:
        self.writer.close()


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


class Node:
    def __init__(self, folder: Path, **options: Any) -> None:
        self.folder = folder
        self.socket = folder / "app.sock"
        self.options = options

    async def __aenter__(self) -> Node:
        self.store = open_chain_store(
            self.folder / "ledger", genesis=GENESIS, rpc_url="http://127.0.0.1:1", workers=1, **self.options
        )
        await self.store.start()
        self.server = await serve(ChainApp(self.store), f"unix://{self.socket}")
        self.consensus = await AbciClient.connect(self.socket)
        self.mempool = await AbciClient.connect(self.socket)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.consensus.close()
        self.mempool.close()
        self.server.close()
        await self.store.close()

    async def block(self, height: int, txs: list[bytes], slot: float | None = None) -> Any:
        """Finalize and commit block ``height`` at ``at(slot)`` (default: slot = height)."""
        time = at(height if slot is None else slot)
        result = await self.consensus.call("finalize_block", txs=txs, height=height, time=time)
        await self.consensus.call("commit")
        return result


def with_node(test: Callable[[Node], Awaitable[None]]) -> Callable[[Path], None]:
    """Run an async test against a fresh application on its own folder and socket."""

    @functools.wraps(test)
    def run(tmp_path: Path) -> None:
        async def body() -> None:
            async with Node(tmp_path) as node:
                await test(node)

        asyncio.run(body())

    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("tmp_path", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    return run


def envelope(key: Keypair, kind: str, slot: int = 0, **fields: Any) -> bytes:
    return orjson.dumps(key.sign_transaction({"type": kind, "recent_slot": slot, **fields}))


def bad_signature(tx: bytes) -> bytes:
    data = orjson.loads(tx)
    data["signature"] = Keypair.generate().sign_transaction(data["tx"])["signature"]
    return orjson.dumps(data)


@with_node
async def test_info_init_chain_and_a_block_give_the_state_root(node: Node) -> None:
    info = await node.consensus.call("info", abci_version="2.0.0")
    assert info.last_block_height == 0 and info.last_block_app_hash == b""
    init = await node.consensus.call(
        "init_chain", chain_id="test", app_state_bytes=GENESIS.to_bytes(), initial_height=1
    )
    assert init.app_hash.hex() == state_root(node.store.state)
    alice, bob = Keypair.generate(), Keypair.generate()
    airdrop = envelope(alice, "airdrop", to=alice.public_key, amount=50)
    overdraw = envelope(bob, "transfer", to=alice.public_key, amount=10)
    result = await node.block(1, [airdrop, overdraw])
    ok, refused = result.tx_results
    assert ok.code == 0 and orjson.loads(ok.data)["seq"] == 1
    assert {e.type for e in ok.events} == {"pykoii.tx", "Airdropped"}
    assert all(a.index for e in ok.events for a in e.attributes)
    assert refused.code == error_code(errors.InsufficientFundsError("x"))
    assert refused.codespace == "InsufficientFundsError" and "holds" in refused.log
    assert result.app_hash.hex() == state_root(node.store.state)
    info = await node.consensus.call("info")
    assert info.last_block_height == 1 and info.last_block_app_hash == result.app_hash
    query = await node.consensus.call("query", path=f"/accounts/{alice.public_key}")
    assert query.code == 0 and orjson.loads(query.value)["balance"] == 50
    missing = await node.consensus.call("query", path="/tx/" + "0" * 64)
    assert missing.code != 0 and missing.codespace == "NotFoundError"


@with_node
async def test_check_tx_refuses_with_a_code_never_an_exception(node: Node) -> None:
    alice = Keypair.generate()
    good = envelope(alice, "airdrop", to=alice.public_key, amount=5)
    cases = {
        good: (0, ""),
        bad_signature(good): (error_code(InvalidSignatureError("x")), "InvalidSignatureError"),
        os.urandom(300): (error_code(MalformedTransactionError("x")), "MalformedTransactionError"),
        b"[1,2,3]": (error_code(MalformedTransactionError("x")), "MalformedTransactionError"),
        b"x" * (MAX_TX_BYTES + 1): (None, "PayloadTooLargeError"),
        envelope(alice, "airdrop", slot=10_000, to=alice.public_key, amount=5): (
            None,
            "StaleTransactionError",
        ),
    }
    # All sent before any answer is read: answers come back in request order (FIFO), then Flush.
    for tx in cases:
        node.mempool.send("check_tx", tx=tx, type=pb.NEW)
    node.mempool.send("flush")
    for code, codespace in cases.values():
        kind, answer = await node.mempool.read()
        assert kind == "check_tx"
        assert answer.codespace == codespace, answer
        assert (answer.code == 0) == (codespace == "")
        if code is not None:
            assert answer.code == code
    assert (await node.mempool.read())[0] == "flush"
    recheck = await node.mempool.call("check_tx", tx=good, type=pb.RECHECK)
    assert recheck.code == 0


@with_node
async def test_pipelined_check_txs_are_verified_in_shared_batches(node: Node) -> None:
    # The engine writes many CheckTx before one Flush; they must wait for the signature workers
    # together, not one worker round trip each (answers still in request order).
    keys = [Keypair.generate() for _ in range(40)]
    txs = [envelope(k, "airdrop", to=k.public_key, amount=i + 1) for i, k in enumerate(keys)]
    txs[7] = bad_signature(txs[7])
    before = node.store.verifier.batches
    for tx in txs:
        node.mempool.send("check_tx", tx=tx, type=pb.NEW)
    node.mempool.send("flush")
    for index in range(len(txs)):
        kind, answer = await node.mempool.read()
        assert kind == "check_tx"
        assert (answer.codespace == "InvalidSignatureError") == (index == 7), (index, answer)
    assert (await node.mempool.read())[0] == "flush"
    assert node.store.verifier.batches - before < len(txs) // 4


@with_node
async def test_proposals_reject_a_block_with_a_bad_signature(node: Node) -> None:
    alice = Keypair.generate()
    good = envelope(alice, "airdrop", to=alice.public_key, amount=5)
    forged = bad_signature(envelope(alice, "airdrop", to=alice.public_key, amount=6))
    accepted = await node.consensus.call("process_proposal", txs=[good], height=1)
    assert accepted.status == pb.ResponseProcessProposal.ACCEPT
    rejected = await node.consensus.call("process_proposal", txs=[good, forged], height=1)
    assert rejected.status == pb.ResponseProcessProposal.REJECT
    garbage = await node.consensus.call("process_proposal", txs=[os.urandom(64)], height=1)
    assert garbage.status == pb.ResponseProcessProposal.REJECT
    prepared = await node.consensus.call(
        "prepare_proposal", txs=[forged, good, good], max_tx_bytes=2 * len(good)
    )
    assert list(prepared.txs) == [good, good]


def test_restart_reports_the_committed_height_and_hash(tmp_path: Path) -> None:
    asyncio.run(restart_reports_the_committed_height_and_hash(tmp_path))


async def restart_reports_the_committed_height_and_hash(tmp_path: Path) -> None:
    alice = Keypair.generate()
    async with Node(tmp_path) as node:
        await node.consensus.call("init_chain", chain_id="t", app_state_bytes=GENESIS.to_bytes())
        await node.block(1, [envelope(alice, "airdrop", to=alice.public_key, amount=7)])
        await node.block(2, [])
        after_two = (await node.consensus.call("info")).last_block_app_hash
        # FinalizeBlock of height 3 without its Commit: a crash in between loses nothing committed.
        transfer = envelope(alice, "transfer", 2, to=alice.public_key, amount=1)
        await node.consensus.call("finalize_block", txs=[transfer], height=3, time=at(3))
    async with Node(tmp_path) as node:
        info = await node.consensus.call("info")
        assert info.last_block_height == 2 and info.last_block_app_hash == after_two
        assert node.store.seq == 1
        # The engine replays block 3: the same result as the first time.
        result = await node.block(3, [envelope(alice, "transfer", 2, to=alice.public_key, amount=1)])
        assert result.tx_results[0].code == 0


def test_a_block_is_in_the_slot_of_its_bft_time_not_of_its_height(tmp_path: Path) -> None:
    asyncio.run(a_block_is_in_the_slot_of_its_bft_time(tmp_path))


async def a_block_is_in_the_slot_of_its_bft_time(tmp_path: Path) -> None:
    alice = Keypair.generate()
    async with Node(tmp_path) as node:
        await node.consensus.call("init_chain", chain_id="t", app_state_bytes=GENESIS.to_bytes())
        # Two blocks in slot 0, then one in slot 7 (slots 1 to 6 hold no block), then one whose time
        # would be slot 5: a slot never goes back.
        first = await node.block(1, [envelope(alice, "airdrop", 0, to=alice.public_key, amount=9)], slot=0.2)
        second = await node.block(
            2, [envelope(alice, "transfer", 0, to=alice.public_key, amount=1)], slot=0.9
        )
        assert node.store.slot() == 0
        late = await node.block(3, [envelope(alice, "transfer", 7, to=alice.public_key, amount=2)], slot=7.5)
        assert node.store.slot() == 7
        await node.block(4, [envelope(alice, "transfer", 7, to=alice.public_key, amount=3)], slot=5)
        assert node.store.slot() == 7 and node.store.height == 4
        receipts = [orjson.loads(block.tx_results[0].data) for block in (first, second, late)]
        assert [receipt["slot"] for receipt in receipts] == [0, 0, 7]
        assert [entry.slot for entry in node.store.backend.entries(0, 10)] == [0, 0, 7, 7]
        query = await node.consensus.call("query", path="/tx/" + receipts[1]["tx_id"])
        assert orjson.loads(query.value) | {"height": 0} == receipts[1] | {"height": 0}
        assert orjson.loads(query.value)["height"] == 2
        state = orjson.loads((await node.consensus.call("query", path="/state_root")).value)
        assert (state["height"], state["slot"]) == (4, 7)
        # CheckTx's horizon is the last block's slot: slot 7 is signable, slot 8 is not yet.
        ok = await node.mempool.call(
            "check_tx", tx=envelope(alice, "transfer", 7, to=alice.public_key, amount=4)
        )
        early = await node.mempool.call(
            "check_tx", tx=envelope(alice, "transfer", 8, to=alice.public_key, amount=4)
        )
        assert ok.code == 0 and early.codespace == "StaleTransactionError" and "at slot 7" in early.log
        app_hash = (await node.consensus.call("info")).last_block_app_hash
    async with Node(tmp_path, replay_log=True) as node:  # the whole log replayed: same slot, same root
        assert node.store.slot() == 7 and node.store.height == 4
        assert (await node.consensus.call("info")).last_block_app_hash == app_hash


@with_node
async def test_garbage_on_the_socket_closes_that_connection_only(node: Node) -> None:
    reader, writer = await asyncio.open_unix_connection(str(node.socket))
    writer.write(encode_uvarint(40) + os.urandom(40))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    response = pb.Response()
    response.ParseFromString(data[len(encode_uvarint(len(data) - 1)) :] if data else b"")
    assert response.WhichOneof("value") == "exception"
    assert "invalid ABCI request" in response.exception.error
    writer.close()
    # A length prefix far over the limit: refused at once, not buffered.
    reader, writer = await asyncio.open_unix_connection(str(node.socket))
    writer.write(encode_uvarint(1 << 40))
    await writer.drain()
    assert b"limit" in await asyncio.wait_for(reader.read(), 30)
    writer.close()
    # The engine's connections are untouched.
    echo = await node.consensus.call("echo", message="still here")
    assert echo.message == "still here"
    assert (await node.mempool.call("info")).data == "pykoii"


def test_error_codes_are_distinct_and_non_zero() -> None:
    names = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.PykoiiError)]
    codes = {error_code(getattr(errors, n)("x")) for n in names}
    assert len(codes) == len(names) and 0 not in codes


class _BigAnswers:
    """An application whose ``query`` answer is larger than the socket and the writer's buffers."""

    def query(self, request: Any) -> Any:
        return pb.ResponseQuery(code=0, value=b"x" * (4 << 20))


def test_a_request_that_arrives_while_the_writer_waits_on_a_slow_reader_is_answered(
    tmp_path: Path,
) -> None:
    # The writer sends the ready answers as one write and then waits for the engine to read them
    # (drain). A request that comes in during that wait must be answered once it has, not left
    # queued until some later request wakes the writer.
    async def body() -> None:
        socket = tmp_path / "app.sock"
        server = await serve(_BigAnswers(), f"unix://{socket}")
        client = await AbciClient.connect(socket)
        try:
            client.send("query", path="/big")
            await asyncio.sleep(0.5)  # the 4 MiB answer fills the socket; the writer waits
            client.send("echo", message="after")
            kind, answer = await asyncio.wait_for(client.read(), 20)
            assert kind == "query" and len(answer.value) == 4 << 20
            kind, answer = await asyncio.wait_for(client.read(), 20)
            assert (kind, answer.message) == ("echo", "after")
        finally:
            client.close()
            server.close()

    asyncio.run(body())
