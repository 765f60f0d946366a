"""`pykoii devnet up`: a real ledger and K nodes, URLs printed, Ctrl-C stops every process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pykoii.devnet import free_port_run
from pykoii.ports import free_port


def processes_under(folder: Path) -> list[str]:
    """Command lines of live processes that name ``folder``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in args:
            found.append(args)
    return found


def test_devnet_up_prints_urls_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ledger_port, node_port = free_port(), free_port_run(2)
    folder = tmp_path / "net"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykoii.cli",
            "devnet",
            "up",
            "--nodes",
            "2",
            "--slot-ms",
            "200",
            "--data",
            str(folder),
            "--ledger-port",
            str(ledger_port),
            "--node-port",
            str(node_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stops every process" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{ledger_port}" in output, output
        assert "node-1" in output and "node-2" in output, output
        assert httpx.get(f"http://127.0.0.1:{ledger_port}/health").status_code == 200
        node_urls = [
            word
            for line in lines
            for word in line.split()
            if word.startswith("http://") and "node" not in word
        ]
        assert any(str(node_port) in url for url in node_urls)
        assert httpx.get(f"http://127.0.0.1:{node_port}/").status_code == 200
        assert len(processes_under(folder)) >= 3  # the ledger and two nodes

        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:  # a failed assertion above must not leave a devnet running
            process.send_signal(signal.SIGINT)
            process.wait(30)
    deadline = time.monotonic() + 10
    while processes_under(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_under(folder) == []
