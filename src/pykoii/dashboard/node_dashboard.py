"""``create_dashboard(node, auth) -> list[BaseRoute]``: the operator's dashboard, served by the node
on its operator port (``http://127.0.0.1:30018/``, loopback only), never on the public port.

The operator app (``pykoii.node.app.create_operator_app``) checks every request first (Host, Origin,
operator secret: ``security.py``) and puts these routes first, so ``/`` shows the dashboard to a
browser while a client that does not ask for HTML gets the node's JSON status::

    routes=[*create_dashboard(node, auth), Route("/", status), ...]

- ``/`` (HTML only) and ``/dashboard/`` — balances, health, my tasks, tasks to add
- ``/dashboard/tasks/{task_id}`` — one task: round and countdown, last submission and its audit,
  rewards per round, slashes, actions, live logs, the task's own routes
- ``/dashboard/add?task_id=…`` — a task's config, variables and minimum stake, then add it
- ``POST /dashboard/add`` and ``POST /dashboard/tasks/{task_id}/{start|stop|stake|withdraw|claim}``
  — with the session's CSRF token (see ``security.py``); 403 otherwise
- ``/dashboard/live`` and ``/dashboard/tasks/{task_id}/logs/live`` — server-sent events
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from ..client import LedgerClient
from ..errors import InvalidRequestError, PykoiiError
from ..node.history import RewardHistory
from . import actions
from .actions import Outcome
from .explorer import static_file
from .format import ENV, parse_koii
from .metadata import task_metadata
from .node_views import overview, task_row
from .security import OperatorAuth

LOG_LINES = 200
OUTCOMES_KEPT = 200
VERBS = ("start", "stop", "stake", "withdraw", "claim", "follow")
FRAME_DENY = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


class HTMLRoute(Route):
    """A route that matches only requests that accept HTML (a browser), so ``GET /`` stays JSON
    for every other client."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE or scope["type"] != "http":
            return match, child
        accept = dict(scope["headers"]).get(b"accept", b"")
        return (match, child) if b"text/html" in accept else (Match.NONE, {})


