"""LedgerStore on a real SQLite log: replay, checkpoints, tampering, genesis, the slot clock."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykoii.clock import ManualClock
from pykoii.errors import LedgerUnavailableError, LogCorruptionError
from pykoii.keys import Keypair
from pykoii.ledger import LedgerParams, canonical_bytes, to_plain
from pykoii.ledger.codec import plain_bytes
from pykoii.service import Genesis, SlotClock, Verifier
from pykoii.service.log import KEPT_CHECKPOINT_STATES, LogEntry, SQLiteLog
from pykoii.service.records import mark_of
from pykoii.service.store import LedgerStore

from .conftest import KOII, make_store


def fill(store: LedgerStore, clock: ManualClock, count: int = 30) -> list[dict[str, Any]]:
    """Accept ``count`` transfers among a few keys across several slots; return the receipts."""
    keys = [Keypair.from_seed(bytes([i]) * 32) for i in range(4)]

    async def run() -> list[dict[str, Any]]:
        await store.start()
        receipts = []
        for key in keys:
            receipts.append(
                await store.submit(
                    key.sign_transaction(
                        {
                            "type": "airdrop",
                            "to": key.public_key,
                            "amount": 10 * KOII,
                            "recent_slot": store.slot(),
                        }
                    )
                )
            )
        for i in range(count):
            clock.advance(0.2)
            envelope = keys[i % 4].sign_transaction(
                {
                    "type": "transfer",
                    "to": keys[(i + 1) % 4].public_key,
                    "amount": i + 1,
                    "recent_slot": store.slot(),
                }
            )
            receipts.append(await store.submit(envelope))
        await store.close()
        return receipts

    return asyncio.run(run())


def reopen(folder: Path, clock: ManualClock, **options: Any) -> LedgerStore:
    return make_store(folder, clock, **options)


def test_restart_replays_to_the_same_root_with_or_without_checkpoint(tmp_path: Path) -> None:
    clock = ManualClock()
    store = make_store(tmp_path, clock, checkpoint_every=10)
    fill(store, clock)
    root, seq, last_hash = store.root(), store.seq, store.last_hash
    from_checkpoint = reopen(tmp_path, clock)
    assert from_checkpoint.stats.replayed < seq  # only the tail after the last checkpoint
    full = reopen(tmp_path, clock, use_checkpoint=False)
    assert full.stats.replayed == seq
    for other in (from_checkpoint, full):
        assert (other.root(), other.seq, other.last_hash) == (root, seq, last_hash)
        other.backend.close()


def test_genesis_is_durable_and_wins_over_later_flags(tmp_path: Path) -> None:
    clock = ManualClock()
    first = make_store(tmp_path, clock)
    genesis = first.genesis
    first.backend.close()
    again = LedgerStore(
        SQLiteLog(tmp_path / "ledger.sqlite3"),
        clock=clock,
        genesis=Genesis(params=LedgerParams(devnet=False), slot_ms=1000),
    )
    assert again.genesis == genesis and again.state.params.devnet is True
    again.backend.close()


def test_the_log_is_append_only(tmp_path: Path) -> None:
    clock = ManualClock()
    fill(make_store(tmp_path, clock), clock, count=2)
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE log SET slot = 0")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM log")


def tamper(folder: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(folder / "ledger.sqlite3") as conn:
        conn.execute("DROP TRIGGER log_no_update")
        conn.execute(sql, params)
        conn.execute("DELETE FROM checkpoints")


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE log SET tx = replace(tx, '\"amount\":3', '\"amount\":4') WHERE seq = 7", "entry_hash"),
        ("UPDATE log SET signature = (SELECT signature FROM log WHERE seq = 3) WHERE seq = 7", "entry_hash"),
        ("UPDATE log SET prev_hash = 'x' WHERE seq = 7", "prev_hash"),
    ],
)
def test_a_tampered_entry_is_reported_by_number(tmp_path: Path, sql: str, why: str) -> None:
    clock = ManualClock()
    fill(make_store(tmp_path, clock), clock, count=10)
    tamper(tmp_path, sql)
    with pytest.raises(LogCorruptionError, match=why) as caught:
        reopen(tmp_path, clock)
    assert caught.value.seq == 7


def test_a_rehashed_forgery_fails_its_signature(tmp_path: Path) -> None:
    """Even with every hash recomputed, a changed transaction no longer matches its signature."""
    clock = ManualClock()
    fill(make_store(tmp_path, clock), clock, count=10)
    from pykoii.service.log import entry_hash_of

    backend = SQLiteLog(tmp_path / "ledger.sqlite3")
    entries = backend.entries(0, 100)
    backend.close()
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        conn.execute("DROP TRIGGER log_no_update")
        conn.execute("DELETE FROM checkpoints")
        prev = entries[5].entry_hash
        for entry in entries[6:]:
            tx = entry.tx.replace(b'"amount":3', b'"amount":4') if entry.seq == 7 else entry.tx
            import hashlib

            new_hash = entry_hash_of(entry.seq, entry.slot, prev, entry.signature, tx)
            conn.execute(
                "UPDATE log SET tx = ?, tx_id = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                (tx, hashlib.sha256(tx).hexdigest(), prev, new_hash, entry.seq),
            )
            prev = new_hash
    with pytest.raises(LogCorruptionError, match="InvalidSignatureError") as caught:
        reopen(tmp_path, clock)
    assert caught.value.seq == 7


def test_slots_never_go_back_across_restarts(tmp_path: Path) -> None:
    clock = ManualClock(start=0.0, wall_start=1_700_000_000.0)
    store = make_store(tmp_path, clock)
    fill(store, clock, count=20)
    last = store.last_slot
    assert last >= 9
    # The machine's wall clock is set back an hour before the restart.
    earlier = ManualClock(start=0.0, wall_start=1_700_000_000.0 - 3600)
    again = reopen(tmp_path, earlier)
    assert again.slot() == last
    again.backend.close()


def test_slot_clock_counts_from_its_anchor() -> None:
    clock = ManualClock(start=50.0, wall_start=10.0)
    slots = SlotClock(clock, anchor_ms=9_000, slot_ms=250)
    assert slots.current() == 4
    clock.advance(0.25)
    assert slots.current() == 5
    assert slots.start_of(6) == pytest.approx(50.5)
    with pytest.raises(ValueError):
        SlotClock(clock, anchor_ms=0, slot_ms=0)


def test_worker_verifier_batches_across_callers_and_returns_errors() -> None:
    alice = Keypair.generate()
    good = [
        alice.sign_transaction({"type": "airdrop", "to": alice.public_key, "amount": n, "recent_slot": 0})
        for n in range(1, 200)
    ]
    forged = {"tx": good[0]["tx"], "signature": good[1]["signature"]}
    verifier = Verifier(1)
    try:

        async def run() -> list[list[Any]]:
            return await asyncio.gather(
                *(verifier.verify(good[i : i + 10]) for i in range(0, 190, 10)),
                verifier.verify([forged, {"tx": 1}]),
            )

        results = asyncio.run(run())
        assert all(
            outcome.tx.amount == n
            for chunk in results[:-1]
            for n, outcome in zip(range(results.index(chunk) * 10 + 1, 999), chunk, strict=False)
        )
        assert [type(error).__name__ for error in results[-1]] == [
            "InvalidSignatureError",
            "MalformedTransactionError",
        ]
        assert verifier.batches < 19  # callers shared batches
        assert len(verifier.verify_sync(good)) == len(good)
    finally:
        verifier.close()


def test_worker_verifier_verifies_a_big_request_in_pieces_over_every_worker_in_order() -> None:
    alice = Keypair.generate()
    good = [
        alice.sign_transaction({"type": "airdrop", "to": alice.public_key, "amount": n, "recent_slot": 0})
        for n in range(1, 41)
    ]
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"x": deep}  # orjson refuses to encode it: that envelope alone is refused
    envelopes: list[Any] = [
        *good[:13],
        {"tx": good[0]["tx"], "signature": good[1]["signature"]},
        deep,
        *good[13:],
    ]
    verifier = Verifier(2, batch_max=8)
    try:
        outcomes = asyncio.run(verifier.verify(envelopes))
        assert [type(o).__name__ for o in outcomes[13:15]] == [
            "InvalidSignatureError",
            "MalformedTransactionError",
        ]
        kept = outcomes[:13] + outcomes[15:]
        assert [o.tx.amount for o in kept] == list(range(1, 41))  # in the request's order
        assert verifier.batches >= 6  # 42 envelopes in pieces of at most 8
        assert all(len(w.sent) == 0 for w in verifier._workers)
    finally:
        verifier.close()


def test_stage_then_commit_is_append_and_a_failed_stage_writes_nothing(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.sqlite3")
    try:
        entry = LogEntry(1, 0, "t1", b"{}", "sig", "0" * 64, "1" * 64, b"{}")
        log.stage([entry])
        assert log.find("t1") is None  # staged is not yet committed
        log.commit()
        assert log.find("t1") == entry
        second = LogEntry(2, 0, "t2", b"{}", "sig", "1" * 64, "2" * 64, b"{}")
        with pytest.raises(sqlite3.IntegrityError):
            log.stage([second, entry])  # seq 1 again: the whole batch is rolled back
        assert log.find("t2") is None
        log.append([second])  # and the log keeps working
        assert [e.seq for e in log.entries(0, 10)] == [1, 2]
    finally:
        log.close()


def test_worker_verifier_fails_the_batches_of_a_dead_worker_with_unavailable() -> None:
    alice = Keypair.generate()
    envelope = alice.sign_transaction(
        {"type": "airdrop", "to": alice.public_key, "amount": 1, "recent_slot": 0}
    )
    verifier = Verifier(1)
    try:
        assert [type(o).__name__ for o in asyncio.run(verifier.verify([envelope]))] == ["Verified"]
        worker = verifier._workers[0]
        worker.process.kill()
        worker.process.join()
        with pytest.raises(LedgerUnavailableError, match="workers are down"):
            asyncio.run(verifier.verify([envelope]))
        with pytest.raises(LedgerUnavailableError, match="workers are down"):
            verifier.verify_sync([envelope] * 64)
    finally:
        verifier.close()


def test_plain_bytes_is_canonical_bytes_of_the_plain_form(tmp_path: Path) -> None:
    """What checkpoints and state roots encode (``plain_bytes``, straight from the value) is
    ``canonical_bytes(to_plain(value))`` exactly, on plain values and on a ledger's whole state."""
    chars = [chr(i) for i in range(0x80)] + [
        "é",
        "中",
        "😀",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\ue000",
        "\uffff",
        "𝔘",
    ]
    text = "".join(chars)
    cases: list[Any] = [
        text,
        {text: 1, "é": 2, "z": 3, "😀": 4, "\uffff": 5, "\ue000": 6, "a": [1, -1, 0, 2**63 - 1, -(2**63)]},
        {char: index for index, char in enumerate(chars)},
        {"n": None, "t": True, "f": False, "e": [], "o": {}, "s": "", "big": 2**64 - 1, "bigger": 2**64},
        {"x": {"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": 2}}},
        {2: "int keys: canonical_bytes does it", 10: 2},
    ]
    clock = ManualClock()
    store = make_store(tmp_path, clock)
    fill(store, clock, count=20)
    cases += [store.state, to_plain(store.state)]
    for case in cases:
        assert plain_bytes(case) == canonical_bytes(to_plain(case))


