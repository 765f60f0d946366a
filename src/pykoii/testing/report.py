"""Text reports of a simulation: the round timeline, per-phase timing, rewards and slashes.

``render(result)`` gives what ``pykoii simulate`` prints after the run. The timeline is the seed's
gradual-consensus picture as text: round r is worked on during its own slots, its proofs are
submitted and audited at the start of round r+1, and its distribution list is submitted, audited
and paid out in round r+2 (later if a list fails its audit).
"""

from __future__ import annotations

import math
import statistics

from ..config import roe_to_koii
from ..ledger.rounds import distribution_audit_window, distribution_window
from .result import PHASES, SimulationResult

MAX_DIAGRAM_SLOTS = 120
MAX_NODE_ROWS = 20


def _koii(roe: int) -> str:
    return f"{roe_to_koii(roe)} KOII"


def _slots(window: range) -> str:
    return f"{window.start}-{window.stop - 1}"


def timeline(result: SimulationResult) -> str:
    """Per round: work, proof submission and audit, distribution list, payout."""
    task = result.final_state.tasks[result.task_id]  # type: ignore[index]
    lines = ["Timeline (slots; round r: work in r, proofs in r+1, list and payout in r+2)"]
    for report in result.reports:
        r = report.round
        lists = (
            ", ".join(
                f"attempt {attempt} by node {_index(result, who)} at slot {slot} "
                f"(audit {_slots(distribution_audit_window(task, r, attempt))})"
                for attempt, slot, who in report.lists
            )
            or f"none (window {_slots(distribution_window(task, r))})"
        )
        votes = f"{report.false_votes} false / {report.true_votes} true votes"
        accused = f", {len(report.triggered)} accused" if report.triggered else ""
        if report.outcome == "paid":
            slashed = ", ".join(
                f"node {_index(result, key)} -{_koii(amount)}" for key, amount in report.slashed.items()
            )
            payout = (
                f"paid {_koii(report.reward_total)} to {report.rewarded} node(s) at slot {report.payout_slot}"
                + (f"; slashed {slashed}" if slashed else "")
            )
        elif report.outcome == "failed":
            payout = f"FAILED at slot {report.payout_slot} (no list stood its audit)"
        else:
            payout = "not settled"
        lines.append(
            f"  round {r:>3}  work {_slots(report.work)} | proofs {_slots(report.submission_window)}: "
            f"{report.submissions} submitted | audit {_slots(report.audit_window)}: {votes}{accused} | "
            f"list: {lists} | payout: {payout}"
        )
    diagram = stacking_diagram(result)
    if diagram:
        lines += ["", diagram]
    return "\n".join(lines)


def stacking_diagram(result: SimulationResult) -> str:
    """One row per round, one character per slot: W work, S proof submission, A proof audit,
    D list submission, d list audit, P payout (only for short runs)."""
    task = result.final_state.tasks[result.task_id]  # type: ignore[index]
    if not any(r.payout_slot is not None for r in result.reports):
        return ""  # nothing was settled: the timeline says so
    end = max((r.payout_slot or 0) for r in result.reports) + 1
    if end > MAX_DIAGRAM_SLOTS or len(result.reports) > 12:
        return ""
    rows = [
        "Stacking rounds (W work, S submit proofs, A audit proofs, D submit list, d audit list, P payout)"
    ]
    for report in result.reports:
        cells = [" "] * end
        for slot in report.work:
            cells[slot] = "W"
        for slot in report.submission_window:
            cells[slot] = "S"
        for slot in report.audit_window:
            cells[slot] = "A"
        for attempt, _, _ in report.lists:
            for slot in distribution_window(task, report.round, attempt):
                cells[slot] = "D"
            for slot in distribution_audit_window(task, report.round, attempt):
                cells[slot] = "d"
        if report.payout_slot is not None:
            cells[report.payout_slot] = "P"
        rows.append(f"  round {report.round:>2} |{''.join(cells[:end]).rstrip()}")
    ticks = "".join(
        "|" if slot % task.round_time == task.starting_slot % task.round_time else " " for slot in range(end)
    )
    rows.append(f"  slots    |{ticks}  (| = round start, every {task.round_time} slots)")
    return "\n".join(rows)


