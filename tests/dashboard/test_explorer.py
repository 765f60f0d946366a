"""The explorer's pages, rendered in process with JavaScript off (plain HTML over TestClient)."""

from __future__ import annotations

import re

from pykoii.dashboard.format import koii, parse_koii
from pykoii.keys import Keypair

from .conftest import KOII, Ledger


def text(html: str) -> str:
    """The visible text of a page, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_amounts_are_shown_in_koii() -> None:
    assert koii(1_500_000_000) == "1.5 KOII"
    assert koii(12_000 * KOII + 250_000_000) == "12,000.25 KOII"
    assert koii(1) == "0.000000001 KOII"
    assert parse_koii("2.5") == 2_500_000_000


def test_front_page_lists_tasks_and_latest_transactions(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    page = ledger.http.get("/explorer/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    body = text(page.text)
    assert "Hello World" in body
    assert f'href="/explorer/tasks/{task_id}"' in page.text
    assert "100 KOII" in body  # bounty left
    assert "create_task" in body and "airdrop" in body
    assert 'data-live="/explorer/live"' in page.text


def test_task_page_shows_config_stakers_and_current_round(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    node = Keypair.generate()
    ledger.stake(node, task_id, 5)
    body = text(ledger.http.get(f"/explorer/tasks/{task_id}").text)
    assert "minimum stake 2 KOII" in body
    assert "10 KOII per round" in body
    assert "FAULTY" in body
    assert node.public_key[:6] in body and "5 KOII" in body
    assert "Current round" in body and "window" in body


def test_round_page_shows_submissions_votes_list_and_payout(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    nodes = [Keypair.generate() for _ in range(4)]
    for key in nodes:
        ledger.stake(key, task_id, 5)
    faulty = nodes[3].public_key
    ledger.play_round(task_id, 0, nodes, {faulty})
    page = ledger.http.get(f"/explorer/tasks/{task_id}/rounds/0")
    assert page.status_code == 200
    body = text(page.text)
    assert body.count("Hello, World!") == 3 and "wrong" in body
    assert "Audit triggers and votes" in body and "invalid" in body
    assert "PayoutSuccessful" in body and "paid" in body
    # rewards split equally among the three valid nodes, 70 % of the faulty stake slashed
    assert "3.333333333 KOII" in body and "3.5 KOII" in body
    assert "Assigned auditors" in body
    assert "Merkle root" in body and "1 of 1 chunk received" in body
    # The next page of submitters (after the first key) holds only the keys after it.
    keys = sorted(key.public_key for key in nodes)
    later = text(ledger.http.get(f"/explorer/tasks/{task_id}/rounds/0", params={"after": keys[1]}).text)
    assert "first page" in later
    assert keys[2][:6] in later and keys[3][:6] in later
    assert "4; 2 on this page" in later


def test_account_page_and_log_and_transaction(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    node = Keypair.generate()
    ledger.stake(node, task_id, 5)
    body = text(ledger.http.get(f"/explorer/accounts/{node.public_key}").text)
    assert "Wallet balance" in body and "1 KOII" in body and "5 KOII" in body
    log = ledger.http.get("/explorer/log")
    assert log.status_code == 200 and "stake" in text(log.text)
    tx_id = re.search(r'href="/explorer/tx/([^"]+)"', log.text).group(1)  # type: ignore[union-attr]
    tx = text(ledger.http.get(f"/explorer/tx/{tx_id}").text)
    assert "Events" in tx and "Staked" in tx


def test_find_redirects_and_unknown_ids_get_a_readable_404(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    found = ledger.http.get(f"/explorer/find?q={task_id}", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/explorer/tasks/{task_id}"
    missing = ledger.http.get("/explorer/tasks/nope")
    assert missing.status_code == 404 and "NotFoundError" in missing.text and "no task has id" in missing.text
    bad = ledger.http.get("/explorer/accounts/not-a-key")
    assert bad.status_code == 400 and "base58" in bad.text


def test_static_files_are_served(ledger: Ledger) -> None:
    css = ledger.http.get("/explorer/static/style.css")
    js = ledger.http.get("/explorer/static/live.js")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert js.status_code == 200 and "EventSource" in js.text
    assert ledger.http.get("/explorer/static/../format.py").status_code == 404


def test_task_page_and_stakers_route_page_through_more_than_1000_stakers(ledger: Ledger) -> None:
    task_id = ledger.create_task()
    nodes = [Keypair.from_seed(i.to_bytes(32, "big")) for i in range(1, 1202)]
    slot = ledger.slot()
    airdrops = [
        n.sign_transaction({"type": "airdrop", "to": n.public_key, "amount": 6 * KOII, "recent_slot": slot})
        for n in nodes
    ]
    stakes = [
        n.sign_transaction(
            {"type": "stake", "task_id": task_id, "amount": (2 + i % 3) * KOII, "recent_slot": slot}
        )
        for i, n in enumerate(nodes)
    ]
    for batch in (airdrops, stakes):
        answers = ledger.http.post("/tx", json=batch).json()
        assert all("error" not in a for a in answers), next(a for a in answers if "error" in a)
    expected = sorted(n.public_key for n in nodes)

    # The API: pages of at most `limit` keys, in key order, each key once, the cursor to the next.
    seen: list[dict[str, object]] = []
    after, sizes = "", []
    while True:
        page = ledger.http.get(f"/tasks/{task_id}/stakers", params={"after": after} if after else {}).json()
        assert page["stakers"] == page["accounts"] == len(nodes)
        seen += page["entries"]
        sizes.append(len(page["entries"]))
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sizes == [1000, 201]
    assert [e["key"] for e in seen] == expected
    by_key = {n.public_key: i for i, n in enumerate(nodes)}
    assert all(e["stake"] == (2 + by_key[str(e["key"])] % 3) * KOII for e in seen)
    one = ledger.http.get(f"/tasks/{task_id}/stakers", params={"key": expected[7]}).json()
    assert [e["key"] for e in one["entries"]] == [expected[7]] and one["next_after"] is None
    assert ledger.http.get(f"/tasks/{task_id}/stakers", params={"limit": 5001}).status_code == 400

    # The explorer: one page of stakers at a time, and a link to the next.
    first = ledger.http.get(f"/explorer/tasks/{task_id}").text
    shown = [key for key in expected if f"/accounts/{key}" in first]
    assert shown == expected[:1000]
    assert "1201 stakers" in text(first)
    link = re.search(r'href="/explorer/tasks/[^"?]+\?after=([^"]+)"', first)
    assert link is not None and link.group(1) == expected[999]
    second = ledger.http.get(f"/explorer/tasks/{task_id}", params={"after": link.group(1)}).text
    assert [key for key in expected if f"/accounts/{key}" in second] == expected[1000:]
    assert "Next page of stakers" not in second
