"""The SDK services a task child gets from its node, for real: a sandboxed child process asks a real
``Node`` (its staking key, its ledger client) over the child channel, against a ledger service."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from pykoii import verify
from pykoii.errors import ConfigError, InvalidSignatureError
from pykoii.keys import Keypair, verify_envelope
from pykoii.ledger.codec import canonical_bytes
from pykoii.node.answers import child_answers
from pykoii.node.runtime import Node, NodeConfig
from pykoii.node.sandbox import TaskProcess
from pykoii.service.blobs import cid_of

from .conftest import write_task
from .harness import Ledger

PROBE = """
    import json
    from pykoii.sdk import Task

    class Probe(Task):
        def submission(self, ctx):
            out = {"sig": ctx.sign({"round": ctx.round, "value": "Hello"}), "slot_time": ctx.slot_time}
            cid = ctx.blobs.put(b"a result too big for a proof")
            out["cid"], out["back"] = cid, ctx.blobs.get(cid).decode()
            try:
                ctx.blobs.put(b"x" * (8 * 1024 * 1024 + 1))
                out["big"] = "accepted"
            except Exception as exc:
                out["big"] = f"{type(exc).__name__}: {exc}"
            out["tx_sig"] = ctx.sign(bytes.fromhex(ctx.variables["TX_BYTES"]))
            ctx.log.warning("probe done for round %d", ctx.round)
            return json.dumps(out)
"""


def test_sign_blobs_slot_time_and_log_through_the_node(ledger: Ledger, sandbox_root: Path) -> None:
    node = Node(NodeConfig(data_dir=sandbox_root / "node", ledger_url=ledger.url))
    transfer = {"type": "transfer", "to": node.wallet.public_key, "amount": 10**9, "recent_slot": 0}
    transfer["signer"] = node.staking.public_key
    code = write_task(sandbox_root / "code", PROBE)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test.sdk.services")
    log.addHandler(Collect())
    log.setLevel(logging.INFO)

    async def scenario() -> str:
        child = TaskProcess(
            task_id="T",
            code_dir=code,
            work_dir=sandbox_root / "work",
            variables={"TX_BYTES": canonical_bytes(transfer).hex()},
            ledger_reads=child_answers(node, "T"),
            log=log,
        )
        await child.start()
        try:
            return str((await child.run_phase("submission", 7)).value)
        finally:
            await child.stop()

    try:
        out = json.loads(asyncio.run(scenario()))
    finally:
        node.journal.close()
    me = node.staking.public_key
    assert verify({"value": "Hello", "round": 7}, out["sig"], me)  # canonical JSON: key order is irrelevant
    assert not verify({"round": 8, "value": "Hello"}, out["sig"], me)
    assert not verify({"round": 7, "value": "Hello"}, out["sig"], Keypair.generate().public_key)
    assert out["slot_time"] == 100.0
    assert (
        out["cid"] == cid_of(b"a result too big for a proof")
        and out["back"] == "a result too big for a proof"
    )
    assert ledger.http.get(f"/blobs/{out['cid']}").content == b"a result too big for a proof"
    assert out["big"].startswith("PayloadTooLargeError: blob of 8388609 bytes is over the limit of 8388608")
    # the task asked the node to sign a transaction's exact bytes: the result is no transaction signature
    with pytest.raises(InvalidSignatureError):
        verify_envelope({"tx": transfer, "signature": out["tx_sig"]})
    assert "probe done for round 7" in lines  # ctx.log reaches the node's task log


SIX_WHEEL = "sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
USES_SIX = """
    import six
    from pykoii.sdk import Task

    class UsesSix(Task):
        def submission(self, ctx):
            return six.__file__
"""


def test_node_installs_requirements_into_the_tasks_environment(ledger: Ledger, sandbox_root: Path) -> None:
    node = Node(NodeConfig(data_dir=sandbox_root / "node", ledger_url=ledger.url))
    code = write_task(sandbox_root / "code", USES_SIX)
    (code / "requirements.txt").write_text(f"six==1.16.0 --hash={SIX_WHEEL}\n")

    async def scenario() -> str:
        site = await node._environment(code)
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work", site_packages=site)
        await child.start()
        try:
            return str((await child.run_phase("submission", 1)).value)
        finally:
            await child.stop()

    try:
        where = asyncio.run(scenario())
    finally:
        node.journal.close()
    assert where.startswith(str(sandbox_root / "node" / "venvs")) and where.endswith("six.py")


def test_node_refuses_a_task_whose_requirements_cannot_install_before_staking(
    ledger: Ledger, sandbox_root: Path
) -> None:
    code = write_task(sandbox_root / "code", USES_SIX)
    (code / "requirements.txt").write_text("six==1.16.0 --hash=sha256:" + "0" * 64 + "\n")
    task_id = ledger.create_hello_world(
        Keypair.generate(), round_time=20, submission_window=5, audit_window=5, code=code
    )
    node = Node(NodeConfig(data_dir=sandbox_root / "node", ledger_url=ledger.url))
    ledger.airdrop(node.wallet.public_key, 50)
    try:
        with pytest.raises(ConfigError, match="pip could not install it"):
            asyncio.run(node.add_task(task_id, 5 * 10**9, {}))
    finally:
        node.journal.close()
    assert node.staking.public_key not in ledger.task(task_id)["stake_list"]
