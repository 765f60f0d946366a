"""The round schedule (pykoii.node.schedule) against the real ledger state machine."""

from __future__ import annotations

import json

from pykoii.ledger import (
    DistributionList,
    LedgerParams,
    LedgerState,
    apply_transaction,
    decode_transaction,
    default_distribution_for,
    selected_submitter,
    to_plain,
)
from pykoii.ledger.audits import audit_ring
from pykoii.ledger.codec import derive_address
from pykoii.ledger.distribution import distribution_transactions
from pykoii.ledger.rounds import reveal_window
from pykoii.node.schedule import (
    Action,
    ActionKind,
    NodeRecord,
    decide_vote,
    due_actions,
    list_matches,
    payout_ready,
    selected_for,
    submitters_of,
)
from tests.ledger.helpers import HELLO_TASK, KOII, commitment, secret

TASK = {**HELLO_TASK, "task_audit_program": "hello", "allowed_failed_distributions": 2}


class Net:
    """A devnet with a task created at slot 0 (round r = slots 10r..10r+9) and ``n`` staked nodes."""

    def __init__(self, n: int = 6) -> None:
        self.state = LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0))
        self.nodes = [derive_address("schedule-test", str(i)) for i in range(n)]
        manager = derive_address("schedule-test", "manager")
        self.tx("airdrop", manager, 0, to=manager, amount=500 * KOII)
        self.task_id = self.tx("create_task", manager, 0, **TASK).events[0].task_id
        for node in self.nodes:
            self.tx("airdrop", node, 0, to=node, amount=10 * KOII)
            self.tx("stake", node, 0, task_id=self.task_id, amount=5 * KOII, ip_address="")
        self.records = {node: NodeRecord() for node in self.nodes}

    @property
    def task(self):
        return self.state.tasks[self.task_id]

    def tx(self, kind, signer, slot, **fields):
        body = {"type": kind, "signer": signer, "recent_slot": slot, **fields}
        return apply_transaction(self.state, decode_transaction(body), slot)

    def submit(self, node, round_number, slot, value="Hello, World!"):
        self.tx(
            "submit",
            node,
            slot,
            task_id=self.task_id,
            round=round_number,
            submission_value=value,
            commitment=commitment(self.task_id, round_number, node),
        )

    def reveal_all(self, round_number):
        """Every submitter reveals at the start of the reveal window (slot 13 for round 0)."""
        slot = reveal_window(self.task, round_number).start
        for node in self.task.submissions[round_number]:
            self.tx(
                "reveal",
                node,
                slot,
                task_id=self.task_id,
                round=round_number,
                secret=secret(self.task_id, round_number, node),
            )


def kinds(actions: list[Action]) -> list[tuple[str, int]]:
    return [(a.kind.value, a.round) for a in actions]


def test_round_zero_only_runs_the_task():
    net = Net()
    me = net.nodes[0]
    assert kinds(due_actions(net.task, 5, NodeRecord(), me)) == [("run_task", 0)]
    record = NodeRecord()
    record.mark(Action(ActionKind.RUN_TASK, 0).key)
    assert due_actions(net.task, 5, record, me) == []


def test_rounds_stack_work_then_submission_then_audit():
    net = Net()
    me = net.nodes[0]
    record = NodeRecord(done={"run_task:0"})
    # Slot 10 opens round 1: work on 1 and submit the proof of 0.
    assert kinds(due_actions(net.task, 10, record, me)) == [("run_task", 1), ("submit_proof", 0)]
    # After the submission window, the proof is no longer due.
    record.mark("run_task:1")
    assert due_actions(net.task, 13, record, me) == []
    for node in net.nodes:
        net.submit(node, 0, 11)
    # Reveal window (slot 13): reveal the beacon secret committed with the proof.
    assert kinds(due_actions(net.task, 13, record, me)) == [("reveal", 0)]
    net.reveal_all(0)
    # Audit window: the candidates the beacon assigned to this node, with their proofs.
    actions = due_actions(net.task, 14, record, me)
    assert kinds(actions) == [("audit_proofs", 0)]
    expected = audit_ring(None, net.task, 0).candidates_of(me)
    assert [c for c, _ in actions[0].candidates] == expected
    assert all(value == "Hello, World!" for _, value in actions[0].candidates)
    # Judgement window, nobody accused: nothing.
    assert due_actions(net.task, 17, record, me) == []


def test_no_proof_for_a_round_the_node_did_not_work():
    net = Net()
    record = NodeRecord(done={"run_task:1"})  # started during round 1
    assert kinds(due_actions(net.task, 20, record, net.nodes[0])) == [("run_task", 2), ("submit_proof", 1)]
    assert kinds(due_actions(net.task, 10, record, net.nodes[0])) == []


