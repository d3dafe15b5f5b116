"""The SMS command language (gateway/sms/commands.py): valid forms, refusals, language, PIN secrecy."""

from __future__ import annotations

import contextlib
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.gateway.sms.catalogue import Biller, Lang, MessageId, render
from simwallet.gateway.sms.commands import (
    AMOUNT_MAX_FEN,
    COMMAND_CHARS_MAX,
    HELP_MESSAGES,
    PIN_DIGITS,
    WEAK_PINS,
    Balance,
    BankBalance,
    Bill,
    ChangePin,
    Command,
    CommandKind,
    Help,
    History,
    Pay,
    PayeeKind,
    Start,
    Stop,
    TopUp,
    help_message_id,
    is_weak_pin,
    normalise_msisdn,
    parse_amount_fen,
    parse_command,
)
from simwallet.gateway.sms.errors import CommandSyntaxError, SmsError

# A PIN that no fixed text of the parser or the catalogue contains.
PIN = "739251"
NEW = "482916"
ZH, EN = Lang.ZH, Lang.EN

VALID: list[tuple[str, Command]] = [
    # Balance, both languages, synonyms, case, glued, full-width, punctuation.
    ("余额 739251", Balance(lang=ZH, pin=PIN)),
    ("查询 739251", Balance(lang=ZH, pin=PIN)),
    ("查余额739251", Balance(lang=ZH, pin=PIN)),
    ("余额739251。", Balance(lang=ZH, pin=PIN)),
    ("BAL 739251", Balance(lang=EN, pin=PIN)),
    ("bal 739251", Balance(lang=EN, pin=PIN)),
    ("Balance   739251 ", Balance(lang=EN, pin=PIN)),
    ("BAL739251", Balance(lang=EN, pin=PIN)),
    ("bal,739251!", Balance(lang=EN, pin=PIN)),
    ("ｂａｌ　７３９２５１", Balance(lang=EN, pin=PIN)),
    ("余额　７３９２５１", Balance(lang=ZH, pin=PIN)),
    # Top-up: self, other number in either order, amount forms.
    ("充值 100 739251", TopUp(lang=ZH, amount_fen=10000, target=None, pin=PIN)),
    ("充话费 100元 739251", TopUp(lang=ZH, amount_fen=10000, target=None, pin=PIN)),
    ("充值 100 元 739251", TopUp(lang=ZH, amount_fen=10000, target=None, pin=PIN)),
    ("充值 ¥100 739251", TopUp(lang=ZH, amount_fen=10000, target=None, pin=PIN)),
    ("充值 ￥100.5 739251", TopUp(lang=ZH, amount_fen=10050, target=None, pin=PIN)),
    ("充值 100块，13800138000，739251", TopUp(lang=ZH, amount_fen=10000, target="8613800138000", pin=PIN)),
    ("充值 13800138000 100 739251", TopUp(lang=ZH, amount_fen=10000, target="8613800138000", pin=PIN)),
    ("TOPUP 100.50 739251", TopUp(lang=EN, amount_fen=10050, target=None, pin=PIN)),
    ("top up 30 +8613800138000 739251", TopUp(lang=EN, amount_fen=3000, target="8613800138000", pin=PIN)),
    ("RECHARGE 30 +86 138-0013-8000 739251", TopUp(lang=EN, amount_fen=3000, target="8613800138000", pin=PIN)),
    ("TOP-UP 0.01 0086 13800138000 739251", TopUp(lang=EN, amount_fen=1, target="8613800138000", pin=PIN)),
    # Pay: MSISDN or merchant code, either order.
    ("付款 13800138000 50 739251", Pay(lang=ZH, payee_kind=PayeeKind.MSISDN, payee="8613800138000", amount_fen=5000, pin=PIN)),
    ("转账 50 13800138000 739251", Pay(lang=ZH, payee_kind=PayeeKind.MSISDN, payee="8613800138000", amount_fen=5000, pin=PIN)),
    ("支付 商户123456 12.5 739251", Pay(lang=ZH, payee_kind=PayeeKind.MERCHANT, payee="M123456", amount_fen=1250, pin=PIN)),
    ("支付 商户号 12345678 12.5 739251", Pay(lang=ZH, payee_kind=PayeeKind.MERCHANT, payee="M12345678", amount_fen=1250, pin=PIN)),
    ("PAY m123456 8 739251", Pay(lang=EN, payee_kind=PayeeKind.MERCHANT, payee="M123456", amount_fen=800, pin=PIN)),
    ("send +447700900123 8 739251", Pay(lang=EN, payee_kind=PayeeKind.MSISDN, payee="447700900123", amount_fen=800, pin=PIN)),
    ("TRANSFER 8 M1234567 739251", Pay(lang=EN, payee_kind=PayeeKind.MERCHANT, payee="M1234567", amount_fen=800, pin=PIN)),
    # Bill: every biller by word and code, glued biller.
    ("缴费 水费 123456789 88 739251", Bill(lang=ZH, biller=Biller.WATER, account="123456789", amount_fen=8800, pin=PIN)),
    ("交费 电 0001234 88 739251", Bill(lang=ZH, biller=Biller.ELECTRICITY, account="0001234", amount_fen=8800, pin=PIN)),
    ("缴费 电费1234567 100 739251", Bill(lang=ZH, biller=Biller.ELECTRICITY, account="1234567", amount_fen=10000, pin=PIN)),
    ("缴费 煤气 ab1234 100 739251", Bill(lang=ZH, biller=Biller.GAS, account="AB1234", amount_fen=10000, pin=PIN)),
    ("缴费 固话 02112345678 100 739251", Bill(lang=ZH, biller=Biller.PHONE, account="02112345678", amount_fen=10000, pin=PIN)),
    ("BILL 03 1234 1 739251", Bill(lang=EN, biller=Biller.GAS, account="1234", amount_fen=100, pin=PIN)),
    ("PAYBILL power 1234 1 739251", Bill(lang=EN, biller=Biller.ELECTRICITY, account="1234", amount_fen=100, pin=PIN)),
    ("bill 4 1234 1 739251", Bill(lang=EN, biller=Biller.PHONE, account="1234", amount_fen=100, pin=PIN)),
    # Bank balance, history.
    ("银行余额 739251", BankBalance(lang=ZH, pin=PIN)),
    ("银行卡余额739251", BankBalance(lang=ZH, pin=PIN)),
    ("BANKBAL 739251", BankBalance(lang=EN, pin=PIN)),
    ("bank 739251", BankBalance(lang=EN, pin=PIN)),
    ("BANK BAL 739251", BankBalance(lang=EN, pin=PIN)),
    ("明细 739251", History(lang=ZH, pin=PIN)),
    ("账单 739251", History(lang=ZH, pin=PIN)),
    ("记录 739251", History(lang=ZH, pin=PIN)),
    ("MINI 739251", History(lang=EN, pin=PIN)),
    ("hist 739251", History(lang=EN, pin=PIN)),
    # PIN change with and without the repeat.
    ("改密 739251 482916 482916", ChangePin(lang=ZH, old_pin=PIN, new_pin=NEW)),
    ("修改密码 739251 482916", ChangePin(lang=ZH, old_pin=PIN, new_pin=NEW)),
    ("PIN 739251 482916 482916", ChangePin(lang=EN, old_pin=PIN, new_pin=NEW)),
    ("chpin 739251,482916", ChangePin(lang=EN, old_pin=PIN, new_pin=NEW)),
    # Opt-out and opt-in, trailing words ignored.
    ("退订", Stop(lang=ZH)),
    ("TD", Stop(lang=ZH)),
    ("td qb", Stop(lang=ZH)),
    ("STOP", Stop(lang=EN)),
    ("unsubscribe.", Stop(lang=EN)),
    ("订阅", Start(lang=ZH)),
    ("START", Start(lang=EN)),
    ("subscribe", Start(lang=EN)),
    # Help in general and on a topic.
    ("帮助", Help(lang=ZH)),
    ("帮助 充值", Help(lang=ZH, topic=CommandKind.TOPUP)),
    ("帮助付款", Help(lang=ZH, topic=CommandKind.PAY)),
    ("?", Help(lang=EN)),
    ("？", Help(lang=ZH)),
    ("? bal", Help(lang=EN, topic=CommandKind.BALANCE)),
    ("HELP", Help(lang=EN)),
    ("help top up", Help(lang=EN, topic=CommandKind.TOPUP)),
    ("H BILL", Help(lang=EN, topic=CommandKind.BILL)),
    ("HELP 余额", Help(lang=EN, topic=CommandKind.BALANCE)),
    ("HELP nonsense", Help(lang=EN)),
    ("help help", Help(lang=EN)),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text for text, _ in VALID])
