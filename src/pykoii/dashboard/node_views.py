"""What the node dashboard shows, gathered from the node (its tasks, statuses, logs) and its
ledger (balances, stakes, claimable rewards, rounds), as plain dicts for the templates."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import PykoiiError
from ..node.history import RewardHistory, RoundOutcome
from .metadata import task_metadata
from .timing import round_start, round_timing

CHART_WIDTH = 600
"""Width of a task's earnings chart (SVG units; it scales down to the page)."""


def status_of(runtime: Any) -> tuple[str, str]:
    """``(label, css class)``: running, starting, restarting, stopped, failed, or flagged."""
    if runtime.flagged and runtime.status not in ("stopped", "migrated"):
        return "flagged", "bad"
    return {
        "running": ("running", "ok"),
        "starting": ("starting", "warn"),
        "backoff": ("restarting", "warn"),
        "failed": ("failed", "bad"),
        "migrated": ("migrated", "warn"),
    }.get(runtime.status, (runtime.status or "stopped", ""))


def tally(trigger: dict[str, Any]) -> tuple[int, int]:
    votes = trigger.get("votes", {}).values()
    false = sum(1 for v in votes if not v.get("is_valid"))
    return false, len(votes) - false


def last_submission(
    state: dict[str, Any], me: str, slot: int, outcomes: list[RoundOutcome]
) -> dict[str, Any]:
    """This node's last accepted proof and what its audit said (or ``{}`` if it never submitted)."""
    number = state.get("last_submission_round", {}).get(me)
    if number is None:
        return {}
    number = int(number)
    proof = state.get("submissions", {}).get(str(number), {}).get(me, {})
    trigger = state.get("submissions_audit_trigger", {}).get(str(number), {}).get(me)
    audit_end = round_start(state, number + 1) + int(state["submission_window"]) + int(state["audit_window"])
    paid = {o.round: o for o in outcomes}
    if trigger:
        false, true = tally(trigger)
        verdict = ("invalid", "bad") if false > true else ("valid (accusation outvoted)", "ok")
        result = f"{verdict[0]}: {false} false / {true} true votes"
        css = verdict[1]
    elif number in paid:
        outcome = paid[number]
        result, css = ("invalid, slashed", "bad") if outcome.slash else ("valid, rewarded", "ok")
    elif slot >= audit_end:
        result, css = "valid (no audit trigger)", "ok"
    else:
        result, css = "audit in progress", "warn"
    return {
        "round": number,
        "value": proof.get("submission_value", ""),
        "slot": proof.get("slot"),
        "result": result,
        "css": css,
    }


def chart(outcomes: list[RoundOutcome], current: int) -> dict[str, Any]:
    """Every paid round of the task's history as SVG bars (rewards up, slashes down) and the total
    earned as a line, scaled into one fixed-width chart; no bars when nothing was ever paid."""
    width, height, axis, left = CHART_WIDTH, 64, 76, 30
    if not outcomes:
        return {
            "bars": [],
            "first": 0,
            "last": 0,
            "top": 0,
            "width": width,
            "axis": axis,
            "line": "",
            "total": 0,
            "rounds": 0,
        }
    first, last = outcomes[0].round, max(o.round for o in outcomes)
    span = last - first + 1
    step = (width - left - 10) / span
    bar = max(1.0, step - (2 if step > 6 else 0))
    top = max([o.reward for o in outcomes] + [1])
    low = max([o.slash for o in outcomes] + [1])
    bars, points, total, earned = [], [], 0, sum(o.reward for o in outcomes)
    for o in outcomes:
        x = round(left + (o.round - first) * step, 1)
        if o.reward:
            h = max(2, round(o.reward / top * height))
            bars.append(
                {
                    "x": x,
                    "y": axis - h,
                    "w": bar,
                    "h": h,
                    "kind": "reward",
                    "round": o.round,
                    "amount": o.reward,
                }
            )
        if o.slash:
            h = max(2, round(o.slash / low * 16))
            bars.append(
                {"x": x, "y": axis, "w": bar, "h": h, "kind": "slash", "round": o.round, "amount": o.slash}
            )
        total += o.reward
        points.append(f"{x + bar / 2:.1f},{axis - total / max(earned, 1) * height:.1f}")
    return {"bars": bars, "first": first, "last": last, "top": top, "width": width, "axis": axis,
            "line": " ".join(points), "total": earned, "rounds": span}  # fmt: skip


def on_this_node(node: Any, runtime: Any, outcomes: list[RoundOutcome], current: int) -> dict[str, Any]:
    """Uptime and missed rounds of the task on this node (``sandbox_of`` has its isolation)."""
    process = runtime.process
    running = process is not None and process.running
    settled = range(runtime.first_round, current - 1) if runtime.first_round is not None else range(0)
    rewarded = {o.round for o in outcomes if o.reward and not o.slash}
    return {
        "up_ms": int((node.clock.now() - runtime.started_at) * 1000) if running and runtime.started_at else 0,
        "restarts": runtime.restarts,
        "since_round": runtime.first_round,
        "settled": len(settled),
        "missed": sum(1 for r in settled if r not in rewarded),
    }