def timing_table(result: SimulationResult) -> str:
    """Average, minimum and maximum time of each phase, and the most slots it took against its
    window (slots are ``slot_ms`` long; a phase whose time passes its window is marked)."""
    task = result.final_state.tasks[result.task_id]  # type: ignore[index]
    windows = {
        "task": task.round_time,
        "submission": task.submission_window,
        "audit": task.audit_window,
        "distribution": task.submission_window,
        "distribution audit": task.audit_window,
    }
    lines = [
        f"Phase timing (your task code; slots of {result.slot_ms:g} ms)",
        f"  {'phase':<20}{'calls':>8}{'avg ms':>10}{'min ms':>10}{'max ms':>10}{'max slots':>11}"
        f"{'window':>8}",
    ]
    for phase in PHASES:
        samples = result.timings.get(phase, [])
        if not samples:
            continue
        peak = max(samples)
        slots = math.ceil(peak / result.slot_ms)
        mark = "  OVER" if slots > windows[phase] else ""
        lines.append(
            f"  {phase:<20}{len(samples):>8}{statistics.fmean(samples):>10.3f}{min(samples):>10.3f}"
            f"{peak:>10.3f}{slots:>11}{windows[phase]:>8}{mark}"
        )
    if result.overruns:
        lines.append("  phases that ended after their window closed:")
        lines += [f"    {line}" for line in result.overruns[:10]]
        if len(result.overruns) > 10:
            lines.append(f"    … and {len(result.overruns) - 10} more")
    return "\n".join(lines)


def reward_table(result: SimulationResult) -> str:
    """Rewards and slashes per node (per behaviour when there are many nodes), in KOII."""
    header = f"  {'node':<6}{'key':<12}{'behaviour':<10}{'rewards':>18}{'slashed':>18}{'stake now':>18}"
    lines = [f"Rewards and slashes (each node staked {_koii(result.stake)})", header]
    if len(result.nodes) <= MAX_NODE_ROWS:
        for node in result.nodes:
            key = node.public_key
            lines.append(
                f"  {node.index:<6}{key[:8] + '…':<12}{node.role:<10}{_koii(result.reward(key)):>18}"
                f"{_koii(result.slashed(key)):>18}{_koii(result.final_stakes[key]):>18}"
            )
    else:
        lines[1] = (
            f"  {'behaviour':<10}{'nodes':>7}{'rewards (sum)':>22}{'slashed (sum)':>22}{'slashed nodes':>15}"
        )
        for role in ("honest", "faulty", "lazy", "offline"):
            keys = result.keys(role)
            if not keys:
                continue
            rewards = sum(result.reward(k) for k in keys)
            slashed = sum(result.slashed(k) for k in keys)
            hit = sum(1 for k in keys if result.slashed(k))
            lines.append(f"  {role:<10}{len(keys):>7}{_koii(rewards):>22}{_koii(slashed):>22}{hit:>15}")
    total_rewards = sum(result.rewards.values())
    total_slashed = sum(result.slashes.values())
    lines.append(f"  total: rewards {_koii(total_rewards)}, slashed {_koii(total_slashed)}")
    return "\n".join(lines)


def properties_report(result: SimulationResult) -> str:
    lines = ["Incentive properties"]
    for check in result.properties:
        lines.append(f"  [{'ok' if check.ok else 'FAILED'}] {check.name}: {check.detail}")
    return "\n".join(lines)


def render(result: SimulationResult) -> str:
    """The full report ``pykoii simulate`` prints."""
    roles = {role: len(result.keys(role)) for role in ("honest", "faulty", "lazy", "offline")}
    who = ", ".join(f"{count} {role}" for role, count in roles.items() if count)
    refused = result.refused()
    paid = sum(1 for r in result.reports if r.outcome == "paid")
    parts = [
        f"Simulated task {result.config.task_name!r} ({result.task_id[:8]}…): "
        f"{len(result.nodes)} nodes ({who}), "
        f"{result.rounds} rounds, seed {result.seed}; {len(result.log)} signed transactions "
        f"({len(refused)} refused) over {result.slots} slots; log sha256 {result.log_digest()[:16]}…",
        timeline(result)
        + ("" if paid else "\n  no round was paid (no node submitted, or no list stood its audit)"),
        timing_table(result),
        reward_table(result),
    ]
    if refused:
        kinds: dict[str, int] = {}
        for entry in refused:
            kinds[entry["error"]] = kinds.get(entry["error"], 0) + 1
        parts.append("Refused transactions: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    if result.task_errors:
        shown = result.task_errors[:10]
        more = len(result.task_errors) - len(shown)
        parts.append(
            "Task code errors:\n"
            + "\n".join(f"  {e}" for e in shown)
            + (f"\n  … and {more} more" if more else "")
        )
    parts.append(properties_report(result))
    return "\n\n".join(parts)


def _index(result: SimulationResult, key: str) -> int:
    return next(node.index for node in result.nodes if node.public_key == key)


__all__ = ["properties_report", "render", "reward_table", "stacking_diagram", "timeline", "timing_table"]
