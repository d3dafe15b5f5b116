"""The SMS command language of the wallet short code: text in, a typed command out.

Theory of operation. :func:`parse_command` normalises the text (NFKC, so
full-width digits, letters, commas and the ideographic space U+3000 become
their ASCII forms; upper case; the separators ``, 、 ; #`` and any run of
spaces become one space; trailing ``. 。 ! ? ~`` are dropped), finds the
longest keyword the text starts with, and hands the remaining tokens to that
command's argument rule. The keyword decides the language of the reply: a
Chinese keyword gives ``zh``, an English one ``en``. A language-neutral
keyword (``?``) and text with no keyword take ``zh`` when the text as sent
holds a CJK character (ideographs, CJK punctuation, full-width forms: a
full-width ``？`` comes from a Chinese input method) and ``en`` otherwise.

Grammar (``[x]`` optional; keywords in any case; every PIN comes last)::

    余额 | 查询 | 查余额 | BAL | BALANCE                  PIN
    充值 | 充话费 | TOPUP | TOP UP | RECHARGE            amount [msisdn] PIN
    付款 | 转账 | 支付 | PAY | SEND | TRANSFER           payee amount PIN
    缴费 | 交费 | BILL | PAYBILL                         biller account amount PIN
    银行余额 | 银行卡余额 | BANKBAL | BANK                 PIN
    明细 | 账单 | 记录 | HIST | HISTORY | MINI           PIN
    改密 | 修改密码 | PIN | CHPIN                         old_PIN new_PIN [new_PIN]
    退订 | TD | STOP | UNSUBSCRIBE                       (anything after is ignored)
    订阅 | START | SUBSCRIBE                             (anything after is ignored)
    帮助 | ? | HELP | H                                  [command keyword]

Decisions, each where the brief leaves room:

* A Chinese keyword may be glued to what follows (``余额123456``), as people
  type on a phone; an English keyword may be glued to digits only
  (``BAL123456``), so that ``HELLO`` is not ``H`` + ``ELLO``.
* ``TD`` (pinyin of 退订, the opt-out word of Chinese operators) counts as a
  Chinese keyword.
* The wallet PIN is :data:`PIN_DIGITS` ASCII digits. A new PIN is refused when
  :func:`is_weak_pin` says so: one digit repeated, a run up or down (``123456``,
  ``654321``, wrapping through 9→0), or one of :data:`WEAK_PINS`.
* Amounts: digits with at most two decimals, optionally ``¥``/``RMB`` before
  and ``元``/``块``/``块钱``/``圆``/``RMB``/``YUAN`` after (also as a separate
  token: ``100 元``); more than 2 decimals, zero, a sign, and more than
  :data:`AMOUNT_MAX_FEN` are refused.
* MSISDNs: an 11-digit Chinese mobile number (``1[3-9]`` and nine digits),
  bare or after ``+86``/``0086``/``86``, becomes ``86…``. A number of another
  country is accepted only with an explicit ``+`` or ``00`` (an E.164 number
  of 8 to 15 digits, first digit not 0), because bare digits are ambiguous
  with amounts; ``+86`` before anything but a mobile number is refused (a
  landline holds no wallet). ``+86 138…`` written as two tokens is joined.
* Payees: an MSISDN or a merchant code, ``M`` and 6 to 8 digits
  (:data:`MERCHANT_CODE_RE`), also written ``商户123456`` or ``商户号 123456``;
  it is normalised to ``M123456``.
* Billers: ``water`` (水费, 水, 自来水, WATER, 01), ``electricity`` (电费, 电,
  ELEC, ELECTRICITY, POWER, 02), ``gas`` (燃气, 煤气, 气费, 燃气费, 天然气, GAS,
  03), ``phone`` (话费, 电话费, 固话, 固话费, PHONE, TEL, LANDLINE, 04); the
  codes also without their leading zero. A Chinese biller word may be glued to
  the account number (``电费1234567``). Accounts are 4 to 20 letters or digits.
* Top-up takes ``amount msisdn`` and pay takes ``amount payee`` in either
  order: an 11-digit number can never be a valid amount (it exceeds
  :data:`AMOUNT_MAX_FEN`) and a merchant code is not a number, so the order is
  never ambiguous.
* A :class:`CommandSyntaxError` never quotes the sender's text: a PIN typed in
  the wrong place must not reach a log through an error message.
"""

from __future__ import annotations

import enum
import itertools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from simwallet.gateway.sms.catalogue import Biller, Lang, MessageId
from simwallet.gateway.sms.errors import CommandSyntaxError

