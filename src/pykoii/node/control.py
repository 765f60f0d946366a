"""How the operator's tools reach a running node's operator port: ``operator_request``.

The node writes ``<data>/operator.json`` (its operator URL) when it starts, and keeps its operator
secret in ``<data>/operator.token``; both are readable only by the node's user and never visible to
task code. ``pykoii node add-task/stop-task/...`` and the devnet call the control API with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..dashboard.security import SECRET_FILE
from ..errors import ConfigError, PykoiiError

OPERATOR_FILE = "operator.json"


def operator_url(data_dir: Path) -> str:
    """The operator URL the node with data folder ``data_dir`` last started on."""
    path = Path(data_dir) / OPERATOR_FILE
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError):
        raise ConfigError(
            f"no running node's address in {path}; start it with `pykoii node run --data {data_dir}` "
            "or pass --node http://127.0.0.1:<dashboard port>",
            path=str(path),
        ) from None


def operator_secret(data_dir: Path) -> str:
    path = Path(data_dir) / SECRET_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise ConfigError(
            f"no operator secret at {path}; pass the node's --data folder (run as the node's user)",
            path=str(path),
        ) from None


def operator_request(
    data_dir: Path,
    method: str,
    path: str,
    body: Any = None,
    *,
    url: str | None = None,
    timeout: float = 120.0,
) -> Any:
    """Call the node's control API; return its JSON (or text), raise ``PykoiiError`` on a refusal."""
    import httpx

    base = (url or operator_url(data_dir)).rstrip("/")
    try:
        response = httpx.request(
            method,
            base + path,
            json=body,
            timeout=timeout,
            headers={"Authorization": f"Bearer {operator_secret(data_dir)}"},
        )
    except httpx.HTTPError as exc:
        raise PykoiiError(f"node {base} cannot be reached: {exc}; is `pykoii node run` running?") from None
    try:
        data = response.json()
    except ValueError:
        data = {"message": response.text}
    if response.status_code == 401:
        raise PykoiiError(not_this_node(base, Path(data_dir)) or f"node {base} refused the operator secret")
    if response.status_code >= 400:
        detail = data.get("message", data) if isinstance(data, dict) else data
        raise PykoiiError(
            f"node refused {method} {path}: {data.get('error', response.status_code)}: {detail}"
        )
    return data


def not_this_node(url: str, data_dir: Path) -> str:
    """Why the node at ``url`` refused ``data_dir``'s secret, when it is another node (its staking
    key differs from the folder's); ``""`` when that is not the reason."""
    import httpx

    from ..keys import Keypair

    try:
        theirs = httpx.get(url + "/", timeout=10).json().get("staking_key", "")
        ours = Keypair.load(data_dir / "keys" / "staking_wallet.json").public_key
    except (httpx.HTTPError, ValueError, AttributeError, PykoiiError):
        return ""
    if theirs == ours:
        return ""
    return (
        f"the node at {url} is not the node whose --data is {data_dir} (its staking key is {theirs}, "
        f"that folder's is {ours}); drop --node to reach the right one"
    )


def node_info(data_dir: Path) -> dict[str, Any]:
    """What the node that owns ``data_dir`` wrote in ``operator.json`` when it started: ``url``,
    ``public_url``, ``main_account``, ``staking_key``. A ``ConfigError`` when no node has run there."""
    path = Path(data_dir).expanduser() / OPERATOR_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no node has run with --data {data_dir} (there is no {path}); start one with "
            f"`pykoii node run --data {data_dir}` or pass the node's own --data folder",
            path=str(path),
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", path=str(path)) from None
    return info
