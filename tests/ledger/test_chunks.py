"""Distribution lists in chunks: committed by a Merkle root, each chunk proven as it arrives, paid
only when complete, with a receipt that stays small."""

from __future__ import annotations

import pytest

from pykoii.errors import (
    DuplicateSubmissionError,
    InvalidDistributionListError,
    PayoutNotReadyError,
    UnknownSubmissionError,
    WrongPhaseError,
)
from pykoii.ledger import default_distribution_for, selected_submitter
from pykoii.ledger import distribution as distribution_module
from pykoii.ledger.codec import canonical_bytes
from pykoii.ledger.distribution import distribution_transactions, list_chunks, list_root
from pykoii.ledger.merkle import inclusion_proofs, merkle_root, verify_inclusion
from pykoii.ledger.types import DISTRIBUTION_CHUNK_KEYS

from .helpers import KOII, STAKE, World, apply, assert_rejected


def test_merkle_proofs_verify_every_leaf_and_nothing_else():
    for size in (1, 2, 3, 5, 8, 13):
        leaves = [b"leaf %d" % i for i in range(size)]
        root = merkle_root(leaves)
        for index, proof in enumerate(inclusion_proofs(leaves)):
            assert verify_inclusion(leaves[index], index, size, proof, root)
            assert not verify_inclusion(b"other", index, size, proof, root)
            assert not verify_inclusion(leaves[index], size, size, proof, root)  # index out of range
            if size > 1:
                assert not verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)
    assert not verify_inclusion(b"x", 0, 1, ["zz"], merkle_root([b"x"]))  # not hex: false, no raise


def test_rfc9162_root_of_known_leaves():
    # RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)); two leaves: SHA-256(0x01 || l0 || l1).
    import hashlib

    l0, l1 = hashlib.sha256(b"\x00a").digest(), hashlib.sha256(b"\x00b").digest()
    assert merkle_root([b"a"]) == l0.hex()
    assert merkle_root([b"a", b"b"]) == hashlib.sha256(b"\x01" + l0 + l1).hexdigest()