# The wallet PIN: six digits, as on Chinese bank cards.
PIN_DIGITS = 6
# The largest amount one SMS command may move: 50,000.00 yuan. A parser bound against
# typos (an extra zero); the wallet limits of the ledger decide what is really allowed.
AMOUNT_MAX_FEN = 5_000_000
# Longer text is no command (a concatenated MO of a few parts at most); bounds the work on junk.
COMMAND_CHARS_MAX = 480
# A bill account number: 4 to 20 letters or digits.
ACCOUNT_CHARS_MIN = 4
ACCOUNT_CHARS_MAX = 20
# Merchant codes: M and 6 to 8 digits.
MERCHANT_CODE_RE = re.compile(r"M[0-9]{6,8}")
# PINs that follow no rule of is_weak_pin but head every leaked-PIN list.
WEAK_PINS: frozenset[str] = frozenset({"112233", "121212", "123123", "123321", "520520", "521521", "111222", "147258", "159753"})


class CommandKind(enum.StrEnum):
    """The commands of the short code."""

    BALANCE = "balance"
    TOPUP = "topup"
    PAY = "pay"
    BILL = "bill"
    BANK_BALANCE = "bank_balance"
    HISTORY = "history"
    CHANGE_PIN = "change_pin"
    STOP = "stop"
    START = "start"
    HELP = "help"


class PayeeKind(enum.StrEnum):
    """Who a payment goes to."""

    MSISDN = "msisdn"
    MERCHANT = "merchant"


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """Wallet balance inquiry."""

    kind: ClassVar[CommandKind] = CommandKind.BALANCE
    lang: Lang
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopUp:
    """Airtime top-up paid from the wallet; ``target`` None tops up the sender's own number."""

    kind: ClassVar[CommandKind] = CommandKind.TOPUP
    lang: Lang
    amount_fen: int
    target: str | None
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pay:
    """Payment to another wallet (``payee`` an MSISDN ``86…``) or to a merchant (``M123456``)."""

    kind: ClassVar[CommandKind] = CommandKind.PAY
    lang: Lang
    payee_kind: PayeeKind
    payee: str
    amount_fen: int
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bill:
    """Utility bill payment."""

    kind: ClassVar[CommandKind] = CommandKind.BILL
    lang: Lang
    biller: Biller
    account: str
    amount_fen: int
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BankBalance:
    """Balance inquiry of the linked bank card."""

    kind: ClassVar[CommandKind] = CommandKind.BANK_BALANCE
    lang: Lang
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """Mini statement: the latest transactions."""

    kind: ClassVar[CommandKind] = CommandKind.HISTORY
    lang: Lang
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePin:
    """PIN change; the parser has checked the repeat and the strength of ``new_pin``."""

    kind: ClassVar[CommandKind] = CommandKind.CHANGE_PIN
    lang: Lang
    old_pin: str = field(repr=False)
    new_pin: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Opt out of marketing messages."""

    kind: ClassVar[CommandKind] = CommandKind.STOP
    lang: Lang


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Opt back in to marketing messages."""

    kind: ClassVar[CommandKind] = CommandKind.START
    lang: Lang


@dataclass(frozen=True, slots=True, kw_only=True)
class Help:
    """Help in general (``topic`` None) or on one command."""

    kind: ClassVar[CommandKind] = CommandKind.HELP
    lang: Lang
    topic: CommandKind | None = None


Command = Balance | TopUp | Pay | Bill | BankBalance | History | ChangePin | Stop | Start | Help

#: The syntax help that answers each command; general help answers ``help`` itself.
HELP_MESSAGES: Mapping[CommandKind, MessageId] = {
    CommandKind.BALANCE: MessageId.HELP_BALANCE,
    CommandKind.TOPUP: MessageId.HELP_TOPUP,
    CommandKind.PAY: MessageId.HELP_PAY,
    CommandKind.BILL: MessageId.HELP_BILL,
    CommandKind.BANK_BALANCE: MessageId.HELP_BANK_BALANCE,
    CommandKind.HISTORY: MessageId.HELP_HISTORY,
    CommandKind.CHANGE_PIN: MessageId.HELP_CHANGE_PIN,
    CommandKind.STOP: MessageId.HELP_STOP,
    CommandKind.START: MessageId.HELP_START,
    CommandKind.HELP: MessageId.HELP,
}


def help_message_id(topic: CommandKind | None) -> MessageId:
    """The help reply for ``topic`` (general help for None)."""
    return MessageId.HELP if topic is None else HELP_MESSAGES[topic]


