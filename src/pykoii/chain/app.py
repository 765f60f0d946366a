"""``ChainApp``: the ABCI 2.0 methods of a pykoii validator, over a ``ChainStore``.

Every method is a thin translation between ABCI messages and the store:

- ``check_tx``: size, envelope, signature (worker processes; not again on ``RECHECK``), replay horizon;
  a refusal is ``code != 0`` with the pykoii error name in ``codespace`` and its message in ``log``.
- ``prepare_proposal``: the engine's transactions in its order, less those that do not verify, within
  ``max_tx_bytes``. ``process_proposal``: reject a block holding one that does not verify (size,
  envelope, signature); both depend only on the transactions.
- ``finalize_block``: ``apply_transaction`` at the slot of the block's BFT time, one ``ExecTxResult``
  per transaction (``data`` = the receipt), receipt events as ABCI events with indexed attributes,
  ``app_hash`` = ``state_root``. ``commit``: persist, then ``retain_height``.
- ``info``: the last committed height and app hash; ``init_chain`` checks the genesis; ``query``
  reads state (``/accounts/<pubkey>``, ``/tasks/<task_id>``, ``/tx/<tx_id>``, ``/state_root``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from .. import __version__
from ..errors import InvalidRequestError, LedgerUnavailableError, NotFoundError
from ..service.verify import Verified
from ..service.views import account_view, get_task, task_view
from .abci import pb
from .store import ChainStore, TxResult, error_code, time_ms

ABCI_VERSION = "2.0.0"
APP_VERSION = 1


class ChainApp:
    """The ABCI application; one instance serves the engine's four connections."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.consensus = asyncio.Lock()
        """FinalizeBlock and Commit run one at a time, in order (and not while the store closes)."""
        self.closed = False

    # --- info, genesis, queries -------------------------------------------------------------

    def info(self, request: Any) -> Any:
        store = self.store
        return pb.ResponseInfo(
            data="pykoii",
            version=__version__,
            app_version=APP_VERSION,
            last_block_height=store.height,
            last_block_app_hash=bytes.fromhex(store.app_hash) if store.height else b"",
        )

    def init_chain(self, request: Any) -> Any:
        store = self.store
        if request.app_state_bytes:
            theirs = orjson.loads(request.app_state_bytes)
            ours = orjson.loads(store.genesis.to_bytes())
            if theirs != ours:
                return pb.ResponseException(
                    error=f"genesis app_state {theirs!r} is not this validator's pykoii genesis {ours!r}"
                )
        return pb.ResponseInitChain(app_hash=bytes.fromhex(store.app_hash))

    def query(self, request: Any) -> Any:
        store = self.store
        path = request.path or request.data.decode(errors="replace")
        try:
            if path == "/state_root":
                value: Any = {"state_root": store.root(), "height": store.height, "slot": store.slot()}
            elif path.startswith("/accounts/"):
                value = account_view(store.state, path.removeprefix("/accounts/"))
            elif path.startswith("/tasks/"):
                value = task_view(get_task(store.state, path.removeprefix("/tasks/")), store.slot(), {})
            elif path.startswith("/tx/"):
                value = store.receipt(path.removeprefix("/tx/"))
            else:
                raise InvalidRequestError(
                    f"query path {path!r}; accepted: /state_root, /accounts/<pubkey>, /tasks/<task_id>, "
                    "/tx/<tx_id>"
                )
        except (InvalidRequestError, NotFoundError) as exc:
            return pb.ResponseQuery(
                code=error_code(exc), codespace=exc.name, log=exc.message, height=store.height
            )
        return pb.ResponseQuery(
            code=0, key=path.encode(), value=orjson.dumps(value, default=str), height=store.height
        )

    # --- mempool ----------------------------------------------------------------------------

    async def check_tx(self, request: Any) -> Any:
        outcome = await self.store.check_tx(request.tx, recheck=request.type == pb.RECHECK)
        if isinstance(outcome, Verified):
            return pb.ResponseCheckTx(code=0, data=outcome.tx.tx_id.encode(), gas_wanted=1)
        return pb.ResponseCheckTx(code=error_code(outcome), codespace=outcome.name, log=outcome.message)

    # --- proposals --------------------------------------------------------------------------

    async def prepare_proposal(self, request: Any) -> Any:
        txs, size = [], 0
        for tx, outcome in zip(request.txs, await self.store.verified(request.txs), strict=True):
            if not isinstance(outcome, Verified) or size + len(tx) > request.max_tx_bytes:
                continue
            txs.append(tx)
            size += len(tx)
        return pb.ResponsePrepareProposal(txs=txs)

    async def process_proposal(self, request: Any) -> Any:
        outcomes = await self.store.verified(request.txs)
        ok = all(isinstance(outcome, Verified) for outcome in outcomes)
        status = pb.ResponseProcessProposal.ACCEPT if ok else pb.ResponseProcessProposal.REJECT
        return pb.ResponseProcessProposal(status=status)

    def extend_vote(self, request: Any) -> Any:
        return pb.ResponseExtendVote()

    def verify_vote_extension(self, request: Any) -> Any:
        return pb.ResponseVerifyVoteExtension(status=pb.ResponseVerifyVoteExtension.ACCEPT)

    # --- blocks -----------------------------------------------------------------------------

    async def finalize_block(self, request: Any) -> Any:
        async with self.consensus:
            self._check_open()
            results, app_hash = await self.store.finalize_block(
                list(request.txs), request.height, time_ms(request.time)
            )
        # Built in place inside the Response (``add``), not as messages copied into their parents
        # level by level: a quarter of the application's CPU per transaction went to those copies.
        response = pb.Response()
        block = response.finalize_block
        for result in results:
            _add_exec_result(block.tx_results, result)
        block.app_hash = bytes.fromhex(app_hash)
        return response

    async def commit(self, request: Any) -> Any:
        async with self.consensus:
            self._check_open()
            retain = await self.store.commit_block()
        return pb.ResponseCommit(retain_height=retain)

    def _check_open(self) -> None:
        if self.closed:
            raise LedgerUnavailableError("the validator is shutting down")

    # --- state sync: not offered ------------------------------------------------------------

    def list_snapshots(self, request: Any) -> Any:
        return pb.ResponseListSnapshots()

    def offer_snapshot(self, request: Any) -> Any:
        return pb.ResponseOfferSnapshot(result=pb.ResponseOfferSnapshot.REJECT)

    def load_snapshot_chunk(self, request: Any) -> Any:
        return pb.ResponseLoadSnapshotChunk()

    def apply_snapshot_chunk(self, request: Any) -> Any:
        return pb.ResponseApplySnapshotChunk(result=pb.ResponseApplySnapshotChunk.ABORT)


def _add_exec_result(tx_results: Any, result: TxResult) -> None:
    """Append one transaction's ``ExecTxResult`` (its outcome and events) to ``tx_results``."""
    out = tx_results.add(
        code=result.code,
        codespace=result.codespace,
        log=result.log,
        data=result.data,
        gas_wanted=1,
        gas_used=1,
    )
    tx = result.tx
    if tx is not None:
        _add_event(
            out.events,
            "pykoii.tx",
            {"tx_id": tx.tx_id, "type": tx.TYPE, "signer": tx.signer, "code": result.code},
        )
    if result.receipt is not None:
        for event in result.receipt["events"]:
            plain = dict(event)
            _add_event(out.events, plain.pop("kind"), plain)


def _add_event(events: Any, kind: str, fields: dict[str, Any]) -> None:
    """Append an ABCI event; every attribute is indexed, so ``kind.field='value'`` finds it."""
    attributes = events.add(type=kind).attributes
    for key, value in sorted(fields.items()):
        attributes.add(key=key, value=_text(value), index=True)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


__all__ = ["ChainApp"]
