"""pykoii: Koii tasks in Python — a ledger, nodes that run task code, and the tools around them.

Task authors subclass ``pykoii.Task``; the ledger's pure state machine is ``pykoii.ledger``.
"""

from .keys import verify
from .ledger import ROE_PER_KOII, LedgerState, apply_transaction, state_root
from .sdk import RoundContext, Submitter, Task

__version__ = "0.1.0"

__all__ = [
    "ROE_PER_KOII",
    "LedgerState",
    "RoundContext",
    "Submitter",
    "Task",
    "__version__",
    "apply_transaction",
    "state_root",
    "verify",
]
