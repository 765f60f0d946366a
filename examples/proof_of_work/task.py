"""A proof-of-work oracle: each node attests the round's datum with a proof of work; auditors
re-verify it with one hash.

- ``task`` (the work) searches for a nonce such that ``sha256("<datum>:<node key>:<nonce>")``
  starts with ``DIFFICULTY`` zero bits. With ``WORK_SECONDS`` set it keeps searching for that long
  and keeps the best nonce (the work may take most of the round; proofs and audits of earlier rounds
  go on meanwhile);
- ``submission`` returns ``{"datum", "nonce"}`` as compact JSON (well under 512 bytes);
- ``audit`` recomputes the datum for the round and checks the nonce with a single hash: cheap,
  whatever the work cost;
- ``routes`` serves ``GET /proof/<round>`` (on a node: ``/task/<task_id>/proof/<round>``).

The proof is stored per round (``proof:<round>``): ``task(R+1)`` may already run while
``submission(R)`` reads round R's proof.

Set ``CHEAT=1`` on a node to submit a random nonce without doing the work: the others catch it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pykoii.sdk import RoundContext, Task

DEFAULT_DIFFICULTY = 12


def datum(task_id: str, round_number: int) -> str:
    """What the oracle attests for a round (a stand-in for an observed value: here, public data)."""
    return f"{task_id}:{round_number}"


def zero_bits(digest: bytes) -> int:
    """Leading zero bits of a digest."""
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def work_digest(value: str, public_key: str, nonce: int) -> bytes:
    return hashlib.sha256(f"{value}:{public_key}:{nonce}".encode()).digest()


def difficulty(ctx: RoundContext) -> int:
    return int(ctx.variables.get("DIFFICULTY") or DEFAULT_DIFFICULTY)


class ProofOfWork(Task):
    def task(self, ctx: RoundContext) -> None:
        value, target = datum(ctx.task_id, ctx.round), difficulty(ctx)
        if ctx.variables.get("CHEAT") == "1":
            nonce = int.from_bytes(os.urandom(4), "big")
            ctx.store.set(f"proof:{ctx.round}", {"datum": value, "nonce": nonce})
            return
        deadline = time.monotonic() + float(ctx.variables.get("WORK_SECONDS") or 0)
        best, best_bits, nonce = -1, -1, 0
        while best_bits < target or time.monotonic() < deadline:
            bits = zero_bits(work_digest(value, ctx.public_key, nonce))
            if bits > best_bits:
                best, best_bits = nonce, bits
            nonce += 1
        ctx.store.set(f"proof:{ctx.round}", {"datum": value, "nonce": best})
        ctx.log.info("round %d: nonce %d with %d zero bits after %d hashes", ctx.round, best, best_bits, nonce)

    def submission(self, ctx: RoundContext) -> str | None:
        proof = ctx.store.get(f"proof:{ctx.round}")
        if proof is None:
            return None  # no work done for this round (joined late): skip it
        return json.dumps(proof, separators=(",", ":"), sort_keys=True)

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> bool:
        try:
            proof = json.loads(submission)
            nonce = int(proof["nonce"])
        except (ValueError, KeyError, TypeError):
            return False
        if proof.get("datum") != datum(ctx.task_id, ctx.round):
            return False
        return zero_bits(work_digest(proof["datum"], submitter, nonce)) >= difficulty(ctx)

    def routes(self) -> list[Route]:
        async def proof(request: Request) -> JSONResponse:
            found = request.app.state.store.get(f"proof:{request.path_params['round']}")
            if found is None:
                return JSONResponse({"error": "no proof for that round"}, status_code=404)
            return JSONResponse(found)

        return [Route("/proof/{round:int}", proof)]
