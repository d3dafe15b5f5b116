"""Replies of the wallet service from what it decided and what the ledger answered (pure functions).

Step 1 of :mod:`.service` turns each request into a reply, a :class:`Posting`
(a transfer for the ledger) or a :class:`Reading` (a balance or history to
read after the batch's postings). This module holds those values and the
functions that make replies of them: the field checks of a command, the
balance after each request of a batch, the reply to a posted or refused
transfer, history lines. Nothing here touches a database.

Ledger refusals, by :class:`~simwallet.gateway.errors.RejectCode` and field:

================================  ===================  ==========================================
refusal                           field                reply
================================  ===================  ==========================================
``exceeds_credits``               ``debit_account``    ``insufficient_funds`` (balance now)
``limit_exceeded``                ``limit.per_txn`` …  ``limit_exceeded`` naming the limit and its amount
``limit_exceeded``                ``limit.balance``    ``payee_limit`` on a P2P payment (the payee's wallet is full)
``account_frozen``/``closed``     ``debit_account``    ``account_frozen``
``account_frozen``/``closed``/    ``credit_account``   ``payee_unknown`` (``biller_invalid`` for a bill)
``account_not_found``
``amount_*``                      ``amount``           ``amount_invalid``
``idempotency_conflict``          key                  ``duplicate``: the key served another request
``accounts_must_be_different``    ``credit_account``   ``payee_invalid``: paying oneself
anything else                                          ``unavailable``, not stored, logged
================================  ===================  ==========================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from simwallet.gateway.cards import CardStatus
from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.limits import Tier, local_datetime
from simwallet.gateway.ledger.model import AccountKind, PostedTransfer, Result, Transfer, TransferKind
from simwallet.gateway.sms.catalogue import Biller, EntryKind, HistoryEntry, Lang, LimitKind, MessageId
from simwallet.gateway.sms.commands import (
    ACCOUNT_CHARS_MAX,
    ACCOUNT_CHARS_MIN,
    AMOUNT_MAX_FEN,
    MERCHANT_CODE_RE,
    PIN_DIGITS,
    Balance,
    BankBalance,
    Bill,
    ChangePin,
    Command,
    History,
    Pay,
    PayeeKind,
    TopUp,
    is_weak_pin,
)
from simwallet.gateway.wallet.outcomes import MSISDN_RE, Outcome, ServiceReply, ServiceRequest, ledger_key, reply

# The commands that move money: each makes one ledger transfer.
Money: Final = (TopUp, Pay, Bill)
# The commands whose PIN is checked (ChangePin's old PIN too, by its own field).
PIN_COMMANDS: Final = (Balance, BankBalance, History, TopUp, Pay, Bill)
_ACCOUNT_RE: Final = re.compile(rf"[0-9A-Z]{{{ACCOUNT_CHARS_MIN},{ACCOUNT_CHARS_MAX}}}")

# The ledger's limit fields: the catalogue's name of the limit, and the tier attribute holding its amount.
LIMITS: Final[Mapping[str, tuple[LimitKind, str]]] = {
    "limit.per_txn": (LimitKind.PER_TRANSACTION, "per_txn_max"),
    "limit.per_day": (LimitKind.PER_DAY, "per_day_max"),
    "limit.per_month": (LimitKind.PER_MONTH, "per_month_max"),
    "limit.balance": (LimitKind.MAX_BALANCE, "balance_max"),
}
# Refusals answered the same way whatever the field.
_PLAIN_REFUSALS: Final[Mapping[RejectCode, tuple[MessageId, Outcome]]] = {
    RejectCode.AMOUNT_MUST_BE_POSITIVE: (MessageId.AMOUNT_INVALID, Outcome.SYNTAX),
    RejectCode.AMOUNT_NOT_WHOLE_FEN: (MessageId.AMOUNT_INVALID, Outcome.SYNTAX),
    RejectCode.AMOUNT_TOO_LARGE: (MessageId.AMOUNT_INVALID, Outcome.SYNTAX),
    RejectCode.IDEMPOTENCY_CONFLICT: (MessageId.DUPLICATE, Outcome.DUPLICATE),
    RejectCode.ACCOUNTS_MUST_BE_DIFFERENT: (MessageId.PAYEE_INVALID, Outcome.REFUSED),
}
_STATUS_REFUSALS: Final = frozenset({RejectCode.ACCOUNT_FROZEN, RejectCode.ACCOUNT_CLOSED})


def customer_wallet(customer_ref: str) -> str:
    """The reference of a customer's wallet account, as registration opens it (the ledger's ``owner/kind``)."""
    return f"{customer_ref}/{AccountKind.CUSTOMER_WALLET.value}"


def customer_airtime(customer_ref: str) -> str:
    """The reference of a customer's phone-credit account."""
    return f"{customer_ref}/{AccountKind.CUSTOMER_AIRTIME.value}"


