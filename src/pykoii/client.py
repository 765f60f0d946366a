"""``LedgerClient``: one typed method per route of the ledger service, on ``httpx``.

The transport is injectable, so tests, the node and the CLI can talk to an in-process ledger with
no sockets. Connection errors are retried with exponential backoff and then raised as
``LedgerUnavailableError``. Sending a transaction again is safe: the ledger answers a repeated
transaction with its first receipt, so ``send`` retries too.

A refused request raises the ``pykoii.errors`` class the service named in ``{"error": ...}``
(``InsufficientFundsError``, ``WrongPhaseError``, ``NotFoundError``, ...), with ``status`` set.

>>> from pykoii.keys import Keypair
>>> client = LedgerClient("http://127.0.0.1:8899")
>>> # receipt = client.send_transaction(Keypair.load("wallet.json"),
>>> #                                   {"type": "transfer", "to": "...", "amount": 5})
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any, TypedDict

import httpx
import orjson

from . import errors
from .clock import SystemClock, WallClock
from .errors import (
    BlobCorruptionError,
    LedgerHTTPError,
    LedgerUnavailableError,
    PayloadTooLargeError,
    PykoiiError,
)
from .keys import Keypair

_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
"""Headers of a streamed answer that no longer describe its (decoded, read) body."""


class ReceiptDict(TypedDict):
    """An accepted transaction's receipt."""

    tx_id: str
    slot: int
    seq: int
    events: list[dict[str, Any]]


class SlotDict(TypedDict):
    slot: int
    slot_ms: int
    seq: int


class LogPage(TypedDict):
    entries: list[dict[str, Any]]
    last_seq: int
    genesis_hash: str


class ServerSentEvent(TypedDict):
    id: int
    event: str
    data: dict[str, Any]


def error_from_body(status: int, body: Any) -> PykoiiError:
    """The ``pykoii.errors`` instance for an error answer ``{"error": name, "message": ...}``."""
    name = body.get("error") if isinstance(body, dict) else None
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, PykoiiError)):
        return LedgerHTTPError(f"ledger answered {status}: {name or ''} {message}".strip(), status=status)
    return cls(message, status=status)


