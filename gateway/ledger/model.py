"""Value types of the double-entry ledger: accounts, transfer requests, results.

Theory of operation (after TigerBeetle's data model): every transfer is one
immutable row that debits one account and credits another by the same integer
amount in one currency, so each transfer is a complete double entry. Accounts
cache four running sums (debits/credits, pending/posted); a balance is derived
from them and can be recomputed from the transfers at any time (``ledger
verify``).

Requests are frozen values. A batch is a sequence of :data:`BatchItem`; a
:class:`Linked` item commits all of its members or none. Corrections are only
ever new transfers (:class:`Reverse`, :class:`VoidPending`); nothing posted is
updated or deleted.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import TypeVar

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.money import check_amount

# Longest idempotency key: an SMSC message id with a prefix fits easily, and
# the unique index stays small.
IDEMPOTENCY_KEY_LEN_MAX = 96
# Longest free-text memo on a transfer (bill number, merchant reference).
MEMO_LEN_MAX = 64
# Longest account reference (human handle such as ``C000123/wallet``).
ACCOUNT_REF_LEN_MAX = 64
# Longest a hold may stay pending before it expires: 30 days.
PENDING_TIMEOUT_S_MAX = 30 * 24 * 3600
# Members of one linked chain (a top-up, its bonus, a commission, a fee …).
LINKED_CHAIN_LEN_MAX = 16
# Account and transfer ids are signed 64-bit columns: a larger id names no row,
# and the database drivers refuse to even compare with it.
ID_MAX = 2**63 - 1


class AccountKind(enum.StrEnum):
    CUSTOMER_WALLET = "customer_wallet"
    CUSTOMER_AIRTIME = "customer_airtime"
    MERCHANT = "merchant"
    BILLER = "biller"
    BANK_SETTLEMENT = "bank_settlement"
    OPERATOR_FLOAT = "operator_float"
    PROMOTION_EXPENSE = "promotion_expense"
    COMMISSION_EXPENSE = "commission_expense"
    FEE_INCOME = "fee_income"
    SUSPENSE = "suspense"
    POINTS = "points"


class AccountStatus(enum.StrEnum):
    OPEN = "open"
    FROZEN = "frozen"  # no debits or credits; reversals of its transfers still go through
    CLOSED = "closed"  # no transfers at all


class AccountFlags(enum.IntFlag):
    NONE = 0
    # The account's balance is credits - debits and must never go below zero
    # (a customer's money: wallet, airtime, points).
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    # The mirror image, for accounts whose balance is debits - credits.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class TransferKind(enum.StrEnum):
    DEPOSIT = "deposit"  # bank or cash into a wallet
    WITHDRAWAL = "withdrawal"  # wallet out to a bank or cash
    AIRTIME_TOPUP = "airtime_topup"  # wallet -> the customer's phone credit (话费充值)
    BILL_PAYMENT = "bill_payment"  # wallet -> biller (公共事业缴费)
    MERCHANT_PAYMENT = "merchant_payment"
    P2P = "p2p"  # customer to customer
    PROMOTION_BONUS = "promotion_bonus"
    COMMISSION = "commission"
    FEE = "fee"
    BANK_HOLD = "bank_hold"  # two-phase hold while a bank answers
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"


class Channel(enum.StrEnum):
    SMS = "sms"
    USSD = "ussd"
    STK = "stk"
    COUNTER = "counter"  # service hall clerk
    POS = "pos"  # soft POS in halls, convenience stores, agents
    BANK = "bank"
    WEB = "web"
    SYSTEM = "system"  # promotions, expiries, the ledger itself


class Phase(enum.StrEnum):
    """Where a transfer row sits in the two-phase life cycle."""

    SINGLE = "single"  # posted at once
    PENDING = "pending"  # a hold
    POST = "post"  # completes a pending
    VOID = "void"  # cancels a pending
    EXPIRE = "expire"  # cancels a pending whose timeout passed


# Separator of the keys of rows the ledger derives from a request (a bonus, an
# expiry): clients may not use it, so a derived key never collides with theirs.
DERIVED_KEY_SEP = "#"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCY_KEY_LEN_MAX or not key.isprintable():
        raise RequestError(RejectCode.FIELD_INVALID, "idempotency_key",
            f"idempotency key must be 1..{IDEMPOTENCY_KEY_LEN_MAX} printable characters")
    if DERIVED_KEY_SEP in key:
        raise RequestError(RejectCode.FIELD_INVALID, "idempotency_key", f"idempotency key may not contain {DERIVED_KEY_SEP!r}")


def _check_ref(value: int | str, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RequestError(RejectCode.FIELD_INVALID, field_name, "account must be an id or a reference")
    if isinstance(value, int) and not 0 < value <= ID_MAX:
        raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, field_name, f"no account {value}")
    if isinstance(value, str) and not 0 < len(value) <= ACCOUNT_REF_LEN_MAX:
        raise RequestError(RejectCode.FIELD_INVALID, field_name, f"account reference must be 1..{ACCOUNT_REF_LEN_MAX} characters")


def _check_transfer_id(value: int, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ID_MAX:
        raise RequestError(RejectCode.FIELD_INVALID, field_name, f"{field_name} must be a transfer id")


_E = TypeVar("_E", bound=enum.Enum)


def _member(enum_type: type[_E], value: object, field_name: str) -> _E:
    """``enum_type(value)``, refused as a request error naming the field rather than a bare ValueError."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except (ValueError, TypeError):
        raise RequestError(RejectCode.FIELD_INVALID, field_name, f"{value!r} is not a {field_name}") from None


