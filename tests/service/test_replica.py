"""A replica behind a real reverse proxy that starts answering HTML error pages: it keeps retrying,
says so, reports since when it is stalled (503 past the threshold), and catches up once the front
recovers; it serves the primary's blobs."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web

from pykoii.client import LedgerClient
from pykoii.keys import Keypair
from pykoii.ports import listen_socket

from .conftest import KOII, start_server, stop

HTML_ERROR = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class Front:
    """An HTTP reverse proxy to ``target``; while ``broken`` it answers HTML pages instead (a 502,
    then a 200 with HTML, alternately), as a misconfigured or overloaded front does."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.broken = False
        self.answered_html = 0
        self.port = 0
        """Bound when it starts: a port the OS picks (``listen_socket``), read back."""
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def handle(self, request: web.Request) -> web.Response:
        if self.broken:
            self.answered_html += 1
            status = 502 if self.answered_html % 2 else 200
            return web.Response(status=status, text=HTML_ERROR, content_type="text/html")
        async with self.session.request(
            request.method, self.target + request.path_qs, data=await request.read()
        ) as answer:
            body = await answer.read()
            return web.Response(
                status=answer.status, body=body, content_type=answer.content_type or "application/json"
            )

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self.handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            sock = listen_socket("127.0.0.1", 0)
            self.port = int(sock.getsockname()[1])
            await web.SockSite(self.runner, sock).start()
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> Front:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            await self.session.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def wait_until(check: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[str]:
    server = start_server(
        "serve",
        "--data",
        str(tmp_path / "primary"),
        "--devnet",
        "--workers",
        "0",
        log=tmp_path / "primary.log",
    )
    try:
        yield server.url
    finally:
        stop(server)


def test_a_replica_behind_a_front_answering_html_errors_recovers_and_reports_its_lag(
    tmp_path: Path, primary: str
) -> None:
    client = LedgerClient(primary)
    keys = [Keypair.generate() for _ in range(30)]
    for key in keys[:10]:
        client.send_transaction(key, {"type": "airdrop", "to": key.public_key, "amount": 10 * KOII})
    cid = client.put_blob(b"task code, as a node downloads it")
    with Front(primary) as front:
        log = tmp_path / "replica.log"
        replica = start_server(
            "follow", f"http://127.0.0.1:{front.port}", "--data", str(tmp_path / "replica"),
            "--workers", "0", "--stall-seconds", "2", log=log,
        )  # fmt: skip
        url = replica.url
        try:
            wait_until(lambda: httpx.get(url + "/health").json()["seq"] == 10)
            health = httpx.get(url + "/health").json()
            assert health["status"] == "ok" and health["replication"]["lag"] == 0
            assert health["replication"]["stalled_since"] is None
            # The replica serves blobs it fetches from the primary (checked against the CID).
            assert LedgerClient(url).get_blob(cid) == b"task code, as a node downloads it"

            front.broken = True
            for key in keys[10:]:
                client.send_transaction(key, {"type": "airdrop", "to": key.public_key, "amount": 10 * KOII})
            wait_until(lambda: httpx.get(url + "/health").status_code == 503)
            stalled = httpx.get(url + "/health")
            body = stalled.json()
            assert body["status"] == "stalled" and body["seq"] < 30  # (a long poll in flight got one)
            assert body["replication"]["stalled_since"] is not None
            assert body["replication"]["stalled_seconds"] >= 2
            assert "502" in body["replication"]["last_error"] or "JSON" in body["replication"]["last_error"]
            wait_until(lambda: front.answered_html >= 3)  # it retried, both kinds of HTML page
            assert "retrying in" in log.read_text()
            # Reads of what it holds still work while stalled.
            assert LedgerClient(url).get_blob(cid) == b"task code, as a node downloads it"

            front.broken = False
            wait_until(lambda: httpx.get(url + "/health").status_code == 200)
            wait_until(lambda: httpx.get(url + "/health").json()["seq"] == 30)
            healed = httpx.get(url + "/health?state_root=true").json()
            want = client.health(state_root=True)
            assert (healed["seq"], healed["last_hash"], healed["state_root"]) == (
                want["seq"],
                want["last_hash"],
                want["state_root"],
            )
            assert healed["replication"] | {"primary": None} == {
                "primary": None,
                "primary_seq": 30,
                "lag": 0,
                "stalled_since": None,
                "stalled_seconds": 0.0,
                "last_error": None,
            }
            assert "answers again" in log.read_text()
        finally:
            stop(replica)
    client.close()


class WrongBytes(threading.Thread):
    """A hostile ledger: every ``GET /blobs/...`` answers 200 with ``body``, which is not the blob."""

    def __init__(self, body: bytes = b"not it!!!") -> None:
        super().__init__(daemon=True)
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def run(self) -> None:
        self.server.serve_forever()


def test_blobs_are_found_on_other_ledgers_checked_against_their_cid(primary: str) -> None:
    from pykoii.errors import LedgerUnavailableError, NotFoundError
    from pykoii.service.blobs import cid_of
    from pykoii.service.follow import blob_source

    cid = LedgerClient(primary).put_blob(b"task code on one ledger only")
    hostile, huge = WrongBytes(), WrongBytes(b"x" * 5_000_000)
    hostile.start()
    huge.start()
    taken = socket.socket()  # bound, never listening: nothing answers there, nobody else binds it
    taken.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{taken.getsockname()[1]}"
    try:
        # Down, lying (refused: not the CID's bytes), endless (refused past max_bytes), the real copy.
        fetch = blob_source([down, hostile.url, huge.url, primary], local=True, max_bytes=1000)
        assert fetch(cid) == b"task code on one ledger only"
        with pytest.raises(LedgerUnavailableError) as unavailable:
            blob_source([down, hostile.url, huge.url], local=True, max_bytes=1000)(cid)
        said = unavailable.value.message
        assert "BlobCorruptionError" in said and down in said and "more than 1000 bytes" in said, said
        with pytest.raises(NotFoundError, match="no blob has id"):
            blob_source([primary], local=True)(cid_of(b"stored nowhere"))
    finally:
        hostile.server.shutdown()
        huge.server.shutdown()
        taken.close()
