# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""Reading a large round: every reader of a paid N-node round, through a real ``pykoii ledger serve``.

The round is built exactly as ``bench_round.py`` builds one (its ``_round``: N staked nodes, 1 %
faulty, proofs, reveals, votes, the chunked list, the payout), then each reader the product has
reads it, and the wall time and the ledger service's CPU time (its main process, where every read
is answered) are measured per reader:

- the API: one page of the round's submitters (``GET /tasks/{id}/rounds/{r}``, 1,000 a page), the
  first read after the ledger started (nothing kept yet) and again; every page at 1,000; every page
  of the paid list's detail (``/distribution``, the client's ``distribution_entries``, 5,000 a
  page); one page and every page of the task's stakers (``/stakers``);
- the node: ``NodeLedger.round_pages`` (every submitter, 5,000 a page: what a node reads once per
  round to compute or audit a list) and one ``GET /tasks/{id}/nodes/{key}`` (what it reads per tick);
- the explorer: a round's first page and its next page (HTML), the task's page;
- the node dashboard's reward history: ``RewardHistory.update`` of the paid round, from the node's
  part of the task (read anyway each tick, counted here) and the key's one entry of the paid list;
  beside it the whole round's log, page after page, which the history followed before (each round);
- the CLI: ``pykoii task info`` (a process of its own; its wall time includes Python's start).

With ``--baseline-views REF`` the same reads are run, in the same sitting, against a ledger of
this code with ``service/views.py`` as it was at git commit ``REF`` (a copy of ``src`` with that one
file replaced: only the read views differ, so the data folder, the flags and the log format are
this code's), started on the same data folder (state rebuilt from the same log), then against
this code's again, and each read's answer is compared byte for byte between the two.

Writes the "## Reading a large round" section of BENCHMARKS.md. Run::

    .venv/bin/python benchmarks/bench_reads.py [--nodes 100000] [--baseline-views 3331e03] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_ingest import _proc_stat, write_section
from bench_round import Ledger, Run, Signers, _round, machine_text

from pykoii.client import LedgerClient
from pykoii.node.history import RewardHistory
from pykoii.node.ledger_access import NodeLedger

SECTION = "## Reading a large round"
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_EVERY = 200_000
"""The ledger's checkpoint interval in log entries: ``ledger serve``'s own default."""


@dataclass
class Read:
    """One reader's figures against one ledger."""

    wall: float = 0.0
    cpu: float = 0.0
    requests: int = 0
    bytes: int = 0
    digest: str = ""
    """SHA-256 of every answer body, in order (to compare two ledgers' answers)."""


@dataclass
class Sitting:
    """Every reader's figures against one ledger process (one code)."""

    label: str
    reads: dict[str, Read] = field(default_factory=dict)
    start_seconds: float = 0.0
    browser: str = ""


class Counting(httpx.HTTPTransport):
    """A transport that counts requests and answer bytes, and hashes the JSON answers in order
    (without their ``slot`` and ``current_round``, which move between two sittings; ``GET /slot`` and
    HTML pages, which show it, are not hashed)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests, self.bytes, self.hash, self.html = 0, 0, hashlib.sha256(), False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        content = response.read()
        self.requests += 1
        self.bytes += len(content)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.html = True
        elif request.url.path != "/slot":
            answer = orjson.loads(content)
            if isinstance(answer, dict):
                answer.pop("slot", None)
                answer.pop("current_round", None)
            self.hash.update(orjson.dumps(answer))
        return httpx.Response(response.status_code, headers=response.headers, content=content)


def measure(ledger: Ledger, run: Callable[[LedgerClient], Any]) -> Read:
    """Wall and service CPU of ``run`` (given a fresh counting client), with what it read."""
    transport = Counting()
    client = LedgerClient(ledger.url, transport=transport, retries=0)
    pid = ledger.process.pid
    cpu = _proc_stat(pid)[0]
    started = time.perf_counter()
    try:
        run(client)
    finally:
        client.close()
    wall = time.perf_counter() - started
    return Read(
        wall, _proc_stat(pid)[0] - cpu, transport.requests, transport.bytes, transport.hash.hexdigest()[:16]
    )


def size(count: int) -> str:
    """``7.17 MB``, or ``3,412 B`` under 100 KB (a small read would read ``0.00 MB``)."""
    return f"{count / 1e6:,.2f} MB" if count >= 100_000 else f"{count:,} B"


def every_page(get: Callable[[str], dict[str, Any]]) -> int:
    """Read every page of a paginated answer (``next_after`` cursors); returns how many."""
    after, pages = "", 0
    while True:
        pages += 1
        after = get(after).get("next_after") or ""
        if not after:
            return pages


def readers(task_id: str, key: str, explorer: str) -> dict[str, Callable[[LedgerClient], Any]]:
    """Every reader, in the order they run (the first read of the round comes first)."""

    def node_pages(client: LedgerClient) -> None:
        asyncio.run(NodeLedger("", key=key, client=client).round_pages(task_id, 0))

    def history(client: LedgerClient) -> None:
        RewardHistory(client, key).update(task_id, client.node(task_id, key))

    def whole_log(client: LedgerClient) -> None:
        after = 0
        while entries := client.log(after, limit=5000)["entries"]:
            after = int(entries[-1]["seq"])

    def html(path: str) -> Callable[[LedgerClient], Any]:
        return lambda client: client._request("GET", path)

    def second_page(client: LedgerClient) -> None:
        after = client.round(task_id, 0)["next_after"]
        client._request("GET", f"{explorer}/tasks/{task_id}/rounds/0", params={"after": after})

    return {
        "round: first page (first read)": lambda c: c.round(task_id, 0),
        "round: one page": lambda c: c.round(task_id, 0),
        "round: every page (1,000 a page)": lambda c: every_page(lambda a: c.round(task_id, 0, after=a)),
        "node: round_pages (every submitter, 5,000 a page)": node_pages,
        "node: its part of the task (one tick)": lambda c: c.node(task_id, key),
        "list detail: one page": lambda c: c.distribution(task_id, 0),
        "list detail: every entry (5,000 a page)": lambda c: sum(
            1 for _ in c.distribution_entries(task_id, 0)
        ),
        "stakers: one page": lambda c: c.stakers(task_id),
        "stakers: every page (1,000 a page)": lambda c: every_page(lambda a: c.stakers(task_id, after=a)),
        "explorer: round page": html(f"{explorer}/tasks/{task_id}/rounds/0"),
        "explorer: round's next page (with its cursor read first)": second_page,
        "explorer: task page": html(f"{explorer}/tasks/{task_id}"),
        "dashboard: reward history of the paid round (node view + key's entry)": history,
        "log: the round's whole log, 5,000 a page (the history's read before)": whole_log,
    }


CHROMIUM = "/usr/bin/chromium"


def browser(ledger: Ledger, task_id: str) -> str:
    """The explorer's round page in a real browser (Debian's chromium driven by Playwright, as
    tests/dashboard do): the time until its first page is loaded, the rows it shows, and the time
    until the page its "next" link opens is loaded."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "not run (playwright is a dev dependency)"
    if not os.path.exists(CHROMIUM):
        return "not run (chromium is missing: `make system-packages`)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_page()
            page.set_default_timeout(120_000)
            started = time.perf_counter()
            page.goto(f"{ledger.url}/explorer/tasks/{task_id}/rounds/0", wait_until="load")
            first = time.perf_counter() - started
            rows = page.locator("table.wide tbody tr").count()
            link = page.locator("p.pages a", has_text="submitters")
            if not link.count():
                return f"first page loaded in {first * 1000:,.0f} ms ({rows:,} rows), **no next link**"
            started = time.perf_counter()
            link.first.click()
            page.wait_for_url("**after=**", wait_until="load")
            second = time.perf_counter() - started
            more = page.locator("table.wide tbody tr").count()
        finally:
            chromium.close()
    return (
        f"first page loaded in {first * 1000:,.0f} ms ({rows:,} table rows), its next link offered; "
        f"the next page loaded {second * 1000:,.0f} ms after the click ({more:,} table rows)"
    )


def cli_info(ledger: Ledger, task_id: str, env: dict[str, str]) -> Read:
    """``pykoii task info`` as its own process."""
    pid = ledger.process.pid
    cpu = _proc_stat(pid)[0]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pykoii.cli", "task", "info", task_id, "--ledger", ledger.url],
        capture_output=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"pykoii task info failed: {done.stderr.decode()[-400:]}")
    return Read(
        wall, _proc_stat(pid)[0] - cpu, 1, len(done.stdout), hashlib.sha256(done.stdout).hexdigest()[:16]
    )


