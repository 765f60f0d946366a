"""Events and receipts in their plain (JSON) form."""

from __future__ import annotations

from pykoii.ledger import event_to_plain
from pykoii.ledger.events import Rewarded, RoundPaid

from .helpers import World


def test_event_plain_form_has_kind_and_fields():
    event = Rewarded(task_id="t", round=3, staker="s", amount=5)
    assert event.kind == "Rewarded"
    assert event_to_plain(event) == {
        "kind": "Rewarded",
        "task_id": "t",
        "round": 3,
        "staker": "s",
        "amount": 5,
    }


def test_a_paid_round_reports_its_totals():
    world = World(node_count=2)
    world.submit_all(0)
    chosen = world.submit_list(0)
    paid = world.apply("payout", world.outsider, 27, round=0).events[-1]
    assert paid == RoundPaid(
        task_id=world.task_id,
        round=0,
        attempt=0,
        distribution_submitter=chosen,
        reward_total=10 * 10**9 // 2 * 2,
        slash_total=0,
    )