@dataclass(frozen=True, slots=True)
class Posting:
    """A request whose PIN and payee are settled: its transfer goes to the ledger."""

    request: ServiceRequest
    transfer: Transfer
    wallet: str  # the sender's wallet reference
    payee_wallet: str | None  # a P2P payee's wallet reference
    airtime_owners: frozenset[str] = frozenset()  # customers whose phone-credit account must exist first


@dataclass(frozen=True, slots=True)
class Reading:
    """A balance or history request whose PIN is settled: answered after the batch's postings."""

    request: ServiceRequest
    wallet: str


@dataclass(frozen=True, slots=True)
class CardRow:
    """What the service needs of a registered card."""

    msisdn: str
    customer_ref: str
    status: CardStatus


@dataclass(frozen=True, slots=True)
class WalletBalance:
    """What the replies need of a wallet account: its id, available balance (posted less holds) and tier."""

    id: int
    available: int
    tier: str | None


# --- field checks ---------------------------------------------------------------------------


def _pin_ok(pin: object) -> bool:
    return isinstance(pin, str) and len(pin) == PIN_DIGITS and pin.isascii() and pin.isdigit()


def _pin_problem(cmd: Command, pin_checked: bool) -> MessageId | None:
    if isinstance(cmd, ChangePin):
        if not _pin_ok(cmd.new_pin) or not (pin_checked or _pin_ok(cmd.old_pin)):
            return MessageId.PIN_FORMAT
        if cmd.new_pin == cmd.old_pin:
            return MessageId.PIN_SAME
        return MessageId.PIN_WEAK if is_weak_pin(cmd.new_pin) else None
    if isinstance(cmd, PIN_COMMANDS) and not pin_checked and not _pin_ok(cmd.pin):
        return MessageId.PIN_FORMAT
    return None


def _money_problem(cmd: Command) -> MessageId | None:
    if not isinstance(cmd, Money):
        return None
    amount = cmd.amount_fen
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= AMOUNT_MAX_FEN:
        return MessageId.AMOUNT_INVALID
    if isinstance(cmd, TopUp):
        good = cmd.target is None or (isinstance(cmd.target, str) and MSISDN_RE.fullmatch(cmd.target) is not None)
        return None if good else MessageId.MSISDN_INVALID
    if isinstance(cmd, Pay):
        pattern = MSISDN_RE if cmd.payee_kind is PayeeKind.MSISDN else MERCHANT_CODE_RE
        return None if isinstance(cmd.payee, str) and pattern.fullmatch(cmd.payee) else MessageId.PAYEE_INVALID
    if not isinstance(cmd.biller, Biller):
        return MessageId.BILLER_INVALID
    return None if isinstance(cmd.account, str) and _ACCOUNT_RE.fullmatch(cmd.account) else MessageId.ACCOUNT_INVALID


def field_error(cmd: Command, lang: Lang, *, pin_checked: bool) -> ServiceReply | None:
    """The reply to a command whose fields break the grammar, or None.

    The parser never builds such commands; a channel that builds them itself
    (the STK applet's menus) might. ``pin_checked``: the card verified the
    PIN, so the command's PIN field is not looked at.
    """
    problem = _pin_problem(cmd, pin_checked) or _money_problem(cmd)
    if problem is None:
        return None
    params = {"max_fen": AMOUNT_MAX_FEN} if problem is MessageId.AMOUNT_INVALID else {}
    return reply(problem, lang, Outcome.SYNTAX, params)


# --- transfers ------------------------------------------------------------------------------


