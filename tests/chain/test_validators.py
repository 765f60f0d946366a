"""The validator network as real processes: 4 CometBFT engines + 4 pykoii applications on loopback,
with nodes running the Hello-World task, under faults: kill -9, 2 of 4 down, a diverged validator,
hostile bytes. Every check goes through the public surfaces: the engines' RPC and the HTTP API."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pykoii import errors
from pykoii.chain.abci import encode_uvarint
from pykoii.chain.engine import set_config
from pykoii.chain.network import Validator, ValidatorNetwork
from pykoii.chain.store import BROADCAST_PARALLEL, MAX_TX_BYTES
from pykoii.client import LedgerClient
from pykoii.demo import HELLO_WORLD, STAKE, VALIDATOR_WINDOWS, run_demo
from pykoii.devnet import Devnet
from pykoii.keys import Keypair
from pykoii.ledger import INSTRUCTIONS
from pykoii.ledger.types import ROE_PER_KOII

pytestmark = pytest.mark.usefixtures("cometbft")


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill9(validator: Validator, part: str) -> None:
    """``kill -9`` the validator's application process or its engine (the ``cometbft`` child)."""
    pid = validator.process.popen.pid
    target = pid if part == "app" else next(p for p in children(pid) if b"cometbft" in _cmdline(p))
    os.kill(target, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while validator.process.running():
        assert time.monotonic() < deadline, f"{validator.info.name} still runs after its {part} was killed"
        time.sleep(0.1)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def app_hashes(validator: Validator, up_to: int) -> dict[int, str]:
    """``{height: app hash after it}`` for heights < ``up_to``, from the engine's block headers."""
    out: dict[int, str] = {}
    low = 2
    while low <= up_to:
        high = min(low + 19, up_to)
        page = httpx.get(
            validator.rpc + "/blockchain", params={"minHeight": low, "maxHeight": high}, timeout=10
        ).json()
        for meta in page["result"]["block_metas"]:
            header = meta["header"]
            out[int(header["height"]) - 1] = header["app_hash"]
        low = high + 1
    return out


def wait_for(check: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


class Load(threading.Thread):
    """Signed transfers sent one after another to a validator; remembers every acknowledged one."""

    def __init__(self, url: str, wallet: Keypair) -> None:
        super().__init__(daemon=True)
        self.client = LedgerClient(url, retries=0, timeout=60)
        self.wallet = wallet
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.running = True

    def run(self) -> None:
        amount = 1
        while self.running:
            try:
                tx = {"type": "transfer", "to": Keypair.generate().public_key, "amount": amount}
                self.acked.append(self.client.send_transaction(self.wallet, tx)["tx_id"])
            except errors.PykoiiError as exc:
                self.refused.append(exc.name)
                time.sleep(0.2)
            amount += 1

    def stop(self) -> None:
        self.running = False
        self.join(90)


def round_paid(client: LedgerClient, task_id: str) -> list[int]:
    task = client.task(task_id)
    paid = []
    for number in range(max(0, task["current_round"] - 6), task["current_round"] + 1):
        if client.round(task_id, number).get("payout_record") == "PayoutSuccessful":
            paid.append(number)
    return paid


def check_blobs_on_every_validator(network: ValidatorNetwork, cid: str) -> None:
    """The task's code was uploaded to validator-1 only; node-2 and node-3 downloaded it through
    validator-2 and -3, which fetched it from their peers and keep it. Validator-4 (no node) holds
    nothing until asked, and its blob quota (1 KB, below the code's size) refuses to keep it."""
    assert cid
    v1, v2, v3, v4 = network.validators
    for holder in (v1, v2, v3):
        assert httpx.get(f"{holder.url}/blobs/{cid}", params={"local": "true"}).status_code == 200
    local = httpx.get(f"{v4.url}/blobs/{cid}", params={"local": "true"})
    assert local.status_code == 404 and local.json()["error"] == "NotFoundError"
    over = httpx.get(f"{v4.url}/blobs/{cid}")
    assert over.status_code == 507 and "quota" in over.json()["message"], over.text
    assert not (v4.home / "ledger" / "blobs" / cid).exists()


def test_four_validators_agree_survive_kill_and_halt_without_quorum(tmp_path: Path) -> None:
    net = Devnet(tmp_path, nodes_count=3, slot_ms=400, poll=0.05, validators=4)
    net.start(timeout=120)
    load: Load | None = None
    try:
        network = net.network
        v1, v2, v3, v4 = network.validators
        client = LedgerClient(v1.url, retries=2)
        task_id = net.deploy(HELLO_WORLD, **VALIDATOR_WINDOWS)
        for node in net.nodes:
            faulty = node.index == len(net.nodes)
            net.add_task(node, task_id, stake=STAKE, variables={"FAULTY": "1" if faulty else "0"})
        funder = Keypair.generate()
        net.airdrop(funder.public_key, 100 * ROE_PER_KOII)
        load = Load(v1.url, funder)
        load.start()

        # kill -9 one application under load: blocks go on, rounds are paid, nothing acked is lost.
        wait_for(lambda: len(load.acked) >= 5, "the first acknowledged transfers")
        kill9(v4, "app")
        height = network.height(v1)
        wait_for(lambda: network.height(v1) >= height + 10, "blocks without validator-4")
        wait_for(lambda: round_paid(client, task_id), "a round paid with validator-4 down", timeout=240)
        # Restarted with a blob quota of 1 KB, and a checkpoint every 5 entries (for its next restart).
        v4.options = ["--blob-quota-mb", "0.001", "--checkpoint-every", "5"]
        network.start_validator(v4)
        # Its HTTP API answers first; its engine's RPC only once the engine has replayed its blocks
        # with the application (seconds on a loaded machine): wait_height waits through refusals.
        network.wait_height(network.height(v1), [v4], timeout=120)  # validator-4 catching up
        check_blobs_on_every_validator(network, client.task(task_id)["task_audit_program"])

        # Every other instruction, accepted or refused, so the comparison below covers them all.
        manager = Keypair.generate()  # deploy() airdrops it the bounty, nothing more
        sent = {
            "airdrop",
            "transfer",
            "create_task",
            "stake",
            "submit",
            "audit_submission",
            "payout",
            "submit_distribution",
            "upload_distribution_chunk",
            "reveal",
        }
        staking = Keypair.load(net.nodes[0].data_dir / "keys" / "staking_wallet.json")
        own = net.deploy(HELLO_WORLD, manager=manager, **VALIDATOR_WINDOWS)
        attempts: list[tuple[Keypair, dict[str, Any]]] = [
            (manager, {"type": "fund_task", "task_id": own, "amount": ROE_PER_KOII}),
            (manager, {"type": "set_active", "task_id": own, "is_active": False}),
            (manager, {"type": "update_task", "task_id": own, **_task_fields(client, own)}),
            (staking, {"type": "claim_reward", "task_id": task_id, "beneficiary": staking.public_key}),
            (staking, {"type": "withdraw", "task_id": task_id}),
            (
                staking,
                {
                    "type": "submit_distribution",
                    "task_id": task_id,
                    "round": 0,
                    "root": "00" * 32,
                    "chunks": 1,
                },
            ),
            (
                staking,
                {
                    "type": "audit_distribution",
                    "task_id": task_id,
                    "round": 0,
                    "candidate": staking.public_key,
                    "is_valid": True,
                },
            ),
            (manager, {"type": "transfer", "to": staking.public_key, "amount": 10**18}),
        ]
        refusals = []
        for key, tx in attempts:
            sent.add(tx["type"])
            try:
                client.send_transaction(key, tx)
            except errors.InvalidTransactionError as exc:
                refusals.append(exc.name)
        assert sent == set(INSTRUCTIONS)
        assert "InsufficientFundsError" in refusals

        # 2 of 4 down (one application, one engine): no block, POST /tx says so, nothing acked.
        load.stop()
        kill9(v3, "engine")
        kill9(v4, "app")
        time.sleep(3)
        stalled = network.height(v1)
        with pytest.raises(errors.LedgerUnavailableError, match="2/3"):
            client.send_transaction(funder, {"type": "transfer", "to": manager.public_key, "amount": 1})
        assert network.height(v1) == stalled
        # One back: blocks resume; then the fourth.
        network.start_validator(v3)
        wait_for(lambda: network.height(v1) >= stalled + 3, "blocks after validator-3 came back")
        network.start_validator(v4)
        top = network.height(v1)
        network.wait_height(top, timeout=120)
        # Validator-4, killed again, started from a checkpoint written while it ran (not from genesis).
        (restart,) = [
            line for line in v4.process.log_tail(400).splitlines() if "log entries replayed" in line
        ][-1:]
        assert "state from the checkpoint at seq" in restart, restart

        # The same app hash at every height on every validator.
        hashes = [app_hashes(v, top) for v in network.validators]
        assert len(hashes[0]) >= top - 2
        for other in hashes[1:]:
            assert other == hashes[0]
        # No acknowledged transaction is lost, on any validator.
        assert load.acked
        for validator in network.validators:
            reader = LedgerClient(validator.url)
            for tx_id in load.acked:
                assert reader.transaction(tx_id)["tx_id"] == tx_id
            health = reader.health(state_root=True)
            assert health["role"] == "validator"
    finally:
        if load is not None:
            load.running = False
        net.stop()


def _task_fields(client: LedgerClient, task_id: str) -> dict[str, Any]:
    task = client.task(task_id)
    names = (
        "task_name",
        "task_description",
        "task_audit_program",
        "bounty_amount_per_round",
        "round_time",
        "audit_window",
        "submission_window",
        "minimum_stake_amount",
    )
    return {name: task[name] for name in names}


def test_a_diverged_validator_stops_naming_the_height_and_acks_nothing(tmp_path: Path) -> None:
    network = ValidatorNetwork(tmp_path, count=4, ack_timeout=20)
    network.create()
    bad = network.validators[3]
    bad.env = {"PYKOII_TEST_DIVERGE_AT": "8"}
    network.start()
    try:
        alice = Keypair.generate()
        client = LedgerClient(bad.url, retries=0)
        network.wait_height(5, [bad])
        with pytest.raises(errors.LedgerUnavailableError):
            # Sent to the diverging validator around the height it diverges: never acknowledged.
            for _ in range(20):
                to = Keypair.generate().public_key
                client.send_transaction(alice, {"type": "airdrop", "to": to, "amount": 1})
                if network.height(network.validators[0]) > 12:
                    break
                time.sleep(0.3)
            raise AssertionError(
                "unreachable: the diverged validator acknowledged transactions past height 12"
            )
        wait_for(lambda: not bad.running(), "the diverged validator to stop")
        assert bad.process.popen.returncode == 1
        log = bad.process.log_path.read_text()
        assert "diverged from the network's at height 8" in log
        others = network.validators[:3]
        height = network.height(others[0])
        network.wait_height(height + 5, others)
        good = LedgerClient(others[0].url)
        bob = Keypair.generate().public_key
        receipt = good.send_transaction(alice, {"type": "airdrop", "to": bob, "amount": 2})
        assert receipt["height"] > 8
    finally:
        network.stop()


def one_validator(
    tmp_path: Path, config: dict[str, dict[str, Any]] | None = None
) -> tuple[Path, list[str], subprocess.Popen[bytes], Any]:
    """A one-validator network through the CLI (``validator init``, ``genesis --devnet``, ``run``):
    its folder, ports (p2p, engine RPC, HTTP), process and log file; ``config`` is set in the
    engine's config.toml before it starts."""
    cli = [sys.executable, "-m", "pykoii.cli", "validator"]
    # `validator init` takes the ports (CometBFT's config holds them), so they are picked before the
    # validator binds them; if another process took one meanwhile (the validator or its engine then
    # exits: "address already in use"), this fresh validator is made again on new ports.
    for attempt in range(3):
        home = tmp_path / "v1"
        shutil.rmtree(home, ignore_errors=True)
        ports = [str(_port()) for _ in range(3)]
        subprocess.run(
            [*cli, "init", "--home", str(home),
             "--p2p-port", ports[0], "--rpc-port", ports[1], "--http-port", ports[2]],
            check=True, capture_output=True,
        )  # fmt: skip
        if config:
            set_config(home / "engine" / "config" / "config.toml", config)
        genesis = tmp_path / "genesis.json"
        subprocess.run(
            [*cli, "genesis", "--out", str(genesis), "--devnet", str(home)], check=True, capture_output=True
        )
        log = open(tmp_path / "validator.log", "wb")
        process = subprocess.Popen(
            [*cli, "run", "--home", str(home), "--genesis", str(genesis)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # The HTTP API may answer before the engine's RPC listens (POST /tx then answers 503, nothing
        # sent), and the engine binds its p2p port after its RPC: wait for its first block (on a
        # loaded machine that can take a while).
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                status = httpx.get(f"http://127.0.0.1:{ports[1]}/status", timeout=5).json()
                if int(status["result"]["sync_info"]["latest_block_height"]) >= 1:
                    break
            time.sleep(0.2)
        else:
            said = (tmp_path / "validator.log").read_text(errors="replace")
            with contextlib.suppress(OSError):
                said += (home / "engine.log").read_text(errors="replace")
            if process.poll() is None:
                process.kill()
                raise AssertionError(
                    f"the engine's RPC made no block in 120 s; the logs end with:\n{said[-3000:]}"
                )
            log.close()
            if "address already in use" not in said.lower() or attempt == 2:
                raise AssertionError(f"the validator exited with {process.returncode}:\n{said[-3000:]}")
            continue
        return home, ports, process, log
    raise AssertionError("unreachable")


def block_ms(block: Any) -> int:
    """A ``/block`` answer's header time (RFC 3339, nanoseconds) in ms since the epoch."""
    text = block["result"]["block"]["header"]["time"]
    seconds, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(seconds).replace(tzinfo=UTC)
    return int(whole.timestamp()) * 1000 + int((fraction + "000")[:3])


def test_validator_cli_and_hostile_input(tmp_path: Path) -> None:
    home, ports, process, log = one_validator(tmp_path)
    rpc, url = f"http://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[2]}"
    try:
        client = LedgerClient(url, retries=20, backoff=0.5)
        assert (
            int(httpx.get(rpc + "/status", timeout=5).json()["result"]["sync_info"]["latest_block_height"])
            >= 1
        )
        alice = Keypair.generate()
        client.send_transaction(alice, {"type": "airdrop", "to": alice.public_key, "amount": 9})

        # Garbage on the ABCI socket.
        import socket

        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(home / "app.sock"))
            raw.sendall(encode_uvarint(64) + os.urandom(64))
            raw.settimeout(30)
            assert b"invalid ABCI request" in raw.recv(4096)

        def broadcast(tx: bytes) -> dict[str, Any]:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "broadcast_tx_sync",
                "params": {"tx": base64.b64encode(tx).decode()},
            }
            return dict(httpx.post(rpc, json=body, timeout=30).json())

        noise = broadcast(os.urandom(200))["result"]
        assert noise["code"] != 0 and noise["codespace"] == "MalformedTransactionError"
        big = orjson.dumps({"tx": {"pad": "x" * (MAX_TX_BYTES + 10)}, "signature": ""})
        oversize = broadcast(big)["result"]
        assert oversize["code"] != 0 and oversize["codespace"] == "PayloadTooLargeError"
        forged = alice.sign_transaction(
            {"type": "airdrop", "to": alice.public_key, "amount": 1, "recent_slot": 1}
        )
        forged["signature"] = Keypair.generate().sign_transaction(forged["tx"])["signature"]
        with pytest.raises(errors.InvalidSignatureError):
            client.send(forged)

        # A POST /tx batch (JSON-RPC batches to the engine, more than its default limit of 10), of a
        # size the validator's split into BROADCAST_PARALLEL parts does not divide evenly.
        slot = client.slot()["slot"]
        assert 33 % -(-33 // BROADCAST_PARALLEL) != 0
        batch = [
            alice.sign_transaction(
                {"type": "airdrop", "to": Keypair.generate().public_key, "amount": 1, "recent_slot": slot}
            )
            for _ in range(33)
        ]
        results = client.send_batch(batch)
        assert all(isinstance(r, dict) and r["slot"] >= slot for r in results), results[:2]

        # Engine and application keep running and committing.
        receipt = client.send_transaction(alice, {"type": "transfer", "to": alice.public_key, "amount": 1})
        assert receipt["seq"] == 35 and process.poll() is None
        # Its slot is that of its block's BFT time, its height the block's: GET /tx gives both.
        stored = client.transaction(receipt["tx_id"])
        genesis = httpx.get(rpc + "/genesis", timeout=10).json()["result"]["genesis"]["app_state"]
        header = httpx.get(rpc + "/block", params={"height": receipt["height"]}, timeout=10).json()
        assert stored == receipt
        assert receipt["slot"] == (block_ms(header) - genesis["anchor_ms"]) // genesis["slot_ms"]
        by_id = httpx.get(
            rpc + "/tx_search", params={"query": f"\"pykoii.tx.tx_id='{receipt['tx_id']}'\""}, timeout=10
        ).json()
        (engine_tx,) = by_id["result"]["txs"]
        assert engine_tx["tx_result"]["code"] == 0 and int(engine_tx["height"]) == receipt["height"]
        found = httpx.get(
            rpc + "/tx_search", params={"query": f"\"pykoii.tx.signer='{alice.public_key}'\""}, timeout=10
        ).json()
        assert int(found["result"]["total_count"]) == 35
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()
    assert process.returncode == 0


def _port() -> int:
    from pykoii.devnet import free_port

    return free_port()


def test_demo_on_four_validators_matches_the_seed_rule(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(
        nodes=3, faulty=1, rounds=1, folder=tmp_path, out=lines.append, validators=4, timeout=400
    )
    assert result.matches, "\n".join(lines)
    assert any("4 CometBFT validators" in line for line in lines)
    assert len(result.paid_rounds) == 1 and sum(result.rewards.values()) > 0
