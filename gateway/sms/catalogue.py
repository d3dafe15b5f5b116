"""Every reply the SMS and USSD services send, in Chinese and English.

Theory of operation. A reply is a :class:`MessageId` and its parameters;
:func:`render` looks up the template of the sender's language (:class:`Lang`),
checks the parameters against the message's declaration (name and kind, none
missing, none extra), formats each by its kind and fills the template. The
services never build reply text themselves, so every wording lives here and
the tests can check each one.

Sizes: a Chinese reply goes out in UCS2, where one SMS holds 70 characters; an
English reply is written in the GSM 7-bit default alphabet (3GPP TS 23.038
§6.2.1), where one SMS holds 160 septets. Every message fits one SMS with the
largest realistic parameters except the few declared ``may_be_long`` (the
transaction history), which :mod:`.segments` sends concatenated.

Decisions:

* Money arrives as ``int`` fen in parameters whose kind is ``money`` and is
  written with a thousands separator and two decimals: ``1,234.50元`` in
  Chinese, ``¥1,234.50`` in English (``¥`` is in the GSM default alphabet,
  code 0x03). History lines carry a sign and no currency, to stay short.
* Mobile numbers are shown masked, the four digits before the last four
  replaced by ``*`` (``138****8000`` for ``8613800138000``; other countries
  as ``+4477****0123`` for ``447700900123``), as Chinese operators and banks print them: a reply
  may be read by someone else holding the phone.
* A PIN is never a parameter: no message declares one, and :func:`render`
  refuses any parameter whose name contains ``pin`` before looking further.
* ``unregistered`` answers a subscriber of this network without a wallet
  (register at a service hall with an ID card); ``not_customer`` answers a
  number of another network, which cannot hold this SIM wallet at all.
* The vocabulary shared with the command parser (:class:`Biller`) is declared
  here, so that :mod:`.commands` imports this module and not the other way.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from simwallet.gateway.sms.errors import CatalogueError

# Replies are cut to the latest transactions: five lines keep a history within two SMS.
HISTORY_LINES_MAX = 5
# A money parameter beyond 10^13 fen (the ledger's AMOUNT_FEN_MAX) is a caller's bug.
MONEY_FEN_MAX = 10**13
# Parameters that are counts (tries left) stay small; more is a caller's bug.
COUNT_MAX = 999
# One SMS: 70 UCS2 characters (TS 23.038 §6.2.3), 160 GSM septets (§6.2.1).
SMS_UCS2_UNITS_MAX = 70
SMS_GSM_SEPTETS_MAX = 160


class Lang(enum.StrEnum):
    """The language of a sender and of the reply."""

    ZH = "zh"
    EN = "en"


class Biller(enum.StrEnum):
    """Public utility bills payable by SMS; the values are the parser's canonical names."""

    WATER = "water"
    ELECTRICITY = "electricity"
    GAS = "gas"
    PHONE = "phone"


class LimitKind(enum.StrEnum):
    """Which wallet limit a refused transaction would exceed."""

    PER_TRANSACTION = "per_transaction"
    PER_DAY = "per_day"
    PER_MONTH = "per_month"
    MAX_BALANCE = "max_balance"


