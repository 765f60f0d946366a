"""End to end in a real browser: Debian's chromium driven by Playwright, against a real ledger
service process and two real node processes (``pykoii node run``), no mocked backend.

The operator adds the Hello-World task in the page, watches a round get paid, claims the reward
(and the wallet balance grows), is refused a withdraw with the lock explained, and a request
without the dashboard's token is refused. Each page is saved to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pykoii.keys import Keypair

from ..node.harness import Ledger, NodeProcess

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is a dev dependency (pip install -e .[dev])"
)
if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is missing: `make system-packages` installs it", allow_module_level=True)


@pytest.fixture
def world() -> Iterator[tuple[Ledger, list[NodeProcess]]]:
    root = Path(tempfile.mkdtemp(prefix="pykoii-dashboard-"))
    os.chmod(root, 0o755)
    (root / "ledger").mkdir()
    ledger = Ledger(root / "ledger", slot_ms=100)
    nodes: list[NodeProcess] = []
    try:
        nodes = [NodeProcess(root / f"node{i}", ledger.url) for i in range(2)]
        for node in nodes:
            ledger.airdrop(node.info["main_account"], 50)
        yield ledger, nodes
    finally:
        for node in nodes:
            node.stop()
        ledger.stop()
        shutil.rmtree(root, ignore_errors=True)


def koii_of(text: str) -> float:
    return float(re.sub(r"[^0-9.]", "", text.split("KOII")[0]) or 0)


def test_operator_adds_hello_world_earns_claims_and_is_told_why_withdraw_waits(
    world: tuple[Ledger, list[NodeProcess]],
) -> None:
    ledger, nodes = world
    task_id = ledger.create_hello_world(
        Keypair.generate(), round_time=24, submission_window=9, audit_window=9
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        expect = sync_api.expect

        # Both nodes add the task in their own dashboard; node 0 is the one we follow.
        for index, node in reversed(list(enumerate(nodes))):
            page.goto(node.operator_url + "/")  # without the login link: nothing but how to log in
            expect(page.locator("body")).to_contain_text("login link")
            page.goto(node.login_link())
            page.goto(node.operator_url + "/")
            expect(page.locator("h1")).to_have_text("Node overview")
            if index == 0:
                expect(page.locator("#ledger-tasks")).to_contain_text("Hello World")
                page.screenshot(path=ARTIFACTS / "node-overview-empty.png", full_page=True)
            page.fill("#add-id", task_id)
            page.click("text=Review the task")
            expect(page.locator("#minimum-stake")).to_have_text("2 KOII")
            expect(page.locator("#task-config")).to_contain_text(task_id)
            if index == 0:
                page.screenshot(path=ARTIFACTS / "node-add-task.png", full_page=True)
            page.fill("#stake", "5")
            page.click("#add-task")
            expect(page.locator("#outcome")).to_contain_text("Task added", timeout=30_000)
            expect(page.locator("#outcome")).to_contain_text("Staked 5 KOII")

        # Node 0's task page: watch rounds pass until a reward is claimable (the page updates live).
        expect(page.locator("#task-status")).to_have_text(re.compile("running|starting"))
        expect(page.locator("#task-stake")).to_have_text("5 KOII")
        expect(page.locator("#task-claimable")).not_to_have_text("0 KOII", timeout=60_000)
        expect(page.locator("#rewards-chart rect.reward").first).to_be_attached()
        expect(page.locator("#last-audit")).to_contain_text("valid")
        expect(page.locator("#logs")).to_contain_text("task child started")
        page.screenshot(path=ARTIFACTS / "node-task-rewarded.png", full_page=True)

        # Claim: the outcome is shown and the wallet balance on the ledger grows by that amount.
        wallet = nodes[0].info["main_account"]
        before = httpx.get(f"{ledger.url}/accounts/{wallet}").json()["balance"]
        page.click("#claim")
        expect(page.locator("#outcome")).to_contain_text("Rewards claimed")
        after = httpx.get(f"{ledger.url}/accounts/{wallet}").json()["balance"]
        assert after > before
        claimed = re.search(r"Claimed ([\d.,]+) KOII", page.locator("#outcome").inner_text())
        assert claimed is not None
        assert round(koii_of(claimed.group(1) + " KOII") * 10**9) == after - before
        page.screenshot(path=ARTIFACTS / "node-task-claimed.png", full_page=True)

        # Withdraw right after submitting: refused, with the lock in plain words.
        page.click("#withdraw")
        expect(page.locator("#outcome")).to_contain_text("Your stake is still locked")
        expect(page.locator("#outcome")).to_contain_text(re.compile(r"until round \d+ is paid"))
        expect(page.locator("#outcome")).to_contain_text("stop it first")
        page.screenshot(path=ARTIFACTS / "node-withdraw-refused.png", full_page=True)

        # A request without the CSRF token is refused, from the page itself and from outside it.
        status = page.evaluate(
            "url => fetch(url, {method: 'POST', body: new URLSearchParams({amount: '1'})})"
            ".then(r => r.status)",
            f"/dashboard/tasks/{task_id}/stake",
        )
        assert status == 403
        assert (
            httpx.post(f"{nodes[0].operator_url}/dashboard/tasks/{task_id}/claim", data={}).status_code == 401
        )
        assert httpx.get(nodes[0].url + "/").json()["message"] == "Node is running"

        # The overview now shows the task, and the ledger explorer shows the paid round.
        page.goto(nodes[0].operator_url + "/")
        expect(page.locator("#my-tasks")).to_contain_text("Hello World")
        page.screenshot(path=ARTIFACTS / "node-overview.png", full_page=True)

        page.goto(f"{ledger.url}/explorer/")
        expect(page.locator("main")).to_contain_text("Hello World")
        page.screenshot(path=ARTIFACTS / "explorer-index.png", full_page=True)
        page.goto(f"{ledger.url}/explorer/tasks/{task_id}")
        expect(page.locator("main")).to_contain_text("paid")
        page.screenshot(path=ARTIFACTS / "explorer-task.png", full_page=True)
        paid = ledger.task(task_id)["distributions_audit_record"]
        first_paid = min(int(r) for r, v in paid.items() if v == "PayoutSuccessful")
        page.goto(f"{ledger.url}/explorer/tasks/{task_id}/rounds/{first_paid}")
        expect(page.locator("main")).to_contain_text("PayoutSuccessful")
        expect(page.locator("main")).to_contain_text("Hello, World!")
        page.screenshot(path=ARTIFACTS / "explorer-round.png", full_page=True)
        page.goto(f"{ledger.url}/explorer/accounts/{wallet}")
        expect(page.locator("#account-balance")).to_contain_text("KOII")
        page.screenshot(path=ARTIFACTS / "explorer-account.png", full_page=True)
        page.goto(f"{ledger.url}/explorer/log")
        expect(page.locator("main")).to_contain_text("claim_reward")
        page.screenshot(path=ARTIFACTS / "explorer-log.png", full_page=True)
        browser.close()
