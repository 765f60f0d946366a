"""Schemathesis (the schema-driven fuzzer) against a real `pykoii ledger serve`, driven by the service's
own `GET /openapi.json`: no 5xx, every status and content type documented, every answer matching its
schema, every request that breaks the schema refused (4xx), 405s naming the allowed methods.

Bounded: a fixed seed and a few examples per operation. `GET /events` (an endless stream) and the
explorer's HTML pages are left out; `GET /log` runs with `wait=0` (a long poll would only be slow).
Not checked: that every schema-valid request is accepted (a random transaction never carries a
valid signature, so `POST /tx` refuses it with 400, as it must).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import start_server, stop

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
    )
)

CONFIG = """
[[operations]]
include-path = "/log"
parameters = { "query.wait" = 0 }
"""


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    server = start_server(
        "serve", "--data", str(tmp_path / "ledger"), "--devnet", "--workers", "0", log=tmp_path / "serve.log"
    )
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file", str(tmp_path / "schemathesis.toml"),
                "run", f"{server.url}/openapi.json",
                "--checks", CHECKS,
                "--max-examples", "25",
                "--seed", "11",
                "--exclude-path", "/events",
                "--exclude-path-regex", "^/explorer",
                "--request-timeout", "20",
                "--workers", "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )  # fmt: skip
    finally:
        stop(server)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or "0 failures" in run.stdout or "passed" in run.stdout, run.stdout
