"""Every error pykoii raises, in one tree.

::

    PykoiiError
    ├── InvalidTransactionError          the ledger refused a transaction; state is unchanged
    │   ├── MalformedTransactionError    not a transaction: bad JSON shape, type, field or instruction
    │   ├── InvalidSignatureError        the signature does not verify for the signer
    │   ├── StaleTransactionError        recent_slot is too old or in the future
    │   ├── DuplicateTransactionError    the same transaction was already accepted (replay)
    │   ├── UnauthorizedSignerError      the signer is not the account the instruction needs
    │   ├── InsufficientFundsError       a balance is smaller than the amount moved
    │   ├── AirdropError                 airdrops are off (not a devnet) or over their limit
    │   ├── UnknownTaskError             no task has that id
    │   ├── InvalidTaskConfigError       a task field is missing, mistyped or out of range
    │   ├── TaskNotRunnableError         the task is inactive or was migrated
    │   ├── InsufficientStakeError       the stake would be below minimum_stake_amount
    │   ├── NotStakedError               the signer has no stake on the task
    │   ├── StakeLockedError             withdraw refused: a submission in the last rounds
    │   ├── WrongPhaseError              the slot is outside the window the instruction needs
    │   ├── DuplicateSubmissionError     a second submission or list for the same round
    │   ├── SubmissionTooLargeError      a proof over 512 bytes
    │   ├── UnknownSubmissionError       the audited candidate did not submit in that round
    │   ├── NotAssignedAuditorError      the voter was not assigned to audit the candidate
    │   ├── NoAuditTriggerError          a true vote on a candidate nobody accused
    │   ├── DuplicateVoteError           a second vote by the same voter on the same candidate
    │   ├── NotSelectedSubmitterError    a distribution list from a node that was not selected
    │   ├── InvalidDistributionListError a list that pays or slashes what it may not
    │   ├── InvalidRevealError           a revealed beacon secret that does not match its commitment
    │   ├── PayoutNotReadyError          payout before the distribution audit window closed
    │   ├── AlreadyPaidError             payout of a round that was already settled
    │   └── NothingToClaimError          claim_reward with an empty available balance
    ├── ConfigError                      config-task.yml or another user file is invalid
    ├── KeyFileError                     a keypair file is missing or malformed
    ├── TaskCodeError                    the author's task code failed (with the tail of its stderr)
    ├── SandboxError                     the runtime could not run task code (not the author's fault)
    │   └── TaskCodeMismatchError        downloaded task code does not hash to its CID
    ├── LedgerUnavailableError           the ledger service cannot be reached (or cannot write now)
    │   └── InsufficientStorageError     disk below the free-space reserve, or blobs over their quota
    ├── LedgerHTTPError                  the ledger service answered with an error
    ├── LogCorruptionError               the durable log's hash chain or a signature does not verify
    ├── BlobCorruptionError              a stored blob no longer hashes to its CID
    ├── InvalidRequestError              a request to the ledger service is malformed (not a transaction)
    │   ├── PayloadTooLargeError         a request body over the service's size limit
    │   └── InvalidCidError              a blob id that is not a CIDv1 raw sha2-256 in base32
    ├── NotFoundError                    no transaction, blob or route has that id
    └── ReadOnlyReplicaError             a write sent to a replica (``pykoii ledger follow``)

Each error's message says what was wrong, the value received and what would be accepted; the
offending values are also attributes, so callers need not parse messages.
"""

from __future__ import annotations

from typing import Any


class PykoiiError(Exception):
    """Base class of every error pykoii raises on purpose.

    Keyword arguments become attributes, e.g. ``err.slot``, and are listed by ``err.details``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    @property
    def name(self) -> str:
        """The class name, as sent over HTTP in ``{"error": name}``."""
        return type(self).__name__


class InvalidTransactionError(PykoiiError):
    """Raised when the ledger refuses a transaction. The ledger state is unchanged."""


class MalformedTransactionError(InvalidTransactionError):
    """Raised when a transaction is not well formed: wrong JSON shape, a missing or mistyped field,
    or an unknown instruction type."""


class InvalidSignatureError(InvalidTransactionError):
    """Raised when an envelope's signature does not verify against the transaction's signer."""


class StaleTransactionError(InvalidTransactionError):
    """Raised when ``recent_slot`` is older than the replay horizon or newer than the current slot."""


class DuplicateTransactionError(InvalidTransactionError):
    """Raised when the very same transaction was already accepted (a replay)."""


class UnauthorizedSignerError(InvalidTransactionError):
    """Raised when the signer is not the account the instruction needs (e.g. not the task manager)."""


class InsufficientFundsError(InvalidTransactionError):
    """Raised when an account or a task's bounty pot holds less than the amount to move."""


class AirdropError(InvalidTransactionError):
    """Raised when an airdrop is asked of a ledger that is not a devnet, or over the airdrop limits."""


