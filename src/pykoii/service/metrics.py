"""``GET /metrics``: the store's counters in Prometheus' text format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import PykoiiError

if TYPE_CHECKING:
    from .store import LedgerStore


@dataclass(slots=True)
class Statistics:
    """Counters for ``GET /metrics``."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    commit_seconds: float = 0.0
    committed_entries: int = 0
    replayed: int = 0

    def reject(self, error: PykoiiError) -> None:
        self.rejected[error.name] = self.rejected.get(error.name, 0) + 1


def render_metrics(store: LedgerStore) -> str:
    """Prometheus text exposition (version 0.0.4) of the ledger's counters and gauges."""
    stats = store.stats
    lines = [
        "# HELP pykoii_ledger_tx_accepted_total Transactions accepted and durably logged.",
        "# TYPE pykoii_ledger_tx_accepted_total counter",
        f"pykoii_ledger_tx_accepted_total {stats.accepted}",
        "# HELP pykoii_ledger_tx_rejected_total Transactions refused, by error name.",
        "# TYPE pykoii_ledger_tx_rejected_total counter",
    ]
    lines += [
        f'pykoii_ledger_tx_rejected_total{{error="{name}"}} {count}'
        for name, count in sorted(stats.rejected.items())
    ]
    gauges: dict[str, tuple[str, float]] = {
        "pykoii_ledger_log_seq": ("Sequence number of the newest durable log entry.", store.durable_seq),
        "pykoii_ledger_slot": ("The current slot.", store.slot()),
        "pykoii_ledger_pending": ("Verified transactions waiting for the sequencer.", store.pending),
        "pykoii_ledger_tasks": ("Tasks on the ledger.", len(store.state.tasks)),
        "pykoii_ledger_event_subscribers": ("Open GET /events streams.", store.events.subscriber_count),
        "pykoii_ledger_healthy": ("1 while the log accepts writes.", int(store.healthy)),
    }
    counters: dict[str, tuple[str, float]] = {
        "pykoii_ledger_commits_total": ("Durable log commits (each one fsync).", stats.commits),
        "pykoii_ledger_committed_entries_total": (
            "Entries written by those commits.",
            stats.committed_entries,
        ),
        "pykoii_ledger_commit_seconds_total": (
            "Seconds spent in log commits.",
            round(stats.commit_seconds, 6),
        ),
        "pykoii_ledger_verify_batches_total": ("Batches sent to signature workers.", store.verifier.batches),
        "pykoii_ledger_verified_total": ("Envelopes verified in those batches.", store.verifier.verified),
        "pykoii_ledger_replayed_entries_total": ("Log entries replayed at start-up.", stats.replayed),
    }
    for name, (text, value) in gauges.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
    for name, (text, value) in counters.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {value}"]
    return "\n".join(lines) + "\n"