def _canonical(kind: str, body: dict[str, object]) -> bytes:
    """The request body as bytes that two requests share exactly when their fields are equal.

    Fields in a fixed order, each typed and strings length-prefixed
    (``b1`` ``i1234`` ``s3:abc``): unambiguous, independent of Python's
    ``repr`` and JSON settings, and cheap, since every request is hashed.
    """
    parts = [kind]
    for name, value in body.items():
        if isinstance(value, bool):
            parts.append(f"{name}=b{int(value)}")
        elif isinstance(value, int):
            parts.append(f"{name}=i{value}")
        else:
            text = str(value)
            parts.append(f"{name}=s{len(text)}:{text}")
    return "\x1e".join(parts).encode()


@dataclass(frozen=True)
class Transfer:
    """Move ``amount`` fen from ``debit_account`` to ``credit_account``.

    Accounts are named by id (``int``) or reference (``str``). With
    ``pending=True`` the transfer is a hold that a later :class:`PostPending`
    or :class:`VoidPending` resolves, or that expires after ``timeout_s``.
    """

    idempotency_key: str
    debit_account: int | str
    credit_account: int | str
    amount: int
    kind: TransferKind
    channel: Channel = Channel.SYSTEM
    currency: str = "CNY"
    pending: bool = False
    timeout_s: int = 0
    memo: str = ""

    def __post_init__(self) -> None:
        _check_key(self.idempotency_key)
        # References are never all digits (see Ledger.open_accounts): such a text is an id.
        for name in ("debit_account", "credit_account"):
            value = getattr(self, name)
            if isinstance(value, str) and value.isascii() and value.isdigit():
                object.__setattr__(self, name, int(value))
        _check_ref(self.debit_account, "debit_account")
        _check_ref(self.credit_account, "credit_account")
        if self.debit_account == self.credit_account:
            raise RequestError(RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account", "debit and credit account must differ")
        check_amount(self.amount)
        object.__setattr__(self, "kind", _member(TransferKind, self.kind, "kind"))
        object.__setattr__(self, "channel", _member(Channel, self.channel, "channel"))
        if self.kind in _INTERNAL_KINDS:
            raise RequestError(RejectCode.FIELD_INVALID, "kind", f"kind {self.kind} is made by the ledger itself")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, int):
            raise RequestError(RejectCode.FIELD_INVALID, "timeout_s", "timeout_s must be a whole number of seconds")
        if self.pending:
            if not 0 < self.timeout_s <= PENDING_TIMEOUT_S_MAX:
                raise RequestError(RejectCode.FIELD_INVALID, "timeout_s",
                    f"a pending transfer needs a timeout of 1..{PENDING_TIMEOUT_S_MAX} s")
        elif self.timeout_s:
            raise RequestError(RejectCode.FIELD_INVALID, "timeout_s", "only pending transfers have a timeout")
        if not isinstance(self.memo, str):
            raise RequestError(RejectCode.FIELD_INVALID, "memo", "memo must be text")
        if len(self.memo) > MEMO_LEN_MAX:
            raise RequestError(RejectCode.FIELD_INVALID, "memo", f"memo longer than {MEMO_LEN_MAX} characters")

    def body(self, accounts: tuple[int | str, int | str] | None = None) -> bytes:
        """The canonical request body that the idempotency key is bound to.

        ``accounts`` gives the debit and credit accounts as resolved by the
        ledger (ids), so that naming an account by id or by reference is the
        same request.
        """
        debit, credit = accounts or (self.debit_account, self.credit_account)
        return _canonical("transfer", {
            "debit": debit, "credit": credit, "amount": self.amount,
            "kind": self.kind.value, "channel": self.channel.value, "currency": self.currency,
            "pending": self.pending, "timeout_s": self.timeout_s, "memo": self.memo,
        })


