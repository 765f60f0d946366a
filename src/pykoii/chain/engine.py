"""The CometBFT engine as pykoii uses it: the binary, a validator's home, its config, the genesis.

A validator's folder (``--home``) holds::

    validator.json   name, node id, validator public key, p2p address, RPC and HTTP ports
    peer-apis.json   the other validators' HTTP APIs (asked for blobs this one does not hold)
    engine/          CometBFT's home: config/config.toml, config/genesis.json, keys, data/
    ledger/          the application's SQLite log, checkpoints and blobs
    app.sock         the ABCI socket between the two (unix)
    engine.log       the engine's output

``init_home`` runs ``cometbft init`` and sets the config pykoii needs; ``make_genesis`` writes the one
genesis every validator of a network shares (its validators, and pykoii's genesis as ``app_state``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..service.records import Genesis

COMETBFT_VERSION = "0.38.25"
REPO_BIN = Path(__file__).resolve().parents[3] / ".bin" / "cometbft"

BLOCK_TIMEOUTS = {
    "timeout_propose": "1s",
    "timeout_propose_delta": "200ms",
    "timeout_prevote": "200ms",
    "timeout_prevote_delta": "200ms",
    "timeout_precommit": "200ms",
    "timeout_precommit_delta": "200ms",
    # Tuned for latency (a POST /tx answer waits for two blocks), free to change since a slot is the
    # blocks' time, not their count: 150 ms between a commit and the next height (300 ms before:
    # about a third of every block interval under load); with an empty mempool, 200 ms more before
    # an empty block, so an idle network still makes one about every 400 ms, not every 200.
    # skip_timeout_commit (no wait at all) was measured too: as fast on 4 validators, but a lone
    # validator under load then made 10-18 blocks/s, and its throughput fell with the per-block costs.
    "timeout_commit": "150ms",
    "create_empty_blocks_interval": "200ms",
}
"""``[consensus]`` timeouts for blocks about 400 ms apart on an idle LAN (every validator uses the same)."""


def cometbft_binary() -> str:
    """The engine's executable: ``$PYKOII_COMETBFT``, this checkout's ``.bin/cometbft`` (``make
    cometbft``), or ``cometbft`` on ``PATH``; ``ConfigError`` saying how to build it otherwise."""
    candidates = [os.environ.get("PYKOII_COMETBFT", ""), str(REPO_BIN), shutil.which("cometbft") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        f"the CometBFT v{COMETBFT_VERSION} engine is not installed: run `make cometbft` in the pykoii "
        f"checkout (needs Go >= 1.22), or `go install github.com/cometbft/cometbft/cmd/cometbft@v"
        f"{COMETBFT_VERSION}` and put it on PATH or in $PYKOII_COMETBFT"
    )


def engine_version(binary: str) -> str:
    return subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout.strip()


@dataclass(frozen=True)
class ValidatorInfo:
    """What a validator publishes to the others (``validator.json``)."""

    name: str
    node_id: str
    pub_key: str
    """Base64 of the ed25519 consensus public key."""
    address: str
    """The validator's consensus address (hex)."""
    p2p: str
    """``host:port`` its peers dial."""
    rpc_port: int
    http_port: int

    @property
    def peer(self) -> str:
        return f"{self.node_id}@{self.p2p}"

    @classmethod
    def load(cls, path: Path) -> ValidatorInfo:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a validator.json written by `pykoii validator init`: {exc}"
            ) from None