def test_valid_commands(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


INVALID: list[tuple[str, CommandKind | None, Lang, MessageId]] = [
    ("", None, EN, MessageId.HELP),
    ("   ", None, EN, MessageId.HELP),
    ("HELLO 739251", None, EN, MessageId.HELP),
    ("你好", None, ZH, MessageId.HELP),
    ("hello，你好", None, ZH, MessageId.HELP),
    ("ｘｙｚ", None, ZH, MessageId.HELP),
    ("余额", CommandKind.BALANCE, ZH, MessageId.HELP_BALANCE),
    ("BAL 739251 739251", CommandKind.BALANCE, EN, MessageId.HELP_BALANCE),
    ("BAL 73925", CommandKind.BALANCE, EN, MessageId.PIN_FORMAT),
    ("BAL 7392511", CommandKind.BALANCE, EN, MessageId.PIN_FORMAT),
    ("BAL abcdef", CommandKind.BALANCE, EN, MessageId.PIN_FORMAT),
    ("充值 739251", CommandKind.TOPUP, ZH, MessageId.HELP_TOPUP),
    ("充值 100 13800138000", CommandKind.TOPUP, ZH, MessageId.PIN_FORMAT),
    ("TOPUP 0 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 0.00 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP -5 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 1.005 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 1.500 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 1e3 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP .5 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 50000.01 739251", CommandKind.TOPUP, EN, MessageId.AMOUNT_INVALID),
    ("TOPUP 100 12345 739251", CommandKind.TOPUP, EN, MessageId.MSISDN_INVALID),
    ("TOPUP 100 +8602112345678 739251", CommandKind.TOPUP, EN, MessageId.MSISDN_INVALID),
    ("TOPUP 100 447700900123 739251", CommandKind.TOPUP, EN, MessageId.MSISDN_INVALID),
    ("PAY 13800138000 739251", CommandKind.PAY, EN, MessageId.HELP_PAY),
    ("PAY M12345 5 739251", CommandKind.PAY, EN, MessageId.PAYEE_INVALID),
    ("PAY M123456789 5 739251", CommandKind.PAY, EN, MessageId.PAYEE_INVALID),
    ("付款 5 5 739251", CommandKind.PAY, ZH, MessageId.PAYEE_INVALID),
    ("付款 13800138000 0 739251", CommandKind.PAY, ZH, MessageId.AMOUNT_INVALID),
    ("缴费 网费 1234 5 739251", CommandKind.BILL, ZH, MessageId.BILLER_INVALID),
    ("缴费 05 1234 5 739251", CommandKind.BILL, ZH, MessageId.BILLER_INVALID),
    ("缴费 水费 123 5 739251", CommandKind.BILL, ZH, MessageId.ACCOUNT_INVALID),
    ("缴费 水费 1234567890123456789012 5 739251", CommandKind.BILL, ZH, MessageId.ACCOUNT_INVALID),
    ("缴费 水费 1234 5", CommandKind.BILL, ZH, MessageId.HELP_BILL),
    ("BILL WATER 1234 5.555 739251", CommandKind.BILL, EN, MessageId.AMOUNT_INVALID),
    ("银行余额", CommandKind.BANK_BALANCE, ZH, MessageId.HELP_BANK_BALANCE),
    ("HIST", CommandKind.HISTORY, EN, MessageId.HELP_HISTORY),
    ("改密 739251", CommandKind.CHANGE_PIN, ZH, MessageId.HELP_CHANGE_PIN),
    ("改密 739251 48291", CommandKind.CHANGE_PIN, ZH, MessageId.PIN_FORMAT),
    ("PIN 739251 482916 482917", CommandKind.CHANGE_PIN, EN, MessageId.PIN_MISMATCH),
    ("PIN 739251 739251", CommandKind.CHANGE_PIN, EN, MessageId.PIN_SAME),
    ("PIN 739251 123456 123456", CommandKind.CHANGE_PIN, EN, MessageId.PIN_WEAK),
    ("PIN 739251 000000", CommandKind.CHANGE_PIN, EN, MessageId.PIN_WEAK),
    ("改密 739251 654321", CommandKind.CHANGE_PIN, ZH, MessageId.PIN_WEAK),
    ("改密 739251 890123", CommandKind.CHANGE_PIN, ZH, MessageId.PIN_WEAK),
    ("BAL " + "1" * COMMAND_CHARS_MAX, None, EN, MessageId.HELP),
]


@pytest.mark.parametrize(("text", "command", "lang", "message_id"), INVALID, ids=[text[:40] for text, *_ in INVALID])
def test_refused_commands(text: str, command: CommandKind | None, lang: Lang, message_id: MessageId) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(text)
    err = info.value
    assert (err.command, err.lang, err.message_id) == (command, lang, message_id)
    assert isinstance(err, SmsError)
    assert isinstance(err, ValueError)
    # The error carries everything its reply needs.
    assert render(err.message_id, err.lang, **err.params)


def test_amount_error_names_the_limit() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("TOPUP 99999 739251")
    assert info.value.params == {"max_fen": AMOUNT_MAX_FEN}
    assert "50,000.00" in render(info.value.message_id, info.value.lang, **info.value.params)


def test_error_pickles_and_reads_well() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("PAY M12 5 739251")
    err = info.value
    assert str(err) == "sms_syntax [pay, en, reply payee_invalid]: payee is neither a mobile number nor a merchant code"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.command, copy.lang, copy.message_id, copy.detail) == (err.command, err.lang, err.message_id, err.detail)


