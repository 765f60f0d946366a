"""The task child: phases, limits, failures and isolation, with real processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from pykoii.errors import SandboxError, TaskCodeError
from pykoii.node.limits import CONTROLLERS
from pykoii.node.sandbox import SandboxLimits, TaskProcess, run_task_code

from .conftest import write_task

HELLO = """
    from pykoii import sdk
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class Hello(sdk.Task):
        def task(self, ctx):
            ctx.store.set("value", "Hello, World!")
            ctx.log.info("stored the value for round %s", ctx.round)
            print("a stray print goes to the log, not the protocol")

        async def audit(self, ctx, submission, submitter):
            return submission == "Hello, World!"

        def routes(self):
            async def value(request):
                return JSONResponse({"value": request.app.state.store.get("value")})
            return [Route("/value", value)]
"""


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_phases_store_routes_and_logs(sandbox_root: Path) -> None:
    code = write_task(sandbox_root / "code", HELLO)
    lines: list[str] = []

    class Collect(__import__("logging").Handler):
        def emit(self, record):  # type: ignore[no-untyped-def]
            lines.append(record.getMessage())

    import logging

    log = logging.getLogger("test.sandbox.hello")
    log.addHandler(Collect())
    log.setLevel(logging.INFO)

    async def scenario() -> None:
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work", log=log)
        await child.start()
        try:
            await child.run_phase("task", 3)
            assert (await child.run_phase("submission", 3)).value == "Hello, World!"
            audit = await child.run_phase("audit", 3, args={"submission": "nope", "submitter": "K"})
            assert audit.value is False
            transport = httpx.AsyncHTTPTransport(uds=child.socket_path)
            async with httpx.AsyncClient(transport=transport, base_url="http://task") as client:
                assert (await client.get("/value")).json() == {"value": "Hello, World!"}
        finally:
            await child.stop()
        assert not child.running

    run(scenario())
    assert "stored the value for round 3" in lines
    assert any("stray print" in line for line in lines)
    assert (sandbox_root / "work" / "store.sqlite3").exists()


def test_author_exception_is_task_code_error_and_child_survives(sandbox_root: Path) -> None:
    code = write_task(
        sandbox_root / "code",
        """
        from pykoii import sdk
        class Broken(sdk.Task):
            def task(self, ctx):
                raise RuntimeError("the author's bug")
            def submission(self, ctx):
                return "fine"
    """,
    )

    async def scenario() -> None:
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work")
        await child.start()
        try:
            with pytest.raises(TaskCodeError, match="the author's bug"):
                await child.run_phase("task", 1)
            assert (await child.run_phase("submission", 1)).value == "fine"
        finally:
            await child.stop()

    run(scenario())


def test_hanging_phase_is_stopped_with_sigterm_then_sigkill(sandbox_root: Path) -> None:
    code = write_task(
        sandbox_root / "code",
        """
        import signal, time
        from pykoii import sdk
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores SIGTERM: needs the SIGKILL
        class Hang(sdk.Task):
            def task(self, ctx):
                time.sleep(3600)
    """,
    )

    async def scenario() -> None:
        limits = SandboxLimits(phase_timeout=0.5, grace=0.3)
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work", limits=limits)
        await child.start()
        with pytest.raises(TaskCodeError, match="ran over its 0.5 s limit") as caught:
            await child.run_phase("task", 1)
        assert caught.value.phase == "task"
        assert not child.running
        with pytest.raises(SandboxError, match="not running"):
            await child.run_phase("task", 2)

    run(scenario())


def test_child_that_exits_reports_stderr_tail(sandbox_root: Path) -> None:
    code = write_task(
        sandbox_root / "code",
        """
        import os, sys
        from pykoii import sdk
        class Quit(sdk.Task):
            def task(self, ctx):
                print("about to leave", file=sys.stderr, flush=True)
                os._exit(3)
    """,
    )

    async def scenario() -> None:
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work")
        await child.start()
        with pytest.raises(TaskCodeError, match="exit code 3") as caught:
            await child.run_phase("task", 1)
        assert "about to leave" in str(caught.value)

    run(scenario())


def test_import_failure_is_task_code_error(sandbox_root: Path) -> None:
    code = write_task(sandbox_root / "code", "import no_such_module_here\n")
    with pytest.raises(TaskCodeError, match="no_such_module_here"):
        run(run_task_code(code, "task", {"round": 1}, timeout=10, work_dir=sandbox_root / "work"))


def test_memory_limit_applies(sandbox_root: Path) -> None:
    code = write_task(
        sandbox_root / "code",
        """
        from pykoii import sdk
        class Greedy(sdk.Task):
            def task(self, ctx):
                self.blob = bytearray(600 * 1024 * 1024)
    """,
    )

    async def scenario() -> None:
        limits = SandboxLimits(memory_bytes=400 * 1024 * 1024)
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work", limits=limits)
        await child.start()
        try:
            with pytest.raises(TaskCodeError, match="MemoryError|memory limit"):
                await child.run_phase("task", 1)
        finally:
            await child.stop()

    run(scenario())


def test_a_stopped_child_leaves_no_cgroup_behind(sandbox_root: Path) -> None:
    """Every start makes the task's cgroups; a node that restarts children for weeks must not pile up
    empty ones (one left per start was found on a machine that ran the suite: 4,583 of them)."""
    code = write_task(sandbox_root / "code", HELLO)

    async def scenario() -> list[Path]:
        child = TaskProcess(task_id="T", code_dir=code, work_dir=sandbox_root / "work")
        folders: list[Path] = []
        for _ in range(2):  # stopped, then started again under the same name
            await child.start()
            try:
                if child.cgroups is None:
                    pytest.skip(f"task code runs without cgroups here ({child.limits_kind}): they need root")
                folders = [child.cgroups.folder(controller) for controller in CONTROLLERS]
                assert all(folder.is_dir() for folder in folders), folders
                await child.run_phase("task", 1)
            finally:
                await child.stop()
        return folders

    folders = run(scenario())
    assert [folder for folder in folders if folder.exists()] == []


SPY = """
    import glob, json, os
    from pykoii import sdk

    def readable(path):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError:
            return None

    class Spy(sdk.Task):
        def submission(self, ctx):
            found = {"env": dict(os.environ), "uid": os.getuid(), "files": {}}
            roots = [os.path.expanduser("~"), "/root"] + json.loads(os.environ["LOOK_IN"])
            for root in roots:
                for path in glob.glob(os.path.join(root, "**"), recursive=True):
                    data = readable(path) if os.path.isfile(path) else None
                    if data is not None:
                        found["files"][path] = data.decode(errors="replace")[:200]
            found["parent_environ"] = readable(f"/proc/{os.getppid()}/environ")
            found["node_environ"] = readable(f"/proc/{os.environ['NODE_PID']}/environ")
            found["parent_environ"] = found["parent_environ"] and found["parent_environ"].decode()
            found["node_environ"] = found["node_environ"] and found["node_environ"].decode()
            ctx.store.set("found", found)
            return "looked"
