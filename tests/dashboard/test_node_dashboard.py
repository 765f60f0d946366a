"""The node dashboard's pages and actions in process: a real Node object (no task child started)
against a real ledger store, through the node's own app, with JavaScript off."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pykoii.client import LedgerClient
from pykoii.keys import Keypair
from pykoii.ledger.codec import base58_encode
from pykoii.node.app import create_node_app, create_operator_app
from pykoii.node.journal import TaskRecord
from pykoii.node.runtime import Node, NodeConfig

from .conftest import KOII, LOCAL, Ledger

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

HTML = {"accept": "text/html,application/xhtml+xml"}


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


class Setup:
    def __init__(self, ledger: Ledger, node: Node, http: TestClient) -> None:
        self.ledger, self.node, self.http = ledger, node, http

    def join(self, task_id: str, koii: int = 5) -> None:
        """The node stakes (with its staking key) and knows the task, stopped (no child process)."""
        self.ledger.stake(self.node.staking, task_id, koii)
        record = TaskRecord(task_id=task_id, stake=koii * KOII, variables={}, enabled=False, code_cid="x")
        self.node.journal.put_task(record)
        self.node._runtime(record)


PORT = 30018
OPERATOR = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def setup(ledger: Ledger, tmp_path: Path) -> Iterator[Setup]:
    client = LedgerClient("http://testserver", transport=ledger.transport, retries=0)
    node = Node(NodeConfig(data_dir=tmp_path / "node", dashboard_port=PORT), client=client)
    with TestClient(create_operator_app(node, PORT), client=LOCAL, base_url=OPERATOR) as http:
        login = http.get(f"/login?token={node.operator_secret}", follow_redirects=False)
        assert login.status_code == 303
        yield Setup(ledger, node, http)
    node.journal.close()


def post(setup: Setup, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    return setup.http.post(path, data=data, follow_redirects=True, **kwargs)


def test_root_is_the_dashboard_for_browsers_and_koiis_json_for_others(setup: Setup) -> None:
    assert setup.http.get("/").json()["message"] == "Node is running"
    page = setup.http.get("/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    body = text(page.text)
    assert "Node overview" in body and "Healthy" in body
    assert "Wallet" in body and "Staked" in body and "Claimable" in body
    assert setup.http.get("/dashboard/").status_code == 200
    assert page.headers["x-frame-options"] == "DENY"


def test_the_public_port_serves_no_dashboard_and_no_action(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    with TestClient(create_node_app(setup.node), client=LOCAL, base_url="http://127.0.0.1:30017") as public:
        assert public.get("/", headers=HTML).json()["message"] == "Node is running"
        assert public.get("/dashboard/").status_code == 404
        assert public.get(f"/tasks/{task_id}/logs").status_code == 404
        assert public.post(f"/tasks/{task_id}/stop").status_code in (404, 405)
        assert public.post("/tasks", json={"task_id": task_id, "stake": 1}).status_code == 405
        listed = public.get("/tasks").json()
        assert listed[0]["isolation"] == "bubblewrap"


def test_login_link_gives_an_httponly_strict_cookie_and_nothing_without_it(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    secret = setup.node.operator_secret
    with TestClient(create_operator_app(setup.node, PORT), client=LOCAL, base_url=OPERATOR) as fresh:
        for path in ("/", "/dashboard/", f"/dashboard/tasks/{task_id}", f"/dashboard/add?task_id={task_id}"):
            page = fresh.get(path, headers=HTML)
            assert page.status_code == 401 and "login link" in page.text
            assert secret not in page.text and 'name="csrf"' not in page.text
        for path in ("/tasks", f"/tasks/{task_id}", f"/tasks/{task_id}/logs", f"/tasks/{task_id}/events"):
            assert fresh.get(path).status_code == 401
        assert fresh.post(f"/tasks/{task_id}/stop").status_code == 401
        assert fresh.get("/login?token=wrong", follow_redirects=False).status_code == 403
        login = fresh.get(f"/login?token={secret}", follow_redirects=False)
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and secret not in cookie
        assert fresh.get(f"/dashboard/tasks/{task_id}").status_code == 200
        bearer = {"authorization": f"Bearer {secret}"}
    with TestClient(create_operator_app(setup.node, PORT), client=LOCAL, base_url=OPERATOR) as cli:
        assert cli.get("/tasks", headers=bearer).status_code == 200


def test_foreign_host_origin_or_peer_is_refused_even_with_the_secret(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    bearer = {"authorization": f"Bearer {setup.node.operator_secret}"}
    for headers in (
        {"host": "node.example.org"},  # DNS rebinding
        {"host": "127.0.0.1:30017"},  # another port of this machine
        {"origin": "http://127.0.0.1:30017"},  # a task's page on the public port
        {"origin": "http://evil.example"},
        {"sec-fetch-site": "same-site"},
    ):
        for method, path in (
            ("GET", "/tasks"),
            ("GET", f"/tasks/{task_id}/logs"),
            ("POST", f"/tasks/{task_id}/stop"),
        ):
            refused = setup.http.request(method, path, headers={**bearer, **headers})
            assert refused.status_code == 403, (headers, path, refused.text)
    with TestClient(
        create_operator_app(setup.node, PORT), client=("192.0.2.7", 4000), base_url=OPERATOR
    ) as other:
        assert other.get("/tasks", headers=bearer).status_code == 403


def test_no_private_key_ever_reaches_a_page(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    html = "".join(
        setup.http.get(path, headers=HTML).text
        for path in ("/", f"/dashboard/tasks/{task_id}", f"/dashboard/add?task_id={task_id}")
    )
    assert setup.node.wallet.public_key in html and setup.node.staking.public_key in html
    for keypair in (setup.node.wallet, setup.node.staking):
        seed = bytes(keypair.signing_key)
        for form in (
            seed.hex(),
            base58_encode(seed),
            base58_encode(seed + bytes(keypair.signing_key.verify_key)),
        ):
            assert form not in html
        assert ",".join(str(b) for b in seed[:8]) not in html.replace(" ", "")
    assert setup.node.operator_secret not in html


def test_add_page_shows_config_variables_and_minimum_stake(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    page = setup.http.get(f"/dashboard/add?task_id={task_id}")
    assert page.status_code == 200
    body = text(page.text)
    assert "Minimum stake 2 KOII" in body
    assert "10 KOII per round" in body
    assert "Task variable FAULTY" in body and "1 submits a wrong value" in body
    assert 'name="csrf"' in page.text and "Stake and start" in body
    missing = setup.http.get("/dashboard/add?task_id=nope")
    assert missing.status_code == 404 and "no task has id" in missing.text


def test_actions_need_the_sessions_csrf_token(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    token = csrf_of(setup.http.get(f"/dashboard/tasks/{task_id}").text)
    assert token and token != setup.node.operator_secret
    for data in ({}, {"csrf": "wrong"}):
        refused = setup.http.post(f"/dashboard/tasks/{task_id}/claim", data=data)
        assert refused.status_code == 403 and "security token" in refused.text
        assert (
            setup.http.post("/dashboard/add", data={**data, "task_id": task_id, "stake": "2"}).status_code
            == 403
        )
    cross = setup.http.post(
        f"/dashboard/tasks/{task_id}/claim", data={"csrf": token}, headers={"origin": "http://evil.example"}
    )
    assert cross.status_code == 403


def test_a_paid_round_shows_its_reward_and_claim_moves_it_to_the_wallet(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    others = [Keypair.generate() for _ in range(3)]
    for key in others:
        setup.ledger.stake(key, task_id)
    faulty = others[2]
    setup.ledger.play_round(task_id, 0, [setup.node.staking, *others], {faulty.public_key})
    page = setup.http.get(f"/dashboard/tasks/{task_id}")
    body = text(page.text)
    assert "Round 0: +3.333333333 KOII" in body
    assert "valid, rewarded" in body or "valid (no audit trigger)" in body
    assert re.search(r'<rect class="reward"[^>]*><title>Round 0: \+3.333333333 KOII', page.text)
    token = csrf_of(page.text)
    wallet = setup.node.wallet.public_key
    before = setup.ledger.http.get(f"/accounts/{wallet}").json()["balance"]
    claimed = post(setup, f"/dashboard/tasks/{task_id}/claim", {"csrf": token})
    assert claimed.status_code == 200 and "Rewards claimed" in claimed.text
    assert "Claimed 3.333333333 KOII" in text(claimed.text)
    after = setup.ledger.http.get(f"/accounts/{wallet}").json()["balance"]
    assert after - before == 3_333_333_333
    again = post(setup, f"/dashboard/tasks/{task_id}/claim", {"csrf": token})
    assert "Nothing to claim" in again.text


def test_a_refused_withdraw_explains_the_lock_in_plain_words(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    setup.join(task_id)
    others = [Keypair.generate() for _ in range(2)]
    for key in others:
        setup.ledger.stake(key, task_id)
    setup.ledger.play_round(task_id, 0, [setup.node.staking, *others], set(), pay=False)
    token = csrf_of(setup.http.get(f"/dashboard/tasks/{task_id}").text)
    refused = post(setup, f"/dashboard/tasks/{task_id}/withdraw", {"csrf": token})
    body = text(refused.text)
    assert "Your stake is still locked" in body
    assert "submitted work for round 0" in body and "until round 0 is paid" in body
    assert "from now" in body and "StakeLockedError" not in body  # plain words, ledger detail below
    poor = post(setup, f"/dashboard/tasks/{task_id}/stake", {"csrf": token, "amount": "1000"})
    assert "Stake refused" in poor.text and setup.node.wallet.public_key[:8] in poor.text
    setup.ledger.fund(setup.node.wallet, 10)
    stake = post(setup, f"/dashboard/tasks/{task_id}/stake", {"csrf": token, "amount": "1.5"})
    assert "Staked 1.5 KOII more; your stake on this task is now 6.5 KOII" in text(stake.text)
    bad = post(setup, f"/dashboard/tasks/{task_id}/stake", {"csrf": token, "amount": "-3"})
    assert "Stake refused" in bad.text


def test_a_task_the_node_does_not_run_redirects_to_add(setup: Setup) -> None:
    task_id = setup.ledger.create_task()
    response = setup.http.get(f"/dashboard/tasks/{task_id}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/dashboard/add?task_id={task_id}"


class Counting(httpx.BaseTransport):
    """The ledger's transport, recording the path of every request and the bytes of every answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.paths, self.bytes = inner, [], 0  # type: list[str]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        response = self.inner.handle_request(request)
        response.read()
        self.bytes += len(response.content)
        return response


