"""Pages of a round and of its lists read from the kept sorted keys (``views.sorted_keys``) answer
exactly what sorting the whole round for each page answered, whatever the cursor, the limit and
what changed in the round between two reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pykoii.ledger import default_distribution_for, judgement_window, reveal_window, settle_slot
from pykoii.ledger.rounds import audit_window, submission_window
from pykoii.service import views
from tests.ledger.helpers import KOII, STAKE, World, address, apply, commitment

LIMITS = (1, 2, 7, 40, 1000)


def reference_page(keys: Any, after: str, limit: int) -> tuple[list[str], str | None]:
    """What a page was before the keys were kept: every key sorted, for each page."""
    chosen = sorted(key for key in keys if key > after)
    page = chosen[:limit]
    return page, (page[-1] if len(chosen) > limit else None)


def cursors(keys: list[str]) -> list[str]:
    """Cursors at both ends, on every key, and between keys (not a key of the round)."""
    ordered = sorted(keys)
    return ["", "1", ordered[0][:-1], *ordered, *(k[:-1] + "z" for k in ordered[:5]), "z" * 44]


def body(view: dict[str, Any]) -> bytes:
    return orjson.dumps(view, default=str)


def cold(view_of: Any) -> bytes:
    """The answer computed with nothing kept (as the first read of a round is); what was kept is
    put back after, so the next read uses it as it was."""
    kept = dict(views._SORTED)
    views._SORTED.clear()
    try:
        return body(view_of())
    finally:
        views._SORTED.clear()
        views._SORTED.update(kept)


def check_round(world: World, slot: int) -> None:
    task = world.task
    submissions = task.submissions[0]
    default = default_distribution_for(task, 0)
    for limit in LIMITS:
        for after in cursors(list(submissions)):
            view = views.round_view(task, 0, slot, after, limit)
            page, cursor = reference_page(submissions, after, limit)
            assert list(view["submissions"]) == page and view["next_after"] == cursor, (after, limit)
            for part in ("rewards", "slashes"):  # in the order of the whole list, as before
                whole = getattr(default, part).items()
                assert list(view["default_distribution"][part].items()) == [i for i in whole if i[0] in page]
            assert body(view) == cold(lambda: views.round_view(task, 0, slot, after, limit))  # noqa: B023
    for key in [*submissions, world.outsider]:
        view = views.round_view(task, 0, slot, key=key)
        assert list(view["submissions"]) == ([key] if key in submissions else [])
        assert view["next_after"] is None
        assert body(view) == cold(lambda: views.round_view(task, 0, slot, key=key))  # noqa: B023


def test_round_pages_match_sorting_the_round_at_every_phase() -> None:
    world = World(node_count=23)
    world.nodes.reverse()  # submitted in an order other than the keys' (a page keeps the round's order)
    faulty, unrevealed = world.nodes[3], world.nodes[5]
    world.submit_all(0, values={faulty: "garbage"}, reveal=False)
    check_round(world, submission_window(world.task, 0).stop - 1)  # the set is still open
    world.reveal_all(0, [n for n in world.nodes if n != unrevealed])
    check_round(world, reveal_window(world.task, 0).stop)  # ring final
    world.accuse(0, faulty, voters=3)
    check_round(world, audit_window(world.task, 0).stop)  # votes may still come
    after_judgement = judgement_window(world.task, 0).stop
    check_round(world, after_judgement)  # which proofs stood is fixed
    # A slashed submitter's stake and the pot change after the page was kept: the page follows.
    world.apply("stake", faulty, after_judgement, amount=STAKE)
    check_round(world, after_judgement)
    chosen = world.submit_list(0)
    world.apply("payout", world.outsider, settle_slot(world.task, 0), round=0)
    assert world.task.distributions_audit_record[0] == "PayoutSuccessful"
    check_round(world, settle_slot(world.task, 0))
    dist = world.task.distribution_lists[0][chosen]
    entries = dist.rewards.keys() | dist.slashes.keys()
    for limit in LIMITS:
        for after in cursors(list(entries)):
            view = views.distribution_view(world.task, 0, "", after, limit)
            page, cursor = reference_page(entries, after, limit)
            assert [e["key"] for e in view["entries"]] == page and view["next_after"] == cursor
            assert body(view) == cold(lambda: views.distribution_view(world.task, 0, "", after, limit))  # noqa: B023


def test_kept_keys_follow_new_submissions_and_stay_bounded() -> None:
    world = World(node_count=6)
    task, slot = world.task, submission_window(world.task, 0).start
    world.submit_all(0, reveal=False)
    first = views.round_view(task, 0, slot, limit=2)
    held = views.sorted_keys(("submissions", task.task_id, 0), task.submissions[0])
    assert views.round_view(task, 0, slot, first["next_after"], 2)["submissions"]
    assert views.sorted_keys(("submissions", task.task_id, 0), task.submissions[0]) is held  # kept
    late = address("late")  # a key whose proof arrives after the page was read
    apply(world.state, "airdrop", late, slot, to=late, amount=20 * KOII)
    world.apply("stake", late, slot, amount=STAKE)
    commit = commitment(task.task_id, 0, late)
    world.apply("submit", late, slot, round=0, submission_value="Hello, World!", commitment=commit)
    everyone = sorted(task.submissions[0])
    seen: list[str] = []
    after = ""
    while True:
        view = views.round_view(task, 0, slot, after, 2)
        seen += list(view["submissions"])
        after = view["next_after"]
        if after is None:
            break
    assert seen == everyone and late in seen
    for number in range(1, 3 * views.ROUNDS_CACHED):  # rounds nobody submitted to: nothing kept
        views.round_view(task, number, slot)
    assert views._SORTED[("submissions", task.task_id, 0)] is not None
    for number in range(3 * views.ROUNDS_CACHED):
        views.sorted_keys(("submissions", task.task_id, number), {f"k{number}": 1})
    assert len(views._SORTED) == views.ROUNDS_CACHED


@pytest.mark.parametrize("limit", [1, 3])
def test_stakers_pages_are_every_account_once(limit: int) -> None:
    world = World(node_count=7)
    accounts = world.task.stake_list.keys() | world.task.available_balances.keys()
    seen: list[str] = []
    after = ""
    while True:
        view = views.stakers_view(world.task, after, limit)
        page, cursor = reference_page(accounts, after, limit)
        assert [e["key"] for e in view["entries"]] == page and view["next_after"] == cursor
        seen += page
        if cursor is None:
            break
        after = cursor
    assert seen == sorted(accounts)
