"""Fixtures for node tests: task folders written on the fly, isolated data roots."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A folder outside pytest's tmp tree (whose 0700 parents would hide it from the child's user)."""
    root = Path(tempfile.mkdtemp(prefix="pykoii-test-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def write_task(folder: Path, body: str) -> Path:
    """Write ``task.py`` with ``body`` (dedented) into ``folder`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    (folder / "task.py").write_text(textwrap.dedent(body))
    os.chmod(folder / "task.py", 0o644)
    return folder


@pytest.fixture
def ledger(sandbox_root: Path) -> Iterator[Any]:
    """A ledger service subprocess on 100 ms slots (``harness.Ledger``), stopped after the test."""
    from .harness import Ledger

    (sandbox_root / "ledger").mkdir()
    service = Ledger(sandbox_root / "ledger", slot_ms=100)
    yield service
    service.stop()
