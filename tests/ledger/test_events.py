"""Events and receipts in their plain (JSON) form."""

from __future__ import annotations

from pykoii.ledger import event_to_plain
from pykoii.ledger.distribution import list_root
from pykoii.ledger.events import RoundPaid, Submitted

from .helpers import World


def test_event_plain_form_has_kind_and_fields():
    event = Submitted(task_id="t", round=3, submitter="s")
    assert event.kind == "Submitted"
    assert event_to_plain(event) == {"kind": "Submitted", "task_id": "t", "round": 3, "submitter": "s"}


def test_a_paid_round_reports_its_totals():
    world = World(node_count=2)
    world.submit_all(0)
    chosen = world.submit_list(0)
    paid = world.apply("payout", world.outsider, 31, round=0).events[-1]
    assert paid == RoundPaid(
        task_id=world.task_id,
        round=0,
        attempt=0,
        distribution_submitter=chosen,
        root=list_root({key: 10 * 10**9 // 2 for key in world.nodes}, {}),
        rewarded=2,
        slashed=0,
        reward_total=10 * 10**9 // 2 * 2,
        slash_total=0,
        capped={},
    )
