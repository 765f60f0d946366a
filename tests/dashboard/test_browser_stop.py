"""The dashboard's Stop button, in Debian's chromium (Playwright) against a real ledger process and
real node processes: stopped between its proof and the proof's reveal window, the page says which
proofs the node still reveals and when (as `pykoii node stop-task` does), and the node does reveal."""

from __future__ import annotations

from pykoii.keys import Keypair

from ..node.harness import Ledger, NodeProcess, add_task, proofs_sent, revealed, wait_until
from .test_browser import ARTIFACTS, CHROMIUM, sync_api, world  # noqa: F401 - the fixture


def test_stop_right_after_a_proof_names_the_proof_still_to_reveal(
    world: tuple[Ledger, list[NodeProcess]],  # noqa: F811
) -> None:
    ledger, nodes = world
    # A 10 s submission window: Stop is clicked with at least 7 s of it left, before the reveal window.
    timing = {"round_time": 200, "submission_window": 100, "audit_window": 60}
    task_id = ledger.create_hello_world(Keypair.generate(), **timing)
    for node in nodes:
        add_task(node, ledger, task_id)
    node, me = nodes[0], nodes[0].info["staking_key"]
    everyone = {n.info["staking_key"] for n in nodes}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(node.login_link())
        page.goto(f"{node.operator_url}/dashboard/tasks/{task_id}")
        expect(page.locator("#stop")).to_be_visible()
        number, _ = wait_until(
            lambda: proofs_sent(ledger, task_id, everyone, timing, 70),
            180,
            "both nodes' proofs, 7 s of their submission window left",
        )
        page.click("#stop")
        outcome = page.locator("#outcome")
        expect(outcome).to_contain_text("Task stopped")
        expect(outcome).to_contain_text("The node reveals the proofs it already sent")
        expect(outcome).to_contain_text(f"round {number} (reveal window slots")
        page.screenshot(path=ARTIFACTS / "node-task-stopped-revealing.png", full_page=True)
        browser.close()
    wait_until(lambda: revealed(ledger, task_id, number, me), 60, f"the node's reveal of round {number}")
