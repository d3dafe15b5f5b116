"""The wallet applet's dialogues with the user: sans-I/O proactive sessions, one generator per menu item.

Spec: ETSI TS 102 223 §6.4.1 DISPLAY TEXT, §6.4.3 GET INPUT (qualifier b1 = 0:
digits 0-9 * # + only; b3 = 1: hidden input, for the PIN), §6.4.9 SELECT ITEM,
§6.4.10 SEND SHORT MESSAGE (3GPP TS 31.111 §6.4.10: an SMS-SUBMIT TPDU the ME
sends as it is, with its own TP-MR), §6.11 / §8.12 (the general results: 0X
performed, 10 terminated by the user, 11 backward move, 12 no response).

Theory of operation
-------------------
Each flow is a generator (``Session`` of :mod:`.toolkit`): it yields a
proactive command and receives the handset's terminal response; helpers that
return a value are used with ``yield from``. A result other than "performed"
(the user pressed back or end, the terminal could not do it) ends the flow
quietly. The flow asks the applet (:class:`WalletActions`) for every effect:
checking the PIN (the try counter is the applet's, persisted before the
verdict), changing it, and building the secured SMS-SUBMIT (the counter is
persisted before the packet leaves the card). The texts are the applet's own
in Chinese and English; the menu texts come with personalization.

Amounts are typed in whole yuan (GET INPUT offers digits only) and sent in
fen.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from simwallet.applet.protocols.cat import (
    DisplayText,
    DisplayTextQualifier,
    GetInput,
    GetInputQualifier,
    Item,
    ProactiveCommand,
    ResponseLength,
    SelectItem,
    SendShortMessage,
    TerminalResponse,
    TextString,
)
from simwallet.applet.protocols.wallet_messages import (
    ACCOUNT_DIGITS_MAX,
    CODE_DIGITS_MAX,
    MSISDN_DIGITS_MAX,
    MSISDN_DIGITS_MIN,
    PIN_DIGITS_MAX,
    PIN_DIGITS_MIN,
    Operation,
    WalletResponse,
)

# Whole yuan a user may type: six digits (999,999 yuan) keeps within any wallet limit.
AMOUNT_YUAN_DIGITS_MAX: Final = 6
FEN_PER_YUAN: Final = 100
# HISTORY asks for this many recent transactions: what one SMS of text can list.
HISTORY_COUNT: Final = 5
# The languages the applet has its own texts in; any other falls back to English.
UI_LANGUAGES: Final = ("zh", "en")

Flow = Generator[ProactiveCommand, TerminalResponse, None]
Step = Generator[ProactiveCommand, TerminalResponse, Any]


@dataclass(frozen=True)
class Texts:
    """The applet's own texts in one language."""

    locked: str
    just_locked: str
    enter_pin: str
    wrong_pin: str
    amount: str
    msisdn: str
    merchant: str
    biller: str
    account: str
    top_up_title: str
    top_up_self: str
    top_up_other: str
    pay_title: str
    pay_person: str
    pay_merchant: str
    old_pin: str
    new_pin: str
    new_pin_again: str
    pin_mismatch: str
    pin_changed: str
    sending: str
    please_wait: str
    send_failed: str
    invalid: str
    unavailable: str


TEXTS: Final[dict[str, Texts]] = {
    "zh": Texts(
        locked="钱包已锁定，请携带身份证件到营业厅解锁。",
        just_locked="密码错误次数过多，钱包已锁定，请到营业厅解锁。",
        enter_pin="请输入钱包密码",
        wrong_pin="密码错误，还可尝试{tries}次",
        amount="请输入金额（元）",
        msisdn="请输入手机号码",
        merchant="请输入商户编号",
        biller="请输入缴费单位编号",
        account="请输入缴费账号",
        top_up_title="话费充值",
        top_up_self="为本机充值",
        top_up_other="为其他号码充值",
        pay_title="付款",
        pay_person="付款给手机号",
        pay_merchant="付款给商户",
        old_pin="请输入原密码",
        new_pin="请输入新密码（4至6位数字）",
        new_pin_again="请再次输入新密码",
        pin_mismatch="两次输入的新密码不一致，密码未修改。",
        pin_changed="密码已修改。",
        sending="正在发送",
        please_wait="请求已发送，请稍候……",
        send_failed="发送失败，请稍后再试。",
        invalid="输入有误。",
        unavailable="服务暂不可用。",
    ),
    "en": Texts(
        locked="Wallet locked. Please bring your ID to a service hall to unlock it.",
        just_locked="Too many wrong PINs: the wallet is locked. Please visit a service hall.",
        enter_pin="Enter wallet PIN",
        wrong_pin="Wrong PIN. {tries} tries left.",
        amount="Enter amount (yuan)",
        msisdn="Enter mobile number",
        merchant="Enter merchant code",
        biller="Enter biller code",
        account="Enter account number",
        top_up_title="Top up",
        top_up_self="This phone",
        top_up_other="Another number",
        pay_title="Pay",
        pay_person="Pay a mobile number",
        pay_merchant="Pay a merchant",
        old_pin="Enter current PIN",
        new_pin="Enter new PIN (4 to 6 digits)",
        new_pin_again="Enter new PIN again",
        pin_mismatch="The new PINs differ; the PIN is unchanged.",
        pin_changed="PIN changed.",
        sending="Sending",
        please_wait="Request sent. Please wait...",
        send_failed="Sending failed. Please try again later.",
        invalid="Invalid input.",
        unavailable="Service unavailable.",
    ),
}

