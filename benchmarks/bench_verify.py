# ruff: noqa: E501  (the Markdown table of the report is one f-string)
"""What a signature worker spends per envelope, around the ed25519 call: A/B in one sitting.

The service's two signature workers (``service/verify.py``) do most of a round's CPU: every submit
and reveal envelope is parsed, decoded, base58-decoded, verified and pickled back to the main
process there. This benchmark times exactly that path on the same envelopes, in process, with
process CPU time (``time.process_time``), so it means something on a loaded machine:

- **worker**: what the worker does with a frame of envelopes (``_verify_payload`` of the JSON
  list, then pickling the answer), per envelope;
- **main**: what the service's main process does with the answer (unpickling it and building each
  ``Verified``), per envelope;
- **ed25519**: libsodium's ``crypto_sign_open`` alone over the same keys, bytes and signatures:
  the floor of the worker's cost;
- the worker's parts, each alone: orjson parse, canonical bytes, ``decode_transaction``, base58 of
  the signature and of the signer.

Envelopes: ``--envelopes`` of each kind (submit, reveal, audit vote, airdrop), each signed by its
own fresh key, in frames of 256 (the service's ``batch_max``), as a 100,000-node round sends them:
no signer is seen twice in one pass, and any cache of signer keys is emptied before each pass.

With ``--baseline-src DIR`` (the ``src`` of an older checkout, e.g. ``git worktree add /tmp/old
2211b14``) the same envelopes are also timed on that code, in its own process, the two trees'
processes interleaved ``--rounds`` times; each figure is the lowest of its passes.

Writes the "## Signature worker" section of BENCHMARKS.md. Run::

    .venv/bin/python benchmarks/bench_verify.py [--envelopes 2000] [--rounds 5] [--baseline-src /tmp/old/src] [--no-write]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Signature worker"
KINDS = ("submit", "reveal", "vote", "airdrop")
FRAME = 256
TASK = "7" * 44


def make_envelopes(count: int) -> dict[str, list[Any]]:
    """``count`` envelopes of each kind, each signed by its own key (derived from its index)."""
    from pykoii.keys import Keypair, reveal_body, submit_body

    out: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    for i in range(count):
        for kind in KINDS:
            keys = Keypair.from_seed(hashlib.sha256(f"bench-verify:{kind}:{i}".encode()).digest())
            if kind == "submit":
                body = submit_body(keys, TASK, 3, f"bafy{i:056d}")
            elif kind == "reveal":
                body = reveal_body(keys, TASK, 3)
            elif kind == "vote":
                candidate = Keypair.from_seed(hashlib.sha256(f"candidate:{i}".encode()).digest())
                body = {
                    "type": "audit_submission",
                    "task_id": TASK,
                    "round": 3,
                    "candidate": candidate.public_key,
                    "is_valid": i % 2 == 0,
                }
            else:
                body = {"type": "airdrop", "to": keys.public_key, "amount": 10**9 + i}
            body["recent_slot"] = 1_000 + i % 150
            out[kind].append(keys.sign_transaction(body))
    return out


def _forget_signers() -> None:
    """Empty whatever cache of signer keys the tree under test has (no signer repeats in a round)."""
    from pykoii import keys

    for name in ("signer_key", "_signer_key"):
        clear = getattr(getattr(keys, name, None), "cache_clear", None)
        if clear is not None:
            clear()


def _hand_off() -> tuple[Callable[[bytes], bytes], Callable[[bytes], list[Any]]]:
    """The worker's answer to a frame and the main process's reading of it, on the tree under test."""
    from pykoii.service import verify

    answer = getattr(verify, "answer_frame", None)
    read = getattr(verify, "read_answer", None)
    if answer is not None and read is not None:
        return answer, read

    def old_answer(payload: bytes) -> bytes:
        return pickle.dumps(verify._verify_payload(payload), protocol=pickle.HIGHEST_PROTOCOL)

    def old_read(data: bytes) -> list[Any]:
        return [verify._outcome(item) for item in pickle.loads(data)]

    return old_answer, old_read


def cpu(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    result = function()
    return time.process_time() - start, result


def child(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Per kind: CPU seconds per envelope of each part, the lowest of ``repeat`` passes."""
    envelopes: dict[str, list[Any]] = orjson.loads(path.read_bytes())
    return {kind: time_kind(items, repeat) for kind, items in envelopes.items()}