def init_home(
    home: Path, *, name: str, host: str = "127.0.0.1", p2p_port: int, rpc_port: int, http_port: int
) -> ValidatorInfo:
    """Create a validator's folder (keys, engine config); refuse one that exists."""
    if (home / "validator.json").exists():
        raise ConfigError(f"{home} already holds a validator ({home / 'validator.json'}); use another folder")
    engine = home / "engine"
    binary = cometbft_binary()
    subprocess.run([binary, "init", "--home", str(engine)], check=True, capture_output=True, text=True)
    node_id = subprocess.run(
        [binary, "show-node-id", "--home", str(engine)], check=True, capture_output=True, text=True
    ).stdout.strip()
    key = json.loads((engine / "config" / "priv_validator_key.json").read_text())
    set_config(
        engine / "config" / "config.toml",
        {
            "": {
                "moniker": name,
                "proxy_app": f"unix://{(home / 'app.sock').resolve()}",
                "log_level": "state:info,*:error",
            },
            "rpc": {
                "laddr": f"tcp://127.0.0.1:{rpc_port}",
                "max_body_bytes": 64 * 1024 * 1024,
                "max_request_batch_size": 0,  # POST /tx batches (up to 5,000) go as one JSON-RPC batch
            },
            "p2p": {
                "laddr": f"tcp://{host}:{p2p_port}",
                "addr_book_strict": False,
                "allow_duplicate_ip": True,
            },
            # recheck off: after every block v0.38 re-sends each waiting transaction to CheckTx,
            # inside Commit (one ABCI round trip each, with the mempool locked); FinalizeBlock
            # checks every transaction anyway, so one that went stale is refused there with a code.
            "mempool": {
                "size": 50_000,
                "cache_size": 100_000,
                "max_tx_bytes": 4 * 1024 * 1024,
                "recheck": False,
            },
            "consensus": BLOCK_TIMEOUTS,
            "tx_index": {"indexer": "kv"},
        },
    )
    info = ValidatorInfo(
        name=name,
        node_id=node_id,
        pub_key=key["pub_key"]["value"],
        address=key["address"],
        p2p=f"{host}:{p2p_port}",
        rpc_port=rpc_port,
        http_port=http_port,
    )
    (home / "validator.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def set_config(path: Path, values: dict[str, dict[str, Any]]) -> None:
    """Set ``key = value`` lines of a CometBFT ``config.toml`` in place, per section (``""`` = top)."""
    section = ""
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        header = re.fullmatch(r"\[([a-z0-9_.]+)\]", line.strip())
        if header:
            section = header.group(1)
            continue
        match = re.match(r"([a-z_-]+) = ", line)
        if match and match.group(1) in values.get(section, {}):
            lines[index] = f"{match.group(1)} = {_toml(values[section][match.group(1)])}"
    path.write_text("\n".join(lines) + "\n")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def make_genesis(
    validators: list[ValidatorInfo], *, chain_id: str, genesis: Genesis, time: datetime | None = None
) -> dict[str, Any]:
    """The CometBFT genesis of a network of ``validators`` (power 10 each), with pykoii's genesis as
    its ``app_state``; slot 0 of the ledger is the genesis time."""
    time = time or datetime.now(UTC)
    anchored = Genesis(genesis.params, genesis.slot_ms, int(time.timestamp() * 1000), genesis.version)
    return {
        "genesis_time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "chain_id": chain_id,
        "initial_height": "1",
        "consensus_params": {
            "block": {"max_bytes": "22020096", "max_gas": "-1"},
            "evidence": {
                "max_age_num_blocks": "100000",
                "max_age_duration": "172800000000000",
                "max_bytes": "1048576",
            },
            "validator": {"pub_key_types": ["ed25519"]},
            "version": {"app": "1"},
            "abci": {"vote_extensions_enable_height": "0"},
        },
        "validators": [
            {
                "address": v.address,
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": v.pub_key},
                "power": "10",
                "name": v.name,
            }
            for v in validators
        ],
        "app_hash": "",
        "app_state": json.loads(anchored.to_bytes()),
    }


def install_genesis(home: Path, genesis: dict[str, Any], peers: list[str]) -> None:
    """Write the network's genesis into a validator's engine and dial ``peers`` (``id@host:port``)."""
    config = home / "engine" / "config"
    (config / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    set_config(config / "config.toml", {"p2p": {"persistent_peers": ",".join(peers)}})


def peer_apis(home: Path, given: str | None = None) -> list[str]:
    """The other validators' HTTP API URLs: ``given`` (comma-separated; saved in
    ``DIR/peer-apis.json`` for later runs), else those saved before (none: ``[]``)."""
    path = home / "peer-apis.json"
    if given is None:
        try:
            return [str(url) for url in json.loads(path.read_text())]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a JSON list of URLs ({exc}); give --peer-apis again") from None
    urls = [url.strip().rstrip("/") for url in given.split(",") if url.strip()]
    for url in urls:
        if not re.fullmatch(r"https?://[^/\s]+", url):
            raise ConfigError(
                f"--peer-apis: {url!r} is not an HTTP API base URL; expected http://HOST:PORT, "
                "comma-separated"
            )
    path.write_text(json.dumps(urls) + "\n")
    return urls


def read_genesis(home: Path) -> tuple[dict[str, Any], Genesis]:
    """A validator's CometBFT genesis and the pykoii genesis in its ``app_state``."""
    path = home / "engine" / "config" / "genesis.json"
    try:
        document = json.loads(path.read_text())
        return document, Genesis.from_plain(document["app_state"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a pykoii network genesis ({exc!r}); write one with `pykoii validator genesis`"
        ) from None