def sitting(label: str, folder: Path, task_id: str, key: str, src: str | None) -> Sitting:
    """A ledger of the code in ``src`` (this checkout's when ``None``) on ``folder``, and every read."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    saved = os.environ.get("PYTHONPATH")
    os.environ.update({"PYTHONPATH": env["PYTHONPATH"]} if src is not None else {})
    started = time.perf_counter()
    try:
        ledger = Ledger(folder, CHECKPOINT_EVERY)
    finally:
        if src is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved
    result = Sitting(label, start_seconds=time.perf_counter() - started)
    try:
        for name, run in readers(task_id, key, "/explorer").items():
            print(f"[{label}] {name}…", flush=True)
            result.reads[name] = measure(ledger, run)
        result.reads["CLI: pykoii task info"] = cli_info(ledger, task_id, env)
        print(f"[{label}] the explorer in a browser…", flush=True)
        result.browser = browser(ledger, task_id)
    finally:
        ledger.stop()
    return result


def baseline_src(ref: str, folder: Path) -> str:
    """A copy of this checkout's ``src`` in ``folder`` with ``service/views.py`` as at ``ref``."""
    views = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:src/pykoii/service/views.py"],
        capture_output=True,
        check=True,
    ).stdout
    shutil.copytree(ROOT / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (folder / "src" / "pykoii" / "service" / "views.py").write_bytes(views)
    return str(folder / "src")


def build(nodes: int, folder: Path) -> tuple[Run, str, str]:
    """A paid round of ``nodes`` nodes in a ledger on ``folder`` (stopped after); its task and a
    staking key of it."""
    run = Run(nodes)
    signers = Signers(nodes)
    ledger = Ledger(folder, CHECKPOINT_EVERY)
    run.machine.start()
    try:
        _round(ledger, signers, run)
        task_id = ledger.http.get("/tasks").json()["tasks"][0]["task_id"]
        key = next(iter(ledger.http.get(f"/tasks/{task_id}/stakers", params={"limit": 1}).json()["entries"]))[
            "key"
        ]
    finally:
        run.machine.stop()
        ledger.stop()
        signers.close()
    if not run.paid:
        raise SystemExit(f"the {nodes}-node round was not paid; nothing to read")
    return run, task_id, key


def report(nodes: int, run: Run, sittings: list[Sitting], command: str) -> str:
    new = [s for s in sittings if s.label == "this code"]
    base = [s for s in sittings if s.label != "this code"]
    names = list(sittings[0].reads)

    def cell(s: list[Sitting], name: str) -> str:
        if not s:
            return "—"
        return " / ".join(
            f"{x.reads[name].wall * 1000:,.0f} ms, CPU {x.reads[name].cpu * 1000:,.0f} ms" for x in s
        )

    rows = []
    for name in names:
        r = new[0].reads[name]
        same = ""
        if base:
            same = "yes" if all(x.reads[name].digest == r.digest for x in sittings) else "**no**"
            same = same if r.digest else "(HTML: not compared)"
        rows.append(
            f"| {name} | {r.requests:,} | {size(r.bytes)} | {cell(new, name)} | {cell(base, name)} | {same} |"
        )
    table = "\n".join(rows)
    starts = ", ".join(f"{s.label} {s.start_seconds:.1f} s" for s in sittings)
    browsers = "\n".join(f"- {s.label}: {s.browser}" for s in sittings)
    return f"""{SECTION}

`{command}` — a paid round of **{nodes:,} nodes** (built as `bench_round.py` builds it: {run.windows}), then
every reader of it through a real `pykoii ledger serve` (100 ms slots, devnet), one after the other.
Time is wall time of the whole read (this process's HTTP client included); CPU is the ledger
service's main process over the same read (where every read is answered). "This code" columns list
each sitting (two when a baseline ran between them: this code, the baseline, this code again).
"Answers identical" compares the answers' bytes across every sitting (SHA-256 of every JSON body in
order, without `slot` and `current_round`, which move between sittings; HTML pages are not compared). Ledger
start (state rebuilt from the log on disk): {starts}.

{machine_text([run])}

| reader | requests | answer bytes | this code: time, service CPU | baseline: time, service CPU | answers identical |
|---|---:|---:|---:|---:|:---:|
{table}

The explorer's round page in a real browser (chromium, Playwright), per sitting:
{browsers}

What each reader is: `round`, `list detail`, `stakers` are the API's pages (`GET /tasks/{{id}}/rounds/{{r}}`,
`/distribution`, `/stakers`) read with the client; `node: round_pages` is `NodeLedger.round_pages`
(once per round, to compute or audit a list), `node: its part of the task` one
`GET /tasks/{{id}}/nodes/{{key}}` (each tick); the explorer rows are the HTML pages a browser opens;
`dashboard: reward history` is what the node reads for its dashboard's reward history per paid
round (`RewardHistory.update`: the node's part of the task, which its loop reads each tick anyway,
and its one entry of the paid list); `log: the round's whole log` is what that history read before
(it followed the log: every entry of every round, each round); the CLI row is `pykoii task info` in
its own process (Python's start included).

Not paged in O(page size): `stakers` (a task's accounts come and go, so no sorted copy of them is
kept: each page is one pass over the task's accounts, and reading every page grows as n²/page).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="nodes of the round (default 100,000)")
    parser.add_argument(
        "--baseline-views",
        metavar="REF",
        help="also read the round with service/views.py as at git commit REF (A/B)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pykoii-reads-"))
    try:
        run, task_id, key = build(args.nodes, folder / "ledger")
        sittings = [sitting("this code", folder / "ledger", task_id, key, None)]
        if args.baseline_views:
            base = baseline_src(args.baseline_views, folder)
            sittings.append(sitting("baseline", folder / "ledger", task_id, key, base))
            sittings.append(sitting("this code", folder / "ledger", task_id, key, None))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = (
        ".venv/bin/python benchmarks/bench_reads.py"
        + (f" --nodes {args.nodes}" if args.nodes != 100_000 else "")
        + (f" --baseline-views {args.baseline_views}" if args.baseline_views else "")
    )
    text = report(args.nodes, run, sittings, command)
    print(text)
    if not args.no_write:
        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
