"""Who may act on a node: only its own machine, with the node's CSRF token.

Pages are readable from anywhere the node listens, but a form that changes something (add a task,
start, stop, stake, withdraw, claim) is accepted only when

- the TCP peer is a loopback address, and the ``Host`` the browser used is a loopback name (so a
  DNS-rebinding page cannot pass as the node), and any ``Origin`` header names the same host; and
- the form carries the node's token: 32 random bytes kept in ``<data>/dashboard.token`` (mode
  0600), embedded in the dashboard's forms and nowhere else.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request

TOKEN_FILE = "dashboard.token"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def load_token(data_dir: Path) -> str:
    """The node's dashboard token, created on first use."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def is_local(request: Request) -> bool:
    """Whether the request comes from this machine, to this machine by a loopback name."""
    peer = request.client.host if request.client else ""
    if not _loopback(peer):
        return False
    if not _loopback(_hostname(request.headers.get("host", ""))):
        return False
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return _hostname(urlsplit(origin).netloc) == _hostname(request.headers.get("host", ""))
    return True


def refusal(request: Request, token: str, sent: str | None) -> str | None:
    """Why an action request is refused (``None`` when it is accepted)."""
    if not is_local(request):
        return (
            "actions are accepted only from the node's own machine (open the dashboard at http://localhost)"
        )
    if not sent or not hmac.compare_digest(sent, token):
        return "the form's security token is missing or wrong; reload the dashboard page and try again"
    return None