# Keywords in their normalised form (NFKC, upper case, single spaces): Chinese, English, neutral.
_KEYWORDS: Mapping[CommandKind, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    CommandKind.BALANCE: (("余额", "查询", "查余额", "余额查询", "查询余额"), ("BAL", "BALANCE"), ()),
    CommandKind.TOPUP: (("充值", "充话费", "话费充值"), ("TOPUP", "TOP UP", "TOP-UP", "RECHARGE"), ()),
    CommandKind.PAY: (("付款", "转账", "转帐", "支付"), ("PAY", "SEND", "TRANSFER"), ()),
    CommandKind.BILL: (("缴费", "交费"), ("BILL", "PAYBILL"), ()),
    CommandKind.BANK_BALANCE: (("银行余额", "银行卡余额", "查银行余额"), ("BANKBAL", "BANK", "BANK BAL", "BANK BALANCE"), ()),
    CommandKind.HISTORY: (("明细", "账单", "帐单", "记录", "交易明细", "交易记录"), ("HIST", "HISTORY", "MINI"), ()),
    CommandKind.CHANGE_PIN: (("改密", "改密码", "修改密码"), ("PIN", "CHPIN"), ()),
    CommandKind.STOP: (("退订", "TD"), ("STOP", "UNSUBSCRIBE"), ()),
    CommandKind.START: (("订阅",), ("START", "SUBSCRIBE"), ()),
    CommandKind.HELP: (("帮助",), ("HELP", "H"), ("?",)),
}
# Longest first, so that BANKBAL wins over BANK and 余额查询 over 余额.
_KEYWORD_TABLE: tuple[tuple[str, CommandKind, Lang | None], ...] = tuple(
    sorted(
        (
            (word, kind, lang)
            for kind, (zh, en, neutral) in _KEYWORDS.items()
            for words, lang in ((zh, Lang.ZH), (en, Lang.EN), (neutral, None))
            for word in words
        ),
        key=lambda entry: -len(entry[0]),
    )
)

_BILLERS: Mapping[str, Biller] = {
    **dict.fromkeys(("水费", "水", "自来水", "WATER", "01", "1"), Biller.WATER),
    **dict.fromkeys(("电费", "电", "ELEC", "ELECTRIC", "ELECTRICITY", "POWER", "02", "2"), Biller.ELECTRICITY),
    **dict.fromkeys(("燃气", "煤气", "气费", "燃气费", "天然气", "GAS", "03", "3"), Biller.GAS),
    **dict.fromkeys(("话费", "电话费", "固话", "固话费", "PHONE", "TEL", "LANDLINE", "04", "4"), Biller.PHONE),
}
# Chinese biller words that may be glued to the account number, longest first.
_GLUED_BILLERS = tuple(sorted((w for w in _BILLERS if not w.isascii()), key=len, reverse=True))

_SEPARATORS = str.maketrans(dict.fromkeys(",、;#", " "))
_TRAILING = ".。!?~…"
_CURRENCY_PREFIXES = frozenset({"¥"})
_CURRENCY_SUFFIXES = frozenset({"元", "块", "块钱", "圆"})
_MERCHANT_PREFIXES = ("商户号", "商户")
_COUNTRY_PREFIXES = frozenset({"+86", "0086"})
_AMOUNT_RE = re.compile(r"(?:¥|RMB)?([0-9]{1,12})(?:\.([0-9]{1,12}))?(?:元|块钱|块|圆|RMB|YUAN)?")
_PIN_RE = re.compile(rf"[0-9]{{{PIN_DIGITS}}}")
_ACCOUNT_RE = re.compile(rf"[0-9A-Z]{{{ACCOUNT_CHARS_MIN},{ACCOUNT_CHARS_MAX}}}")
_CN_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
_E164_RE = re.compile(r"[1-9][0-9]{7,14}")
_DIGITS_RE = re.compile(r"\+?[0-9][0-9-]*")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3000 <= code <= 0x303F  # CJK symbols and punctuation
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0x4E00 <= code <= 0x9FFF  # unified ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # half-width and full-width forms
        or 0x20000 <= code <= 0x3FFFF  # extensions B onwards
    )


def is_weak_pin(pin: str) -> bool:
    """True for one digit repeated, a run up or down (wrapping 9→0), or a PIN of :data:`WEAK_PINS`."""
    if pin in WEAK_PINS:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({0}, {1}, {9})


def normalise_msisdn(token: str) -> str | None:
    """The international form (``86…``) of a number the grammar accepts, or None."""
    if _DIGITS_RE.fullmatch(token) is None:
        return None
    digits = token.replace("-", "")
    international = digits.startswith(("+", "00"))
    digits = digits[1:] if digits.startswith("+") else digits[2:] if international else digits
    if _CN_MOBILE_RE.fullmatch(digits):
        return "86" + digits
    if digits.startswith("86") and _CN_MOBILE_RE.fullmatch(digits[2:]):
        return digits
    if international and not digits.startswith("86") and _E164_RE.fullmatch(digits):
        return digits
    return None