def test_restarted_node_with_empty_record_never_submits_twice():
    net = Net()
    me = net.nodes[0]
    net.submit(me, 0, 10)
    record = NodeRecord(done={"run_task:0", "run_task:1"})
    assert due_actions(net.task, 11, record, me) == []
    # and the record's own mark is enough when the ledger has not shown the proof yet
    other = net.nodes[1]
    record2 = NodeRecord(done={"run_task:0", "run_task:1", "submit_proof:0"})
    assert due_actions(net.task, 11, record2, other) == []


def test_unstaked_or_underfunded_node_does_not_work_or_submit():
    net = Net()
    outsider = derive_address("schedule-test", "outsider")
    assert due_actions(net.task, 11, NodeRecord(done={"run_task:0"}), outsider) == []


def test_accused_candidate_judged_right_earlier_gets_a_true_vote_later():
    net = Net()
    for node in net.nodes:
        net.submit(node, 0, 10)
    net.reveal_all(0)
    ring = audit_ring(None, net.task, 0)
    me = net.nodes[0]
    candidate = ring.candidates_of(me)[0]
    record = NodeRecord(done={"run_task:0", "run_task:1"})
    # The node audited the candidate: right, unaccused, so no vote.
    record.note_verdict(ActionKind.AUDIT_PROOFS, 0, candidate, True)
    actions = due_actions(net.task, 14, record, me)
    assert candidate not in [c for c, _ in actions[0].candidates] and actions[0].votes == ()
    # Another auditor accuses it in the audit window's last slot; this node's true vote is due
    # without re-auditing, and stays due through the judgement window.
    accuser = next(a for a in ring.auditors_of(candidate) if a != me)
    net.tx("audit_submission", accuser, 15, task_id=net.task_id, round=0, candidate=candidate, is_valid=False)
    assert due_actions(net.task, 15, record, me)[0].votes == ((candidate, True),)
    assert due_actions(net.task, 19, record, me)[0].votes == ((candidate, True),)
    net.tx("audit_submission", me, 19, task_id=net.task_id, round=0, candidate=candidate, is_valid=True)
    assert due_actions(net.task, 19, record, me) == []


def test_panel_members_beyond_the_sample_judge_an_accused_proof():
    net = Net(n=8)
    for node in net.nodes:
        net.submit(node, 0, 10)
    net.reveal_all(0)
    ring = audit_ring(None, net.task, 0)
    candidate = net.nodes[0]
    sample, panel = ring.auditors_of(candidate), ring.panel_of(candidate)
    outsider_of_sample = next(n for n in panel if n not in sample)
    record = NodeRecord(done={"run_task:0", "run_task:1"})
    assert candidate not in [
        c for a in due_actions(net.task, 14, record, outsider_of_sample) for c, _ in a.candidates
    ]
    net.tx(
        "audit_submission", sample[0], 14, task_id=net.task_id, round=0, candidate=candidate, is_valid=False
    )
    actions = due_actions(net.task, 17, record, outsider_of_sample)
    assert [c for c, _ in actions[0].candidates] == [candidate]  # audit it, then vote


def test_decide_vote_follows_koii():
    assert decide_vote(False, False) is False
    assert decide_vote(False, True) is False
    assert decide_vote(True, True) is True
    assert decide_vote(True, False) is None


def test_submitters_carry_valid_flag_net_votes_and_stake():
    net = Net()
    values = {node: "Hello, World!" for node in net.nodes}
    bad = net.nodes[2]
    values[bad] = "Goodbye"
    for node in net.nodes:
        net.submit(node, 0, 10, values[node])
    net.reveal_all(0)
    auditors = audit_ring(None, net.task, 0).auditors_of(bad)
    for auditor in auditors[:2]:
        net.tx("audit_submission", auditor, 14, task_id=net.task_id, round=0, candidate=bad, is_valid=False)
    net.tx("audit_submission", auditors[2], 14, task_id=net.task_id, round=0, candidate=bad, is_valid=True)
    by_key = {s.public_key: s for s in submitters_of(net.task, 0)}
    assert by_key[bad].valid is False and by_key[bad].votes == -1
    assert all(s.valid and s.votes == 1 for k, s in by_key.items() if k != bad)
    assert by_key[bad].stake == 5 * KOII and by_key[bad].submission_value == "Goodbye"
    assert list(by_key) == net.nodes  # submission order