def time_kind(items: list[Any], repeat: int) -> dict[str, float]:
    import nacl.bindings

    from pykoii.keys import signer_key
    from pykoii.ledger.codec import base58_decode, canonical_bytes
    from pykoii.ledger.transactions import decode_transaction
    from pykoii.service.verify import Verified

    answer, read = _hand_off()
    n = len(items)
    frames = [orjson.dumps(items[i : i + FRAME]) for i in range(0, n, FRAME)]
    bodies = [envelope["tx"] for envelope in items]
    signatures = [envelope["signature"] for envelope in items]
    signers = [body["signer"] for body in bodies]
    canonicals = [canonical_bytes(body) for body in bodies]
    signed = [base58_decode(s) + c for s, c in zip(signatures, canonicals, strict=True)]
    keys = [base58_decode(signer) for signer in signers]
    parts: dict[str, list[float]] = {}

    def timed(name: str, function: Callable[[], Any]) -> Any:
        _forget_signers()
        seconds, result = cpu(function)
        parts.setdefault(name, []).append(seconds / n)
        return result

    for _ in range(repeat):
        answers = timed("worker", lambda: [answer(frame) for frame in frames])
        outcomes = timed("main", lambda answers=answers: [o for data in answers for o in read(data)])
        assert len(outcomes) == n and all(isinstance(o, Verified) for o in outcomes)
        timed(
            "ed25519",
            lambda: [nacl.bindings.crypto_sign_open(m, k) for m, k in zip(signed, keys, strict=True)],
        )
        timed("orjson", lambda: [orjson.loads(frame) for frame in frames])
        timed("canonical", lambda: [canonical_bytes(body) for body in bodies])
        timed(
            "decode",
            lambda: [decode_transaction(b, canonical=c) for b, c in zip(bodies, canonicals, strict=True)],
        )
        timed("base58 signature", lambda: [base58_decode(s) for s in signatures])
        timed("signer key", lambda: [signer_key(s) for s in signers])
    return {name: min(values) for name, values in parts.items()}


def run_child(src: Path, path: Path, repeat: int) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", str(path), "--repeat", str(repeat)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, dict[str, float]] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


def lowest(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {kind: {name: min(run[kind][name] for run in runs) for name in runs[0][kind]} for kind in runs[0]}


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def report(
    count: int,
    rounds: int,
    new: dict[str, dict[str, float]],
    old: dict[str, dict[str, float]] | None,
    command: str,
    baseline: str,
) -> str:
    load = os.getloadavg()
    lines = [
        SECTION,
        "",
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load {load[0]:.2f} at the end. {count:,} envelopes of each kind, each from its own "
        f"key, in frames of {FRAME}; process CPU per envelope in µs, the lowest of {rounds} interleaved processes per "
        "tree. Worker: `_verify_payload` of a frame and pickling its answer; main: reading the answer into "
        "`Verified` outcomes (the service's main process); ed25519: `crypto_sign_open` alone, the floor.",
        "",
    ]
    if old:
        lines += [
            f"| envelope | worker, {baseline} | **worker, now** | main, {baseline} | main, now | worker + main, {baseline} | **worker + main, now** | saved | ed25519 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in new:
            o, n = old[kind], new[kind]
            total_old, total_new = o["worker"] + o["main"], n["worker"] + n["main"]
            lines.append(
                f"| {kind} | {us(o['worker'])} | **{us(n['worker'])}** | {us(o['main'])} | {us(n['main'])} | "
                f"{us(total_old)} | **{us(total_new)}** | {us(total_old - total_new)} | {us(n['ed25519'])} |"
            )
    else:
        lines += [
            "| envelope | worker | main | worker + main | ed25519 |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, n in new.items():
            lines.append(
                f"| {kind} | {us(n['worker'])} | {us(n['main'])} | {us(n['worker'] + n['main'])} | {us(n['ed25519'])} |"
            )
    names = ("orjson", "canonical", "decode", "base58 signature", "signer key")
    trees = [("now", new)] + ([(baseline, old)] if old else [])
    lines += [
        "",
        "The worker's parts, each alone (µs per envelope" + (f"; now / {baseline}" if old else "") + "):",
        "",
        "| envelope | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for kind in new:
        cells = [" / ".join(us(tree[kind][name]) for _, tree in trees) for name in names]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=2000, help="envelopes of each kind (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="processes per tree, interleaved (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per process (default 3)")
    parser.add_argument("--baseline-src", type=Path, help="the src folder of an older checkout, for the A/B")
    parser.add_argument("--quick", action="store_true", help="500 envelopes of each kind, 2 rounds")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(orjson.dumps(child(args.child, args.repeat)).decode())
        return 0
    if args.quick:
        args.envelopes, args.rounds = 500, 2
    src = ROOT / "src"
    sys.path.insert(0, str(src))
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as folder:
        path = Path(folder) / "envelopes.json"
        path.write_bytes(orjson.dumps(make_envelopes(args.envelopes)))
        new_runs, old_runs = [], []
        for _ in range(args.rounds):
            if args.baseline_src:
                old_runs.append(run_child(args.baseline_src, path, args.repeat))
            new_runs.append(run_child(src, path, args.repeat))
    baseline = ""
    if args.baseline_src:
        head = subprocess.run(
            ["git", "-C", str(args.baseline_src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        baseline = f"`{head.stdout.strip() or args.baseline_src}`"
    command = "benchmarks/bench_verify.py " + " ".join(sys.argv[1:])
    text = report(
        args.envelopes,
        args.rounds,
        lowest(new_runs),
        lowest(old_runs) if old_runs else None,
        command.strip(),
        baseline,
    )
    print(text)
    if not args.no_write:
        from bench_ingest import write_section

        write_section(text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