class EntryKind(enum.StrEnum):
    """What a history line records; the sign of its amount says the direction."""

    TOPUP = "topup"
    PAY = "pay"
    BILL = "bill"
    RECEIVE = "receive"
    LOAD = "load"
    BONUS = "bonus"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a history reply: the day, what it was, and the signed amount in fen (credit > 0)."""

    day: date
    kind: EntryKind
    amount_fen: int


class ParamKind(enum.Enum):
    """How a parameter is checked and written."""

    MONEY = "money"  # int fen
    COUNT = "count"  # int 0..COUNT_MAX
    MSISDN = "msisdn"  # international digits, shown masked
    PAYEE = "payee"  # an MSISDN (masked) or a merchant code
    ACCOUNT = "account"  # a bill account number
    CARD_TAIL = "card_tail"  # the last four digits of a bank card
    BILLER = "biller"  # Biller
    LIMIT = "limit"  # LimitKind
    ENTRIES = "entries"  # Sequence[HistoryEntry], at most HISTORY_LINES_MAX


class MessageId(enum.StrEnum):
    """Every reply. Stable strings: services and logs name replies by them."""

    HELP = "help"
    HELP_BALANCE = "help_balance"
    HELP_TOPUP = "help_topup"
    HELP_PAY = "help_pay"
    HELP_BILL = "help_bill"
    HELP_BANK_BALANCE = "help_bank_balance"
    HELP_HISTORY = "help_history"
    HELP_CHANGE_PIN = "help_change_pin"
    HELP_STOP = "help_stop"
    HELP_START = "help_start"
    # Answers to commands the parser refuses.
    AMOUNT_INVALID = "amount_invalid"
    PIN_FORMAT = "pin_format"
    MSISDN_INVALID = "msisdn_invalid"
    PAYEE_INVALID = "payee_invalid"
    BILLER_INVALID = "biller_invalid"
    ACCOUNT_INVALID = "account_invalid"
    PIN_WEAK = "pin_weak"
    PIN_MISMATCH = "pin_mismatch"
    PIN_SAME = "pin_same"
    # Outcomes of the service layer.
    UNREGISTERED = "unregistered"
    PIN_NOT_SET = "pin_not_set"
    NOT_CUSTOMER = "not_customer"
    BALANCE = "balance"
    TOPUP_OK = "topup_ok"
    TOPUP_OK_BONUS = "topup_ok_bonus"
    PAY_OK = "pay_ok"
    BILL_OK = "bill_ok"
    BANK_BALANCE = "bank_balance"
    BANK_NOT_LINKED = "bank_not_linked"
    HISTORY = "history"
    PIN_CHANGED = "pin_changed"
    PIN_WRONG = "pin_wrong"
    WALLET_LOCKED = "wallet_locked"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    LIMIT_EXCEEDED = "limit_exceeded"
    PAYEE_UNKNOWN = "payee_unknown"
    PAYEE_LIMIT = "payee_limit"
    ACCOUNT_FROZEN = "account_frozen"
    STOPPED = "stopped"
    STARTED = "started"
    DUPLICATE = "duplicate"
    UNAVAILABLE = "unavailable"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class Message:
    """A message's templates (``str.format`` fields named as its parameters) and its parameter kinds."""

    zh: str
    en: str
    params: Mapping[str, ParamKind] = field(default_factory=dict)
    # True for the few replies that may need more than one SMS.
    may_be_long: bool = False

    def template(self, lang: Lang) -> str:
        return self.zh if lang is Lang.ZH else self.en


_M = ParamKind.MONEY