"""


def test_task_looking_for_keys_finds_none(sandbox_root: Path) -> None:
    from pykoii.keys import Keypair

    data_dir = sandbox_root / "node-data"
    (data_dir / "keys").mkdir(parents=True)
    secret = Keypair.generate()
    secret.save(data_dir / "keys" / "staking_wallet.json")
    wallet_dir = sandbox_root / "wallet"
    wallet = Keypair.generate().save(wallet_dir / "id.json")
    os.chmod(wallet_dir, 0o755)
    os.chmod(wallet, 0o644)  # even a carelessly readable wallet stays hidden
    os.environ["PYKOII_TEST_SECRET"] = "do-not-leak"
    code = write_task(sandbox_root / "code", SPY)
    work = data_dir / "tasks" / "T"
    look_in = [str(data_dir), str(wallet_dir), str(sandbox_root)]
    variables = {"LOOK_IN": json.dumps(look_in), "NODE_PID": str(os.getpid())}

    async def scenario() -> None:
        child = TaskProcess(
            task_id="T",
            code_dir=code,
            work_dir=work,
            variables=variables,
            hide=[str(data_dir), str(wallet), str(Path.home())],
            limits=SandboxLimits(),
        )
        await child.start()
        try:
            assert child.isolation == "bubblewrap"
            await child.run_phase("submission", 1)
        finally:
            await child.stop()

    try:
        run(scenario())
    finally:
        del os.environ["PYKOII_TEST_SECRET"]
    from pykoii.node.store import SqliteStore

    found = SqliteStore(str(work / "store.sqlite3")).get("found")
    assert set(found["env"]) <= {"PATH", "PWD", "LOOK_IN", "NODE_PID", "LC_CTYPE"}
    assert found["uid"] != 0 or os.geteuid() != 0
    assert found["node_environ"] is None  # the node is not in the sandbox's PID namespace
    assert "PYKOII_TEST_SECRET" not in (found["parent_environ"] or "")  # its parent: bwrap's init
    everything = json.dumps(found)
    assert "do-not-leak" not in everything
    wallet_bytes = json.loads(wallet.read_text())
    assert str(wallet_bytes[:8])[1:-1] not in everything
    assert not any("keys" in path or path.endswith("id.json") for path in found["files"])
    assert json.dumps(json.loads((data_dir / "keys" / "staking_wallet.json").read_text())) not in everything


def test_what_the_child_needs_under_tmp_is_bound_back(tmp_path: Path) -> None:
    """A node run from a folder under /tmp (a clone there, its .venv) must still reach its Python:
    the sandbox's own empty /tmp would otherwise hide it (bwrap: execvp .venv/bin/python: No such file)."""
    from pykoii.node import isolation

    if isolation.bwrap_path() is None:
        pytest.skip("bubblewrap is not installed (scripts/system-packages installs it)")
    needed = Path(tempfile.mkdtemp(dir="/tmp"))
    secret = Path(tempfile.mkdtemp(dir="/tmp"))  # beside it, under /tmp, not asked for: stays hidden
    try:
        (needed / "marker").write_text("kept")
        (secret / "key").write_text("secret")
        args = isolation.bwrap_args(
            work_dir=None, code_dir=None, hide=(), keep=[str(needed)], tmp_bytes=1 << 20
        )
        seen = subprocess.run(
            [*args, "cat", str(needed / "marker")], capture_output=True, text=True, timeout=30
        )
        assert seen.returncode == 0 and seen.stdout == "kept", seen.stderr
        hidden = subprocess.run(
            [*args, "cat", str(secret / "key")], capture_output=True, text=True, timeout=30
        )
        assert hidden.returncode != 0 and "secret" not in hidden.stdout
    finally:
        shutil.rmtree(needed)
        shutil.rmtree(secret)