def parse_amount_fen(token: str) -> int | None:
    """Fen of an amount token (``100``, ``100.5``, ``¥100``, ``100元`` …) in 1..AMOUNT_MAX_FEN, or None."""
    match = _AMOUNT_RE.fullmatch(token)
    if match is None:
        return None
    frac = match[2] or ""
    if len(frac) > 2:
        return None
    fen = int(match[1]) * 100 + int((frac + "00")[:2])
    return fen if 0 < fen <= AMOUNT_MAX_FEN else None


def _merchant(token: str) -> str | None:
    for prefix in _MERCHANT_PREFIXES:
        if token.startswith(prefix):
            token = "M" + token.removeprefix(prefix)
            break
    return token if MERCHANT_CODE_RE.fullmatch(token) else None


@dataclass(slots=True)
class _Context:
    """What an argument rule needs to build a command or a precise error."""

    kind: CommandKind
    lang: Lang
    args: list[str]

    def fail(self, message_id: MessageId, detail: str, params: Mapping[str, int | str] | None = None) -> CommandSyntaxError:
        return CommandSyntaxError(self.kind, self.lang, message_id, detail, params)

    def usage(self, detail: str) -> CommandSyntaxError:
        return self.fail(help_message_id(self.kind), detail)

    def want(self, *counts: int) -> None:
        if len(self.args) not in counts:
            raise self.usage(f"{self.kind.value} takes {' or '.join(map(str, counts))} arguments, got {len(self.args)}")

    def pin(self, token: str, what: str = "PIN") -> str:
        if _PIN_RE.fullmatch(token) is None:
            raise self.fail(MessageId.PIN_FORMAT, f"{what} is not {PIN_DIGITS} digits")
        return token

    def amount(self, token: str) -> int:
        fen = parse_amount_fen(token)
        if fen is None:
            raise self.fail(MessageId.AMOUNT_INVALID, "amount malformed, not positive or too large", {"max_fen": AMOUNT_MAX_FEN})
        return fen


def _pin_only(ctx: _Context) -> Command:
    ctx.want(1)
    pin = ctx.pin(ctx.args[0])
    if ctx.kind is CommandKind.BALANCE:
        return Balance(lang=ctx.lang, pin=pin)
    if ctx.kind is CommandKind.BANK_BALANCE:
        return BankBalance(lang=ctx.lang, pin=pin)
    return History(lang=ctx.lang, pin=pin)


def _topup(ctx: _Context) -> Command:
    ctx.want(2, 3)
    pin = ctx.pin(ctx.args[-1])
    if len(ctx.args) == 2:
        return TopUp(lang=ctx.lang, amount_fen=ctx.amount(ctx.args[0]), target=None, pin=pin)
    first, second = ctx.args[0], ctx.args[1]
    if normalise_msisdn(first) is not None and parse_amount_fen(second) is not None:
        first, second = second, first
    amount = ctx.amount(first)
    target = normalise_msisdn(second)
    if target is None:
        raise ctx.fail(MessageId.MSISDN_INVALID, "top-up target is not a mobile number")
    return TopUp(lang=ctx.lang, amount_fen=amount, target=target, pin=pin)


def _payee(token: str) -> tuple[PayeeKind, str] | None:
    merchant = _merchant(token)
    if merchant is not None:
        return PayeeKind.MERCHANT, merchant
    msisdn = normalise_msisdn(token)
    return (PayeeKind.MSISDN, msisdn) if msisdn is not None else None


def _pay(ctx: _Context) -> Command:
    ctx.want(3)
    pin = ctx.pin(ctx.args[2])
    first, second = ctx.args[0], ctx.args[1]
    if _payee(first) is None and _payee(second) is not None and parse_amount_fen(first) is not None:
        first, second = second, first
    payee = _payee(first)
    if payee is None:
        raise ctx.fail(MessageId.PAYEE_INVALID, "payee is neither a mobile number nor a merchant code")
    return Pay(lang=ctx.lang, payee_kind=payee[0], payee=payee[1], amount_fen=ctx.amount(second), pin=pin)


