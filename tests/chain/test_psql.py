"""The engine's ``psql`` event indexer against a real PostgreSQL: a throwaway cluster (initdb, pg_ctl;
as an unprivileged user when the tests run as root), CometBFT's own schema, one validator with
``tx_index.indexer = "psql"``, and pykoii's receipt events found with SQL.

PostgreSQL is installed by ``scripts/system-packages`` (Debian's ``postgresql``); only a machine where it
is not installed (and could not be) skips this test, saying so."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykoii.chain.engine import COMETBFT_VERSION
from pykoii.client import LedgerClient
from pykoii.devnet import free_port
from pykoii.keys import Keypair, reveal_body, submit_body
from pykoii.ledger.types import ROE_PER_KOII

from .test_validators import one_validator, wait_for

pytestmark = pytest.mark.usefixtures("cometbft")


def postgres_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``/``psql``: Debian's newest ``/usr/lib/postgresql/N/bin``,
    else wherever ``initdb`` is on ``PATH``."""
    versions = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def engine_schema() -> Path:
    """CometBFT's ``schema.sql`` for the psql sink, from the Go module cache ``make cometbft`` filled."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout
    path = (
        Path(cache.strip())
        / f"github.com/cometbft/cometbft@v{COMETBFT_VERSION}/state/indexer/sink/psql/schema.sql"
    )
    assert path.exists(), f"{path} is missing: `make cometbft` downloads the engine's module source"
    return path


class Postgres:
    """A PostgreSQL cluster in a temporary folder on a free loopback port, trust authentication."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pykoii-pg-"))
        self.data = self.folder / "data"
        self.user: pwd.struct_passwd | None = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if self.user is not None:  # initdb and postgres refuse to run as root
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)

    def _as_owner(self, *args: str) -> None:
        user = self.user

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        done = subprocess.run(
            list(args), cwd=self.folder, preexec_fn=demote, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout}\n{done.stderr}"

    def start(self) -> None:
        self._as_owner(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._as_owner(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def psql(self, database: str, *args: str) -> list[list[str]]:
        done = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [line.split("\t") for line in done.stdout.splitlines() if line]


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb): run scripts/system-packages as root to install it"
        )
    cluster = Postgres(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_the_psql_indexer_stores_pykoii_receipt_events(tmp_path: Path, postgres: Postgres) -> None:
    postgres.psql("postgres", "-c", "CREATE DATABASE pykoii")
    postgres.psql("pykoii", "-f", str(engine_schema()))
    config = {"tx_index": {"indexer": "psql", "psql-conn": postgres.url("pykoii")}}
    _, (_, _, http), process, log = one_validator(tmp_path, config)
    try:
        client = LedgerClient(f"http://127.0.0.1:{http}", retries=20, backoff=0.5)
        manager, node = Keypair.generate(), Keypair.generate()
        for key, koii in ((manager, 200), (node, 10)):
            client.send_transaction(
                key, {"type": "airdrop", "to": key.public_key, "amount": koii * ROE_PER_KOII}
            )
        created = client.send_transaction(
            manager,
            {
                "type": "create_task",
                "task_name": "psql",
                "task_description": "indexed",
                "task_audit_program": "bafkreihelloworld",
                "total_bounty_amount": 100 * ROE_PER_KOII,
                "bounty_amount_per_round": 10 * ROE_PER_KOII,
                "round_time": 30,  # slots of 400 ms: windows of 4 s, reveals 2.4 s (audit_window // 2)
                "submission_window": 10,
                "audit_window": 12,
                "minimum_stake_amount": 2 * ROE_PER_KOII,
                "allowed_failed_distributions": 3,
                "requirements_tags": [],
                "sample_size": 5,
            },
        )
        task_id = next(e["task_id"] for e in created["events"] if e["kind"] == "TaskCreated")
        client.send_transaction(
            node,
            {
                "type": "stake",
                "task_id": task_id,
                "amount": 5 * ROE_PER_KOII,
                "ip_address": "http://127.0.0.1:1",
            },
        )
        task = client.task(task_id)
        start = task["starting_slot"] + task["round_time"]  # round 0's submission window
        wait_for(lambda: client.slot()["slot"] >= start, "round 0's submission window")
        submitted = client.send_transaction(node, submit_body(node, task_id, 0, "Hello, World!"))
        reveal_at = start + task["submission_window"]
        wait_for(lambda: client.slot()["slot"] >= reveal_at, "round 0's reveal window")
        client.send_transaction(node, reveal_body(node, task_id, 0))

        def submitted_rows() -> list[list[str]]:
            return postgres.psql(
                "pykoii",
                "-c",
                "SELECT height, key, value FROM tx_events WHERE type = 'Submitted' AND key <> '' "
                "ORDER BY key",
            )

        rows = wait_for(submitted_rows, "the Submitted event in PostgreSQL")
        height = str(submitted["height"])
        assert rows == [
            [height, "round", "0"],
            [height, "submitter", node.public_key],
            [height, "task_id", task_id],
        ]
        # By attribute, as an indexer's user would look for it; every pykoii transaction is there.
        found = postgres.psql(
            "pykoii",
            "-c",
            "SELECT count(*) FROM tx_events WHERE composite_key = 'Submitted.task_id' "
            f"AND value = '{task_id}'",
        )
        assert found == [["1"]]
        kinds = {"airdrop": "2", "create_task": "1", "stake": "1", "submit": "1", "reveal": "1"}

        def types() -> dict[str, str]:
            rows = postgres.psql(
                "pykoii",
                "-c",
                "SELECT value, count(*) FROM tx_events WHERE composite_key = 'pykoii.tx.type' GROUP BY value",
            )
            return {kind: count for kind, count in rows}

        wait_for(lambda: types() == kinds, f"the pykoii.tx events {kinds}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()
    assert process.returncode == 0
