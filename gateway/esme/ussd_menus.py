"""The USSD dialogue of one subscriber: its steps, what each says in both languages, how each reads the answer; USSD text size.

Spec: 3GPP TS 24.080 Annex A (``maxUSSD-StringLength`` = 160: a USSD string is
at most 160 octets); TS 23.038 §6.1.2.3.1 (USSD packing: 160 octets hold 182
septets), §6.2.1 (the GSM default alphabet), §6.2.3 (UCS2: two octets a unit,
so 80 units); SMPP 3.4 §5.2.19 (``data_coding``); the command language of
:mod:`simwallet.gateway.sms.commands`.

Theory of operation
-------------------
A :class:`Dialogue` is what one subscriber has chosen and typed so far and the
:class:`Step` that waits for the next answer. :func:`read_answer` hands the
answer to the step's handler (the table :data:`_READERS`), which returns the
next step, a :class:`Refusal` (a one-line error and the step to ask again), or
the finished :data:`~simwallet.gateway.sms.commands.Command`. :func:`prompt`
is the text that asks for a step. Sessions, operations, copies and time-outs
are :mod:`.ussd_channel`'s business; this module knows one dialogue only.

The checks use the grammar of the SMS commands (numbers, amounts, merchant
codes, accounts, PINs), so that what SMS accepts is accepted here too and
builds the same command. Every text is a :class:`Say` member holding its
Chinese and English template, so each is declared once and tested against the
USSD size. The service's answers are not here: they come from the shared
catalogue, cut by :func:`fit_ussd`. :func:`ussd_segment` encodes a text for
submit_sm: the GSM default alphabet unpacked (one septet per octet,
``data_coding`` 0x00, as the SMS replies of :mod:`simwallet.gateway.sms.segments`;
the USSD gateway packs it for the air) when every character is in it, else
UCS2 (0x08). USSD has no concatenation: a longer text is refused.

Decisions, each where the brief leaves room:

* The UCS2 limit is 80 units, not the 91 sometimes quoted: 91 units would be
  182 octets, beyond the 160 octets of ``maxUSSD-StringLength``.
* Numbers typed are shown back in full before the PIN (``向13800138001付款50.00元``):
  the subscriber must be able to check them, and holds the phone while the
  dialogue is open. The service's final answers keep the catalogue's masking.
* The English menu offers ``0 Chinese``, not ``0 中文``: one Chinese character
  makes the whole text UCS2, and the menu would no longer fit 80 units.
* ``0`` is never a valid answer (no amount, number, account or PIN is ``0``),
  so it means *back to the main menu* at every step; on the menu it switches
  the language. The main menu adds ``7 交易明细`` (history) to the six items of
  the brief, since SMS has the command too.
* The PIN is asked last, also for the inquiries (balance, bank balance,
  history), as in SMS; its prompt repeats what it confirms.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

from simwallet.applet.protocols.gsm7 import can_encode_gsm7, encode_gsm7
from simwallet.gateway.errors import GatewayError
from simwallet.gateway.sms.catalogue import Biller, Lang, format_money
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
    CommandKind,
    History,
    Pay,
    PayeeKind,
    TopUp,
    is_weak_pin,
    normalise_msisdn,
    parse_amount_fen,
)

# TS 24.080 Annex A: maxUSSD-StringLength, the octets of one USSD string.
USSD_STRING_OCTETS_MAX: Final = 160
# TS 23.038 §6.1.2.3.1: 160 octets hold 182 packed septets (an extension character takes two).
USSD_GSM_SEPTETS_MAX: Final = 182
# TS 23.038 §6.2.3: UCS2 takes two octets a unit, so 80 units (a surrogate pair counts two).
USSD_UCS2_UNITS_MAX: Final = USSD_STRING_OCTETS_MAX // 2
# SMPP 3.4 §5.2.19 data_coding of the two alphabets (the values of simwallet.gateway.sms.segments).
DATA_CODING_DEFAULT: Final = 0x00
DATA_CODING_UCS2: Final = 0x08
# An answer typed on a keypad is short; a longer one is junk, refused before any parsing.
ANSWER_CHARS_MAX: Final = 64
# The answer that goes back to the main menu (and, on the menu, switches the language).
BACK: Final = "0"
# What ends a text cut by fit_ussd: '…' in UCS2 text, three dots in GSM text (no '…' in the alphabet).
_ELLIPSIS_UCS2: Final = "…"
_ELLIPSIS_GSM: Final = "..."
_ACCOUNT_RE: Final = re.compile(rf"[0-9A-Z]{{{ACCOUNT_CHARS_MIN},{ACCOUNT_CHARS_MAX}}}")
_PIN_RE: Final = re.compile(rf"[0-9]{{{PIN_DIGITS}}}")
_MERCHANT_PREFIXES: Final = ("商户号", "商户")
_T = TypeVar("_T")


class UssdError(GatewayError):
    """Root of every error raised by the USSD channel modules."""

    code: str = "ussd_error"


class UssdUsageError(UssdError, ValueError):
    """This process misused the channel: bad bounds, a wrong argument, a text that cannot be sent."""

    code = "ussd_misuse"


class UssdTextTooLong(UssdUsageError):
    """A text beyond one USSD string (USSD has no concatenation): ``units`` of ``alphabet`` over ``limit``."""

    code = "ussd_text_too_long"

    def __init__(self, units: int, limit: int, alphabet: str) -> None:
        super().__init__(f"{units} {alphabet} units exceed the USSD limit of {limit}")
        self.units, self.limit, self.alphabet = units, limit, alphabet

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.units, self.limit, self.alphabet))


# --- size and encoding ---------------------------------------------------------------------------


def ussd_size(text: str) -> tuple[int, int, int]:
    """(data_coding, units used, units allowed): GSM septets, or UTF-16 units of UCS2."""
    if can_encode_gsm7(text):
        return DATA_CODING_DEFAULT, len(encode_gsm7(text)), USSD_GSM_SEPTETS_MAX
    return DATA_CODING_UCS2, len(text.encode("utf-16-be", "surrogatepass")) // 2, USSD_UCS2_UNITS_MAX


def fits_ussd(text: str) -> bool:
    _, used, limit = ussd_size(text)
    return used <= limit


def ussd_segment(text: str) -> tuple[int, bytes]:
    """(data_coding, short_message) of ``text``: unpacked GSM septets (0x00) or UCS2 big-endian (0x08).

    Raises :class:`UssdTextTooLong` beyond :data:`USSD_GSM_SEPTETS_MAX` septets
    or :data:`USSD_UCS2_UNITS_MAX` UCS2 units, :class:`UssdUsageError` for a
    lone surrogate (no UCS2 encoding).
    """
    coding, used, limit = ussd_size(text)
    if used > limit:
        raise UssdTextTooLong(used, limit, "GSM septet" if coding == DATA_CODING_DEFAULT else "UCS2")
    if coding == DATA_CODING_DEFAULT:
        return coding, encode_gsm7(text)
    try:
        return coding, text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise UssdUsageError(f"text holds a lone surrogate at index {exc.start}") from exc


def fit_ussd(text: str) -> str:
    """``text`` if it fits one USSD string, else cut to fit and ended by an ellipsis: after whole lines if any fit."""
    if fits_ussd(text):
        return text
    ellipsis = _ELLIPSIS_GSM if can_encode_gsm7(text) else _ELLIPSIS_UCS2
    lines = text.split("\n")
    # Whole lines first (a history keeps its latest entries whole), then characters.
    for keep in range(len(lines) - 1, 0, -1):
        candidate = "\n".join(lines[:keep]) + "\n" + ellipsis
        if fits_ussd(candidate):
            return candidate
    cut = len(text)
    while cut > 0 and not fits_ussd(text[:cut] + ellipsis):
        cut -= 1
    return text[:cut] + ellipsis


# --- what the channel says -----------------------------------------------------------------------


class Say(enum.Enum):
    """Every text the USSD channel writes itself: (Chinese, English) ``str.format`` templates."""

    MENU = (
        "手机钱包\n1 余额查询\n2 话费充值\n3 付款\n4 缴费\n5 银行卡余额\n6 修改密码\n7 交易明细\n0 English",
        "Mobile Wallet\n1 Balance\n2 Top up\n3 Pay\n4 Bills\n5 Bank balance\n6 Change PIN\n7 History\n0 Chinese",
    )
    TOPUP_WHO = ("话费充值\n1 为本机充值\n2 为其他号码充值\n0 返回", "Top up\n1 This phone\n2 Another number\n0 Back")
    TOPUP_NUMBER = ("请输入要充值的11位手机号\n0 返回", "Enter the mobile number to top up\n0 Back")
    TOPUP_AMOUNT = ("请输入充值金额（元）\n0 返回", "Enter the top-up amount in yuan\n0 Back")
    PAY_PAYEE = (
        "请输入收款方手机号或商户号（M加6至8位数字）\n0 返回",
        "Enter the payee's mobile number or merchant code (M and 6-8 digits)\n0 Back",
    )
    PAY_AMOUNT = ("请输入付款金额（元）\n0 返回", "Enter the amount to pay in yuan\n0 Back")
    BILL_BILLER = ("缴费\n1 水费\n2 电费\n3 燃气费\n4 固话费\n0 返回", "Bills\n1 Water\n2 Electricity\n3 Gas\n4 Phone\n0 Back")
    BILL_ACCOUNT = ("请输入{biller}户号（4至20位数字或字母）\n0 返回", "Enter the {biller} account number (4-20 letters or digits)\n0 Back")
    BILL_AMOUNT = ("请输入缴费金额（元）\n0 返回", "Enter the amount of the bill in yuan\n0 Back")
    OLD_PIN = ("修改密码\n请输入原6位钱包密码\n0 返回", "Change PIN\nEnter your current 6-digit PIN\n0 Back")
    NEW_PIN = (
        "请输入新密码（6位数字，勿用相同或连续数字）\n0 返回",
        "Enter a new 6-digit PIN (not one digit repeated, not a sequence)\n0 Back",
    )
    REPEAT_PIN = ("请再次输入新密码\n0 返回", "Enter the new PIN again\n0 Back")
    CONFIRM_PIN = ("{summary}\n请输入6位钱包密码确认\n0 返回", "{summary}\nEnter your 6-digit wallet PIN to confirm\n0 Back")
    # What the PIN confirms (the {summary} of CONFIRM_PIN).
    ABOUT_BALANCE = ("查询钱包余额", "Wallet balance")
    ABOUT_BANK_BALANCE = ("查询银行卡余额", "Bank card balance")
    ABOUT_HISTORY = ("查询交易明细", "Transaction history")
    ABOUT_TOPUP_SELF = ("为本机充值{amount}", "Top up {amount} to this phone")
    ABOUT_TOPUP_OTHER = ("为{number}充值{amount}", "Top up {amount} to {number}")
    ABOUT_PAY_MSISDN = ("向{number}付款{amount}", "Pay {amount} to {number}")
    ABOUT_PAY_MERCHANT = ("向商户{merchant}付款{amount}", "Pay {amount} to merchant {merchant}")
    ABOUT_BILL = ("{biller} 户号{account}\n缴费{amount}", "{biller} bill, account {account}: pay {amount}")
    # One-line errors put before the prompt they repeat.
    CHOICE_BAD = ("请输入菜单中的数字", "Please choose a number from the menu")
    NUMBER_BAD = ("手机号有误", "Invalid mobile number")
    AMOUNT_BAD = ("金额有误：须大于0，最多两位小数，不超过{max}", "Invalid amount: above 0, 2 decimals at most, up to {max}")
    PAYEE_BAD = ("收款方有误", "Invalid payee")
    ACCOUNT_BAD = ("户号有误", "Invalid account number")
    PIN_FORMAT = ("密码须为6位数字", "The PIN is 6 digits")
    PIN_WEAK = ("新密码过于简单", "That PIN is too easy to guess")
    PIN_SAME = ("新密码不能与原密码相同", "The new PIN must differ from the old one")
    PIN_MISMATCH = ("两次输入的新密码不一致", "The two new PINs differ")
    # The last word of a dialogue the channel ends itself.
    TOO_MANY_ERRORS = ("输入错误次数过多，请重新拨打{code}", "Too many wrong entries. Dial {code} to start again")
    TIMED_OUT = ("会话已超时，请重新拨打{code}", "Session timed out. Dial {code} to start again")
    ENDED = ("会话已结束，请重新拨打{code}", "Session ended. Dial {code} to start again")
    UNSUPPORTED = ("不支持该操作，请拨打{code}", "Unsupported request. Dial {code}")
    UNKNOWN_CODE = ("号码有误，请拨打{code}", "Unknown code. Dial {code}")


def say(what: Say, lang: Lang, **params: str) -> str:
    """The text ``what`` in ``lang`` with ``params`` (already text) filled in."""
    zh, en = what.value
    return (zh if lang is Lang.ZH else en).format_map(params)


def say_both(what: Say, **params: str) -> str:
    """The text in Chinese, then in English: for a subscriber whose language is unknown."""
    return say(what, Lang.ZH, **params) + "\n" + say(what, Lang.EN, **params)


_BILLER_NAMES: Mapping[Biller, tuple[str, str]] = {
    Biller.WATER: ("水费", "Water"),
    Biller.ELECTRICITY: ("电费", "Electricity"),
    Biller.GAS: ("燃气费", "Gas"),
    Biller.PHONE: ("固话费", "Phone"),
}


def biller_name(biller: Biller, lang: Lang) -> str:
    return _BILLER_NAMES[biller][0 if lang is Lang.ZH else 1]


def show_number(msisdn: str) -> str:
    """A number as typed: the 11 digits of a Chinese mobile, ``+`` and the E.164 digits otherwise."""
    return msisdn[2:] if msisdn.startswith("86") and len(msisdn) == 13 else "+" + msisdn


# --- reading answers -----------------------------------------------------------------------------


def normalise_answer(text: str) -> str:
    """An answer as the checks read it: NFKC (full-width digits and letters to ASCII), upper case, no spaces."""
    if len(text) > ANSWER_CHARS_MAX:
        return ""
    return "".join(unicodedata.normalize("NFKC", text).upper().split())


def parse_payee(answer: str) -> tuple[PayeeKind, str] | None:
    """A merchant code (``M123456``, ``商户123456``) or a mobile number, as the SMS grammar reads them, or None."""
    for prefix in _MERCHANT_PREFIXES:
        if answer.startswith(prefix):
            answer = "M" + answer.removeprefix(prefix)
            break
    if MERCHANT_CODE_RE.fullmatch(answer):
        return PayeeKind.MERCHANT, answer
    msisdn = normalise_msisdn(answer) if answer else None
    return (PayeeKind.MSISDN, msisdn) if msisdn is not None else None


def parse_pin(answer: str) -> str | None:
    """A PIN of :data:`PIN_DIGITS` ASCII digits (full-width ones already folded), or None."""
    return answer if _PIN_RE.fullmatch(answer) else None


# --- the dialogue ----------------------------------------------------------------------------------


class Step(enum.Enum):
    """The prompt a dialogue showed last, whose answer it waits for."""

    MENU = "menu"
    TOPUP_WHO = "topup_who"
    TOPUP_NUMBER = "topup_number"
    TOPUP_AMOUNT = "topup_amount"
    PAY_PAYEE = "pay_payee"
    PAY_AMOUNT = "pay_amount"
    BILL_BILLER = "bill_biller"
    BILL_ACCOUNT = "bill_account"
    BILL_AMOUNT = "bill_amount"
    OLD_PIN = "old_pin"
    NEW_PIN = "new_pin"
    REPEAT_PIN = "repeat_pin"
    PIN = "pin"


#: The main menu: the digit typed for each command.
MENU_CHOICES: Mapping[str, CommandKind] = {
    "1": CommandKind.BALANCE,
    "2": CommandKind.TOPUP,
    "3": CommandKind.PAY,
    "4": CommandKind.BILL,
    "5": CommandKind.BANK_BALANCE,
    "6": CommandKind.CHANGE_PIN,
    "7": CommandKind.HISTORY,
}
#: The bill menu: the digit typed for each biller (the order of the SMS codes 01..04).
BILLER_CHOICES: Mapping[str, Biller] = {"1": Biller.WATER, "2": Biller.ELECTRICITY, "3": Biller.GAS, "4": Biller.PHONE}
# The first step of each command.
FIRST_STEP: Mapping[CommandKind, Step] = {
    CommandKind.BALANCE: Step.PIN,
    CommandKind.BANK_BALANCE: Step.PIN,
    CommandKind.HISTORY: Step.PIN,
    CommandKind.TOPUP: Step.TOPUP_WHO,
    CommandKind.PAY: Step.PAY_PAYEE,
    CommandKind.BILL: Step.BILL_BILLER,
    CommandKind.CHANGE_PIN: Step.OLD_PIN,
}


@dataclass(slots=True)
class Dialogue:
    """What one subscriber chose and typed so far (PINs never in ``repr``), and the step waiting for an answer."""

    lang: Lang
    step: Step = Step.MENU
    flow: CommandKind | None = None
    amount_fen: int = 0
    target: str | None = None  # top-up: None for the subscriber's own number
    payee: tuple[PayeeKind, str] | None = None
    biller: Biller | None = None
    account: str = ""
    old_pin: str = field(default="", repr=False)
    new_pin: str = field(default="", repr=False)

    def start(self, flow: CommandKind | None) -> None:
        """Go to ``flow``'s first step (None: the main menu), forgetting what was collected."""
        self.step = Step.MENU if flow is None else FIRST_STEP[flow]
        self.flow, self.amount_fen, self.target, self.payee, self.biller, self.account = flow, 0, None, None, None, ""
        self.forget_pins()

    def forget_pins(self) -> None:
        self.old_pin = self.new_pin = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer not taken: the error line, and the step to ask again (None: the same)."""

    error: str
    back_to: Step | None = None


def _menu(d: Dialogue, answer: str) -> Step | Refusal:
    if answer == BACK:
        d.lang = Lang.EN if d.lang is Lang.ZH else Lang.ZH
        return Step.MENU
    if answer not in MENU_CHOICES:
        return Refusal(say(Say.CHOICE_BAD, d.lang))
    d.flow = MENU_CHOICES[answer]
    return FIRST_STEP[d.flow]


def _topup_who(d: Dialogue, answer: str) -> Step | Refusal:
    d.target = None
    return {"1": Step.TOPUP_AMOUNT, "2": Step.TOPUP_NUMBER}.get(answer) or Refusal(say(Say.CHOICE_BAD, d.lang))


def _topup_number(d: Dialogue, answer: str) -> Step | Refusal:
    d.target = normalise_msisdn(answer) if answer else None
    return Step.TOPUP_AMOUNT if d.target is not None else Refusal(say(Say.NUMBER_BAD, d.lang))


def _amount(d: Dialogue, answer: str) -> Step | Refusal:
    fen = parse_amount_fen(answer) if answer else None
    if fen is None:
        return Refusal(say(Say.AMOUNT_BAD, d.lang, max=format_money(AMOUNT_MAX_FEN, d.lang)))
    d.amount_fen = fen
    return Step.PIN


def _pay_payee(d: Dialogue, answer: str) -> Step | Refusal:
    d.payee = parse_payee(answer)
    return Step.PAY_AMOUNT if d.payee is not None else Refusal(say(Say.PAYEE_BAD, d.lang))


def _bill_biller(d: Dialogue, answer: str) -> Step | Refusal:
    d.biller = BILLER_CHOICES.get(answer)
    return Step.BILL_ACCOUNT if d.biller is not None else Refusal(say(Say.CHOICE_BAD, d.lang))


def _bill_account(d: Dialogue, answer: str) -> Step | Refusal:
    d.account = answer if _ACCOUNT_RE.fullmatch(answer) else ""
    return Step.BILL_AMOUNT if d.account else Refusal(say(Say.ACCOUNT_BAD, d.lang))


def _old_pin(d: Dialogue, answer: str) -> Step | Refusal:
    d.old_pin = parse_pin(answer) or ""
    return Step.NEW_PIN if d.old_pin else Refusal(say(Say.PIN_FORMAT, d.lang))


def _new_pin(d: Dialogue, answer: str) -> Step | Refusal:
    pin = parse_pin(answer)
    if pin is None or pin == d.old_pin or is_weak_pin(pin):
        problem = Say.PIN_FORMAT if pin is None else Say.PIN_SAME if pin == d.old_pin else Say.PIN_WEAK
        return Refusal(say(problem, d.lang))
    d.new_pin = pin
    return Step.REPEAT_PIN


def _repeat_pin(d: Dialogue, answer: str) -> Command | Refusal:
    pin = parse_pin(answer)
    if pin is None:
        return Refusal(say(Say.PIN_FORMAT, d.lang))
    if pin != d.new_pin:
        d.new_pin = ""
        return Refusal(say(Say.PIN_MISMATCH, d.lang), back_to=Step.NEW_PIN)
    return ChangePin(lang=d.lang, old_pin=d.old_pin, new_pin=pin)


# How the PIN step builds each command from the dialogue and the PIN.
_BUILDERS: Mapping[CommandKind, Callable[[Dialogue, str], Command]] = {
    CommandKind.BALANCE: lambda d, pin: Balance(lang=d.lang, pin=pin),
    CommandKind.BANK_BALANCE: lambda d, pin: BankBalance(lang=d.lang, pin=pin),
    CommandKind.HISTORY: lambda d, pin: History(lang=d.lang, pin=pin),
    CommandKind.TOPUP: lambda d, pin: TopUp(lang=d.lang, amount_fen=d.amount_fen, target=d.target, pin=pin),
    CommandKind.PAY: lambda d, pin: Pay(
        lang=d.lang, payee_kind=_known(d.payee)[0], payee=_known(d.payee)[1], amount_fen=d.amount_fen, pin=pin
    ),
    CommandKind.BILL: lambda d, pin: Bill(lang=d.lang, biller=_known(d.biller), account=d.account, amount_fen=d.amount_fen, pin=pin),
}


def _known(value: _T | None) -> _T:
    if value is None:
        raise UssdUsageError("a dialogue reached the PIN step without the values of its flow")
    return value


def _pin(d: Dialogue, answer: str) -> Command | Refusal:
    pin = parse_pin(answer)
    build = _BUILDERS.get(d.flow) if d.flow is not None else None
    if pin is None or build is None:
        return Refusal(say(Say.PIN_FORMAT, d.lang))
    return build(d, pin)


# The state table of answers: the handler of each step reads the answer to its prompt.
_READERS: Mapping[Step, Callable[[Dialogue, str], Step | Refusal | Command]] = {
    Step.MENU: _menu,
    Step.TOPUP_WHO: _topup_who,
    Step.TOPUP_NUMBER: _topup_number,
    Step.TOPUP_AMOUNT: _amount,
    Step.PAY_PAYEE: _pay_payee,
    Step.PAY_AMOUNT: _amount,
    Step.BILL_BILLER: _bill_biller,
    Step.BILL_ACCOUNT: _bill_account,
    Step.BILL_AMOUNT: _amount,
    Step.OLD_PIN: _old_pin,
    Step.NEW_PIN: _new_pin,
    Step.REPEAT_PIN: _repeat_pin,
    Step.PIN: _pin,
}


def read_answer(d: Dialogue, answer: str) -> Step | Refusal | Command:
    """The next step, a refusal, or the finished command, for ``answer`` (normalised) at ``d.step``."""
    return _READERS[d.step](d, answer)


# The prompt of each step that takes no parameters.
_PROMPTS: Mapping[Step, Say] = {
    Step.MENU: Say.MENU,
    Step.TOPUP_WHO: Say.TOPUP_WHO,
    Step.TOPUP_NUMBER: Say.TOPUP_NUMBER,
    Step.TOPUP_AMOUNT: Say.TOPUP_AMOUNT,
    Step.PAY_PAYEE: Say.PAY_PAYEE,
    Step.PAY_AMOUNT: Say.PAY_AMOUNT,
    Step.BILL_BILLER: Say.BILL_BILLER,
    Step.BILL_AMOUNT: Say.BILL_AMOUNT,
    Step.OLD_PIN: Say.OLD_PIN,
    Step.NEW_PIN: Say.NEW_PIN,
    Step.REPEAT_PIN: Say.REPEAT_PIN,
}
_ABOUT: Mapping[CommandKind, Say] = {
    CommandKind.BALANCE: Say.ABOUT_BALANCE,
    CommandKind.BANK_BALANCE: Say.ABOUT_BANK_BALANCE,
    CommandKind.HISTORY: Say.ABOUT_HISTORY,
}


def prompt(d: Dialogue) -> str:
    """The text that asks for the answer of ``d.step``."""
    if d.step is Step.BILL_ACCOUNT:
        return say(Say.BILL_ACCOUNT, d.lang, biller=biller_name(d.biller, d.lang) if d.biller is not None else "")
    if d.step is Step.PIN:
        return say(Say.CONFIRM_PIN, d.lang, summary=_summary(d))
    return say(_PROMPTS[d.step], d.lang)


def _summary(d: Dialogue) -> str:
    """What the PIN confirms, with the values typed."""
    lang, amount = d.lang, format_money(d.amount_fen, d.lang)
    if d.flow is CommandKind.TOPUP:
        if d.target is None:
            return say(Say.ABOUT_TOPUP_SELF, lang, amount=amount)
        return say(Say.ABOUT_TOPUP_OTHER, lang, amount=amount, number=show_number(d.target))
    if d.flow is CommandKind.PAY and d.payee is not None:
        kind, payee = d.payee
        if kind is PayeeKind.MERCHANT:
            return say(Say.ABOUT_PAY_MERCHANT, lang, amount=amount, merchant=payee)
        return say(Say.ABOUT_PAY_MSISDN, lang, amount=amount, number=show_number(payee))
    if d.flow is CommandKind.BILL and d.biller is not None:
        return say(Say.ABOUT_BILL, lang, amount=amount, biller=biller_name(d.biller, lang), account=d.account)
    return say(_ABOUT.get(d.flow or CommandKind.BALANCE, Say.ABOUT_BALANCE), lang)
