"""The lean ``POST /tx`` path of the HTTP server (``server.GuardedProtocol``), over raw sockets to a
real `pykoii ledger serve`: same answers as the ASGI route, one whole answer per request, keep-alive,
HTTP/1.0, pipelining, bodies over the limit (declared and chunked), ``Expect: 100-continue``."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from pykoii.keys import Keypair, verify_envelope
from pykoii.service.ingest import MAX_TX_BODY

from .conftest import KOII, start_server, stop


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("lean")
    server = start_server(
        "serve", "--data", str(folder / "ledger"), "--devnet", "--workers", "1", log=folder / "log"
    )
    try:
        yield server.url
    finally:
        stop(server)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(body: bytes, *, version: str = "1.1", extra: str = "") -> bytes:
    head = f"POST /tx HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_answer(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One answer (status, headers, body) read by ``Content-Length``; what follows stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {bytes(buffer)!r}"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    size = end + 4 + int(headers["content-length"])
    while len(buffer) < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside an answer"
        buffer += chunk
    body = bytes(buffer[end + 4 : size])
    del buffer[:size]
    return status, headers, body


def signed(url: str, keys: Keypair, amount: int) -> dict[str, object]:
    slot = httpx.get(url + "/slot").json()["slot"]
    return keys.sign_transaction(
        {"type": "airdrop", "to": keys.public_key, "amount": amount, "recent_slot": slot}
    )


def test_one_envelope_and_a_batch_on_one_keep_alive_connection(url: str) -> None:
    alice = Keypair.generate()
    with connect(url) as sock:
        buffer = bytearray()
        sock.sendall(request(orjson.dumps(signed(url, alice, KOII))))
        status, headers, body = read_answer(sock, buffer)
        assert status == 200 and headers["content-type"] == "application/json"
        receipt = orjson.loads(body)
        assert receipt["seq"] >= 1 and httpx.get(f"{url}/tx/{receipt['tx_id']}").json() == receipt
        batch = [signed(url, Keypair.generate(), KOII), {"tx": {}, "signature": "x"}]
        sock.sendall(request(orjson.dumps(batch)))  # the same connection: kept alive
        status, _, body = read_answer(sock, buffer)
        answers = orjson.loads(body)
        assert status == 200 and "seq" in answers[0] and answers[1]["error"] == "MalformedTransactionError"
    assert httpx.get(f"{url}/accounts/{alice.public_key}").json()["balance"] == KOII


def test_errors_are_the_routes_json_errors(url: str) -> None:
    with connect(url) as sock:
        buffer = bytearray()
        sock.sendall(request(b"{not json"))
        status, _, body = read_answer(sock, buffer)
        assert status == 400 and orjson.loads(body)["error"] == "MalformedTransactionError"
        sock.sendall(request(b"[]"))
        status, _, body = read_answer(sock, buffer)
        assert status == 400 and "list of 1 to" in orjson.loads(body)["message"]
        alice = Keypair.generate()
        envelope = signed(url, alice, KOII)
        envelope["signature"] = signed(url, alice, 2 * KOII)["signature"]  # another tx's
        sock.sendall(request(orjson.dumps(envelope)))
        status, _, body = read_answer(sock, buffer)
        assert status == 400 and orjson.loads(body)["error"] == "InvalidSignatureError"
    # the same answers as through an ordinary HTTP client
    assert httpx.post(url + "/tx", content=b"{not json").json()["error"] == "MalformedTransactionError"


def test_pipelined_requests_are_answered_in_order(url: str) -> None:
    envelopes = [signed(url, Keypair.generate(), KOII + i) for i in range(3)]
    with connect(url) as sock:
        buffer = bytearray()
        pipelined = b"".join(request(orjson.dumps(envelope)) for envelope in envelopes)
        sock.sendall(pipelined + b"GET /slot HTTP/1.1\r\nHost: x\r\n\r\n")
        tx_ids = [orjson.loads(read_answer(sock, buffer)[2])["tx_id"] for _ in envelopes]
        assert tx_ids == [verify_envelope(envelope).tx_id for envelope in envelopes]
        status, _, body = read_answer(sock, buffer)
        assert status == 200 and "slot" in orjson.loads(body)


def test_http_1_0_gets_its_answer_and_the_connection_closes(url: str) -> None:
    with connect(url) as sock:
        buffer = bytearray()
        sock.sendall(request(b"{}", version="1.0"))
        status, headers, body = read_answer(sock, buffer)
        assert status == 400 and headers["connection"] == "close"
        assert sock.recv(100) == b""


def test_bodies_over_the_limit_are_refused_413(url: str) -> None:
    with connect(url) as sock:
        buffer = bytearray()
        head = b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_TX_BODY + 1)
        sock.sendall(head)  # refused on the declared length, before any of the body is sent
        status, _, body = read_answer(sock, buffer)
        assert status == 413 and orjson.loads(body)["error"] == "PayloadTooLargeError"
    with connect(url) as sock:
        buffer = bytearray()
        sock.sendall(b"POST /tx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        for _ in range(MAX_TX_BODY // len(chunk) + 1):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        status, _, body = read_answer(sock, buffer)
        assert status == 413 and re.search("over the limit of", orjson.loads(body)["message"])


def test_expect_100_continue(url: str) -> None:
    with connect(url) as sock:
        body = orjson.dumps(signed(url, Keypair.generate(), KOII))
        head = request(body, extra="Expect: 100-continue\r\n")
        sock.sendall(head[: -len(body)])
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        status, _, answer = read_answer(sock, bytearray())
        assert status == 200 and orjson.loads(answer)["tx_id"] == verify_envelope(orjson.loads(body)).tx_id


def test_the_header_timeout_runs_from_each_answer(tmp_path: Path) -> None:
    """One lazily moved timer per connection: a connection that keeps sending requests stays open
    past the header timeout; one that stops inside a request's headers is closed."""
    server = start_server(
        "serve", "--data", str(tmp_path / "ledger"), "--devnet", "--workers", "0",
        "--header-timeout", "2", "--idle-timeout", "60", log=tmp_path / "log",
    )  # fmt: skip
    try:
        url = server.url
        with connect(url) as busy:
            buffer = bytearray()
            for _ in range(12):  # about 3.6 s in all, more than the 2 s timeout
                busy.sendall(request(b"{}"))
                assert read_answer(busy, buffer)[0] == 400
                time.sleep(0.3)
            with connect(url) as stalled:
                stalled.sendall(request(b"{}"))
                assert read_answer(stalled, bytearray())[0] == 400
                stalled.sendall(b"POST /tx HTTP/1.1\r\nHost: x\r\n")  # headers never finished
                assert stalled.recv(100) == b""  # closed by the server (the socket waits up to 30 s)
    finally:
        stop(server)