def _bill(ctx: _Context) -> Command:
    if len(ctx.args) == 3:
        # 电费1234567: a Chinese biller word glued to the account number.
        first = ctx.args[0]
        glued = next((w for w in _GLUED_BILLERS if first.startswith(w) and _ACCOUNT_RE.fullmatch(first[len(w) :])), None)
        if glued is not None:
            ctx.args[0:1] = [glued, first[len(glued) :]]
    ctx.want(4)
    pin = ctx.pin(ctx.args[3])
    biller = _BILLERS.get(ctx.args[0])
    if biller is None:
        raise ctx.fail(MessageId.BILLER_INVALID, "unknown biller")
    if _ACCOUNT_RE.fullmatch(ctx.args[1]) is None:
        raise ctx.fail(MessageId.ACCOUNT_INVALID, f"account is not {ACCOUNT_CHARS_MIN} to {ACCOUNT_CHARS_MAX} letters or digits")
    return Bill(lang=ctx.lang, biller=biller, account=ctx.args[1], amount_fen=ctx.amount(ctx.args[2]), pin=pin)


def _change_pin(ctx: _Context) -> Command:
    ctx.want(2, 3)
    old = ctx.pin(ctx.args[0], "old PIN")
    new = ctx.pin(ctx.args[1], "new PIN")
    if len(ctx.args) == 3 and ctx.pin(ctx.args[2], "repeated new PIN") != new:
        raise ctx.fail(MessageId.PIN_MISMATCH, "the repeated new PIN differs")
    if new == old:
        raise ctx.fail(MessageId.PIN_SAME, "the new PIN equals the old one")
    if is_weak_pin(new):
        raise ctx.fail(MessageId.PIN_WEAK, "the new PIN is too easy to guess")
    return ChangePin(lang=ctx.lang, old_pin=old, new_pin=new)


def _help(ctx: _Context) -> Command:
    found = _match_keyword(" ".join(ctx.args)) if ctx.args else None
    topic = found[1] if found is not None and found[1] is not CommandKind.HELP else None
    return Help(lang=ctx.lang, topic=topic)


_RULES: Mapping[CommandKind, Callable[[_Context], Command]] = {
    CommandKind.BALANCE: _pin_only,
    CommandKind.BANK_BALANCE: _pin_only,
    CommandKind.HISTORY: _pin_only,
    CommandKind.TOPUP: _topup,
    CommandKind.PAY: _pay,
    CommandKind.BILL: _bill,
    CommandKind.CHANGE_PIN: _change_pin,
    CommandKind.STOP: lambda ctx: Stop(lang=ctx.lang),
    CommandKind.START: lambda ctx: Start(lang=ctx.lang),
    CommandKind.HELP: _help,
}


def _match_keyword(body: str) -> tuple[str, CommandKind, Lang | None, str] | None:
    """(keyword, kind, its language, the rest) of the longest keyword ``body`` starts with."""
    for word, kind, lang in _KEYWORD_TABLE:
        if not body.startswith(word):
            continue
        rest = body[len(word) :]
        # An English keyword ends at a space or a digit: HELLO is not H + ELLO.
        if rest and word[-1].isascii() and word[-1].isalpha() and not (rest[0] == " " or rest[0].isdigit()):
            continue
        return word, kind, lang, rest
    return None


def _join_tokens(tokens: Sequence[str]) -> list[str]:
    """Tokens with a lone currency sign, unit, ``+86`` or ``商户`` joined to their number."""
    out: list[str] = []
    for token in tokens:
        previous = out[-1] if out else ""
        unit_after_number = token in _CURRENCY_SUFFIXES and previous[-1:].isdigit()
        number_after_prefix = previous in _CURRENCY_PREFIXES or previous in _MERCHANT_PREFIXES or previous in _COUNTRY_PREFIXES
        if unit_after_number or number_after_prefix:
            out[-1] += token
        else:
            out.append(token)
    return out


def parse_command(text: str) -> Command:
    """The command in an SMS ``text``; :class:`CommandSyntaxError` when there is none."""
    cjk = any(_is_cjk(char) for char in text[: COMMAND_CHARS_MAX + 1])
    fallback = Lang.ZH if cjk else Lang.EN
    if len(text) > COMMAND_CHARS_MAX:
        raise CommandSyntaxError(None, fallback, MessageId.HELP, f"text longer than {COMMAND_CHARS_MAX} characters")
    normal = unicodedata.normalize("NFKC", text).upper().translate(_SEPARATORS)
    body = " ".join(normal.split())
    if body.strip("?") == "" and body:
        return Help(lang=fallback)
    body = body.rstrip(_TRAILING).rstrip()
    found = _match_keyword(body)
    if found is None:
        raise CommandSyntaxError(None, fallback, MessageId.HELP, "no command keyword" if body else "empty message")
    _, kind, keyword_lang, rest = found
    ctx = _Context(kind, keyword_lang or fallback, _join_tokens(rest.split()))
    return _RULES[kind](ctx)
