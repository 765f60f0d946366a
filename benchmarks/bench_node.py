"""Node memory with one Hello-World task, child included (DESIGN §6 target: < 80 MB RSS).

Starts a real ledger service and a real `pykoii node run` process, adds the Hello-World task, lets
it run several rounds (work, proofs, audits, lists, payouts), then reads the RSS and PSS of the node
process and every process below it from /proc. RSS counts shared library pages once per process
(a pessimistic sum); PSS splits them fairly.

    .venv/bin/python benchmarks/bench_node.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pykoii.keys import Keypair  # noqa: E402
from tests.node.harness import Ledger, NodeProcess  # noqa: E402


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in map(int, children):
                found.append(child)
                frontier.append(child)
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    pss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
    return rss, pss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pykoii-bench-"))
    root.chmod(0o755)
    (root / "ledger").mkdir()
    ledger = Ledger(root / "ledger", slot_ms=100)
    node = None
    try:
        task_id = ledger.create_hello_world(
            Keypair.generate(), round_time=10, submission_window=4, audit_window=4
        )
        node = NodeProcess(root / "node", ledger.url, poll=0.25)
        ledger.airdrop(node.info["main_account"], 50)
        result = node.cli("add-task", task_id, "--stake", "5")
        assert result.returncode == 0, result.stderr
        time.sleep(args.rounds * 1.0)
        assert node.process is not None
        pids = [node.process.pid, *descendants(node.process.pid)]
        rows = [
            (pid, *memory_kb(pid), Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:60])
            for pid in pids
        ]
        paid = ledger.task(task_id)["distributions_audit_record"]
        print(f"rounds paid while measuring: {len(paid)}")
        print("| process | RSS MB | PSS MB |")
        print("|---|---:|---:|")
        for pid, rss, pss, cmd in rows:
            print(f"| {pid} {cmd.split(' -m ')[-1][:40]} | {rss / 1024:.1f} | {pss / 1024:.1f} |")
        total_rss = sum(r[1] for r in rows) / 1024
        total_pss = sum(r[2] for r in rows) / 1024
        print(f"| **total (node + child)** | **{total_rss:.1f}** | **{total_pss:.1f}** |")
        print(f"target < 80 MB RSS: {'met' if total_rss < 80 else 'NOT met'}")
    finally:
        if node is not None:
            node.stop()
        ledger.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
