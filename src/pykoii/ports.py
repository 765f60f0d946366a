"""Listening sockets for pykoii's servers (ledger service, replica, node), bound *before* they
print where they listen, so a busy port fails first and cleanly, naming the option to change."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from .errors import ConfigError


def listen_socket(host: str, port: int, option: str = "--port") -> socket.socket:
    """A listening TCP socket on ``host:port``, or a ``ConfigError`` naming the busy port.

    Servers bind with this before they print anything, so a busy port fails cleanly.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror} (is another pykoii process using it?); "
            f"pass another {option}",
            received=port,
        ) from None
    sock.set_inheritable(False)
    return sock


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Refuse (``ConfigError``) if any of ``ports`` (option name → port) cannot be listened on."""
    for option, port in ports.items():
        listen_socket(host, port, option).close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now. Another process may take it before
    the caller binds it: a server started by this process is better given port 0 (the OS picks,
    race-free) and asked which port it bound."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
