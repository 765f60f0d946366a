"""The node's HTTP surface on port 30017 (Koii's), as a Starlette app.

Public (what Koii's node serves):

- ``GET /`` → ``{"status": "OK", "message": "Node is running", ...}``
- ``GET /tasks`` → ``[{"TaskName", "TaskID", "status", "flagged", ...}]``
- ``GET /tasks/{task_id}`` → one task's status, recent actions and last error
- ``GET /tasks/{task_id}/logs?lines=200`` → the tail of the task's log (text)
- ``ANY /task/{task_id}/{path}`` → proxied to the task's own routes (the child's unix socket), the
  ``/task/<id>`` prefix stripped; ``422 {"message": "Task <id> not running"}`` when it is not.

Control (the ``pykoii node`` commands), with ``Authorization: Bearer <token>``, the token being
the content of ``<data>/control.token`` (mode 0600):

- ``POST /tasks`` ``{"task_id", "stake", "variables"}`` → add (download, verify, stake, start)
- ``POST /tasks/{task_id}/stop`` · ``POST /tasks/{task_id}/start`` · ``DELETE /tasks/{task_id}``
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..dashboard import create_dashboard
from ..errors import PykoiiError

if TYPE_CHECKING:
    from .runtime import Node

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def create_node_app(node: Node) -> Starlette:
    """The node's Starlette app."""

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header, f"Bearer {node.control_token}")

    def denied() -> JSONResponse:
        return JSONResponse({"message": "control requests need the node's token (<data>/control.token)"}, 401)

    def error(exc: PykoiiError, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": exc.name, "message": str(exc)}, status)

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"status": "OK", "message": "Node is running", **node.status()})

    async def tasks(request: Request) -> JSONResponse:
        if request.method == "POST":
            if not authorized(request):
                return denied()
            body = await request.json()
            try:
                info = await node.add_task(
                    str(body["task_id"]),
                    int(body["stake"]),
                    dict(body.get("variables", {})),
                    body.get("code"),
                )
            except PykoiiError as exc:
                return error(exc)
            return JSONResponse(info, 201)
        return JSONResponse(node.task_list())

    async def task_detail(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        if request.method == "DELETE":
            if not authorized(request):
                return denied()
            try:
                return JSONResponse(await node.remove_task(task_id))
            except PykoiiError as exc:
                return error(exc, 404)
        info = node.task_info(task_id)
        if info is None:
            return JSONResponse({"message": f"Task {task_id} is not added to this node"}, 404)
        return JSONResponse(info)

    async def task_control(request: Request) -> JSONResponse:
        if not authorized(request):
            return denied()
        task_id, verb = request.path_params["task_id"], request.path_params["verb"]
        try:
            if verb == "stop":
                return JSONResponse(await node.stop_task(task_id))
            if verb == "start":
                return JSONResponse(await node.start_task(task_id))
        except PykoiiError as exc:
            return error(exc, 404)
        return JSONResponse({"message": f"unknown action {verb!r}; accepted: start, stop"}, 404)

    async def task_logs(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            lines = max(1, min(int(request.query_params.get("lines", "200")), 10_000))
        except ValueError:
            return JSONResponse({"message": "lines must be an integer"}, 400)
        text = node.task_log_tail(task_id, lines)
        if text is None:
            return JSONResponse({"message": f"Task {task_id} is not added to this node"}, 404)
        return PlainTextResponse(text)

    async def proxy(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        socket_path = node.task_socket(task_id)
        if socket_path is None:
            return JSONResponse({"message": f"Task {task_id} not running"}, 422)
        path = "/" + request.path_params.get("path", "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        transport = httpx.AsyncHTTPTransport(uds=socket_path)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://task", timeout=30.0) as client:
                upstream = await client.request(
                    request.method,
                    path,
                    params=list(request.query_params.multi_items()),
                    headers=headers,
                    content=await request.body(),
                )
        except httpx.HTTPError as exc:
            return JSONResponse({"message": f"Task {task_id} did not answer: {exc}"}, 502)
        out_headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        }
        return Response(upstream.content, upstream.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[
            *create_dashboard(node),  # HTML pages at / (for browsers) and /dashboard/...
            Route("/", status),
            Route("/tasks", tasks, methods=["GET", "POST"]),
            Route("/tasks/{task_id}", task_detail, methods=["GET", "DELETE"]),
            Route("/tasks/{task_id}/logs", task_logs),
            Route("/tasks/{task_id}/{verb}", task_control, methods=["POST"]),
            Route("/task/{task_id}", proxy, methods=methods),
            Route("/task/{task_id}/{path:path}", proxy, methods=methods),
        ]
    )
