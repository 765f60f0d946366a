"""The ledger as a network service: durable log, sequencer, HTTP API, blobs, events, replicas.

This is the only part of pykoii where the ledger touches disk or the network. The rules stay in
``pykoii.ledger``; here they are sequenced, logged and served.
"""

from .app import create_app
from .blobs import BlobStore, cid_of
from .log import LogBackend, LogEntry, SQLiteLog
from .slots import SlotClock
from .store import Genesis, LedgerStore, open_store
from .verify import Verifier

__all__ = [
    "BlobStore",
    "Genesis",
    "LedgerStore",
    "LogBackend",
    "LogEntry",
    "SQLiteLog",
    "SlotClock",
    "Verifier",
    "cid_of",
    "create_app",
    "open_store",
]