def sandbox_of(node: Any, runtime: Any) -> dict[str, Any]:
    """How the task is isolated and limited on this node, and the node's events of it."""
    summary = node._summary(runtime)
    limits = node.config.limits
    process = runtime.process
    return {
        "isolation": summary["isolation"],
        "limits_kind": summary["limits"],
        "limits": {
            "memory_mib": limits.memory_bytes >> 20,
            "processes": limits.processes,
            "cpus": limits.cpus,
            "disk_mib": (process.disk_limit if process is not None else limits.disk_bytes) >> 20,
        },
        "last_limit": summary["last_limit"],
        "events": node.journal.events(runtime.record.task_id, 30),
    }


async def task_row(
    node: Any, runtime: Any, history: RewardHistory, now: dict[str, Any] | None
) -> dict[str, Any]:
    """One task of the node, with its ledger state when the ledger answers."""
    task_id = runtime.record.task_id
    me = node.staking.public_key
    label, css = status_of(runtime)
    row: dict[str, Any] = {
        "task_id": task_id,
        "name": runtime.state.get("task_name", "") or task_id,
        "status": label,
        "status_css": css,
        "running": runtime.loop is not None and not runtime.loop.done(),
        "restarts": runtime.restarts,
        "last_error": runtime.last_error,
        "flagged": runtime.flagged,
        "migrated_to": runtime.migrated_to,
        "following": bool(runtime.migrated_to) and runtime.migrated_to in node.tasks,
        "record_stake": runtime.record.stake,
        "state": None,
        **sandbox_of(node, runtime),
    }
    if now is None:
        return row
    try:
        state = await node.ledger.task(task_id)
    except PykoiiError as exc:
        row["ledger_error"] = exc.message
        return row
    if history.unread(task_id, state):  # paid since the node's loop last read it (or stopped)
        await asyncio.to_thread(history.update, task_id, state)
    outcomes = history.for_task(task_id)
    timing = round_timing(state, now["slot"], now["slot_ms"])
    row.update(
        name=state.get("task_name") or task_id,
        state=state,
        stake=int(state.get("stake_list", {}).get(me, 0)),
        claimable=int(state.get("available_balances", {}).get(me, 0)),
        timing=timing,
        last=last_submission(state, me, now["slot"], outcomes),
        outcomes=outcomes,
        rewards_total=sum(o.reward for o in outcomes),
        slashes=[o for o in outcomes if o.slash],
        chart=chart(outcomes, timing["round"]),
        here=on_this_node(node, runtime, outcomes, timing["round"]),
        meta=await task_metadata(node.ledger.blob, str(state.get("task_metadata", ""))),
        variables=sorted(runtime.record.variables),
    )
    return row


async def overview(node: Any, history: RewardHistory) -> dict[str, Any]:
    """Balances, health and every task of the node."""
    client = node.ledger.client
    view: dict[str, Any] = {
        "wallet": node.wallet.public_key,
        "staking_key": node.staking.public_key,
        "ledger_url": node.ledger.base_url,
        "now": None,
        "ledger_error": "",
    }
    try:
        now = dict(await asyncio.to_thread(client.slot))
        wallet = await asyncio.to_thread(client.account, node.wallet.public_key)
        staking = await asyncio.to_thread(client.account, node.staking.public_key)
        ledger_tasks = await asyncio.to_thread(client.tasks)
    except PykoiiError as exc:
        view["ledger_error"] = exc.message
        now, wallet, staking, ledger_tasks = None, {}, {}, []
    view["now"] = now
    rows = [await task_row(node, rt, history, now) for rt in list(node.tasks.values())]
    per_task = staking.get("tasks", {})
    view.update(
        wallet_balance=wallet.get("balance", 0),
        staking_balance=staking.get("balance", 0),
        staked=sum(int(t.get("stake", 0)) for t in per_task.values()),
        claimable=sum(int(t.get("available_balance", 0)) for t in per_task.values()),
        per_task=per_task,
        tasks=rows,
        other_tasks=[
            t
            for t in ledger_tasks
            if t["task_id"] not in node.tasks and t["is_active"] and not t["is_migrated"]
        ],
        rewards_total=sum(o.reward for o in history.outcomes.values()),
        health=health(node, view["ledger_error"], rows, now),
    )
    return view


def health(
    node: Any, ledger_error: str, rows: list[dict[str, Any]], now: dict[str, Any] | None
) -> dict[str, Any]:
    """``{ok, problems}``: the ledger answers, no task is flagged, failing or restarting."""
    problems = []
    if ledger_error:
        problems.append(f"the ledger at {node.ledger.base_url} does not answer: {ledger_error}")
    for row in rows:
        if row["status"] in ("flagged", "failed", "restarting"):
            why = " (no accepted submission for 3 rounds)" if row["status"] == "flagged" else ""
            error = f": {row['last_error'].splitlines()[0][:200]}" if row["last_error"] else ""
            problems.append(f"{row['name']} is {row['status']}{why}{error}")
    running = any(row["running"] for row in rows)
    if now is not None and running and node.slot >= 0 and now["slot"] - node.slot > 50:
        problems.append(f"the node last saw slot {node.slot}, the ledger is at slot {now['slot']}")
    return {"ok": not problems, "problems": problems}