def money_decision(request: ServiceRequest, customer: str, cards: Mapping[str, CardRow]) -> Posting | ServiceReply:
    """The transfer of a top-up, payment or bill, or the refusal of an unknown payee."""
    cmd, lang = request.command, request.lang
    key, wallet = ledger_key(request.key), customer_wallet(customer)
    if isinstance(cmd, TopUp | Pay) and not (isinstance(cmd, Pay) and cmd.payee_kind is PayeeKind.MERCHANT):
        number = cmd.payee if isinstance(cmd, Pay) else cmd.target or request.msisdn
        card = cards.get(number)
        if card is None or card.status is CardStatus.RETIRED:
            return reply(MessageId.PAYEE_UNKNOWN, lang, Outcome.REFUSED, {"payee": number})
        if isinstance(cmd, TopUp):
            # The payer's phone credit too: the ledger pays a top-up bonus there (see service.py).
            credit = customer_airtime(card.customer_ref)
            transfer = Transfer(key, wallet, credit, cmd.amount_fen, TransferKind.AIRTIME_TOPUP, request.channel)
            return Posting(request, transfer, wallet, None, frozenset({card.customer_ref, customer}))
        payee = customer_wallet(card.customer_ref)
        return Posting(request, Transfer(key, wallet, payee, cmd.amount_fen, TransferKind.P2P, request.channel), wallet, payee)
    if isinstance(cmd, Pay):
        merchant = f"merchant:{cmd.payee}"
        return Posting(
            request, Transfer(key, wallet, merchant, cmd.amount_fen, TransferKind.MERCHANT_PAYMENT, request.channel), wallet, None
        )
    assert isinstance(cmd, Bill)
    biller = f"biller:{cmd.biller.value}"
    transfer = Transfer(key, wallet, biller, cmd.amount_fen, TransferKind.BILL_PAYMENT, request.channel, memo=cmd.account)
    return Posting(request, transfer, wallet, None)


# --- replies after posting --------------------------------------------------------------------


def balances_after(
    pending: Sequence[tuple[int, Posting | Reading]], results: Mapping[int, Result], wallets: Mapping[str, WalletBalance]
) -> dict[int, int]:
    """The sender's wallet balance right after each request, walking back from the balances read after posting."""
    by_id = {row.id: ref for ref, row in wallets.items()}
    running = {ref: row.available for ref, row in wallets.items()}
    after: dict[int, int] = {}
    for i, d in reversed(pending):
        after[i] = running.get(d.wallet, 0)
        result = results.get(i)
        if result is None or not result.ok or result.duplicate:
            continue  # a duplicate was posted before this batch: the balance read already held it before
        for t in result.transfers:
            if t.debit_account_id in by_id:
                running[by_id[t.debit_account_id]] += t.amount
            if t.credit_account_id in by_id:
                running[by_id[t.credit_account_id]] -= t.amount
    return after


def reading_reply(request: ServiceRequest, balance: int, entries: tuple[HistoryEntry, ...]) -> ServiceReply:
    if isinstance(request.command, History):
        return reply(MessageId.HISTORY, request.lang, Outcome.OK, {"entries": entries})
    return reply(MessageId.BALANCE, request.lang, Outcome.OK, {"balance_fen": balance})


def posting_reply(posting: Posting, result: Result, balance: int, limit_fen: int | None) -> ServiceReply:
    """The reply to a posted transfer (its bonus shown for a top-up), or to its refusal."""
    request, cmd, lang = posting.request, posting.request.command, posting.request.lang
    if result.error is not None:
        return refusal(request, result.error, balance=balance, limit_fen=limit_fen)
    ids = tuple(t.id for t in result.transfers)
    if isinstance(cmd, TopUp):
        params: dict[str, object] = {"msisdn": cmd.target or request.msisdn, "amount_fen": cmd.amount_fen, "balance_fen": balance}
        bonus = sum(t.amount for t in result.transfers[1:] if t.kind is TransferKind.PROMOTION_BONUS)
        if bonus:
            return reply(MessageId.TOPUP_OK_BONUS, lang, Outcome.OK, {**params, "bonus_fen": bonus}, ids)
        return reply(MessageId.TOPUP_OK, lang, Outcome.OK, params, ids)
    if isinstance(cmd, Pay):
        return reply(MessageId.PAY_OK, lang, Outcome.OK, {"payee": cmd.payee, "amount_fen": cmd.amount_fen, "balance_fen": balance}, ids)
    assert isinstance(cmd, Bill)
    params = {"biller": cmd.biller, "account": cmd.account, "amount_fen": cmd.amount_fen, "balance_fen": balance}
    return reply(MessageId.BILL_OK, lang, Outcome.OK, params, ids)


def limit_fen(posting: Posting, error: RequestError | None, wallets: Mapping[str, WalletBalance], tiers: Mapping[str, Tier]) -> int | None:
    """The amount of the limit a ``limit_exceeded`` refusal hit, from the tier of the wallet it belongs to."""
    limit = LIMITS.get(error.field or "") if error is not None else None
    if limit is None:
        return None
    attribute = limit[1]
    # Money arriving is checked against the receiving wallet's tier: a P2P payee's.
    owner = posting.payee_wallet if attribute == "balance_max" and posting.payee_wallet else posting.wallet
    row = wallets.get(owner)
    tier = tiers.get(row.tier) if row is not None and row.tier is not None else None
    value = getattr(tier, attribute) if tier is not None else None
    return value if isinstance(value, int) else None