CATALOGUE: Mapping[MessageId, Message] = {
    MessageId.HELP: Message(
        "手机钱包指令：余额、充值、付款、缴费、银行余额、明细、改密、退订。发送“帮助 指令”查看用法，如：帮助 充值",
        "Wallet commands: BAL, TOPUP, PAY, BILL, BANK, HIST, PIN, STOP. Send HELP <command> to see how to use one, e.g. HELP PAY",
    ),
    MessageId.HELP_BALANCE: Message(
        "余额查询：发送 余额 密码（密码为6位数字）",
        "Balance: send BAL <PIN> (your 6-digit wallet PIN)",
    ),
    MessageId.HELP_TOPUP: Message(
        "话费充值：发送 充值 金额 密码；为他人充值：充值 金额 手机号 密码。例：充值 100 密码",
        "Top-up: send TOPUP <amount> <PIN>, or TOPUP <amount> <mobile> <PIN> for another number. Example: TOPUP 100 <PIN>",
    ),
    MessageId.HELP_PAY: Message(
        "付款：发送 付款 手机号或商户号 金额 密码。商户号为M加6至8位数字。例：付款 M123456 50 密码",
        "Pay: send PAY <mobile or merchant code> <amount> <PIN>. Merchant codes are M and 6-8 digits. Example: PAY M123456 50 <PIN>",
    ),
    MessageId.HELP_BILL: Message(
        "缴费：发送 缴费 类别 户号 金额 密码。类别：水费01 电费02 燃气03 固话04。例：缴费 电费 1234567 100 密码",
        "Bills: send BILL <type> <account> <amount> <PIN>. Types: WATER 01, ELEC 02, GAS 03, PHONE 04. "
        "Example: BILL ELEC 1234567 100 <PIN>",
    ),
    MessageId.HELP_BANK_BALANCE: Message(
        "银行卡余额查询：发送 银行余额 密码（需先绑定银行卡）",
        "Bank balance: send BANK <PIN> (needs a bank card linked to your wallet)",
    ),
    MessageId.HELP_HISTORY: Message(
        f"交易明细：发送 明细 密码，回复最近{HISTORY_LINES_MAX}笔交易",
        f"History: send HIST <PIN> to get your last {HISTORY_LINES_MAX} transactions",
    ),
    MessageId.HELP_CHANGE_PIN: Message(
        "修改密码：发送 改密 原密码 新密码 新密码。新密码为6位数字，勿用相同或连续数字",
        "Change PIN: send PIN <old PIN> <new PIN> <new PIN again>. The new PIN is 6 digits, not one digit repeated or a sequence",
    ),
    MessageId.HELP_STOP: Message(
        "退订营销短信：发送 退订（交易通知照常发送）。恢复请发送 订阅",
        "To stop offers, send STOP (transaction notices still come). To get them again, send START",
    ),
    MessageId.HELP_START: Message(
        "订阅营销短信：发送 订阅。退订请发送 退订",
        "To get our offers, send START. To stop them, send STOP",
    ),
    MessageId.AMOUNT_INVALID: Message(
        "金额有误：须大于0，最多两位小数，单笔不超过{max_fen}",
        "Invalid amount: use a number above 0 with at most 2 decimals, up to {max_fen}, e.g. 100 or 25.50",
        {"max_fen": _M},
    ),
    MessageId.PIN_FORMAT: Message(
        "密码格式有误：密码为6位数字，放在指令最后",
        "PIN format wrong: the PIN is 6 digits and comes last in the command",
    ),
    MessageId.MSISDN_INVALID: Message(
        "手机号有误：请输入11位手机号，如13800138000",
        "Invalid mobile number: use 11 digits, or + and the country code for other countries",
    ),
    MessageId.PAYEE_INVALID: Message(
        "收款方有误：请输入11位手机号或商户号（M加6至8位数字）",
        "Invalid payee: use an 11-digit mobile number or a merchant code (M and 6-8 digits)",
    ),
    MessageId.BILLER_INVALID: Message(
        "缴费类别有误：水费01 电费02 燃气03 固话04",
        "Unknown bill type. Use WATER 01, ELEC 02, GAS 03 or PHONE 04",
    ),
    MessageId.ACCOUNT_INVALID: Message(
        "户号有误：须为4至20位数字或字母",
        "Invalid account number: use 4 to 20 letters or digits",
    ),
    MessageId.PIN_WEAK: Message(
        "新密码过于简单，请勿使用相同或连续的数字，如111111、123456。密码未修改",
        "New PIN too easy to guess: no digit repeated six times and no sequence like 123456. Your PIN was not changed",
    ),
    MessageId.PIN_MISMATCH: Message(
        "两次输入的新密码不一致，密码未修改",
        "The two new PINs differ. Your PIN was not changed",
    ),
    MessageId.PIN_SAME: Message(
        "新密码与原密码相同，密码未修改",
        "The new PIN is the same as the old one. Your PIN was not changed",
    ),
    MessageId.UNREGISTERED: Message(
        "您尚未开通手机钱包，请携带本人身份证到移动营业厅办理",
        "This number has no wallet yet. To register, visit a service hall with your ID card",
    ),
    MessageId.PIN_NOT_SET: Message(
        "您的手机钱包尚未设置支付密码，请携带本人身份证到营业厅设置",
        "Your wallet has no PIN yet. To set one, visit a service hall with your ID card",
    ),
    MessageId.NOT_CUSTOMER: Message(
        "本业务仅限本网手机钱包客户使用",
        "This service is only for wallet customers of this network",
    ),
    MessageId.BALANCE: Message(
        "您的手机钱包余额为{balance_fen}",
        "Wallet balance: {balance_fen}",
        {"balance_fen": _M},
    ),
    MessageId.TOPUP_OK: Message(
        "已为{msisdn}充值话费{amount_fen}，钱包余额{balance_fen}",
        "Topped up {amount_fen} to {msisdn}. Wallet balance: {balance_fen}",
        {"amount_fen": _M, "msisdn": ParamKind.MSISDN, "balance_fen": _M},
    ),
    MessageId.TOPUP_OK_BONUS: Message(
        "已为{msisdn}充值话费{amount_fen}，另赠话费{bonus_fen}，钱包余额{balance_fen}",
        "Topped up {amount_fen} to {msisdn}, plus a bonus of {bonus_fen}. Wallet balance: {balance_fen}",
        {"amount_fen": _M, "bonus_fen": _M, "msisdn": ParamKind.MSISDN, "balance_fen": _M},
    ),
    MessageId.PAY_OK: Message(
        "已向{payee}付款{amount_fen}，钱包余额{balance_fen}",
        "Paid {amount_fen} to {payee}. Wallet balance: {balance_fen}",
        {"amount_fen": _M, "payee": ParamKind.PAYEE, "balance_fen": _M},
    ),
    MessageId.BILL_OK: Message(
        "{biller}缴费成功：户号{account}，金额{amount_fen}，钱包余额{balance_fen}",
        "{biller} bill paid: account {account}, {amount_fen}. Wallet balance: {balance_fen}",
        {"biller": ParamKind.BILLER, "account": ParamKind.ACCOUNT, "amount_fen": _M, "balance_fen": _M},
    ),
    MessageId.BANK_BALANCE: Message(
        "您尾号{card_tail}的银行卡余额为{balance_fen}",
        "Bank card ending {card_tail}: balance {balance_fen}",
        {"card_tail": ParamKind.CARD_TAIL, "balance_fen": _M},
    ),
    MessageId.BANK_NOT_LINKED: Message(
        "您的手机钱包尚未绑定银行卡，请携带身份证和银行卡到营业厅办理",
        "No bank card is linked to your wallet. Visit a service hall with your ID and bank card to link one",
    ),
    MessageId.HISTORY: Message(
        "最近交易：{entries}",
        "Last transactions:{entries}",
        {"entries": ParamKind.ENTRIES},
        may_be_long=True,
    ),
    MessageId.PIN_CHANGED: Message(
        "密码修改成功，请牢记新密码，切勿告诉他人",
        "PIN changed. Keep it secret: we never ask for it",
    ),
    MessageId.PIN_WRONG: Message(
        "密码错误，还可尝试{tries_left}次，多次输错将锁定钱包",
        "Wrong PIN. Tries left: {tries_left}. Too many wrong PINs lock the wallet",
        {"tries_left": ParamKind.COUNT},
    ),
    MessageId.WALLET_LOCKED: Message(
        "密码错误次数过多，钱包已锁定。请携带本人身份证到营业厅解锁",
        "Too many wrong PINs: your wallet is locked. Visit a service hall with your ID to unlock it",
    ),
    MessageId.INSUFFICIENT_FUNDS: Message(
        "钱包余额不足，交易未完成。当前余额{balance_fen}",
        "Not enough money in your wallet (balance {balance_fen}). Nothing was paid",
        {"balance_fen": _M},
    ),
    MessageId.LIMIT_EXCEEDED: Message(
        "超出{limit}{limit_fen}，交易未完成",
        "Over your {limit} of {limit_fen}. Nothing was paid",
        {"limit": ParamKind.LIMIT, "limit_fen": _M},
    ),
    MessageId.PAYEE_UNKNOWN: Message(
        "收款方{payee}未开通手机钱包，交易未完成",
        "{payee} has no wallet. Nothing was paid",
        {"payee": ParamKind.PAYEE},
    ),
    MessageId.PAYEE_LIMIT: Message(
        "收款方{payee}的钱包余额将超过上限，交易未完成",
        "The wallet of {payee} cannot take this much (it would pass its balance limit). Nothing was paid",
        {"payee": ParamKind.PAYEE},
    ),
    MessageId.ACCOUNT_FROZEN: Message(
        "您的手机钱包已冻结，请携带本人身份证到营业厅咨询",
        "Your wallet is frozen. Please visit a service hall with your ID",
    ),
    MessageId.STOPPED: Message(
        "您已退订营销短信，交易通知照常发送。恢复请发送 订阅",
        "You will get no more offers; transaction notices still come. To get offers again, send START",
    ),
    MessageId.STARTED: Message(
        "您已订阅营销短信。退订请发送 退订",
        "You will get our offers again. To stop them, send STOP",
    ),
    MessageId.DUPLICATE: Message(
        "该请求已处理过，未重复执行",
        "We already handled this request. It was not done twice",
    ),
    MessageId.UNAVAILABLE: Message(
        "系统繁忙，请稍后再试",
        "Service temporarily unavailable. Please try again later",
    ),
    MessageId.INCOMPLETE: Message(
        "短信未完整收到，请重新发送",
        "Your message arrived incomplete. Please send it again",
    ),
}