@dataclass(frozen=True)
class PostPending:
    """Complete the hold ``pending_id`` for its full amount."""

    idempotency_key: str
    pending_id: int
    channel: Channel = Channel.SYSTEM

    def __post_init__(self) -> None:
        _check_key(self.idempotency_key)
        _check_transfer_id(self.pending_id, "pending_id")
        object.__setattr__(self, "channel", _member(Channel, self.channel, "channel"))

    def body(self) -> bytes:
        return _canonical("post", {"pending_id": self.pending_id, "channel": self.channel.value})


@dataclass(frozen=True)
class VoidPending:
    """Cancel the hold ``pending_id``; its amount is released."""

    idempotency_key: str
    pending_id: int
    channel: Channel = Channel.SYSTEM

    def __post_init__(self) -> None:
        _check_key(self.idempotency_key)
        _check_transfer_id(self.pending_id, "pending_id")
        object.__setattr__(self, "channel", _member(Channel, self.channel, "channel"))

    def body(self) -> bytes:
        return _canonical("void", {"pending_id": self.pending_id, "channel": self.channel.value})


@dataclass(frozen=True)
class Reverse:
    """Correct a posted transfer by a new transfer in the opposite direction.

    Transfers that were caused by the original (a promotion bonus) are
    reversed with it, in the same database transaction.
    """

    idempotency_key: str
    transfer_id: int
    channel: Channel = Channel.SYSTEM
    memo: str = ""

    def __post_init__(self) -> None:
        _check_key(self.idempotency_key)
        _check_transfer_id(self.transfer_id, "transfer_id")
        object.__setattr__(self, "channel", _member(Channel, self.channel, "channel"))
        if not isinstance(self.memo, str):
            raise RequestError(RejectCode.FIELD_INVALID, "memo", "memo must be text")
        if len(self.memo) > MEMO_LEN_MAX:
            raise RequestError(RejectCode.FIELD_INVALID, "memo", f"memo longer than {MEMO_LEN_MAX} characters")

    def body(self) -> bytes:
        return _canonical("reverse", {"transfer_id": self.transfer_id, "channel": self.channel.value, "memo": self.memo})


Request = Transfer | PostPending | VoidPending | Reverse