class LedgerClient:
    """A client of one ledger service at ``base_url``.

    ``transport`` replaces httpx's network transport (e.g. an in-process app in tests);
    ``retries`` connection attempts are made after the first, ``backoff`` seconds apart, doubling.
    """

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.1,
        clock: WallClock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.clock = clock or SystemClock()
        self._http = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, limit: int | None = None, **kwargs: Any) -> httpx.Response:
        """``method path``, retried on connection errors; an error answer raises its pykoii error.
        ``limit``: read at most that many bytes of the answer (``PayloadTooLargeError`` past it)."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                if limit is None:
                    response = self._http.request(method, path, **kwargs)
                else:
                    response = self._send_limited(method, path, limit, **kwargs)
                break
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise LedgerUnavailableError(
                        f"ledger at {self.base_url} cannot be reached after {attempt + 1} attempts: {exc!r}; "
                        "is `pykoii ledger serve` running?",
                        url=self.base_url,
                    ) from None
                self.clock.sleep(delay)
                delay *= 2
        if response.status_code >= 400:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                body = response.text
            raise error_from_body(response.status_code, body)
        return response

    def _send_limited(self, method: str, path: str, limit: int, **kwargs: Any) -> httpx.Response:
        with self._http.stream(method, path, **kwargs) as streamed:
            body = bytearray()
            for chunk in streamed.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLargeError(
                        f"{self.base_url}{path} answered more than {limit} bytes; refused", limit=limit
                    )
        kept = {k: v for k, v in streamed.headers.items() if k.lower() not in _BODY_HEADERS}
        return httpx.Response(
            streamed.status_code, headers=kept, content=bytes(body), request=streamed.request
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads(self._request(method, path, **kwargs).content)

    # --- transactions -----------------------------------------------------------------------

    def send(self, envelope: dict[str, Any]) -> ReceiptDict:
        """Send one signed envelope; return its receipt once durable, or raise why it was refused."""
        result: ReceiptDict = self._json(
            "POST", "/tx", content=orjson.dumps(envelope), headers={"content-type": "application/json"}
        )
        return result

    def send_batch(self, envelopes: list[dict[str, Any]]) -> list[ReceiptDict | PykoiiError]:
        """Send envelopes in one request; each result is a receipt or the error that refused it."""
        results = self._json(
            "POST", "/tx", content=orjson.dumps(envelopes), headers={"content-type": "application/json"}
        )
        return [error_from_body(400, r) if "error" in r else r for r in results]

    def send_transaction(self, keypair: Keypair, tx: dict[str, Any]) -> ReceiptDict:
        """Fill in ``recent_slot`` (from ``GET /slot``) and ``signer``, sign with ``keypair``, send."""
        body = dict(tx)
        body.setdefault("recent_slot", self.slot()["slot"])
        return self.send(keypair.sign_transaction(body))

    def transaction(self, tx_id: str) -> ReceiptDict:
        """The receipt of an accepted transaction (``NotFoundError`` if there is none)."""
        result: ReceiptDict = self._json("GET", f"/tx/{tx_id}")
        return result

    # --- reads ------------------------------------------------------------------------------

    def slot(self) -> SlotDict:
        """The current slot, slot length and newest log sequence number."""
        result: SlotDict = self._json("GET", "/slot")
        return result

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, in short form."""
        result: list[dict[str, Any]] = self._json("GET", "/tasks")["tasks"]
        return result

    def task(
        self,
        task_id: str,
        *,
        is_submission_required: bool = False,
        is_distribution_required: bool = False,
        is_available_balances_required: bool = False,
        is_stake_list_required: bool = False,
    ) -> dict[str, Any]:
        """A task's ``TaskState``; the maps of a false flag come back as ``{}`` (Koii's partial fetch)."""
        params = {
            "is_submission_required": is_submission_required,
            "is_distribution_required": is_distribution_required,
            "is_available_balances_required": is_available_balances_required,
            "is_stake_list_required": is_stake_list_required,
        }
        result: dict[str, Any] = self._json(
            "GET", f"/tasks/{task_id}", params={k: "true" for k, v in params.items() if v}
        )
        return result

    def round(
        self, task_id: str, round_number: int, *, after: str = "", limit: int = 1000, key: str = ""
    ) -> dict[str, Any]:
        """One page of a round: windows, ``limit`` submitters after ``after`` (or only ``key``) with
        their proofs, audits and assignments, list headers, payout record; ``next_after`` is the
        cursor of the next page (``None`` on the last)."""
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        if key:
            params["key"] = key
        result: dict[str, Any] = self._json("GET", f"/tasks/{task_id}/rounds/{round_number}", params=params)
        return result

    def stakers(self, task_id: str, *, after: str = "", limit: int = 1000, key: str = "") -> dict[str, Any]:
        """One page of a task's accounts ``{key, stake, available_balance, last_submission_round,
        node_url}`` sorted by key (or only ``key``'s), with the counts and ``next_after``."""
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        if key:
            params["key"] = key
        result: dict[str, Any] = self._json("GET", f"/tasks/{task_id}/stakers", params=params)
        return result

    def node(self, task_id: str, key: str) -> dict[str, Any]:
        """What node ``key`` reads of a task each tick (``GET /tasks/{id}/nodes/{key}``): the task's
        settings, ``key``'s own entries, the proofs it audits and ``key_rounds``; bounded by what
        one node needs, whatever the task's size."""
        result: dict[str, Any] = self._json("GET", f"/tasks/{task_id}/nodes/{key}")
        return result

    def distribution(
        self,
        task_id: str,
        round_number: int,
        *,
        submitter: str = "",
        after: str = "",
        limit: int = 1000,
        key: str = "",
    ) -> dict[str, Any]:
        """One page of a distribution list's entries ``{key, reward, slash}``, sorted by key (or only
        ``key``'s), with the list's header and ``next_after``; without ``submitter``, the list the
        round was paid from."""
        params: dict[str, Any] = {"limit": limit}
        if key:
            params["key"] = key
        if submitter:
            params["submitter"] = submitter
        if after:
            params["after"] = after
        result: dict[str, Any] = self._json(
            "GET", f"/tasks/{task_id}/rounds/{round_number}/distribution", params=params
        )
        return result

    def distribution_entries(
        self, task_id: str, round_number: int, *, submitter: str = "", limit: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Every entry of a list, page after page."""
        after = ""
        while True:
            page = self.distribution(task_id, round_number, submitter=submitter, after=after, limit=limit)
            yield from page["entries"]
            if page["next_after"] is None:
                return
            after = page["next_after"]

    def account(self, pubkey: str) -> dict[str, Any]:
        """A wallet's balance, and its stake and available balance per task."""
        result: dict[str, Any] = self._json("GET", f"/accounts/{pubkey}")
        return result

    def log(self, after: int = 0, *, limit: int = 1000, wait: int = 0) -> LogPage:
        """Log entries with ``seq > after``; ``wait`` seconds for one if there is none yet."""
        result: LogPage = self._json("GET", "/log", params={"after": after, "limit": limit, "wait": wait})
        return result

    def genesis(self) -> dict[str, Any]:
        """The genesis document and its hash."""
        result: dict[str, Any] = self._json("GET", "/genesis")
        return result

    def events(self, *, types: tuple[str, ...] = (), limit: int = 0) -> Iterator[ServerSentEvent]:
        """Iterate server-sent events (``slot``, ``phase``, ``tx``, ``payout``) as they come."""
        params: dict[str, Any] = {"limit": limit}
        if types:
            params["types"] = ",".join(types)
        with self._http.stream("GET", "/events", params=params, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_body(response.status_code, orjson.loads(response.content))
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if "data" in fields:
                        yield {
                            "id": int(fields.get("id", "0")),
                            "event": fields.get("event", "message"),
                            "data": orjson.loads(fields["data"]),
                        }
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value

    def put_blob(self, data: bytes) -> str:
        """Store a blob; return its CID."""
        cid: str = self._json(
            "PUT", "/blobs", content=data, headers={"content-type": "application/octet-stream"}
        )["cid"]
        return cid

    def get_blob(self, cid: str, *, local: bool = False, max_bytes: int | None = None) -> bytes:
        """A blob's bytes, checked against its CID here as well; ``local``: only if that ledger
        holds it itself (it does not ask its primary or the other validators); ``max_bytes``: an
        answer longer than that is refused (``PayloadTooLargeError``) before it is all read."""
        params = {"local": "true"} if local else {}
        data = self._request("GET", f"/blobs/{cid}", params=params, limit=max_bytes).content
        digest = hashlib.sha256(data).digest()
        body = cid[1:].upper()
        expected = base64.b32decode(body + "=" * (-len(body) % 8))[4:]
        if digest != expected:
            raise BlobCorruptionError(f"blob {cid} received from the ledger does not match its id", cid=cid)
        return data

    def health(self, *, state_root: bool = False) -> dict[str, Any]:
        """Liveness, role, newest seq, slot (and the state root if asked)."""
        params = {"state_root": "true"} if state_root else {}
        result: dict[str, Any] = self._json("GET", "/health", params=params)
        return result

    def metrics(self) -> str:
        """Prometheus text."""
        return self._request("GET", "/metrics").text

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of the service."""
        result: dict[str, Any] = self._json("GET", "/openapi.json")
        return result