_BILLER_NAMES: Mapping[Biller, tuple[str, str]] = {
    Biller.WATER: ("水费", "Water"),
    Biller.ELECTRICITY: ("电费", "Electricity"),
    Biller.GAS: ("燃气费", "Gas"),
    Biller.PHONE: ("固话费", "Phone"),
}
_LIMIT_NAMES: Mapping[LimitKind, tuple[str, str]] = {
    LimitKind.PER_TRANSACTION: ("单笔限额", "per-transaction limit"),
    LimitKind.PER_DAY: ("当日累计限额", "daily limit"),
    LimitKind.PER_MONTH: ("当月累计限额", "monthly limit"),
    LimitKind.MAX_BALANCE: ("钱包余额上限", "maximum balance"),
}
_ENTRY_NAMES: Mapping[EntryKind, tuple[str, str]] = {
    EntryKind.TOPUP: ("充话费", "TOPUP"),
    EntryKind.PAY: ("付款", "PAY"),
    EntryKind.BILL: ("缴费", "BILL"),
    EntryKind.RECEIVE: ("收款", "RCVD"),
    EntryKind.LOAD: ("存入", "LOAD"),
    EntryKind.BONUS: ("赠送", "BONUS"),
    EntryKind.REFUND: ("退款", "REFUND"),
}