def create_dashboard(node: Any, auth: OperatorAuth) -> list[BaseRoute]:
    """The dashboard's routes for ``node`` (a ``pykoii.node.runtime.Node``)."""
    client: LedgerClient = node.ledger.client
    history: RewardHistory = node.history
    outcomes: OrderedDict[str, Outcome] = OrderedDict()

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = ENV.get_template(template).render(
            base="/dashboard",
            static="/dashboard/static",
            local=True,
            csrf=auth.csrf(request),
            public_url=node.public_base_url(),
            node=node,
            outcome=outcomes.get(request.query_params.get("outcome", "")),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store", **FRAME_DENY})

    def remember(outcome: Outcome) -> str:
        key = secrets.token_urlsafe(9)
        outcomes[key] = outcome
        while len(outcomes) > OUTCOMES_KEPT:
            outcomes.popitem(last=False)
        return key

    async def guarded(request: Request) -> tuple[dict[str, str], Response | None]:
        form = await read_form(request)
        why = auth.refusal(request, form.get("csrf"))
        if why is not None:
            return form, page(request, "node_error.html", 403, title="Refused", message=why)
        return form, None

    async def home(request: Request) -> Response:
        return page(request, "node_overview.html", view=await overview(node, history))

    async def task_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        runtime = node.tasks.get(task_id)
        if runtime is None:
            return RedirectResponse(f"/dashboard/add?task_id={task_id}", 303)
        view = await overview(node, history)
        row = next((r for r in view["tasks"] if r["task_id"] == task_id), None)
        if row is None:
            row = await task_row(node, runtime, history, view["now"])
        logs = node.task_log_tail(task_id, LOG_LINES) or ""
        return page(request, "node_task.html", view=view, row=row, logs=logs)

    async def act(request: Request) -> Response:
        task_id, verb = request.path_params["task_id"], request.path_params["verb"]
        form, refused = await guarded(request)
        if refused is not None:
            return refused
        if verb not in VERBS:
            return page(request, "node_error.html", 404, title="Unknown action", message=f"accepted: {VERBS}")
        if verb in ("start", "stop"):
            outcome = await actions.start_or_stop(node, task_id, verb)
        elif verb == "stake":
            try:
                amount = parse_koii(form.get("amount", ""))
            except InvalidRequestError as exc:
                outcome = Outcome(False, "Stake refused", exc.message)
            else:
                outcome = await actions.stake_more(node, task_id, amount)
        elif verb == "withdraw":
            outcome = await actions.withdraw(node, task_id)
        elif verb == "follow":
            outcome = await actions.follow(node, task_id)
        else:
            outcome = await actions.claim(node, task_id)
        return RedirectResponse(f"/dashboard/tasks/{task_id}?outcome={remember(outcome)}", 303)

    async def add_page(request: Request) -> Response:
        task_id = request.query_params.get("task_id", "").strip()
        return await render_add(request, task_id)

    async def render_add(
        request: Request, task_id: str, status: int = 200, error: Outcome | None = None, form: Any = None
    ) -> Response:
        task, problem = None, ""
        if task_id:
            try:
                task = await node.ledger.task(task_id)
            except PykoiiError as exc:
                problem, status = exc.message, 404 if exc.name == "NotFoundError" else 400
        try:
            now = dict(await asyncio.to_thread(client.slot))
            wallet = await node.ledger.balance(node.wallet.public_key)
        except PykoiiError:
            now, wallet = {"slot": 0, "slot_ms": 0}, 0
        return page(
            request,
            "node_add.html",
            status,
            task_id=task_id,
            task=task,
            problem=problem,
            now=now,
            wallet_balance=wallet,
            added=task_id in node.tasks,
            meta=await task_metadata(node.ledger.blob, str((task or {}).get("task_metadata", ""))),
            error=error,
            form=form or {},
            variables=[
                t for t in (task or {}).get("requirements_tags", []) if t.get("type") == "TASK_VARIABLE"
            ],
            other_tags=[
                t for t in (task or {}).get("requirements_tags", []) if t.get("type") != "TASK_VARIABLE"
            ],
        )

    async def add(request: Request) -> Response:
        form, refused = await guarded(request)
        if refused is not None:
            return refused
        task_id = form.get("task_id", "").strip()
        try:
            amount = parse_koii(form.get("stake", ""))
        except InvalidRequestError as exc:
            return await render_add(request, task_id, 400, Outcome(False, "Stake refused", exc.message), form)
        variables = {k[4:]: v.strip() for k, v in form.items() if k.startswith("var_")}
        outcome = await actions.add_task(node, task_id, amount, variables)
        if not outcome.ok:
            return await render_add(request, task_id, 400, outcome, form)
        return RedirectResponse(f"/dashboard/tasks/{task_id}?outcome={remember(outcome)}", 303)

    async def live(request: Request) -> Response:
        return StreamingResponse(
            changes(node), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def logs_live(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        if task_id not in node.tasks:
            return Response("unknown task", 404, media_type="text/plain")
        path = node.data_dir / "logs" / Path(node._task_log_path(task_id)).name
        return StreamingResponse(
            tail(path), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def static(request: Request) -> Response:
        return static_file(request.path_params["name"])

    return [
        HTMLRoute("/", home),
        Mount(
            "/dashboard",
            routes=[
                Route("/", home),
                Route("/add", add_page, methods=["GET"]),
                Route("/add", add, methods=["POST"]),
                Route("/live", live),
                Route("/static/{name}", static),
                Route("/tasks/{task_id}", task_page),
                Route("/tasks/{task_id}/logs/live", logs_live),
                Route("/tasks/{task_id}/{verb}", act, methods=["POST"]),
            ],
        ),
    ]


async def read_form(request: Request, limit: int = 65536) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the dashboard's forms), first value per name."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    pairs = parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
    return {name: value for name, value in reversed(pairs)}


def fingerprint(node: Any) -> tuple[Any, ...]:
    """What the pages show that the node itself changes: statuses, rounds, submissions."""
    return tuple(
        (task_id, rt.status, rt.flagged, rt.current_round, rt.last_submitted_round, rt.restarts)
        for task_id, rt in sorted(node.tasks.items())
    )


async def changes(node: Any, every: float = 0.5) -> AsyncIterator[bytes]:
    """A ``change`` event whenever ``fingerprint(node)`` changes, and a ``slot`` event as slots pass."""
    yield b": node dashboard\n\n"
    last: tuple[Any, ...] | None = None
    slot, quiet = None, 0.0
    while True:
        now = fingerprint(node)
        if now != last:
            if last is not None:
                yield b"event: change\ndata: {}\n\n"
            last = now
        if node.slot != slot and node.slot >= 0:  # -1: no task has read the ledger yet
            slot = node.slot
            yield b'event: slot\ndata: {"slot": %d}\n\n' % node.slot
        quiet += every
        if quiet >= 15:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(every)


async def tail(path: Path, every: float = 0.3) -> AsyncIterator[bytes]:
    """``log`` events with the lines appended to ``path`` from now on (follows rotation)."""
    import orjson

    yield b": task log\n\n"
    position = path.stat().st_size if path.exists() else 0
    quiet = 0.0
    while True:
        await asyncio.sleep(every)
        size = path.stat().st_size if path.exists() else 0
        if size < position:
            position = 0
        if size > position:
            with open(path, "rb") as handle:
                handle.seek(position)
                data = handle.read(size - position)
            position = size
            yield b"event: log\ndata: %s\n\n" % orjson.dumps({"text": data.decode(errors="replace")})
            quiet = 0.0
        else:
            quiet += every
            if quiet >= 15:
                quiet = 0.0
                yield b": keep-alive\n\n"
