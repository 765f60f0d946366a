"""The task author's SDK: the Task base class, its defaults, invoke, load_task, routes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pykoii.errors import ConfigError, TaskCodeError
from pykoii.ledger import DistributionList
from pykoii.sdk import RoundContext, Submitter, Task, as_distribution_list, invoke, load_task
from pykoii.testing import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
KOII = 1_000_000_000


class NoLedger:
    def task_state(self):
        return {}

    def submissions(self, round_number):
        return {}

    def audit_triggers(self, round_number):
        return {}

    def stakes(self):
        return {}

    def node_urls(self):
        return {}


def context(round_number=3, variables=None):
    return RoundContext(
        task_id="task",
        round=round_number,
        slot=40,
        public_key="me",
        store=MemoryStore(),
        ledger=NoLedger(),
        variables=variables or {},
    )


def run(coro):
    return asyncio.run(coro)


def test_defaults_submit_the_stored_value_and_audit_by_recomputing():
    task, ctx = Task(), context()
    assert run(invoke(task.task, ctx)) is None
    assert task.submission(ctx) == ""
    ctx.store.set("value", "Hello, World!")
    assert task.submission(ctx) == "Hello, World!"
    assert task.audit(ctx, "Hello, World!", "other") is True
    assert task.audit(ctx, "Goodbye", "other") is False
    assert task.routes() == []


def test_default_distribution_is_the_seed_rule():
    submitters = [
        Submitter("a", "Hello, World!", True, 1, 5 * KOII),
        Submitter("b", "Hello, World!", True, 1, 5 * KOII),
        Submitter("c", "Hello, World!", True, 1, 5 * KOII),
        Submitter("d", "Goodbye", False, -2, 5 * KOII),
    ]
    dist = as_distribution_list(Task().distribution(context(), submitters, 10 * KOII))
    assert dist.rewards == {"a": 3_333_333_333, "b": 3_333_333_333, "c": 3_333_333_333}  # floor
    assert dist.slashes == {"d": 3_500_000_000}  # 70 %


def test_invoke_runs_sync_and_async_phases():
    class Both(Task):
        def submission(self, ctx):
            return "sync"

        async def audit(self, ctx, submission, submitter):
            await asyncio.sleep(0)
            return submission == "sync"

    task, ctx = Both(), context()
    assert run(invoke(task.submission, ctx)) == "sync"
    assert run(invoke(task.audit, ctx, "sync", "x")) is True


def test_as_distribution_list_accepts_both_forms_and_explains_bad_ones():
    plain = {"rewards": {"a": 1}, "slashes": {}}
    assert as_distribution_list(plain) == DistributionList(rewards={"a": 1}, slashes={})
    same = DistributionList(rewards={"a": 1})
    assert as_distribution_list(same) is same
    with pytest.raises(TaskCodeError, match="rewards=.*non-negative integer ROE"):
        as_distribution_list({"rewards": {"a": 1.5}})
    with pytest.raises(TaskCodeError, match="expected a DistributionList"):
        as_distribution_list({"a": 1})


def test_load_task_from_folder_and_file():
    folder = ROOT / "examples" / "hello_world"
    assert type(load_task(folder)).__name__ == "HelloWorld"
    assert type(load_task(folder / "task.py")).__name__ == "HelloWorld"
    assert type(load_task(ROOT / "examples" / "hello_world_faulty")).__name__ == "HelloWorldFaulty"


def test_load_task_errors(tmp_path):
    with pytest.raises(ConfigError, match="no task code at"):
        load_task(tmp_path)
    (tmp_path / "task.py").write_text(
        "from pykoii.sdk import Task\nclass A(Task): pass\nclass B(Task): pass\n"
    )
    with pytest.raises(ConfigError, match="exactly one Task subclass; found A, B"):
        load_task(tmp_path)
    (tmp_path / "task.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(TaskCodeError, match="ModuleNotFoundError"):
        load_task(tmp_path)


def test_hello_world_phases_and_faulty_variable():
    task = load_task(ROOT / "examples" / "hello_world")
    ctx = context()
    task.task(ctx)
    assert task.submission(ctx) == "Hello, World!"
    assert task.audit(ctx, "Hello, World!", "x") and not task.audit(ctx, "Goodbye, World!", "x")
    faulty = context(variables={"FAULTY": "1"})
    task.task(faulty)
    assert task.submission(faulty) == "Goodbye, World!"


def test_hello_world_route_returns_the_stored_value():
    task = load_task(ROOT / "examples" / "hello_world")
    store = MemoryStore()
    app = Starlette(routes=task.routes())
    app.state.store = store
    client = TestClient(app)
    assert client.get("/value").json() == {"value": None}
    ctx = context()
    ctx.store = store
    task.task(ctx)
    assert client.get("/value").json() == {"value": "Hello, World!"}