def test_list_matches_compares_roots_of_complete_lists_ignoring_zero_entries():
    net = Net()
    for node in net.nodes:
        net.submit(node, 0, 10)
    net.reveal_all(0)
    chosen = selected_for(net.task, 0, 0)
    default = default_distribution_for(net.task, 0)
    bodies = distribution_transactions(net.task_id, 0, default.rewards, default.slashes)
    mine = DistributionList(rewards=dict(default.rewards))
    assert not list_matches(net.task, 0, chosen, mine)  # no list yet
    commit = dict(bodies[0])
    net.tx(commit.pop("type"), chosen, 20, **commit)
    assert not list_matches(net.task, 0, chosen, mine)  # committed, chunk not arrived: incomplete
    chunk = dict(bodies[1])
    net.tx(chunk.pop("type"), chosen, 20, **chunk)
    zero = next(iter(mine.rewards))
    assert list_matches(net.task, 0, chosen, mine)
    assert list_matches(net.task, 0, chosen, DistributionList(rewards=mine.rewards, slashes={zero: 0}))
    assert not list_matches(net.task, 0, chosen, DistributionList(rewards={**mine.rewards, zero: 1}))


def test_distribution_selected_node_submits_others_audit_then_everyone_may_pay():
    net = Net()
    for node in net.nodes:
        net.submit(node, 0, 10)
    net.reveal_all(0)
    chosen = selected_submitter(None, net.task, 0, 0)
    assert selected_for(net.task, 0, 0) == chosen
    done = {"run_task:0", "run_task:1", "run_task:2", "submit_proof:1"}
    for node in net.nodes:
        actions = due_actions(net.task, 20, NodeRecord(done=set(done)), node)
        expected = [("submit_distribution", 0)] if node == chosen else []
        assert kinds(actions) == expected
    dist = default_distribution_for(net.task, 0)
    for body in distribution_transactions(net.task_id, 0, dist.rewards, dist.slashes):
        net.tx(body.pop("type"), chosen, 20, **body)
    other = next(n for n in net.nodes if n != chosen)
    actions = due_actions(net.task, 23, NodeRecord(done=set(done)), other)
    assert kinds(actions) == [("audit_distribution", 0)]
    assert actions[0].candidates[0][0] == chosen
    assert due_actions(net.task, 23, NodeRecord(done=set(done)), chosen) == []
    # Payout: not before the list's judgement window closes, then for every submitter until settled.
    assert not payout_ready(net.task, 0, 28)
    assert payout_ready(net.task, 0, 29)  # the last slot of round 2, before round 1's list
    assert kinds(due_actions(net.task, 29, NodeRecord(done=set(done)), other)) == [("payout", 0)]
    net.tx("payout", other, 29, task_id=net.task_id, round=0)
    assert due_actions(net.task, 29, NodeRecord(done=set(done)), chosen) == []


def test_missing_list_passes_to_the_next_attempt():
    net = Net()
    for node in net.nodes:
        net.submit(node, 0, 10)
    net.reveal_all(0)
    first, second = selected_for(net.task, 0, 0), selected_for(net.task, 0, 1)
    done = {"run_task:0", "run_task:1", "run_task:2", "run_task:3"}
    assert not payout_ready(net.task, 0, 26)
    actions = due_actions(net.task, 30, NodeRecord(done=set(done)), second)
    assert ("submit_distribution", 0) in kinds(actions)
    assert actions[-1].attempt == 1
    assert ("submit_distribution", 0) not in kinds(
        due_actions(net.task, 30, NodeRecord(done=set(done)), first)
    )


def test_plain_json_task_gives_the_same_actions():
    net = Net()
    for node in net.nodes:
        net.submit(node, 0, 10)
    plain = json.loads(json.dumps(to_plain(net.task)))
    record = NodeRecord(done={"run_task:0", "run_task:1"})
    for slot in (12, 13, 20):
        for node in net.nodes:
            assert due_actions(plain, slot, record, node) == due_actions(net.task, slot, record, node)


def test_node_record_round_trips_through_json_and_prunes():
    record = NodeRecord()
    record.mark("run_task:0")
    record.mark("submit_proof:4")
    record.mark_vote(ActionKind.AUDIT_PROOFS, 4, "abc")
    record.note_verdict(ActionKind.AUDIT_PROOFS, 4, "abc", False)
    record.note_verdict(ActionKind.AUDIT_PROOFS, 1, "def", True)
    again = NodeRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    again.prune(3)
    assert again.done == {"run_task:0", "submit_proof:4", "audit_proofs:4:abc"}
    assert again.verdicts == {"audit_proofs:4:abc": False}
    assert NodeRecord.from_json(None) == NodeRecord()
