"""``create_app(store) -> Starlette``: the ledger's HTTP API, thin handlers over ``LedgerStore``.

Every handler decodes its input, calls the store or a view, and encodes the answer with orjson; no
ledger rule lives here. Every error is ``{"error": <ErrorName>, "message": ...}`` with a 4xx or 5xx
status (``STATUS``), and the names are the classes of ``pykoii.errors``, which the client maps back.

>>> from starlette.testclient import TestClient
>>> # with TestClient(create_app(store)) as client: client.get("/slot").json()["slot"]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from ..dashboard import create_explorer
from ..errors import (
    InvalidRequestError,
    LedgerUnavailableError,
    NotFoundError,
    PayloadTooLargeError,
    PykoiiError,
    ReadOnlyReplicaError,
)
from ..ledger.bounds import MAX_INTEGER
from ..ledger.codec import is_address
from .events import EVENT_KINDS, EventHub, Subscription
from .follow import Replication
from .ingest import TxIngest, error_plain, send_json, status_of
from .metrics import render_metrics
from .openapi import (
    BLOB_LOCAL,
    EVENTS_LIMIT,
    FLAGS,
    LOG_AFTER,
    LOG_LIMIT,
    LOG_WAIT,
    PAGE_AFTER,
    PAGE_KEY,
    PAGE_LIMIT,
    STATE_ROOT,
    SUBMITTER,
    Param,
    openapi_document,
)
from .reads import StoreReads
from .store import LedgerStore
from .views import (
    account_view,
    distribution_view,
    get_task,
    node_view,
    round_view,
    stakers_view,
    task_summary,
    task_view,
)

LOG = logging.getLogger("pykoii.ledger")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def json_error(error: PykoiiError) -> JSON:
    return JSON(error_plain(error), status_code=status_of(error))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ``PayloadTooLargeError`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes is over the limit of {limit}", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


UNGUARDED = frozenset({"/health", "/metrics", "/openapi.json", "/genesis"})
"""Routes that read only durable figures (or nothing of the state), answered at once, also while
the state is rebuilt from disk."""


class LedgerApp(Starlette):
    """Starlette, with ``POST /tx`` (the ingest hot path, ``TxIngest``) answered directly on the ASGI
    interface: same body limit, parsing, store call, status codes and JSON as the ``/tx`` route,
    without the middleware, routing and ``Request``/``Response`` objects, which cost about as much
    CPU per request as the rest of the service's main process does. The HTTP server answers most
    ``POST /tx`` requests before they become ASGI requests at all (``server.GuardedProtocol``).

    Every other answer waits, before its first byte, until the state it was computed from is on
    disk (``LedgerStore.durable``): a read never shows what a failed commit then rolled back, it
    answers 503 instead; while the state is rebuilt from disk, routes that read it answer 503."""

    ingest: TxIngest | None = None
    store: LedgerStore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if (
            self.ingest is not None
            and scope["path"] == "/tx"
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await self.ingest.asgi(scope, receive, send)
            return
        store = self.store
        if store is None:
            await super().__call__(scope, receive, send)
            return
        if scope["path"] in UNGUARDED:
            await super().__call__(scope, receive, send)
            return
        if store.recovering:
            await send_json(send, 503, orjson.dumps(error_plain(store_rebuilding())))
            return
        epoch, replaced = store.read_epoch, False

        async def send_when_durable(message: Any) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                try:
                    await store.durable(store.seq, epoch)
                except LedgerUnavailableError as exc:
                    replaced = True
                    await send_json(send, 503, orjson.dumps(error_plain(exc)))
                    return
            if not replaced:
                await send(message)

        await super().__call__(scope, receive, send_when_durable)


def store_rebuilding() -> LedgerUnavailableError:
    return LedgerUnavailableError(
        "a log write failed; the ledger is rebuilding its state from disk and answers again shortly"
    )


def int_param(request: Request, param: Param) -> int:
    """An integer query parameter within its documented bounds, or its default."""
    name, default, low, high = param.name, int(param.default), param.low, param.high
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequestError(f"query parameter {name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise InvalidRequestError(f"query parameter {name} must be between {low} and {high}, got {value}")
    return value


def flag_param(request: Request, param: Param) -> bool:
    """A boolean query parameter: ``true`` or ``false`` (default false)."""
    text = request.query_params.get(param.name, "false")
    if text in ("true", "false"):
        return text == "true"
    raise InvalidRequestError(f"query parameter {param.name} must be true or false, got {text[:40]!r}")


def key_param(request: Request, param: Param) -> str:
    """A public-key query parameter, or ``""`` when absent."""
    name = param.name
    text = request.query_params.get(name, "")
    if text and not is_address(text):
        raise InvalidRequestError(
            f"query parameter {name} must be a base58 public key (32-44 characters), got {text[:60]!r}"
        )
    return text


def page_params(request: Request) -> tuple[str, int, str]:
    """``(after, limit, key)`` of a paginated route: keys above ``after``, at most ``limit``
    (1 to ``MAX_PAGE``, default ``ROUND_PAGE``), or only ``key``."""
    return (
        key_param(request, PAGE_AFTER),
        int_param(request, PAGE_LIMIT),
        key_param(request, PAGE_KEY),
    )


def path_int(request: Request, name: str) -> int:
    """A path parameter that must be an integer from 0 to 2^63 - 1 (``ledger.bounds.MAX_INTEGER``)."""
    text = request.path_params[name]
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else -1
    if not 0 <= value <= MAX_INTEGER:
        raise InvalidRequestError(
            f"{name} must be an integer from 0 to {MAX_INTEGER}, got {text[:40]!r}", received=text[:40]
        )
    return value


def create_app(
    store: LedgerStore,
    *,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    close_store: bool = True,
    replication: Replication | None = None,
    blob_source: Callable[[str], bytes] | None = None,
) -> Starlette:
    """The ledger's HTTP API over ``store``. ``background`` coroutines (e.g. a replica's follower)
    run for the app's lifetime; the store is started with the app and closed after it. A replica
    passes its ``replication`` status (for ``/health``); a replica or a validator passes a
    ``blob_source`` (``follow.blob_source``: its primary's or the other validators' ``GET /blobs``)
    for the blobs it does not hold yet."""

    ingest = TxIngest(store)

    async def post_tx(request: Request) -> Response:
        status, body = await ingest.answer(await read_body(request, ingest.limit))
        return Response(body, status_code=status, media_type="application/json")

    async def get_tx(request: Request) -> Response:
        return JSON(store.receipt(request.path_params["tx_id"]))

    async def get_slot(request: Request) -> Response:
        return JSON({"slot": store.slot(), "slot_ms": store.genesis.slot_ms, "seq": store.seq})

    async def get_tasks(request: Request) -> Response:
        slot = store.slot()
        return JSON({"tasks": [task_summary(task, slot) for task in store.state.tasks.values()]})

    async def get_task_state(request: Request) -> Response:
        flags = {param.name: flag_param(request, param) for param in FLAGS}
        task = get_task(store.state, request.path_params["task_id"])
        return JSON(task_view(task, store.slot(), flags))

    async def get_round(request: Request) -> Response:
        task = get_task(store.state, request.path_params["task_id"])
        after, limit, key = page_params(request)
        return JSON(round_view(task, path_int(request, "round"), store.slot(), after, limit, key))

    async def get_round_distribution(request: Request) -> Response:
        task = get_task(store.state, request.path_params["task_id"])
        after, limit, key = page_params(request)
        submitter = key_param(request, SUBMITTER)
        return JSON(distribution_view(task, path_int(request, "round"), submitter, after, limit, key))

    async def get_stakers(request: Request) -> Response:
        task = get_task(store.state, request.path_params["task_id"])
        return JSON(stakers_view(task, *page_params(request)))

    async def get_node(request: Request) -> Response:
        task = get_task(store.state, request.path_params["task_id"])
        return JSON(node_view(task, store.slot(), request.path_params["key"]))

    async def get_account(request: Request) -> Response:
        return JSON(account_view(store.state, request.path_params["pubkey"]))

    async def get_log(request: Request) -> Response:
        after, limit = int_param(request, LOG_AFTER), int_param(request, LOG_LIMIT)
        await store.wait_for_entries(after, int_param(request, LOG_WAIT))
        return JSON(
            {
                "entries": await asyncio.to_thread(store.log_page, after, limit),  # off the loop
                "last_seq": store.durable_seq,
                "genesis_hash": store.genesis.hash,
            }
        )

    async def get_genesis(request: Request) -> Response:
        return JSON({"genesis": orjson.loads(store.genesis.to_bytes()), "hash": store.genesis.hash})

    async def get_events(request: Request) -> Response:
        limit = int_param(request, EVENTS_LIMIT)
        text = request.query_params.get("types", "")
        kinds = frozenset(filter(None, text.split(",")))
        if not kinds <= EVENT_KINDS:
            raise InvalidRequestError(
                f"query parameter types must be comma-separated kinds from {sorted(EVENT_KINDS)}, "
                f"got {text[:100]!r}"
            )
        return EventStream(store.events, store.events.subscribe(kinds), limit)

    async def put_blob(request: Request) -> Response:
        if store.read_only or store.blobs is None:
            raise ReadOnlyReplicaError("this ledger stores no blobs; PUT them to the primary")
        data = await read_body(request, store.blobs.max_bytes)
        cid = await asyncio.get_running_loop().run_in_executor(None, store.blobs.put, data)
        return JSON({"cid": cid, "size": len(data)}, status_code=201)

    async def get_blob(request: Request) -> Response:
        blobs = store.blobs
        if blobs is None:
            raise NotFoundError("this ledger stores no blobs")
        cid, local = request.path_params["cid"], flag_param(request, BLOB_LOCAL)
        try:
            data = blobs.get(cid)
        except NotFoundError:
            if blob_source is None or local:
                raise
            # A replica or a validator: another ledger's copy (checked against the CID), kept here
            # within the blob quota and the free-space reserve (507 past either).
            data = await asyncio.to_thread(blob_source, cid)
            await asyncio.to_thread(blobs.put, data)
        return Response(data, media_type="application/octet-stream")

    async def get_health(request: Request) -> Response:
        with_root = flag_param(request, STATE_ROOT)
        root = await store.durable_root() if with_root and store.healthy and not store.recovering else {}
        body: dict[str, Any] = {
            "status": "recovering" if store.recovering else "ok" if store.healthy else "failed",
            "role": store.role,
            "seq": store.durable_seq,
            "slot": store.slot(),
            "last_hash": store.durable_hash,
            "pending": store.pending,
        }
        body |= root
        if replication is not None:
            body["replication"] = replication.view(store.durable_seq, store.clock.wall())
            if body["status"] == "ok" and replication.stalled(store.clock.wall()):
                body["status"] = "stalled"
        return JSON(body, status_code=200 if body["status"] == "ok" else 503)

    async def get_metrics(request: Request) -> Response:
        return Response(render_metrics(store), media_type="text/plain; version=0.0.4")

    async def get_openapi(request: Request) -> Response:
        return JSON(openapi_document([route.path for route in app.routes]))  # type: ignore[attr-defined]

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PykoiiError)
        return json_error(exc)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        LOG.exception("%s %s failed", request.method, request.url.path)
        return JSON(
            {"error": "LedgerHTTPError", "message": f"{request.method} {request.url.path}: {exc!r}"},
            status_code=500,
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        name = {404: "NotFoundError", 405: "InvalidRequestError"}.get(exc.status_code, "LedgerHTTPError")
        return JSON(
            {"error": name, "message": f"{request.method} {request.url.path}: {exc.detail}"},
            status_code=exc.status_code,
            headers=exc.headers,  # a 405 names the allowed methods in Allow
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        tasks: list[asyncio.Task[None]] = [
            asyncio.get_running_loop().create_task(job()) for job in background
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if close_store:
                await store.close()

    routes = [
        Route("/tx", post_tx, methods=["POST"]),
        Route("/tx/{tx_id}", get_tx, methods=["GET"]),
        Route("/slot", get_slot, methods=["GET"]),
        Route("/tasks", get_tasks, methods=["GET"]),
        Route("/tasks/{task_id}", get_task_state, methods=["GET"]),
        Route("/tasks/{task_id}/rounds/{round}", get_round, methods=["GET"]),
        Route("/tasks/{task_id}/rounds/{round}/distribution", get_round_distribution, methods=["GET"]),
        Route("/tasks/{task_id}/stakers", get_stakers, methods=["GET"]),
        Route("/tasks/{task_id}/nodes/{key}", get_node, methods=["GET"]),
        Route("/accounts/{pubkey}", get_account, methods=["GET"]),
        Route("/log", get_log, methods=["GET"]),
        Route("/genesis", get_genesis, methods=["GET"]),
        Route("/events", get_events, methods=["GET"]),
        Route("/blobs", put_blob, methods=["PUT"]),
        Route("/blobs/{cid}", get_blob, methods=["GET"]),
        Route("/health", get_health, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
        Mount("/explorer", app=create_explorer(StoreReads(store))),
    ]
    app = LedgerApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={PykoiiError: on_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
    app.ingest = ingest
    app.store = store
    app.state.store = store
    return app


class EventStream(Response):
    """``GET /events``: server-sent events from the store's hub, written on the raw ASGI interface
    (batches of pre-encoded events; a keep-alive comment after 15 s without one). It ends when the client
    leaves, after ``limit`` events, or when the hub drops it (a final ``dropped`` event; a stream stuck
    on a client that does not read is cancelled, which closes the connection)."""

    def __init__(self, hub: EventHub, subscription: Subscription, limit: int) -> None:
        self.hub, self.subscription, self.limit = hub, subscription, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        self.subscription.task = pump
        listener = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait({pump, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.unsubscribe(self.subscription)
            for task in (pump, listener):
                task.cancel()
            await asyncio.gather(pump, listener, return_exceptions=True)

    async def _pump(self, send: Send) -> None:
        subscription, sent = self.subscription, 0
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk, more = b": pykoii ledger events\n\n", True
        while True:
            subscription.writing = True
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
            subscription.writing = False
            if not more:
                return
            batch = await self.hub.wait(subscription)
            if batch is None:
                chunk, more = b"", False
                continue
            if self.limit:
                batch = batch[: self.limit - sent]
                sent += len(batch)
                more = sent < self.limit
            chunk = b"".join(event[3] for event in batch) if batch else b": keep-alive\n\n"


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