@dataclass(frozen=True)
class Linked:
    """Requests committed all-or-nothing: if one fails, none is posted."""

    requests: tuple[Request, ...]

    def __post_init__(self) -> None:
        if not 0 < len(self.requests) <= LINKED_CHAIN_LEN_MAX:
            raise RequestError(RejectCode.FIELD_INVALID, "linked", f"a linked chain has 1..{LINKED_CHAIN_LEN_MAX} requests")
        keys = [r.idempotency_key for r in self.requests]
        if len(set(keys)) != len(keys):
            raise RequestError(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key", "a linked chain repeats an idempotency key")


BatchItem = Request | Linked

# Kinds only the ledger writes: reversals, and bonuses that campaign rules grant.
_INTERNAL_KINDS = frozenset({TransferKind.REVERSAL, TransferKind.PROMOTION_BONUS})


def body_hash(request: Request, accounts: tuple[int | str, int | str] | None = None) -> bytes:
    """A 16-byte digest of the request body, stored beside its idempotency key."""
    body = request.body(accounts) if isinstance(request, Transfer) else request.body()
    return hashlib.sha256(body).digest()[:16]


@dataclass(frozen=True)
class PostedTransfer:
    """A transfer row as stored."""

    id: int
    idempotency_key: str
    debit_account_id: int
    credit_account_id: int
    amount: int
    currency: str
    kind: TransferKind
    channel: Channel
    phase: Phase
    ts_us: int  # commit-side clock, microseconds since the Unix epoch, UTC
    pending_id: int | None = None  # POST/VOID/EXPIRE: the hold it resolves
    reverses_id: int | None = None  # REVERSAL: the transfer it corrects
    cause_id: int | None = None  # a bonus or commission: the transfer that earned it
    expires_us: int | None = None  # PENDING: when the hold lapses
    memo: str = ""


@dataclass(frozen=True)
class Result:
    """The outcome of one request of a batch.

    ``transfers`` lists the rows it wrote (the transfer itself, then rows it
    caused: a bonus, the reversals of caused rows). ``duplicate`` is true when
    the idempotency key had been seen with the same body: the original result
    is returned and nothing new is written. ``error`` is set when the request
    was refused, in which case nothing of it was written.
    """

    idempotency_key: str
    transfers: tuple[PostedTransfer, ...] = ()
    duplicate: bool = False
    error: RequestError | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def transfer(self) -> PostedTransfer:
        """The request's own transfer row; raises the refusal when there is none."""
        if self.error is not None:
            raise self.error
        return self.transfers[0]


@dataclass(frozen=True)
class Account:
    """An account with its cached running sums (in fen)."""

    id: int
    ref: str
    kind: AccountKind
    currency: str
    flags: AccountFlags
    status: AccountStatus
    owner: str  # "customer:C000123", "merchant:M01", "bank:ICBC", "operator"
    tier: str | None
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def debit_normal(self) -> bool:
        """True for the operator's assets and expenses, whose balance is debits - credits."""
        return self.kind in DEBIT_NORMAL_KINDS or bool(self.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)

    @property
    def balance(self) -> int:
        """Posted balance in the account's natural direction (credits - debits for customers' money)."""
        if self.debit_normal:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """Balance less the holds against it."""
        if self.debit_normal:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return self.credits_posted - self.debits_posted - self.debits_pending


# Accounts on the operator's debit side: what banks owe it (settlement, float)
# and what it spends (bonuses, commissions). All others are credit-normal:
# customers', merchants' and billers' money, and the operator's income.
DEBIT_NORMAL_KINDS = frozenset({
    AccountKind.BANK_SETTLEMENT, AccountKind.OPERATOR_FLOAT, AccountKind.PROMOTION_EXPENSE,
    AccountKind.COMMISSION_EXPENSE, AccountKind.SUSPENSE,
})

DEFAULT_FLAGS: dict[AccountKind, AccountFlags] = {
    AccountKind.CUSTOMER_WALLET: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.CUSTOMER_AIRTIME: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.POINTS: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.MERCHANT: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.BILLER: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
}
