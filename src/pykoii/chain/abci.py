"""An asyncio ABCI 2.0 server over CometBFT's socket protocol (unix socket or TCP).

The engine opens four connections (consensus, mempool, query, snapshot) and sends, on each, requests
framed as an unsigned varint length followed by a protobuf ``Request``; answers must come back in
the order the requests came, each framed the same way. There are no request ids. ``Flush`` asks the
server to push out everything answered so far.

Each connection reads requests as they arrive and hands them to the application at once; an
application method returns its response, or an awaitable of it (a ``CheckTx`` waits for a signature
worker), and a writer task sends the answers strictly in request order. So ``CheckTx`` is pipelined
across worker processes and still answered FIFO.

An application error must never reach the engine as ``Response.exception``: the engine stops on one.
``check_tx`` and ``query`` turn an unexpected exception into a non-zero ``code``; for the consensus
methods an exception is a bug in the state machine and is answered with ``exception``, which halts
this validator's engine (safer than going on from a state nobody can vouch for). A peer that sends
bytes that are not an ABCI request (a wrong length, an undecodable message, an unknown kind) gets
one ``exception`` answer naming the problem and its connection is closed; the engine's own
connections and the application go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.message import DecodeError, Message

from ..errors import InvalidRequestError

pb: Any = importlib.import_module("pykoii.chain.abci_pb2")
"""The generated codec of abci.proto (untyped: protobuf ships no stubs)."""


log = logging.getLogger("pykoii.chain.abci")

MAX_MESSAGE = 64 * 1024 * 1024
"""The largest request accepted, in bytes (a block of the default 21 MB fits)."""

KINDS = (
    "echo",
    "flush",
    "info",
    "init_chain",
    "query",
    "check_tx",
    "commit",
    "list_snapshots",
    "offer_snapshot",
    "load_snapshot_chunk",
    "apply_snapshot_chunk",
    "prepare_proposal",
    "process_proposal",
    "extend_vote",
    "verify_vote_extension",
    "finalize_block",
)
"""The request kinds of ABCI 2.0 (``Request.value``); the response field has the same name."""

SOFT_KINDS = frozenset({"check_tx", "query"})
"""Kinds whose unexpected errors are answered with a non-zero code instead of an exception."""


class Application(Protocol):
    """What the server calls: one method per kind (``echo``, ``flush`` and ``info`` included) taking
    the request's message and returning the response's message (or the whole ``Response`` holding
    it, built in place), or an awaitable of it."""

    def __getattr__(self, name: str) -> Any: ...


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(buffer: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """``(value, position after it)``, or ``None`` if the buffer ends inside the varint."""
    value = shift = 0
    while pos < len(buffer):
        byte = buffer[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise InvalidRequestError("a length prefix longer than 9 bytes")
    return None


def frame(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return encode_uvarint(len(data)) + data


def split_frames(buffer: bytearray) -> tuple[list[bytes], int]:
    """The complete frames at the start of ``buffer`` and how many bytes they took."""
    frames: list[bytes] = []
    pos = 0
    while True:
        parsed = decode_uvarint(buffer, pos)
        if parsed is None:
            return frames, pos
        length, start = parsed
        if length > MAX_MESSAGE:
            raise InvalidRequestError(f"a message of {length} bytes; the limit is {MAX_MESSAGE}")
        if len(buffer) < start + length:
            return frames, pos
        frames.append(bytes(buffer[start : start + length]))
        pos = start + length


def decode_request(data: bytes) -> tuple[str, Message]:
    request = pb.Request()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidRequestError(f"not a protobuf Request ({exc})") from None
    kind = request.WhichOneof("value")
    if kind is None:
        raise InvalidRequestError(f"a Request of {len(data)} bytes with no known kind")
    return kind, getattr(request, kind)


class _Connection:
    def __init__(self, app: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.answers: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    async def run(self) -> None:
        sender = asyncio.get_running_loop().create_task(self._send_answers())
        buffer = bytearray()
        try:
            while True:
                data = await self.reader.read(1 << 20)
                if not data:
                    break
                buffer += data
                frames, used = split_frames(buffer)
                del buffer[:used]
                for payload in frames:
                    kind, message = decode_request(payload)
                    self.answers.put_nowait((kind, self._dispatch(kind, message)))
        except InvalidRequestError as exc:
            log.warning("ABCI connection closed: %s", exc)
            self.answers.put_nowait(("exception", pb.ResponseException(error=f"invalid ABCI request: {exc}")))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.answers.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
            self.writer.close()

    def _dispatch(self, kind: str, message: Message) -> Any:
        try:
            if kind == "flush":
                return pb.ResponseFlush()
            if kind == "echo":
                return pb.ResponseEcho(message=message.message)
            answer = getattr(self.app, kind)(message)
        except Exception as exc:
            return self._failed(kind, exc)
        if asyncio.iscoroutine(answer):
            # Started now, not when the writer reaches it: the CheckTxs of one read then wait for
            # the signature workers together (one batch), instead of one worker round trip each.
            return asyncio.ensure_future(answer)
        return answer

    def _failed(self, kind: str, exc: BaseException) -> Any:
        if str(exc) != "the validator is shutting down":
            log.error("ABCI %s failed", kind, exc_info=exc)
        if kind == "check_tx":
            return pb.ResponseCheckTx(code=1, codespace="InternalError", log=f"{type(exc).__name__}: {exc}")
        if kind == "query":
            return pb.ResponseQuery(code=1, codespace="InternalError", log=f"{type(exc).__name__}: {exc}")
        return pb.ResponseException(error=f"{kind} failed: {type(exc).__name__}: {exc}")

    async def _send_answers(self) -> None:
        while True:
            item = await self.answers.get()
            if item is None:
                return
            kind, answer = item
            if isinstance(answer, Awaitable):
                try:
                    answer = await answer
                except Exception as exc:
                    answer = self._failed(kind, exc)
            if isinstance(answer, pb.ResponseException):
                kind = "exception"
            if isinstance(answer, pb.Response):
                response = answer  # built in place by the application (FinalizeBlock)
            else:
                response = pb.Response()
                getattr(response, kind).CopyFrom(answer)
            self.writer.write(frame(response))
            if kind in ("flush", "exception") or self.answers.empty():
                try:
                    await self.writer.drain()
                except ConnectionError:
                    return
            if kind == "exception":
                self.writer.close()
                return


async def serve(app: Any, address: str) -> asyncio.AbstractServer:
    """Listen on ``unix:///path`` or ``tcp://host:port`` and serve ``app`` on every connection."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(app, reader, writer).run()

    if address.startswith("unix://"):
        path = Path(address.removeprefix("unix://"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return await asyncio.start_unix_server(on_connection, path=str(path), limit=MAX_MESSAGE)
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return await asyncio.start_server(on_connection, host=host, port=int(port), limit=MAX_MESSAGE)
    raise ValueError(f"ABCI address {address!r}: accepted forms are unix:///path and tcp://host:port")