def _payee_refused(request: ServiceRequest) -> ServiceReply:
    """The credited account does not exist or takes no money: a merchant, biller, or a payee's account."""
    cmd, lang = request.command, request.lang
    if isinstance(cmd, Bill):
        return reply(MessageId.BILLER_INVALID, lang, Outcome.REFUSED)
    payee = (cmd.target or request.msisdn) if isinstance(cmd, TopUp) else getattr(cmd, "payee", request.msisdn)
    return reply(MessageId.PAYEE_UNKNOWN, lang, Outcome.REFUSED, {"payee": payee})


def _limit_refusal(request: ServiceRequest, error: RequestError, limit_fen: int | None) -> ServiceReply | None:
    """A limit refusal: the payer's limit by name and amount; a P2P payee's full wallet without the payee's limit."""
    limit = LIMITS.get(error.field or "")
    if limit is None:
        return None
    cmd = request.command
    if limit[0] is LimitKind.MAX_BALANCE and isinstance(cmd, Pay) and cmd.payee_kind is PayeeKind.MSISDN:
        return reply(MessageId.PAYEE_LIMIT, request.lang, Outcome.REFUSED, {"payee": cmd.payee})
    if limit_fen is None:
        return None
    return reply(MessageId.LIMIT_EXCEEDED, request.lang, Outcome.REFUSED, {"limit": limit[0], "limit_fen": limit_fen})


def refusal(request: ServiceRequest, error: RequestError, *, balance: int, limit_fen: int | None) -> ServiceReply:
    """The reply to a transfer the ledger refused (the table in the module docstring); ``unavailable`` if unforeseen."""
    code, lang = error.reject_code, request.lang
    if code is RejectCode.EXCEEDS_CREDITS and error.field == "debit_account":
        return reply(MessageId.INSUFFICIENT_FUNDS, lang, Outcome.REFUSED, {"balance_fen": balance})
    limited = _limit_refusal(request, error, limit_fen) if code is RejectCode.LIMIT_EXCEEDED else None
    if limited is not None:
        return limited
    if code in _STATUS_REFUSALS and error.field == "debit_account":
        return reply(MessageId.ACCOUNT_FROZEN, lang, Outcome.REFUSED)
    if (code in _STATUS_REFUSALS or code is RejectCode.ACCOUNT_NOT_FOUND) and error.field == "credit_account":
        return _payee_refused(request)
    plain = _PLAIN_REFUSALS.get(code)
    if plain is None:
        return ServiceReply(message_id=MessageId.UNAVAILABLE, params={}, lang=lang, outcome=Outcome.UNAVAILABLE, stored=False)
    params = {"max_fen": AMOUNT_MAX_FEN} if plain[0] is MessageId.AMOUNT_INVALID else {}
    return reply(plain[0], lang, plain[1], params)


# --- history lines ----------------------------------------------------------------------------

# What a transfer debiting the wallet was, by kind; anything else debited reads as a payment.
_DEBIT_ENTRIES: Final[Mapping[TransferKind, EntryKind]] = {
    TransferKind.AIRTIME_TOPUP: EntryKind.TOPUP,
    TransferKind.BILL_PAYMENT: EntryKind.BILL,
    TransferKind.REVERSAL: EntryKind.REFUND,
}
# What a transfer crediting the wallet was, by kind; anything else credited reads as a load.
_CREDIT_ENTRIES: Final[Mapping[TransferKind, EntryKind]] = {
    TransferKind.P2P: EntryKind.RECEIVE,
    TransferKind.PROMOTION_BONUS: EntryKind.BONUS,
    TransferKind.REVERSAL: EntryKind.REFUND,
}


def history_entry(transfer: PostedTransfer, *, debited: bool) -> HistoryEntry:
    """One history line of a wallet (``debited``: the transfer took money out): local day, what, signed fen."""
    day = local_datetime(transfer.ts_us).date()
    if debited:
        return HistoryEntry(day, _DEBIT_ENTRIES.get(transfer.kind, EntryKind.PAY), -transfer.amount)
    return HistoryEntry(day, _CREDIT_ENTRIES.get(transfer.kind, EntryKind.LOAD), transfer.amount)