def test_an_edited_checkpoint_with_its_recorded_root_is_refused(tmp_path: Path) -> None:
    """The attacker edits a checkpoint's state (a forged balance) and its recorded root together;
    the root is no longer the one the log's checkpoint mark records, so it is not loaded."""
    clock = ManualClock()
    fill(make_store(tmp_path, clock), clock, count=10)  # shutdown writes a checkpoint and its mark
    forger = Keypair.generate().public_key
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        seq, state = conn.execute("SELECT seq, state FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        plain = orjson.loads(state)
        plain["balances"][forger] = 10**15
        forged = canonical_bytes(plain)
        conn.execute(
            "UPDATE checkpoints SET state = ?, state_root = ? WHERE seq = ?",
            (forged, hashlib.sha256(forged).hexdigest(), seq),
        )
    with pytest.raises(LogCorruptionError, match=f"checkpoint at seq {seq} records state root"):
        reopen(tmp_path, clock)
    with pytest.raises(LogCorruptionError, match="differs from checkpoint root") as caught:
        reopen(tmp_path, clock, use_checkpoint=False)  # what `ledger verify` does
    assert caught.value.seq == seq


def test_a_checkpoint_is_marked_in_the_log_and_loaded_with_its_tail(tmp_path: Path) -> None:
    clock = ManualClock()
    store = make_store(tmp_path, clock, checkpoint_every=10)
    fill(store, clock, count=30)
    backend = SQLiteLog(tmp_path / "ledger.sqlite3")
    marks = [mark_of(entry) for entry in backend.marks()]
    checkpoints = backend.checkpoint_roots()
    backend.close()
    assert len(marks) >= 2 and all(mark is not None for mark in marks)
    assert dict(m for m in marks if m is not None) == checkpoints  # every checkpoint has its mark
    again = reopen(tmp_path, clock)
    assert again.stats.replayed <= 1 and (again.root(), again.seq) == (store.root(), store.seq)
    again.backend.close()
    full = reopen(tmp_path, clock, use_checkpoint=False)
    assert (full.root(), full.seq) == (store.root(), store.seq)
    full.backend.close()


def test_only_the_newest_checkpoints_keep_their_state_and_verify_still_checks_every_root(
    tmp_path: Path,
) -> None:
    """Each checkpoint is the whole state: the file must not grow by one per interval. Older rows keep
    their seq and root (a full replay still checks each), only the newest keep the state."""
    clock = ManualClock()
    store = make_store(tmp_path, clock, checkpoint_every=5)
    fill(store, clock, count=80)  # a due checkpoint may wait (a quiet moment, or 7 entries): room for 4+
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        rows = conn.execute("SELECT seq, length(state) FROM checkpoints ORDER BY seq").fetchall()
    assert len(rows) > KEPT_CHECKPOINT_STATES + 1
    kept = [seq for seq, size in rows if size > 0]
    assert kept == [seq for seq, _ in rows[-KEPT_CHECKPOINT_STATES:]]
    # The newest is loaded; a replay from genesis compares every recorded root, emptied or not.
    again = reopen(tmp_path, clock)
    assert (again.root(), again.seq) == (store.root(), store.seq)
    again.backend.close()
    full = reopen(tmp_path, clock, use_checkpoint=False)
    assert (full.root(), full.seq) == (store.root(), store.seq)
    full.backend.close()
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:  # an emptied row's root is still checked
        conn.execute("UPDATE checkpoints SET state_root = ? WHERE seq = ?", ("0" * 64, rows[0][0]))
    with pytest.raises(LogCorruptionError, match="differs from checkpoint root"):
        reopen(tmp_path, clock, use_checkpoint=False)


def test_replay_recomputes_every_stored_receipt(tmp_path: Path) -> None:
    clock = ManualClock()
    fill(make_store(tmp_path, clock), clock, count=10)
    tamper(
        tmp_path, "UPDATE log SET receipt = replace(receipt, '\"events\":[', '\"events\":[{}') WHERE seq = 7"
    )
    with pytest.raises(LogCorruptionError, match="stored receipt differs") as caught:
        reopen(tmp_path, clock, use_checkpoint=False)
    assert caught.value.seq == 7