E = TypeVar("E", bound=enum.Enum)

# International MSISDN digits as the parser produces them (E.164: 8 to 15 here).
_MSISDN_RE = re.compile(r"[1-9][0-9]{7,14}")
# Merchant codes as the parser defines them (commands.MERCHANT_CODE_RE), already normalised.
_MERCHANT_RE = re.compile(r"M[0-9]{6,8}")
_ACCOUNT_RE = re.compile(r"[0-9A-Z]{4,20}")
_CARD_TAIL_RE = re.compile(r"[0-9]{4}")
# The digits masked in a displayed mobile number, counted from the right end.
_MASK_DIGITS = 4


def format_money(fen: int, lang: Lang) -> str:
    """``1,234.50元`` (zh) or ``¥1,234.50`` (en) for 123450 fen; negatives with a leading ``-``."""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    number = f"{whole:,}.{frac:02d}"
    return f"{sign}{number}元" if lang is Lang.ZH else f"{sign}¥{number}"


def mask_msisdn(msisdn: str) -> str:
    """``138****8000`` for ``8613800138000``; ``+4477****0123`` for ``447700900123``."""
    if msisdn.startswith("86") and len(msisdn) == 13:
        local = msisdn[2:]
        return local[:3] + "*" * _MASK_DIGITS + local[-4:]
    cut = len(msisdn) - 4
    return "+" + msisdn[: max(cut - _MASK_DIGITS, 0)] + "*" * _MASK_DIGITS + msisdn[cut:]