def test_the_reward_history_reads_the_keys_own_entry_of_each_paid_round_never_the_log(
    ledger: Ledger, tmp_path: Path
) -> None:
    # Round 0 pays this node, round 2 slashes it (its proof audited false): the page shows both, the
    # slash with its reason, from one `distribution?key=` read per paid round (and the node's view
    # of the task it reads anyway); a restarted node shows the same history from its journal.
    counting = Counting(ledger.transport)
    client = LedgerClient("http://testserver", transport=counting, retries=0)
    node = Node(NodeConfig(data_dir=tmp_path / "node", dashboard_port=PORT), client=client)
    with TestClient(create_operator_app(node, PORT), client=LOCAL, base_url=OPERATOR) as http:
        assert http.get(f"/login?token={node.operator_secret}", follow_redirects=False).status_code == 303
        setup = Setup(ledger, node, http)
        task_id = ledger.create_task()
        setup.join(task_id)
        others = [Keypair.generate() for _ in range(3)]
        for key in others:
            ledger.stake(key, task_id)
        everyone = [node.staking, *others]
        ledger.play_round(task_id, 0, everyone, set())
        ledger.play_round(task_id, 2, everyone, {node.staking.public_key})  # round 0 paid in 1
        counting.paths.clear()
        body = text(http.get(f"/dashboard/tasks/{task_id}").text)
        assert "Round 0: +2.5 KOII" in body, body
        assert "Round 2:" in body and "was audited and judged invalid (3 false votes against 0 true)" in body
        paid_reads = [p for p in counting.paths if p.endswith("/distribution")]
        assert paid_reads == [
            f"/tasks/{task_id}/rounds/0/distribution",
            f"/tasks/{task_id}/rounds/2/distribution",
        ]
        assert not [p for p in counting.paths if p.startswith("/log")]
        counting.paths.clear()
        http.get(f"/dashboard/tasks/{task_id}")  # read once: not read again
        assert not [p for p in counting.paths if p.endswith("/distribution")]
        kept = dict(node.history.outcomes)
    node.journal.close()
    again = Node(NodeConfig(data_dir=tmp_path / "node", dashboard_port=PORT), client=client)
    assert again.history.outcomes == kept and kept[(task_id, 2)].slash > 0
    again.journal.close()
