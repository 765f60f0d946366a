"""The HTTP server the ledger runs on: uvicorn (httptools, uvloop), guarded against idle clients.

- **Header timeout**: a connection must finish a request's headers within ``header_timeout``
  seconds of connecting (or of its previous answer), else it is closed. uvicorn alone never
  times out a connection that sends nothing (1,000 of them locked out new clients).
- **Idle timeout**: a keep-alive connection with no new request for ``idle_timeout`` is closed.
- **Connection cap**: past ``max_connections`` open connections (or requests in flight), new
  requests are answered 503 at once.
- **Event streams** get small send buffers, so a subscriber that stops reading blocks (and costs
  nothing more) after a few events, until the hub drops it.
- **File limit**: the soft ``RLIMIT_NOFILE`` is raised to the hard limit at start, so the cap, not
  the default 1,024 descriptors, is what bounds connections.
- **Lean ``POST /tx``**: a ``POST /tx`` request is answered by the protocol itself through the app's
  ``TxIngest`` (same limit, parsing, store call, status codes and JSON as the ASGI route), without an
  ASGI scope, receive/send messages or middleware, and with one write per answer. Pipelined
  requests behind it, requests over the connection cap and everything else go the ASGI way.

Not covered: a client that sends its headers and then its body slowly is bounded by the body limit,
not by a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import socket
import sys
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from .ingest import TxIngest

STREAM_BUFFER = 16 * 1024
"""Send buffer (kernel and user space) of a ``GET /events`` connection."""


class _NoEvent:
    """Stands for a cycle's ``message_event``, which uvicorn's protocol sets when the client leaves."""

    def set(self) -> None:
        pass


class _LeanTx:
    """A ``POST /tx`` request on the lean path: its body, and the fields of a cycle that uvicorn's
    protocol reads (``response_complete``, ``disconnected``, ``keep_alive``, ``message_event``)."""

    __slots__ = ("body", "keep_alive", "disconnected", "response_complete")
    message_event = _NoEvent()

    def __init__(self, keep_alive: bool) -> None:
        self.body = bytearray()
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout (``header_timeout`` class attribute) and
    the lean ``POST /tx`` path (when the app has an ``ingest``, a ``TxIngest``)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _header_deadline: float | None = None
    """When the headers of the next request must be complete (``None``: none is awaited)."""
    ingest: TxIngest | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.ingest = getattr(self.config.app, "ingest", None)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        # One timer per connection, moved lazily: a request only sets the deadline (no new timer
        # and no cancel per request); the timer re-arms itself for what is left when it fires early.
        self._header_deadline = self.loop.time() + self.header_timeout
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._check_header_deadline)

    def _check_header_deadline(self) -> None:
        self._header_timer = None
        if self._header_deadline is None:
            return  # the headers came in time; the next answer arms the timer again
        left = self._header_deadline - self.loop.time()
        if left > 0:
            self._header_timer = self.loop.call_later(left, self._check_header_deadline)
        else:
            self.timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        # uvicorn builds its ASGI scope here (a dict and a copy of the app state per request); it is
        # built in on_headers_complete instead, and only for requests that go the ASGI way.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        self._header_deadline = None
        if self.url == b"/tx" and self._lean():
            self._begin_tx()
            return
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()  # the scope, exactly as uvicorn makes it
        self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
        self.scope["headers"] = headers
        if self.url.startswith(b"/events"):
            # A stream to a client that stops reading must block after a few events, not after
            # megabytes of kernel buffer: small buffers bound what a non-reader costs.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER)
            self.transport.set_write_buffer_limits(high=STREAM_BUFFER)
        super().on_headers_complete()

    def _lean(self) -> bool:
        """Whether this request (``/tx``) takes the lean path: a POST, nothing in progress before
        it on the connection, and under the connection cap (else uvicorn answers it, or its 503)."""
        cap = self.limit_concurrency
        return (
            self.ingest is not None
            and self.parser.get_method() == b"POST"
            and not self.parser.should_upgrade()
            and (self.cycle is None or self.cycle.response_complete)
            and (cap is None or (len(self.connections) < cap and len(self.tasks) < cap))
        )

    def _begin_tx(self) -> None:
        assert self.ingest is not None
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        cycle = _LeanTx(keep_alive)
        self.cycle = cycle  # type: ignore[assignment]
        declared = next((value for name, value in self.headers if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.ingest.limit:
            self._reply(cycle, *self.ingest.too_large(int(declared)))
        elif self.expect_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _LeanTx):
            super().on_body(body)
            return
        if cycle.response_complete:
            return
        cycle.body += body
        assert self.ingest is not None
        if len(cycle.body) > self.ingest.limit:
            self._reply(cycle, *self.ingest.too_large())

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _LeanTx):
            super().on_message_complete()
            return
        if cycle.response_complete:
            return
        assert self.ingest is not None
        # No task per request: the answer comes back through a callback. A graceful shutdown still
        # waits for it, since it waits for every connection, and this one closes after its answer.
        self.ingest.answer_then(bytes(cycle.body), functools.partial(self._reply, cycle))

    def _reply(self, cycle: _LeanTx, status: int, body: bytes) -> None:
        """The whole answer in one write; then the connection goes on (or closes) as uvicorn's does."""
        if cycle.response_complete:
            return
        cycle.response_complete = True
        if cycle.disconnected:
            return
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"content-length: %d\r\ncontent-type: application/json\r\n" % len(body))
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        self.transport.write(b"".join(head))
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


def raise_file_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (at most the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def run_server(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout: float = 10.0,
    idle_timeout: float = 15.0,
    max_connections: int = 4096,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, with the guards above; on ``sock`` when given (bound by
    ``pykoii.ports.listen_socket`` before anything was printed), else on ``host:port``."""
    import uvicorn

    options = server_options(
        host=host,
        port=port,
        header_timeout=header_timeout,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
    )
    if sock is not None:
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
        return
    uvicorn.run(app, **options)


def server_options(
    *,
    host: str,
    port: int,
    header_timeout: float = 10.0,
    idle_timeout: float = 15.0,
    max_connections: int = 4096,
) -> dict[str, Any]:
    """uvicorn's options for the guards above (``uvicorn.Config(app, **options)``, e.g. to serve on
    a loop that runs other things too, as a validator does)."""
    files = raise_file_limit(max_connections + 256)
    if files < max_connections + 64:
        print(
            f"pykoii ledger: note: the open-file limit is {files}, below --max-connections "
            f"{max_connections}; raise the hard limit (ulimit -Hn) or lower the cap",
            file=sys.stderr,
        )
    protocol = type("LedgerProtocol", (GuardedProtocol,), {"header_timeout": header_timeout})
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "http": protocol,
        "timeout_keep_alive": idle_timeout,
        "limit_concurrency": max_connections,
        "backlog": 2048,
    }
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options