# ------------------------------------------------------------------ pieces


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("13800138000", "8613800138000"),
        ("8613800138000", "8613800138000"),
        ("+8613800138000", "8613800138000"),
        ("008613800138000", "8613800138000"),
        ("138-0013-8000", "8613800138000"),
        ("19912345678", "8619912345678"),
        ("+447700900123", "447700900123"),
        ("00447700900123", "447700900123"),
        ("+12025550123", "12025550123"),
        ("12800138000", None),  # no Chinese mobile prefix 12
        ("1380013800", None),  # 10 digits
        ("+8602112345678", None),  # a Chinese landline
        ("447700900123", None),  # a foreign number without + or 00
        ("+0447700900", None),
        ("+1234567", None),  # 7 digits: shorter than any E.164 number used here
        ("+1234567890123456", None),  # 16 digits: longer than E.164 allows
        ("M123456", None),
        ("", None),
    ],
)
def test_msisdn_normalisation(token: str, expected: str | None) -> None:
    assert normalise_msisdn(token) == expected


@pytest.mark.parametrize(
    ("token", "fen"),
    [
        ("1", 100),
        ("0.01", 1),
        ("100.5", 10050),
        ("100.50", 10050),
        ("100元", 10000),
        ("100块", 10000),
        ("100块钱", 10000),
        ("¥100", 10000),
        ("RMB8", 800),
        ("8YUAN", 800),
        ("0100", 10000),
        (str(AMOUNT_MAX_FEN // 100), AMOUNT_MAX_FEN),
        ("50000.01", None),
        ("0", None),
        ("0.001", None),
        ("1.", None),
        ("1,000", None),
        ("+5", None),
        ("五十", None),
    ],
)
def test_amounts(token: str, fen: int | None) -> None:
    assert parse_amount_fen(token) == fen


@given(st.integers(min_value=1, max_value=AMOUNT_MAX_FEN), st.sampled_from(["{}", "{}元", "¥{}", "{}块"]))
@settings(max_examples=200, deadline=None)
def test_amount_round_trip(fen: int, form: str) -> None:
    text = form.format(f"{fen // 100}.{fen % 100:02d}")
    assert parse_amount_fen(text) == fen
    # Full-width digits (an input method's) mean the same.
    wide = text.translate(str.maketrans("0123456789.", "０１２３４５６７８９．"))
    assert parse_command(f"充值 {wide} {PIN}") == TopUp(lang=ZH, amount_fen=fen, target=None, pin=PIN)


def test_weak_pins() -> None:
    for digit in "0123456789":
        assert is_weak_pin(digit * PIN_DIGITS)
    for pin in ("012345", "123456", "456789", "789012", "987654", "210987", *WEAK_PINS):
        assert is_weak_pin(pin), pin
    for pin in (PIN, NEW, "135790", "100000", "123457"):
        assert not is_weak_pin(pin), pin


def test_help_messages_cover_every_command() -> None:
    assert set(HELP_MESSAGES) == set(CommandKind)
    assert help_message_id(None) is MessageId.HELP
    assert help_message_id(CommandKind.PAY) is MessageId.HELP_PAY


def test_help_texts_name_keywords_the_parser_knows() -> None:
    # Each syntax help shows the command as the parser reads it: the word after 发送 / send.
    for kind, message_id in HELP_MESSAGES.items():
        if kind in (CommandKind.HELP, CommandKind.STOP, CommandKind.START):
            continue
        zh = render(message_id, Lang.ZH).split("发送 ", 1)[1].split(" ", 1)[0]
        en = render(message_id, Lang.EN).split("send ", 1)[1].split(" ", 1)[0]
        assert parse_command(f"帮助 {zh}") == Help(lang=ZH, topic=kind)
        assert parse_command(f"HELP {en}") == Help(lang=EN, topic=kind)


# ------------------------------------------------------------------ PIN secrecy and robustness


def test_pin_not_in_repr_or_str() -> None:
    for text, command in VALID:
        if PIN in text:
            assert PIN not in repr(command) and PIN not in str(command), text
            assert NEW not in repr(command)


pins = st.text(alphabet="0123456789", min_size=PIN_DIGITS, max_size=PIN_DIGITS).filter(lambda p: not is_weak_pin(p))
words = st.sampled_from(
    [
        "余额",
        "BAL",
        "充值",
        "TOPUP",
        "PAY",
        "付款",
        "缴费",
        "BILL",
        "水费",
        "M123456",
        "13800138000",
        "100",
        "0",
        "1.234",
        "改密",
        "PIN",
        "帮助",
    ]
)


@given(pin=pins, before=st.lists(words, max_size=4), after=st.lists(words, max_size=3))
@settings(max_examples=300, deadline=None)
def test_pin_never_leaks_wherever_it_stands(pin: str, before: list[str], after: list[str]) -> None:
    text = " ".join([*before, pin, *after])
    try:
        command = parse_command(text)
    except CommandSyntaxError as err:
        shown = [str(err), repr(err), err.detail, repr(err.params)]
    else:
        shown = [str(command), repr(command)]
    for part in shown:
        assert pin not in part


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_fails_with_a_renderable_reply(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandSyntaxError as err:
        assert render(err.message_id, err.lang, **err.params)
        assert err.lang in (Lang.ZH, Lang.EN)
    else:
        assert command.lang in (Lang.ZH, Lang.EN)
        if isinstance(command, Help):
            assert render(help_message_id(command.topic), command.lang)


@given(st.lists(st.sampled_from([*"余额充值付款缴费BALTOPUPYHMS 0123456789.,，　¥元?？+-", "PIN", "退订"]), max_size=30))
@settings(max_examples=300, deadline=None)
def test_command_like_noise_raises_only_the_syntax_error(chars: list[str]) -> None:
    with contextlib.suppress(CommandSyntaxError):
        parse_command("".join(chars))


def test_language_of_unknown_text_follows_cjk() -> None:
    for text, lang in (("hi", EN), ("hi！", ZH), ("哈", ZH), ("123", EN), ("、", ZH)):
        with pytest.raises(CommandSyntaxError) as info:
            parse_command(text)
        assert info.value.lang is lang, text
