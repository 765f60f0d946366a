"""`pykoii task deploy` publishes the task's metadata content-addressed (a blob whose CID is
``task_metadata``), keeps a CID ``task_audit_program`` as given and says what it did with a file
name, and the explorer shows the metadata and the task's own payout rule. Real ledger process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from pykoii.keys import Keypair
from pykoii.packaging import cid_of

from .node.harness import HELLO_WORLD, Ledger


def deploy(folder: Path, ledger: Ledger, wallet: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykoii.cli", "task", "deploy", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYKOII_LEDGER": ledger.url, "PYKOII_WALLET": str(wallet)},
    )


def test_metadata_blob_code_as_given_and_the_explorer_shows_them(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    ledger = Ledger(tmp_path / "ledger", slot_ms=100)
    try:
        wallet = tmp_path / "author.json"
        Keypair.generate().save(wallet)
        ledger.airdrop(Keypair.load(wallet).public_key, 500)
        result = deploy(HELLO_WORLD, ledger, wallet)
        assert result.returncode == 0, result.stderr
        task_id = re.search(r"task id: (\w+)", result.stdout).group(1)  # type: ignore[union-attr]
        task = ledger.task(task_id)
        assert "task_audit_program task.py: packed with its folder" in result.stdout
        assert f"the ledger records the archive's CID {task['task_audit_program']}" in result.stdout
        blob = httpx.get(f"{ledger.url}/blobs/{task['task_metadata']}").content
        assert cid_of(blob) == task["task_metadata"]
        meta = json.loads(blob)
        assert meta["author"] == "pykoii" and meta["tags"] == ["Witness"] and meta["environment"] == "TEST"
        assert meta["repositoryUrl"] == "https://example.org/pykoii/examples/hello_world"
        assert meta["task_audit_program"] == "task.py"

        page = httpx.get(f"{ledger.url}/explorer/tasks/{task_id}").text
        assert 'href="https://example.org/pykoii/examples/hello_world"' in page and "Witness" in page
        assert "Author</th><td>pykoii" in page and "70 %" not in page
        assert "Each round pays at most 1 KOII from the bounty" in page

        # A CID as task_audit_program is kept as given (no upload); a file that is not there is refused.
        folder = tmp_path / "by-cid"
        shutil.copytree(HELLO_WORLD, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
        config = (folder / "config-task.yml").read_text()
        code = task["task_audit_program"]
        (folder / "config-task.yml").write_text(config.replace('"task.py"', f'"{code}"'))
        again = deploy(folder, ledger, wallet)
        assert again.returncode == 0, again.stderr
        assert f"task_audit_program {code} is a CID: kept as given (no upload)" in again.stdout
        second = re.search(r"task id: (\w+)", again.stdout).group(1)  # type: ignore[union-attr]
        assert ledger.task(second)["task_audit_program"] == code
        (folder / "config-task.yml").write_text(config.replace('"task.py"', '"dist/main.js"'))
        before = len(httpx.get(f"{ledger.url}/tasks").json())
        refused = deploy(folder, ledger, wallet)
        assert refused.returncode == 1
        assert "task_audit_program is 'dist/main.js', which is not a file of" in refused.stderr
        assert len(httpx.get(f"{ledger.url}/tasks").json()) == before
    finally:
        ledger.stop()
