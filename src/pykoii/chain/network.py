"""``ValidatorNetwork``: N validators (engine + application each) as real processes on loopback.

Each validator gets its own folder, free ports (p2p, engine RPC, HTTP API; picked before it starts,
see ``ValidatorNetwork.start``) and an ABCI unix socket;
all share one genesis, dial each other as persistent peers and fetch the blobs they do not hold from
each other's HTTP APIs (``--peer-apis``). ``pykoii devnet up --validators N``,
``pykoii demo --validators N``, the fault tests and the benchmark are built on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import SandboxError
from ..ledger import LedgerParams
from ..ports import free_port
from ..service.records import Genesis
from .engine import ValidatorInfo, init_home, install_genesis, make_genesis

PORT_ATTEMPTS = 3
"""How many times ``ValidatorNetwork.start`` creates a fresh network on new ports when a port it
picked was taken before its validator bound it (see ``start``)."""

PORT_TAKEN = "address already in use"
"""What CometBFT (``bind: address already in use``) and the HTTP API (``Address already in use``)
say, in their logs, when a port is taken."""


@dataclass
class Validator:
    """One validator's folder and process."""

    index: int
    home: Path
    info: ValidatorInfo
    process: Any = None
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    """More ``pykoii validator run`` arguments for this one."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.info.http_port}"

    @property
    def rpc(self) -> str:
        return f"http://127.0.0.1:{self.info.rpc_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.running()


@dataclass
class ValidatorNetwork:
    """``count`` validators under ``folder``; ``start()`` returns once every one answers HTTP."""

    folder: Path
    count: int = 4
    devnet: bool = True
    slot_ms: int = 400
    workers: int = 1
    ack_timeout: float = 30.0
    http_port: int = 0
    """The first validator's HTTP API port (the others follow); 0: free ports."""
    options: list[str] = field(default_factory=list)
    """More ``pykoii validator run`` arguments, for every validator."""
    validators: list[Validator] = field(default_factory=list)

    def create(self) -> None:
        """Folders, keys, config and the shared genesis (once; a second call reuses them)."""
        if self.validators:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for index in range(1, self.count + 1):
            home = self.folder / f"validator-{index}"
            if (home / "validator.json").exists():
                info = ValidatorInfo.load(home / "validator.json")
            else:
                info = init_home(
                    home,
                    name=f"validator-{index}",
                    p2p_port=free_port(),
                    rpc_port=free_port(),
                    http_port=self.http_port + index - 1 if self.http_port else free_port(),
                )
            self.validators.append(Validator(index, home, info))
        genesis_path = self.folder / "genesis.json"
        if not genesis_path.exists():
            document = make_genesis(
                [v.info for v in self.validators],
                chain_id=f"pykoii-devnet-{secrets.token_hex(3)}",
                genesis=Genesis(params=LedgerParams(devnet=self.devnet), slot_ms=self.slot_ms),
            )
            import json

            genesis_path.write_text(json.dumps(document, indent=2) + "\n")
            for validator in self.validators:
                peers = [v.info.peer for v in self.validators if v is not validator]
                install_genesis(validator.home, document, peers)

    def start(self, *, timeout: float = 90.0) -> None:
        """Start every validator and wait until each answers (HTTP API and engine RPC).

        The ports are picked (``free_port``) before the validators run, not bound on 0 and read
        back: CometBFT must be given its p2p and RPC ports in its config, and each validator its
        peers' p2p addresses (``persistent_peers``) and HTTP APIs (``--peer-apis``) before any of
        them starts. Another process may take one of those ports in between; the validator that
        cannot bind it exits and its log says ``address already in use``. A network this call
        created or that never ran (no block, nothing to keep) is then stopped, its folders removed,
        and created again on new ports, up to ``PORT_ATTEMPTS`` times; any other failure, or a
        network that ran before, stops what started and raises. A fresh network is started once
        each validator's engine has committed a block (all its ports bound, its peers dialled)."""
        self.create()
        fresh = not any((validator.home / "ledger").exists() for validator in self.validators)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.create()
            try:
                for validator in self.validators:
                    self.start_validator(validator, wait=False)
                for validator in self.validators:
                    self.wait_ready(validator, timeout)
                if fresh:  # its p2p port too is bound only once it makes blocks with its peers
                    for validator in self.validators:
                        validator.process.wait_for(
                            lambda v=validator: True if self._height_or_none(v) else None,
                            "its first block",
                            timeout,
                        )
                return
            except SandboxError:
                self.stop()  # what did start: nothing is left running
                if not fresh or attempt == PORT_ATTEMPTS or not self._port_taken():
                    raise
                self._discard()

    def _logs(self, validator: Validator) -> list[Path]:
        return [self.folder / f"{validator.info.name}.log", validator.home / "engine.log"]

    def _port_taken(self) -> bool:
        """Whether a validator's log (or its engine's) says a port was taken."""
        for validator in self.validators:
            for path in self._logs(validator):
                with contextlib.suppress(OSError):
                    if PORT_TAKEN in path.read_text(errors="replace").lower():
                        return True
        return False

    def _discard(self) -> None:
        """Remove what ``create`` made (folders, keys, genesis) and the logs, to create it anew."""
        for validator in self.validators:
            for path in self._logs(validator):
                path.unlink(missing_ok=True)
            shutil.rmtree(validator.home, ignore_errors=True)
        (self.folder / "genesis.json").unlink(missing_ok=True)
        self.validators = []

    def start_validator(self, validator: Validator, *, wait: bool = True, timeout: float = 90.0) -> None:
        from ..devnet import Process

        args = [
            sys.executable,
            "-m",
            "pykoii.cli",
            "validator",
            "run",
            "--home",
            str(validator.home),
            "--workers",
            str(self.workers),
            "--ack-timeout",
            str(self.ack_timeout),
            "--peer-apis",
            ",".join(v.url for v in self.validators if v is not validator),
            *self.options,
            *validator.options,
        ]
        validator.process = Process(
            validator.info.name,
            args,
            self.folder / f"{validator.info.name}.log",
            validator.url,
            env=validator.env,
        )
        validator.process.start()
        if wait:
            self.wait_ready(validator, timeout)

    def wait_ready(self, validator: Validator, timeout: float) -> None:
        """Until its HTTP API and its engine's RPC answer: the API answers first, the engine's RPC
        once the engine has replayed its blocks with the application (seconds on a loaded machine)."""
        assert validator.process is not None, f"{validator.info.name} was not started"
        validator.process.wait_http("/health", timeout)
        validator.process.wait_for(
            lambda: True if self._height_or_none(validator) is not None else None, "its engine's RPC", timeout
        )

    def _height_or_none(self, validator: Validator) -> int | None:
        """``height``, or None while its engine's RPC does not answer."""
        try:
            return self.height(validator)
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM every validator at once, wait for each (SIGKILL after ``Process.stop``'s grace),
        then SIGKILL what is left of its process group: an application killed that way leaves its
        engine and signature workers running otherwise."""
        processes = [v.process for v in self.validators if v.process is not None]
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop()
            if process.popen is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.popen.pid, signal.SIGKILL)

    def __enter__(self) -> ValidatorNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reading the engines ----------------------------------------------------------------

    def height(self, validator: Validator) -> int:
        """The validator's last committed height, from its engine's RPC."""
        status = httpx.get(validator.rpc + "/status", timeout=5.0).json()
        return int(status["result"]["sync_info"]["latest_block_height"])

    def app_hash_after(self, validator: Validator, height: int) -> str:
        """The app hash after block ``height``, as block ``height + 1``'s header records it."""
        block = httpx.get(validator.rpc + "/block", params={"height": height + 1}, timeout=5.0).json()
        return str(block["result"]["block"]["header"]["app_hash"]).lower()

    def wait_height(
        self, height: int, validators: list[Validator] | None = None, timeout: float = 60.0
    ) -> None:
        """Wait until every validator (or those given) committed ``height``."""
        deadline = time.monotonic() + timeout
        for validator in validators or self.validators:
            while True:
                reached = self._height_or_none(validator)
                if reached is not None and reached >= height:
                    break
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"{validator.info.name} did not reach height {height} in {timeout:.0f} s"
                    )
                time.sleep(0.2)
