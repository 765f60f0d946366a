"""The SDK surface Koii authors reach for, in the simulator: ctx.sign / pykoii.verify, ctx.blobs,
ctx.nodes, task state and distribution reads with filters, ctx.slot_time, ctx.log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pykoii
from pykoii.config import load_config
from pykoii.errors import InvalidCidError, PayloadTooLargeError, TaskCodeError
from pykoii.keys import Keypair, sign_payload
from pykoii.sdk import RoundContext, Task
from pykoii.testing import MemoryBlobs, MemoryStore, simulate

HELLO_CONFIG = load_config(Path(__file__).resolve().parent.parent / "examples" / "hello_world")
SEEN: dict[str, object] = {}


class SignedBlobs(Task):
    """The result goes to the CID store; the proof is its CID and the node's signature of it."""

    def task(self, ctx):
        cid = ctx.blobs.put(json.dumps({"round": ctx.round, "value": "Hello, World!"}).encode())
        ctx.store.set(f"cid:{ctx.round}", cid)
        SEEN["slot_time"] = ctx.slot_time
        if ctx.round == 3:  # round 0 is paid by now: read it back the way Koii's wrapper does
            SEEN["info"] = ctx.distribution_info(0)
            SEEN["light"] = ctx.task_state()
            SEEN["full"] = ctx.task_state(is_submission_required=True, is_stake_list_required=True)
            SEEN["nodes"] = ctx.nodes()
        ctx.log.info("round %d stored %s", ctx.round, cid)

    def submission(self, ctx):
        cid = ctx.store.get(f"cid:{ctx.round}")
        return json.dumps({"cid": cid, "sig": ctx.sign(cid)})

    def audit(self, ctx, submission, submitter):
        try:
            proof = json.loads(submission)
        except ValueError:
            return False  # not even a proof: vote it down
        if not pykoii.verify(proof["cid"], proof["sig"], submitter):
            return False
        result = json.loads(ctx.blobs.get(proof["cid"]))
        return result == {"round": ctx.round, "value": "Hello, World!"}


def test_signed_proofs_in_the_cid_store_pay_and_catch_forgeries():
    SEEN.clear()
    result = simulate(SignedBlobs(), config=HELLO_CONFIG, nodes=5, rounds=4, faulty=1, slot_ms=250)
    assert result.ok, result.properties
    assert [r.outcome for r in result.reports] == ["paid"] * 4
    assert result.slashed(result.faulty_keys[0]) > 0  # its corrupted proof does not verify
    assert SEEN["slot_time"] == 250
    info = SEEN["info"]
    assert info["distributions_audit_record"] == "PayoutSuccessful"
    assert set(info["distribution_rewards_submission"]) and info["distribution_lists"]
    assert SEEN["light"]["submissions"] == {} and SEEN["light"]["stake_list"] == {}
    assert SEEN["full"]["submissions"] and SEEN["full"]["stake_list"]
    assert SEEN["full"]["available_balances"] == {}  # its flag was false
    assert len(SEEN["nodes"]) == 5 and all(
        url.startswith("http://127.0.0.1:") for url in SEEN["nodes"].values()
    )
    assert any("round 0 stored b" in line for line in result.logs)


def test_verify_is_false_for_anything_but_the_signers_payload():
    node = Keypair.generate()
    signature = sign_payload(node, b"\x00\x01 raw bytes")
    assert pykoii.verify(b"\x00\x01 raw bytes", signature, node.public_key)
    assert not pykoii.verify(b"\x00\x01 raw bytes!", signature, node.public_key)
    assert not pykoii.verify(b"\x00\x01 raw bytes", "not-base58-0OIl", node.public_key)
    assert not pykoii.verify(b"\x00\x01 raw bytes", signature, "tooshort")
    assert pykoii.verify("text", sign_payload(node, "text"), node.public_key)


def test_ctx_sign_without_a_node_says_so():
    ctx = RoundContext("T", 0, 0, "K", MemoryStore(), None)  # type: ignore[arg-type]
    with pytest.raises(TaskCodeError, match="ctx.sign is not available"):
        ctx.sign("x")


def test_simulated_blobs_have_the_ledgers_limits():
    blobs = MemoryBlobs()
    with pytest.raises(PayloadTooLargeError, match="blob of 8388609 bytes is over the limit of 8388608"):
        blobs.put(b"x" * (8 * 1024 * 1024 + 1))
    cid = blobs.put(b"hi")
    assert blobs.get(cid) == b"hi"
    with pytest.raises(InvalidCidError):
        blobs.get("not-a-cid")