def test_canonical_chunks_sorted_bounded_and_zero_free():
    rewards = {f"k{i:05d}": i for i in range(2500)}
    chunks = list_chunks(rewards, {"k00003": 7})
    assert [len(c.rewards.keys() | c.slashes.keys()) for c in chunks] == [1000, 1000, 499]  # k00000 pays 0
    assert chunks[0].slashes == {"k00003": 7} and "k00000" not in chunks[0].rewards
    flat = [k for c in chunks for k in sorted(c.rewards.keys() | c.slashes.keys())]
    assert flat == sorted(flat)
    assert list_chunks({}, {}) == [distribution_module.DistributionList()]  # one empty chunk
    # The root does not depend on the order the list's dicts were built in.
    assert list_root(dict(reversed(rewards.items())), {"k00003": 7}) == list_root(rewards, {"k00003": 7})


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Two keys per chunk, so a 5-node round has a 3-chunk list."""
    monkeypatch.setattr(distribution_module, "DISTRIBUTION_CHUNK_KEYS", 2)
    return 2


def committed(world: World) -> tuple[str, list[dict]]:
    """Round 0 submitted (node 2 wrong and accused), the default list committed; its chunk bodies."""
    world.submit_all(0, {world.nodes[2]: "wrong"})
    world.accuse(0, world.nodes[2], voters=2)
    chosen = selected_submitter(None, world.task, 0, 0)
    assert chosen is not None
    default = default_distribution_for(world.task, 0)
    commit, *chunks = distribution_transactions(world.task_id, 0, default.rewards, default.slashes)
    commit.pop("type")
    world.apply("submit_distribution", chosen, 21, **commit)
    for chunk in chunks:
        chunk.pop("type")
    return chosen, chunks


def test_chunks_in_any_order_then_payout_pays_the_whole_list(small_chunks: int) -> None:
    world = World(node_count=5)
    chosen, chunks = committed(world)
    assert len(chunks) == 3 and world.task.distribution_lists[0][chosen].chunks == 3
    received = []
    for chunk in reversed(chunks):
        (event,) = world.apply("upload_distribution_chunk", chosen, 22, **chunk).events
        received.append(event.received)
    assert received == [1, 2, 3]
    listed = world.task.distribution_lists[0][chosen]
    assert listed.complete and listed.received == {2: 1, 1: 2, 0: 2}
    default = default_distribution_for(world.task, 0)
    assert (listed.rewards, listed.slashes) == (default.rewards, default.slashes)
    stake_before = world.task.stake_list[world.nodes[2]]
    (paid,) = world.apply("payout", world.outsider, 31, round=0).events
    assert (paid.kind, paid.rewarded, paid.slashed, paid.capped) == ("RoundPaid", 4, 1, {})
    assert paid.root == list_root(default.rewards, default.slashes)
    task = world.task
    assert all(task.available_balances[k] == 10 * KOII // 4 for k in default.rewards)
    assert task.stake_list[world.nodes[2]] == stake_before - STAKE * 70 // 100


def test_a_chunk_must_prove_itself_against_the_committed_root(small_chunks: int) -> None:
    world = World(node_count=5)
    chosen, chunks = committed(world)
    swapped = {**chunks[0], "index": 1}
    assert_rejected(
        world.state,
        InvalidDistributionListError,
        "upload_distribution_chunk",
        chosen,
        22,
        ("chunk 1 with this proof is not part of the committed root",),
        **swapped,
    )
    richer = {**chunks[1], "rewards": {k: v + 1 for k, v in chunks[1]["rewards"].items()}}
    assert_rejected(
        world.state, InvalidDistributionListError, "upload_distribution_chunk", chosen, 22, (), **richer
    )
    world.apply("upload_distribution_chunk", chosen, 22, **chunks[0])
    assert_rejected(
        world.state,
        DuplicateSubmissionError,
        "upload_distribution_chunk",
        chosen,
        23,
        (f"chunk 0 of {chosen}'s list for round 0 was already received",),
        **chunks[0],
    )
    other = world.other_submitter(0, chosen)
    assert_rejected(
        world.state,
        UnknownSubmissionError,
        "upload_distribution_chunk",
        other,
        22,
        (f"{other} committed no distribution list for round 0",),
        **chunks[1],
    )
    assert_rejected(
        world.state,
        WrongPhaseError,
        "upload_distribution_chunk",
        chosen,
        24,
        ("distribution chunk for round 0 arrived at slot 24", "in slots 21–23"),
        **chunks[1],
    )


def test_a_key_twice_in_one_list_is_refused_even_when_its_root_proves_it(small_chunks: int) -> None:
    world = World(node_count=5)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    twice = world.nodes[0]
    # A hand-made list whose two chunks both pay the same key, committed by its own root.
    leaves = [canonical_bytes({"rewards": {twice: 1}, "slashes": {}})] * 2
    root, proofs = merkle_root(leaves), inclusion_proofs(leaves)
    world.apply("submit_distribution", chosen, 21, round=0, root=root, chunks=2)
    head = {"task_id": world.task_id, "round": 0, "rewards": {twice: 1}, "slashes": {}}
    world.apply("upload_distribution_chunk", chosen, 21, **head, index=0, proof=proofs[0])
    assert_rejected(
        world.state,
        InvalidDistributionListError,
        "upload_distribution_chunk",
        chosen,
        21,
        (f"rewards[{twice}] is already in an earlier chunk of this list",),
        **head,
        index=1,
        proof=proofs[1],
    )


def test_bounty_is_checked_over_the_chunks_received(small_chunks: int) -> None:
    world = World(node_count=5)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    keys = sorted(world.nodes)
    rewards = {key: 22 * KOII // 10 for key in keys}  # 11 KOII in all; the round may pay 10
    commit, *chunks = distribution_transactions(world.task_id, 0, rewards, {})
    commit.pop("type")
    world.apply("submit_distribution", chosen, 21, **commit)
    for chunk in chunks[:2]:
        chunk.pop("type")
        world.apply("upload_distribution_chunk", chosen, 21, **chunk)
    last = chunks[2]
    last.pop("type")
    assert_rejected(
        world.state,
        InvalidDistributionListError,
        "upload_distribution_chunk",
        chosen,
        21,
        ("rewards sum to 11 KOII", "with this chunk", "may pay at most 10 KOII"),
        **last,
    )


def test_an_incomplete_list_is_never_paid_the_next_attempt_is(small_chunks: int) -> None:
    world = World(node_count=5)
    chosen, chunks = committed(world)
    for chunk in chunks[:2]:  # the last chunk never arrives
        world.apply("upload_distribution_chunk", chosen, 22, **chunk)
    assert not world.task.distribution_lists[0][chosen].complete
    assert_rejected(
        world.state,
        PayoutNotReadyError,
        "payout",
        world.outsider,
        31,
        ("(attempt 1) is audited in slots 34–36",),
        task_id=world.task_id,
        round=0,
    )
    second = world.submit_list(0, attempt=1)
    assert second != chosen
    (paid,) = world.apply("payout", world.outsider, 41, round=0).events
    assert (paid.attempt, paid.distribution_submitter) == (1, second)


def test_commitment_bounds(small_chunks: int) -> None:
    world = World(node_count=5)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    for fields, fragment in (
        ({"root": "ab" * 32, "chunks": 4}, "its list has 1 to 3 chunks of at most 2 keys"),
        ({"root": "ab" * 32, "chunks": 0}, "chunks is 0"),
        ({"root": "AB" * 32, "chunks": 1}, "lowercase hex SHA-256 Merkle root"),
    ):
        assert_rejected(
            world.state,
            InvalidDistributionListError,
            "submit_distribution",
            chosen,
            21,
            (fragment,),
            task_id=world.task_id,
            round=0,
            **fields,
        )


def test_a_capped_slash_is_recorded_in_the_receipt_and_the_list():
    """Two rounds' lists slash the same stake; the second payout can take only what is left."""
    world = World(node_count=4)
    faulty = world.nodes[1]
    for number in (0, 1):
        world.submit_all(number, {faulty: "wrong"})
        world.accuse(number, faulty, voters=2)
    world.submit_list(0)  # slots 21–23: 70 % of the stake
    world.submit_list(1)  # slots 31–33: 70 % of the same, still whole, stake
    (first,) = world.apply("payout", world.outsider, 41, round=0).events
    assert first.capped == {}
    left = world.task.stake_list[faulty]
    assert left == STAKE - STAKE * 70 // 100
    (second,) = world.apply("payout", world.outsider, 41, round=1).events
    assert second.capped == {faulty: left} and second.slash_total == left
    assert faulty not in world.task.stake_list
    paid_list = world.task.distribution_lists[1][second.distribution_submitter]
    assert paid_list.capped == {faulty: left}


def test_a_real_size_list_fits_normal_transactions():
    """2,001 submitters: three chunks of at most DISTRIBUTION_CHUNK_KEYS keys, each transaction far
    below CometBFT's default 1 MiB, and a one-event receipt."""
    world = World(node_count=2001)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    default = default_distribution_for(world.task, 0)
    bodies = distribution_transactions(world.task_id, 0, default.rewards, default.slashes)
    assert len(bodies) == 1 + 3
    assert max(len(canonical_bytes(b)) for b in bodies) < 80_000
    for body in bodies:
        kind = body.pop("type")
        apply(world.state, kind, chosen, 21, **body)
    receipt = world.apply("payout", world.outsider, 31, round=0)
    assert len(receipt.events) == 1 and receipt.events[0].rewarded == 2001
    assert len(canonical_bytes(distribution_module.to_plain(receipt.events[0]))) < 1000
    assert DISTRIBUTION_CHUNK_KEYS == 1000
