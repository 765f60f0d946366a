"""The seed's Hello-World task: the smallest task that shows the whole round flow.

- ``task`` (the work) stores "Hello, World!" in the task's key-value store;
- ``submission`` returns the stored value as the round's proof;
- ``audit`` checks that another node's proof is exactly "Hello, World!";
- ``distribution`` is the default (the seed's rule: 70 % of a wrong node's stake is slashed and the
  round's bounty is split equally among the right ones);
- ``routes`` serves ``GET /value`` (on a node: ``/task/<task_id>/value``).

Set the task variable ``FAULTY=1`` (``pykoii node add-task ... --var FAULTY=1``) to make this node
submit "Goodbye, World!" instead: the other nodes catch it and it is slashed.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pykoii.sdk import RoundContext, Task

VALUE = "Hello, World!"
WRONG_VALUE = "Goodbye, World!"


class HelloWorld(Task):
    def task(self, ctx: RoundContext) -> None:
        ctx.store.set("value", VALUE)
        ctx.log.info("stored %r for round %d", VALUE, ctx.round)

    def submission(self, ctx: RoundContext) -> str:
        if ctx.variables.get("FAULTY") == "1":
            return WRONG_VALUE
        return ctx.store.get("value") or ""

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> bool:
        return submission == VALUE

    def routes(self) -> list[Route]:
        async def value(request: Request) -> JSONResponse:
            store = request.app.state.store
            return JSONResponse({"value": store.get("value")})

        return [Route("/value", value)]
