"""Fixtures for the validator-network tests: the CometBFT binary (built by ``make cometbft``).

Where Go is installed the engine must be there (``make setup`` builds it), so a missing binary fails
the tests instead of skipping them; only a machine without Go skips them, saying why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pykoii.chain.engine import cometbft_binary
from pykoii.errors import ConfigError


def has_go() -> bool:
    return shutil.which("go") is not None or Path("/usr/local/go/bin/go").exists()


@pytest.fixture(scope="session")
def cometbft() -> str:
    try:
        return cometbft_binary()
    except ConfigError as exc:
        if has_go():
            pytest.fail(f"Go is installed but the engine is not built: {exc}")
        pytest.skip(f"no Go on this machine, so no CometBFT engine: {exc}")
