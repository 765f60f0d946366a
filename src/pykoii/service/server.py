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

Not covered: a client that sends its headers and then its body slowly is bounded by the body limit,
not by a timeout.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STREAM_BUFFER = 16 * 1024
"""Send buffer (kernel and user space) of a ``GET /events`` connection."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout (``header_timeout`` class attribute)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self.timeout_keep_alive_handler)

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self.url.startswith(b"/events"):
            # A stream to a client that stops reading must block after a few events, not after
            # megabytes of kernel buffer: small buffers bound what a non-reader costs.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER)
            self.transport.set_write_buffer_limits(high=STREAM_BUFFER)
        super().on_headers_complete()

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
