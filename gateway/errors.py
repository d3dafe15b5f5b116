"""The error root of :mod:`simwallet.gateway`.

Every error the backend raises derives from :class:`GatewayError` and carries a
machine-readable ``code``. The split follows who is at fault:

* :class:`RequestError` — the caller asked for something the ledger refuses
  (bad amount, unknown account, limit exceeded). Nothing was posted.
* :class:`IntegrityViolation` — the stored ledger breaks one of its invariants.
* :class:`RemotePeerError` — a peer (bank host, SMSC) misbehaved or went away.

The CLI maps these onto its documented exit codes (1, 4 and 3).
"""

from __future__ import annotations

import enum


class RejectCode(enum.StrEnum):
    """Why a ledger request was refused. Stable strings: they appear in ``--json`` output."""

    # Amounts and request shape.
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_NOT_WHOLE_FEN = "amount_not_whole_fen"
    AMOUNT_TOO_LARGE = "amount_too_large"
    AMOUNT_MALFORMED = "amount_malformed"
    FIELD_INVALID = "field_invalid"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    # Accounts.
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_EXISTS = "account_exists"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_CLOSED = "account_closed"
    CURRENCY_MISMATCH = "currency_mismatch"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOW = "overflow"
    # Limits (the field names the limit).
    LIMIT_EXCEEDED = "limit_exceeded"
    # Idempotency.
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    # Two-phase transfers and reversals.
    TRANSFER_NOT_FOUND = "transfer_not_found"
    NOT_PENDING = "not_pending"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    ALREADY_REVERSED = "already_reversed"
    NOT_REVERSIBLE = "not_reversible"
    # Linked transfers: another member of the chain failed.
    LINKED_EVENT_FAILED = "linked_event_failed"
    # Promotions.
    CAMPAIGN_INVALID = "campaign_invalid"
    CAMPAIGN_EXISTS = "campaign_exists"
    CAMPAIGN_NOT_FOUND = "campaign_not_found"


class GatewayError(Exception):
    """Root of every error raised by :mod:`simwallet.gateway`."""

    code: str = "gateway_error"


class RequestError(GatewayError, ValueError):
    """A request the ledger refuses; nothing was written.

    ``field`` names the offending field (``amount``, ``debit_account``,
    ``limit.per_day`` …) so that a clerk or an SMS reply can say exactly what
    was wrong.
    """

    def __init__(self, code: RejectCode, field: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code.value
        self.reject_code = code
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reject_code, self.field, self.message))


class IntegrityViolation(GatewayError):
    """The stored ledger breaks an invariant (found by ``ledger verify``)."""

    code = "integrity_violation"


class RemotePeerError(GatewayError):
    """A remote peer (bank host, SMSC) answered wrongly or not at all."""

    code = "remote_peer_error"


class StoreError(GatewayError):
    """The database could not be reached, migrated or written."""

    code = "store_error"
