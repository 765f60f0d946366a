"""Results too big for a proof: auditors fetch them from the submitter's own route.

- ``task`` (the work) finds the primes in the round's range of numbers and keeps them per round;
- ``submission`` returns only their sha256 (the ledger holds at most 512 bytes);
- ``routes`` serves the full result at ``GET /result/<round>`` (on a node:
  ``<node URL>/task/<task_id>/result/<round>``, the URL the node registered when it staked);
- ``audit`` looks up the submitter's URL in ``ctx.nodes()``, fetches its result over HTTP, checks that
  it hashes to the proof, and re-verifies it cheaply (every listed number is prime, in range, sorted,
  and a sample of the numbers left out is composite). A route that does not answer with the result
  fails the audit: a proof nobody can check is not paid.

Task variables for tests and demos: ``BAD_RESULT=1`` serves a result that does not match the proof
(the node is caught and slashed); ``ROUTE_FAILS=1`` makes the route answer 500.
"""

from __future__ import annotations

import hashlib
import json
import random

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pykoii.sdk import RoundContext, Task

SPAN = 2_000
"""Numbers per round: round r covers [r * SPAN + 2, (r + 1) * SPAN + 2)."""
SAMPLE = 50


def number_range(round_number: int) -> range:
    start = round_number * SPAN + 2
    return range(start, start + SPAN)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    factor = 3
    while factor * factor <= n:
        if n % factor == 0:
            return False
        factor += 2
    return True


def digest(result: list[int]) -> str:
    return hashlib.sha256(json.dumps(result, separators=(",", ":")).encode()).hexdigest()


class SharedResults(Task):
    def __init__(self) -> None:
        self.http = httpx.Client(timeout=10)  # one connection pool for every audit

    def task(self, ctx: RoundContext) -> None:
        primes = [n for n in number_range(ctx.round) if is_prime(n)]
        ctx.store.set(f"result:{ctx.round}", primes)
        if ctx.variables.get("BAD_RESULT") == "1":
            ctx.store.set(f"served:{ctx.round}", primes[:-1])
        ctx.log.info("round %d: %d primes", ctx.round, len(primes))

    def submission(self, ctx: RoundContext) -> str | None:
        result = ctx.store.get(f"result:{ctx.round}")
        return None if result is None else digest(result)

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> bool:
        url = ctx.nodes().get(submitter)
        if not url:
            return False
        response = self.http.get(f"{url}/task/{ctx.task_id}/result/{ctx.round}")
        if response.status_code != 200:
            ctx.log.warning("node %s answered %d for round %d", submitter, response.status_code, ctx.round)
            return False
        result = response.json()
        if not isinstance(result, list) or digest(result) != submission:
            return False
        numbers = number_range(ctx.round)
        listed = set(result)
        if result != sorted(listed) or not all(n in numbers and is_prime(n) for n in result):
            return False
        left_out = [n for n in random.Random(submission).sample(numbers, SAMPLE) if n not in listed]
        return not any(is_prime(n) for n in left_out)

    def routes(self) -> list[Route]:
        async def result(request: Request) -> JSONResponse:
            round_number = request.path_params["round"]
            if request.app.state.variables.get("ROUTE_FAILS") == "1":
                return JSONResponse({"error": "this node's route is broken on purpose"}, status_code=500)
            store = request.app.state.store
            found = store.get(f"served:{round_number}") or store.get(f"result:{round_number}")
            if found is None:
                return JSONResponse({"error": "no result for that round"}, status_code=404)
            return JSONResponse(found)

        return [Route("/result/{round:int}", result)]
