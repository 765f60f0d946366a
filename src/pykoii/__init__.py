"""pykoii: Koii tasks in Python — a ledger, nodes that run task code, and the tools around them."""

from .ledger import ROE_PER_KOII, LedgerState, apply_transaction, state_root

__version__ = "0.1.0"

__all__ = ["ROE_PER_KOII", "LedgerState", "__version__", "apply_transaction", "state_root"]
