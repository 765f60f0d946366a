"""``server.run_server``'s process-wide settings (the HTTP behaviour is tested over real sockets in
test_lean_tx.py and test_hostile_clients.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import uvicorn

from pykoii.service import server


def test_run_server_shortens_the_gil_switch_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log's writer thread waits at most ``SWITCH_INTERVAL`` for the GIL while the loop serves."""
    seen: list[float] = []

    def fake_run(app: Any, **options: Any) -> None:
        seen.append(sys.getswitchinterval())

    previous = sys.getswitchinterval()
    monkeypatch.setattr(uvicorn, "run", fake_run)
    try:
        sys.setswitchinterval(0.005)
        server.run_server(object(), host="127.0.0.1", port=0)
    finally:
        sys.setswitchinterval(previous)
    assert seen == [pytest.approx(server.SWITCH_INTERVAL)]
    assert server.SWITCH_INTERVAL < 0.005