# The menu of a wallet personalized without one: (item id, operation, {language: text}).
DEFAULT_MENU_TITLES: Final = {"zh": "手机钱包", "en": "Mobile Wallet"}
DEFAULT_MENU: Final[tuple[tuple[int, Operation, dict[str, str]], ...]] = (
    (1, Operation.BALANCE, {"zh": "余额查询", "en": "Balance"}),
    (2, Operation.TOP_UP, {"zh": "话费充值", "en": "Top up"}),
    (3, Operation.PAY, {"zh": "付款", "en": "Pay"}),
    (4, Operation.BILL, {"zh": "缴费", "en": "Bills"}),
    (5, Operation.BANK_BALANCE, {"zh": "银行卡余额", "en": "Bank balance"}),
    (6, Operation.PIN_CHANGED, {"zh": "修改密码", "en": "Change PIN"}),
)


def texts_for(language: str) -> Texts:
    return TEXTS.get(language, TEXTS["en"])


class PinVerdict(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def tries_left(self) -> int: ...


class WalletActions(Protocol):
    """What the flows ask of the applet."""

    @property
    def locked(self) -> bool: ...

    def verify_pin(self, pin: str) -> PinVerdict:
        """Count the try (persisted first), compare; a right PIN restores the tries."""
        ...

    def change_pin(self, pin: str) -> None: ...

    def prepare_request(self, operation: Operation, language: str, fields: dict[str, Any]) -> bytes | None:
        """The SMS-SUBMIT TPDU of the request (its counter already persisted), or None when none can be sent."""
        ...


def _text(text: str) -> TextString:
    return TextString.auto(text)


def show(text: str, *, wait: bool = False) -> DisplayText:
    """DISPLAY TEXT: ``wait`` keeps it until the user clears it; otherwise it answers at once (the session ends)."""
    if wait:
        return DisplayText(text=_text(text), qualifier=DisplayTextQualifier.WAIT_FOR_USER_CLEAR)
    return DisplayText(text=_text(text), immediate_response=True)


def _performed(answer: TerminalResponse) -> bool:
    return answer.result.succeeded


def ask_digits(prompt: str, minimum: int, maximum: int, *, hidden: bool = False) -> Step:
    """GET INPUT of ``minimum``..``maximum`` digits; the digits, or None when the user gave up or typed others."""
    qualifier = GetInputQualifier.HIDDEN if hidden else 0
    answer = yield GetInput(text=_text(prompt), response_length=ResponseLength(minimum, maximum), qualifier=qualifier)
    if not _performed(answer) or answer.text is None:
        return None
    value = answer.text.text or ""
    if not (value.isascii() and value.isdigit() and minimum <= len(value) <= maximum):
        return ""
    return value


def choose(title: str, options: tuple[str, ...]) -> Step:
    """SELECT ITEM among ``options``; the index chosen, or None."""
    items = tuple(Item(index + 1, text) for index, text in enumerate(options))
    answer = yield SelectItem(title=title, items=items)
    if not _performed(answer) or answer.item_identifier is None or not 1 <= answer.item_identifier <= len(options):
        return None
    return answer.item_identifier - 1


def _digits_or_stop(value: str | None, texts: Texts) -> Step:
    """None when the user left; an invalid entry is shown and also stops the flow."""
    if value == "":
        yield show(texts.invalid, wait=True)
        return None
    return value


def session(wallet: WalletActions, operation: Operation, language: str) -> Flow:
    """The dialogue behind one menu item, from the first prompt to "please wait"."""
    texts = texts_for(language)
    if wallet.locked:
        yield show(texts.locked, wait=True)
        return
    if operation is Operation.PIN_CHANGED:
        yield from _change_pin(wallet, language, texts)
        return
    fields = yield from _fields(operation, texts)
    if fields is None:
        return
    if not (yield from _pin(wallet, texts)):
        return
    yield from _send(wallet, operation, language, fields, texts, texts.please_wait)


# The operations that move money ask for an amount last.
_WITH_AMOUNT: Final = frozenset({Operation.TOP_UP, Operation.PAY, Operation.BILL})
Question = tuple[str, str, int, int]


def _questions(operation: Operation, texts: Texts) -> Step:
    """The fields to ask before the amount, as (name, prompt, minimum, maximum) digits; None when the user stopped."""
    msisdn: Question = ("msisdn", texts.msisdn, MSISDN_DIGITS_MIN, MSISDN_DIGITS_MAX)
    if operation is Operation.TOP_UP:
        choice = yield from choose(texts.top_up_title, (texts.top_up_self, texts.top_up_other))
        return None if choice is None else [msisdn] if choice == 1 else []
    if operation is Operation.PAY:
        choice = yield from choose(texts.pay_title, (texts.pay_person, texts.pay_merchant))
        merchant: Question = ("merchant", texts.merchant, 1, CODE_DIGITS_MAX)
        return None if choice is None else [msisdn] if choice == 0 else [merchant]
    if operation is Operation.BILL:
        return [("biller", texts.biller, 1, CODE_DIGITS_MAX), ("account", texts.account, 1, ACCOUNT_DIGITS_MAX)]
    return []


def _fields(operation: Operation, texts: Texts) -> Step:
    """The request's fields, asked for in order; None when the user stopped."""
    questions = yield from _questions(operation, texts)
    if questions is None:
        return None
    fields: dict[str, Any] = {"count": HISTORY_COUNT} if operation is Operation.HISTORY else {}
    for name, prompt, minimum, maximum in questions:
        if not (yield from _ask(fields, name, prompt, minimum, maximum, texts)):
            return None
    if operation in _WITH_AMOUNT:
        if not (yield from _ask(fields, "amount_fen", texts.amount, 1, AMOUNT_YUAN_DIGITS_MAX, texts)):
            return None
        if int(fields["amount_fen"]) == 0:
            yield show(texts.invalid, wait=True)
            return None
        fields["amount_fen"] = int(fields["amount_fen"]) * FEN_PER_YUAN
    return fields


def _ask(fields: dict[str, Any], name: str, prompt: str, minimum: int, maximum: int, texts: Texts) -> Step:
    value = yield from _digits_or_stop((yield from ask_digits(prompt, minimum, maximum)), texts)
    if value is None:
        return False
    fields[name] = value
    return True


def _pin(wallet: WalletActions, texts: Texts, prompt: str | None = None) -> Step:
    """Ask for the wallet PIN and check it; False (after saying why) unless it is right."""
    pin = yield from _digits_or_stop((yield from ask_digits(prompt or texts.enter_pin, PIN_DIGITS_MIN, PIN_DIGITS_MAX, hidden=True)), texts)
    if pin is None:
        return False
    verdict = wallet.verify_pin(pin)
    if verdict.ok:
        return True
    yield show(texts.just_locked if verdict.tries_left == 0 else texts.wrong_pin.format(tries=verdict.tries_left), wait=True)
    return False


def _change_pin(wallet: WalletActions, language: str, texts: Texts) -> Step:
    if not (yield from _pin(wallet, texts, texts.old_pin)):
        return
    first = yield from _digits_or_stop((yield from ask_digits(texts.new_pin, PIN_DIGITS_MIN, PIN_DIGITS_MAX, hidden=True)), texts)
    if first is None:
        return
    second = yield from _digits_or_stop((yield from ask_digits(texts.new_pin_again, PIN_DIGITS_MIN, PIN_DIGITS_MAX, hidden=True)), texts)
    if second is None:
        return
    if first != second:
        yield show(texts.pin_mismatch, wait=True)
        return
    wallet.change_pin(first)
    yield from _send(wallet, Operation.PIN_CHANGED, language, {}, texts, texts.pin_changed)


def _send(wallet: WalletActions, operation: Operation, language: str, fields: dict[str, Any], texts: Texts, done: str) -> Step:
    tpdu = wallet.prepare_request(operation, language, fields)
    if tpdu is None:
        yield show(texts.unavailable, wait=True)
        return
    answer = yield SendShortMessage(tpdu=tpdu, alpha=texts.sending)
    if _performed(answer):
        yield show(done)
    else:
        yield show(texts.send_failed, wait=True)


def show_response(response: WalletResponse) -> Flow:
    """The backend's answer on the screen until the user clears it."""
    yield DisplayText(text=response.text, qualifier=DisplayTextQualifier.WAIT_FOR_USER_CLEAR)
