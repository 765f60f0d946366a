"""``ValidatorNetwork``: N validators (engine + application each) as real processes on loopback.

Each validator gets its own folder, free ports (p2p, engine RPC, HTTP API) and an ABCI unix socket;
all share one genesis, dial each other as persistent peers and fetch the blobs they do not hold from
each other's HTTP APIs (``--peer-apis``). ``pykoii devnet up --validators N``,
``pykoii demo --validators N``, the fault tests and the benchmark are built on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import SandboxError
from ..ledger import LedgerParams
from ..service.records import Genesis
from .engine import ValidatorInfo, init_home, install_genesis, make_genesis


def free_port() -> int:
    from ..devnet import free_port as port

    return port()


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
        self.create()
        for validator in self.validators:
            self.start_validator(validator, wait=False)
        for validator in self.validators:
            self.wait_ready(validator, timeout)

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
        assert validator.process is not None, f"{validator.info.name} was not started"
        validator.process.wait_http("/health", timeout)

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
                try:
                    if self.height(validator) >= height:
                        break
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"{validator.info.name} did not reach height {height} in {timeout:.0f} s"
                    )
                time.sleep(0.2)
