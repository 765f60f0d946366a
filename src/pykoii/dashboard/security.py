"""The operator's authority: who may see the dashboard and act for the node.

The dashboard and the control API live on the node's **operator port** (``--dashboard-port``,
default 30018), bound to 127.0.0.1 only, apart from the public port (30017) that serves the tasks'
own routes. Every request to the operator port is checked (``OperatorAuth.check``):

- the TCP peer is a loopback address;
- ``Host`` names this port on a loopback name (``127.0.0.1:P``, ``localhost:P``, ``[::1]:P``), so a
  DNS-rebinding page cannot pass as the node;
- ``Origin``, when sent, is exactly ``http://`` + one of those; ``Sec-Fetch-Site``, when sent, is
  ``same-origin`` or ``none`` (a page of another port of this machine, a task's page included, is
  *same-site* and gets refused);
- and, except for ``/login`` and static files, the request carries the operator secret: either
  ``Authorization: Bearer <secret>`` (the ``pykoii node`` CLI) or the session cookie a browser got
  by opening the login link ``http://127.0.0.1:P/login?token=<secret>`` that ``node run`` prints.
  The cookie is ``HttpOnly; SameSite=Strict; Path=/`` and names a random session the node keeps in
  memory (a restarted node asks for the link again). Forms also carry a per-session CSRF token.

The secret is 32 random bytes in ``<data>/operator.token`` (mode 0600); task code never sees the
data folder. No response to a request without the secret carries the secret, a session or a CSRF
token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from starlette.requests import Request

SECRET_FILE = "operator.token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SESSIONS_KEPT = 64


def load_secret(data_dir: Path) -> str:
    """The node's operator secret, created (mode 0600) on first use."""
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class OperatorAuth:
    """Checks of the operator port ``port`` for the node whose secret is ``secret``."""

    def __init__(self, secret: str, port: int) -> None:
        self.secret = secret
        self.port = port
        self.cookie = f"pykoii_operator_{port}"
        self.hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        self.origins = {f"http://{host}" for host in self.hosts}
        self._sessions: dict[str, None] = {}

    def check(self, request: Request) -> str | None:
        """Why a request to the operator port is refused before any authentication (or ``None``)."""
        peer = request.client.host if request.client else ""
        if not _loopback(peer):
            return f"the operator port answers only this machine (request from {peer or 'unknown'})"
        host = request.headers.get("host", "").lower()
        if host not in self.hosts:
            return (
                f"Host {host!r} is not this node's operator address; open "
                f"http://127.0.0.1:{self.port}/ (accepted: {', '.join(sorted(self.hosts))})"
            )
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            return f"requests from pages of {origin!r} may not act for this node"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"requests from other sites ({site}) may not act for this node"
        return None

    def login(self, token: str) -> str | None:
        """A new session for the right secret (``None`` for a wrong one)."""
        if not token or not hmac.compare_digest(token.encode(), self.secret.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = None
        while len(self._sessions) > SESSIONS_KEPT:
            self._sessions.pop(next(iter(self._sessions)))
        return session

    def session(self, request: Request) -> str | None:
        """The request's valid session (from its cookie), if any."""
        value = request.cookies.get(self.cookie, "")
        return value if value and value in self._sessions else None

    def authenticated(self, request: Request) -> bool:
        """The request carries the operator secret (bearer header) or a valid session cookie."""
        header = request.headers.get("authorization", "")
        if header and hmac.compare_digest(header.encode(), f"Bearer {self.secret}".encode()):
            return True
        return self.session(request) is not None

    def csrf(self, request: Request) -> str:
        """The CSRF token of the request's session (empty without a session)."""
        session = self.session(request)
        if session is None:
            return ""
        return hmac.new(self.secret.encode(), b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def refusal(self, request: Request, sent: str | None) -> str | None:
        """Why a dashboard form is refused (``None`` when it is accepted)."""
        why = self.check(request)
        if why is not None:
            return why
        expected = self.csrf(request)
        if not expected:
            return "you are not logged in: open the login link `pykoii node run` printed"
        if not sent or not hmac.compare_digest(sent, expected):
            return "the form's security token is missing or wrong; reload the dashboard page and try again"
        return None

    def cookie_header(self, session: str) -> str:
        return f"{self.cookie}={session}; HttpOnly; SameSite=Strict; Path=/"
