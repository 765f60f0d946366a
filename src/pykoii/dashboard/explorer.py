"""``create_explorer(client_or_source) -> Starlette``: the ledger explorer, read-only, for anyone.

Server-rendered pages (JavaScript optional) that the ledger service mounts at ``/explorer``:

- ``/`` — the slot, every task, the latest log entries, lookups by task id or account
- ``/tasks/{task_id}`` — a task's config, bounty, current round, recent rounds and its stakers and
  balances (a page at a time: ``?after=<key>``)
- ``/tasks/{task_id}/rounds/{round}`` — submissions, audit triggers and votes, assignments (a page
  of submitters at a time: ``?after=<key>``), distribution lists (a page of entries:
  ``?list_after=<key>``), payout record
- ``/accounts/{pubkey}`` — a wallet's balance and its stake and claimable balance per task
- ``/log`` — log entries, newest first, paged; ``/tx/{tx_id}`` — one transaction and its events
- ``/live`` — the ledger's events as server-sent events (the pages' script refreshes on them)

>>> # app.router.routes.append(Mount("/explorer", create_explorer(StoreReads(store))))
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidRequestError, NotFoundError, PykoiiError
from .format import ENV, STATIC, koii
from .metadata import task_metadata
from .sources import LedgerSource, as_source, sse
from .timing import round_timing

LATEST = 25
"""Log entries on the front page."""
PAGE = 100
"""Log entries per page of ``/log``."""


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    html = ENV.get_template(template).render(base=base, static=f"{base}/static", **context)
    return HTMLResponse(html, status_code=status)


def describe_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry with its transaction decoded: type, signer, task and a one-line summary."""
    try:
        tx = orjson.loads(entry["tx"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        tx = {}
    details = {k: v for k, v in tx.items() if k not in {"type", "signer", "recent_slot", "task_id"}}
    summary = ", ".join(
        f"{k}={koii(v) if k.endswith('amount') else v}"
        for k, v in sorted(details.items())
        if not isinstance(v, dict | list)
    )
    return {
        **entry,
        "type": tx.get("type", "?"),
        "signer": tx.get("signer", ""),
        "task_id": tx.get("task_id", ""),
        "summary": summary if len(summary) <= 160 else summary[:159] + "…",
    }


def tally(trigger: dict[str, Any]) -> dict[str, Any]:
    """Votes of one audit trigger: false (the raiser's included) against true; invalid when false wins."""
    votes = trigger.get("votes", {})
    false = sum(1 for v in votes.values() if not v.get("is_valid"))
    true = len(votes) - false
    return {"false": false, "true": true, "invalid": false > true, "votes": votes}


def recent_rounds(task: dict[str, Any], current: int) -> list[dict[str, Any]]:
    """Rounds the ledger still holds data for (the task summary's ``rounds``), plus the last few,
    newest first."""
    held = {int(r["round"]): r for r in task.get("rounds", [])}
    for number in range(max(0, current - 4), current + 1):
        held.setdefault(
            number, {"round": number, "submitters": 0, "accused": 0, "lists": 0, "payout_record": None}
        )
    return [held[number] for number in sorted(held, reverse=True)[:30]]


def create_explorer(client_or_source: Any) -> Starlette:
    """The explorer app over a ``LedgerClient`` or the service's ``LedgerStore``."""
    source: LedgerSource = as_source(client_or_source)

    async def index(request: Request) -> Response:
        now = await source.slot()
        tasks = await source.tasks()
        entries = await source.log(max(0, int(now["seq"]) - LATEST), LATEST)
        return page(
            request,
            "explorer_index.html",
            now=now,
            tasks=tasks,
            entries=[describe_entry(e) for e in reversed(entries)],
        )

    async def find(request: Request) -> Response:
        base = request.scope.get("root_path", "")
        query = request.query_params.get("q", "").strip()
        if not query:
            return RedirectResponse(f"{base}/", 303)
        tasks = {t["task_id"] for t in await source.tasks()}
        where = "tasks" if query in tasks else "accounts"
        return RedirectResponse(f"{base}/{where}/{query}", 303)

    async def task_page(request: Request) -> Response:
        # The task's short form (settings, counts per round held) and one page of its stakers: a
        # page of bounded size whatever the task's size (its full state holds every submission).
        task_id = request.path_params["task_id"]
        task = next((t for t in await source.tasks() if t["task_id"] == task_id), None)
        if task is None:
            raise NotFoundError(f"no task has id {task_id!r}; GET /tasks lists them", task_id=task_id)
        stakers = await source.stakers(task_id, request.query_params.get("after", ""))
        now = await source.slot()
        timing = round_timing(task, int(now["slot"]), int(now["slot_ms"]))
        return page(
            request,
            "explorer_task.html",
            task=task,
            stakers=stakers,
            now=now,
            timing=timing,
            rounds=recent_rounds(task, timing["round"]),
            variables=[t for t in task.get("requirements_tags", []) if t.get("type") == "TASK_VARIABLE"],
            meta=await task_metadata(source.blob, str(task.get("task_metadata", ""))),
        )

    async def round_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            number = int(request.path_params["round"])
        except ValueError:
            raise InvalidRequestError(
                f"round must be a number, got {request.path_params['round']!r}"
            ) from None
        after = request.query_params.get("after", "")
        list_after = request.query_params.get("list_after", "")
        view = await source.round(task_id, number, after)
        # The task's summary is enough here (its full state holds every submission it keeps).
        task = next((t for t in await source.tasks() if t["task_id"] == task_id), {"task_id": task_id})
        now = await source.slot()
        triggers = {key: tally(t) for key, t in view["submissions_audit_trigger"].items()}
        list_triggers = {key: tally(t) for key, t in view["distributions_audit_trigger"].items()}
        # One page of each list's entries (the list itself may hold a key per submitter).
        entries = {
            submitter: await source.distribution(task_id, number, submitter, list_after)
            for submitter in view["distribution_lists"]
        }
        return page(
            request,
            "explorer_round.html",
            task=task,
            view=view,
            now=now,
            number=number,
            triggers=triggers,
            list_triggers=list_triggers,
            entries=entries,
            after=after,
            list_after=list_after,
        )

    async def account_page(request: Request) -> Response:
        account = await source.account(request.path_params["pubkey"])
        names = {t["task_id"]: t["task_name"] for t in await source.tasks()}
        return page(request, "explorer_account.html", account=account, names=names, now=await source.slot())

    async def log_page(request: Request) -> Response:
        now = await source.slot()
        last = int(now["seq"])
        try:
            before = int(request.query_params.get("before", last + 1))
        except ValueError:
            raise InvalidRequestError("before must be a log sequence number") from None
        after = max(0, before - 1 - PAGE)
        entries = await source.log(after, min(PAGE, max(0, before - 1 - after)))
        return page(
            request,
            "explorer_log.html",
            now=now,
            entries=[describe_entry(e) for e in reversed(entries)],
            older=after if after > 0 else None,
            newer=min(before + PAGE, last + 1) if before <= last else None,
        )

    async def tx_page(request: Request) -> Response:
        receipt = await source.transaction(request.path_params["tx_id"])
        entries = await source.log(max(0, int(receipt["seq"]) - 1), 1)
        entry = describe_entry(entries[0]) if entries else None
        return page(request, "explorer_tx.html", receipt=receipt, entry=entry, now=await source.slot())

    async def live(request: Request) -> Response:
        return StreamingResponse(
            sse(source.events()), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def static(request: Request) -> Response:
        return static_file(request.path_params["name"])

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PykoiiError)
        status = 404 if isinstance(exc, NotFoundError) else 400
        if exc.name == "LedgerUnavailableError":
            status = 503
        return page(request, "explorer_error.html", status=status, error=exc, now=None)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/find", find),
            Route("/tasks/{task_id}", task_page),
            Route("/tasks/{task_id}/rounds/{round}", round_page),
            Route("/accounts/{pubkey}", account_page),
            Route("/log", log_page),
            Route("/tx/{tx_id}", tx_page),
            Route("/live", live),
            Route("/static/{name}", static),
        ],
        exception_handlers={PykoiiError: on_error},
    )


def static_file(name: str) -> Response:
    """One of the package's two static files, cached for an hour."""
    if name not in STATIC:
        return Response("not found", 404, media_type="text/plain")
    media_type, path = STATIC[name]
    return Response(path.read_bytes(), media_type=media_type, headers={"Cache-Control": "max-age=3600"})