def _history(value: object, lang: Lang) -> str:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CatalogueError(f"entries must be a sequence of HistoryEntry, not {type(value).__name__}")
    if len(value) > HISTORY_LINES_MAX:
        raise CatalogueError(f"{len(value)} history entries exceed HISTORY_LINES_MAX {HISTORY_LINES_MAX}")
    lines: list[str] = []
    for entry in value:
        if not isinstance(entry, HistoryEntry):
            raise CatalogueError(f"history entry must be a HistoryEntry, not {type(entry).__name__}")
        amount = _check_money(entry.amount_fen, "amount_fen")
        whole, frac = divmod(abs(amount), 100)
        sign = "-" if amount < 0 else "+"
        name = _ENTRY_NAMES[entry.kind][0 if lang is Lang.ZH else 1]
        lines.append(f"\n{entry.day:%m-%d} {name} {sign}{whole:,}.{frac:02d}")
    if not lines:
        return "暂无" if lang is Lang.ZH else " none"
    return "".join(lines)


def _check_money(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogueError(f"parameter {name} must be an int number of fen, not {type(value).__name__}")
    if abs(value) > MONEY_FEN_MAX:
        raise CatalogueError(f"parameter {name} = {value} fen is beyond MONEY_FEN_MAX")
    return value


def _check_text(value: object, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise CatalogueError(f"parameter {name} does not match {pattern.pattern}")
    return value


def _count(name: str, value: object, lang: Lang) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise CatalogueError(f"parameter {name} must be an int in 0..{COUNT_MAX}")
    return str(value)


def _payee(name: str, value: object, lang: Lang) -> str:
    if isinstance(value, str) and _MERCHANT_RE.fullmatch(value):
        return ("商户" if lang is Lang.ZH else "merchant ") + value
    return mask_msisdn(_check_text(value, name, _MSISDN_RE))


def _named(names: Mapping[E, tuple[str, str]], kind: type[E]) -> Callable[[str, object, Lang], str]:
    def format_name(name: str, value: object, lang: Lang) -> str:
        if not isinstance(value, kind):
            raise CatalogueError(f"parameter {name} must be a {kind.__name__}")
        return names[value][0 if lang is Lang.ZH else 1]

    return format_name


# How each kind of parameter is checked and written: (name, value, language) -> text.
_FORMATTERS: Mapping[ParamKind, Callable[[str, object, Lang], str]] = {
    ParamKind.MONEY: lambda name, value, lang: format_money(_check_money(value, name), lang),
    ParamKind.COUNT: _count,
    ParamKind.MSISDN: lambda name, value, lang: mask_msisdn(_check_text(value, name, _MSISDN_RE)),
    ParamKind.PAYEE: _payee,
    ParamKind.ACCOUNT: lambda name, value, lang: _check_text(value, name, _ACCOUNT_RE),
    ParamKind.CARD_TAIL: lambda name, value, lang: _check_text(value, name, _CARD_TAIL_RE),
    ParamKind.BILLER: _named(_BILLER_NAMES, Biller),
    ParamKind.LIMIT: _named(_LIMIT_NAMES, LimitKind),
    ParamKind.ENTRIES: lambda name, value, lang: _history(value, lang),
}


def render(message_id: MessageId | str, lang: Lang | str, **params: object) -> str:
    """The reply ``message_id`` in ``lang`` with ``params`` filled in.

    Raises :class:`CatalogueError` (a programming error) for an unknown message
    id or language, a missing, unexpected or mistyped parameter, and any
    parameter whose name mentions a PIN.
    """
    for name in params:
        if "pin" in name.lower():
            raise CatalogueError(f"parameter {name!r}: a PIN never goes into a reply")
    try:
        message = CATALOGUE[MessageId(message_id)]
        language = Lang(lang)
    except ValueError as exc:
        raise CatalogueError(f"unknown message id {message_id!r} or language {lang!r}") from exc
    missing = sorted(set(message.params) - set(params))
    extra = sorted(set(params) - set(message.params))
    if missing or extra:
        raise CatalogueError(f"message {message_id}: missing parameters {missing}, unexpected parameters {extra}")
    values = {name: _FORMATTERS[kind](name, params[name], language) for name, kind in message.params.items()}
    return message.template(language).format_map(values)


def template_fields(template: str) -> frozenset[str]:
    """The field names a template uses (for the catalogue's own consistency checks)."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(template) if field is not None)