class UnknownTaskError(InvalidTransactionError):
    """Raised when no task has the given id."""


class InvalidTaskConfigError(InvalidTransactionError):
    """Raised when a task field is missing, of the wrong type, or outside its accepted range."""


class TaskNotRunnableError(InvalidTransactionError):
    """Raised when work is sent to a task that is inactive or has been migrated to a new version."""


class InsufficientStakeError(InvalidTransactionError):
    """Raised when a stake would leave the staker below the task's ``minimum_stake_amount``."""


class NotStakedError(InvalidTransactionError):
    """Raised when the signer has no stake on the task but the instruction needs one."""


class StakeLockedError(InvalidTransactionError):
    """Raised when a withdraw is refused because the staker submitted in one of the last rounds."""


class WrongPhaseError(InvalidTransactionError):
    """Raised when the transaction's slot falls outside the window its instruction is accepted in."""


class DuplicateSubmissionError(InvalidTransactionError):
    """Raised when a node submits twice for the same round (a proof or a distribution list)."""


class SubmissionTooLargeError(InvalidTransactionError):
    """Raised when a submission value is longer than 512 bytes of UTF-8."""


class UnknownSubmissionError(InvalidTransactionError):
    """Raised when a vote names a candidate that has no submission (or list) in that round."""


class NotAssignedAuditorError(InvalidTransactionError):
    """Raised when a node votes on a candidate the round beacon did not assign to it."""


class NoAuditTriggerError(InvalidTransactionError):
    """Raised when a ``true`` vote names a candidate that nobody has accused: true votes only defend."""


class DuplicateVoteError(InvalidTransactionError):
    """Raised when a voter votes a second time on the same candidate in the same round."""


class NotSelectedSubmitterError(InvalidTransactionError):
    """Raised when a distribution list comes from a node other than the one the beacon selected."""


class InvalidRevealError(InvalidTransactionError):
    """Raised when a ``reveal`` does not match the commitment sent with the proof."""


class InvalidDistributionListError(InvalidTransactionError):
    """Raised when a distribution list pays a non-submitter, pays more than the bounty, slashes more
    than a stake, or holds a value that is not a non-negative integer."""


class PayoutNotReadyError(InvalidTransactionError):
    """Raised when a payout is sent before any distribution list of the round has passed its audit
    window, while further attempts remain."""


class AlreadyPaidError(InvalidTransactionError):
    """Raised when a payout names a round that was already settled (paid or marked failed)."""


class NothingToClaimError(InvalidTransactionError):
    """Raised when ``claim_reward`` is sent by a staking key with no available balance on the task."""


class ConfigError(PykoiiError):
    """Raised when ``config-task.yml`` or another user-written file is invalid; names the field."""


class KeyFileError(PykoiiError):
    """Raised when a keypair file is missing, unreadable, or not 64 bytes in Solana's JSON format."""


class TaskCodeError(PykoiiError):
    """Raised when the task author's code fails; carries the tail of the child's stderr."""


class SandboxError(PykoiiError):
    """Raised when the node runtime cannot run task code for reasons that are not the author's."""


class TaskCodeMismatchError(SandboxError):
    """Raised when a node downloads task code whose bytes do not hash to the task's
    ``task_audit_program`` CID; the node refuses to run it (``expected`` and ``actual`` CIDs)."""


class LedgerUnavailableError(PykoiiError):
    """Raised when the ledger service cannot be reached after the client's retries."""


class InsufficientStorageError(LedgerUnavailableError):
    """Raised when a write would take the ledger's disk below its free-space reserve (``free`` and
    ``reserve`` bytes), or blobs over their total quota (``used`` and ``quota``); HTTP 507. Nothing
    was written; retry once space is freed."""


class LedgerHTTPError(PykoiiError):
    """Raised when the ledger service answers with an error that is not a refused transaction."""


class LogCorruptionError(PykoiiError):
    """Raised when the durable log does not verify: a broken hash chain, a bad signature, or a state
    root that differs from the one recorded."""


class BlobCorruptionError(PykoiiError):
    """Raised when a stored blob's bytes no longer hash to its CID (disk corruption or tampering)."""


class InvalidRequestError(PykoiiError):
    """Raised when a request to the ledger service is malformed: a bad query parameter, a body that
    is not what the route accepts. (A malformed *transaction* is ``MalformedTransactionError``.)"""


class PayloadTooLargeError(InvalidRequestError):
    """Raised when a request body is over the service's limit (``limit`` and ``received`` bytes)."""


class InvalidCidError(InvalidRequestError):
    """Raised when a blob id is not a CIDv1 (raw codec, sha2-256) written in base32 (``b...``)."""


class NotFoundError(PykoiiError):
    """Raised when the ledger service holds no transaction, blob, round or route with the given id."""


class ReadOnlyReplicaError(PykoiiError):
    """Raised when a write (``POST /tx``, ``PUT /blobs``) is sent to a replica; send it to the primary."""
