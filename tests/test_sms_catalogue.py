"""The reply catalogue (gateway/sms/catalogue.py): completeness, sizes, parameters, formatting."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.protocols.gsm7 import can_encode_gsm7, septet_length
from simwallet.gateway.sms.catalogue import (
    CATALOGUE,
    HISTORY_LINES_MAX,
    SMS_GSM_SEPTETS_MAX,
    SMS_UCS2_UNITS_MAX,
    Biller,
    EntryKind,
    HistoryEntry,
    Lang,
    LimitKind,
    MessageId,
    ParamKind,
    format_money,
    mask_msisdn,
    render,
    template_fields,
)
from simwallet.gateway.sms.commands import AMOUNT_MAX_FEN, PIN_DIGITS
from simwallet.gateway.sms.errors import CatalogueError, SmsError
from simwallet.gateway.sms.segments import DATA_CODING_DEFAULT, DATA_CODING_UCS2, encode_reply

# The largest values a reply realistically carries: a balance of millions, a 20-character account.
BIG_MONEY = 1_234_567_89
SAMPLES: dict[ParamKind, object] = {
    ParamKind.MONEY: BIG_MONEY,
    ParamKind.COUNT: 2,
    ParamKind.MSISDN: "8613800138000",
    ParamKind.PAYEE: "M12345678",
    ParamKind.ACCOUNT: "A" * 20,
    ParamKind.CARD_TAIL: "1234",
    ParamKind.BILLER: Biller.ELECTRICITY,
    ParamKind.LIMIT: LimitKind.PER_TRANSACTION,
    ParamKind.ENTRIES: [HistoryEntry(date(2024, 12, 31), EntryKind.REFUND, -BIG_MONEY)] * HISTORY_LINES_MAX,
}


def sample_params(message_id: MessageId) -> dict[str, object]:
    return {name: SAMPLES[kind] for name, kind in CATALOGUE[message_id].params.items()}


def ucs2_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


def test_every_message_is_in_the_catalogue() -> None:
    assert set(CATALOGUE) == set(MessageId)


@pytest.mark.parametrize("message_id", list(MessageId))
def test_templates_use_exactly_the_declared_parameters(message_id: MessageId) -> None:
    message = CATALOGUE[message_id]
    assert template_fields(message.zh) == set(message.params)
    assert template_fields(message.en) == set(message.params)


def test_no_message_takes_a_pin() -> None:
    for message in CATALOGUE.values():
        assert not any("pin" in name.lower() for name in message.params)


@pytest.mark.parametrize("message_id", list(MessageId))
def test_each_reply_fits_one_sms(message_id: MessageId) -> None:
    params = sample_params(message_id)
    zh = render(message_id, Lang.ZH, **params)
    en = render(message_id, Lang.EN, **params)
    # English replies are always in the GSM default alphabet; Chinese ones always need UCS2.
    assert can_encode_gsm7(en), en
    assert not can_encode_gsm7(zh)
    assert encode_reply(en, ref=0)[0].data_coding == DATA_CODING_DEFAULT
    assert encode_reply(zh, ref=0)[0].data_coding == DATA_CODING_UCS2
    if CATALOGUE[message_id].may_be_long:
        # The history, the one long reply: two SMS at most even with the largest lines.
        assert len(encode_reply(zh, ref=0)) <= 2
        assert len(encode_reply(en, ref=0)) <= 2
    else:
        assert ucs2_units(zh) <= SMS_UCS2_UNITS_MAX, zh
        assert septet_length(en) <= SMS_GSM_SEPTETS_MAX, en
        assert len(encode_reply(zh, ref=0)) == 1
        assert len(encode_reply(en, ref=0)) == 1


def test_only_the_history_may_be_long() -> None:
    assert {m for m, message in CATALOGUE.items() if message.may_be_long} == {MessageId.HISTORY}


def test_syntax_help_shows_the_syntax() -> None:
    assert render(MessageId.HELP_BALANCE, Lang.ZH).startswith("余额查询：发送 余额 密码")
    assert render(MessageId.HELP_BALANCE, Lang.EN).startswith("Balance: send BAL <PIN>")
    assert "充值 金额 手机号 密码" in render(MessageId.HELP_TOPUP, Lang.ZH)
    assert "TOPUP <amount> <mobile> <PIN>" in render(MessageId.HELP_TOPUP, "en")
    assert "M" in render(MessageId.HELP_PAY, Lang.ZH) and "6至8位" in render(MessageId.HELP_PAY, Lang.ZH)
    # The PIN length the help texts announce is the parser's.
    for message_id in (MessageId.HELP_BALANCE, MessageId.HELP_CHANGE_PIN, MessageId.PIN_FORMAT):
        assert f"{PIN_DIGITS}位" in render(message_id, Lang.ZH)
        assert f"{PIN_DIGITS}-digit" in render(message_id, Lang.EN) or f"{PIN_DIGITS} digits" in render(message_id, Lang.EN)
    assert f"最近{HISTORY_LINES_MAX}笔" in render(MessageId.HELP_HISTORY, Lang.ZH)


def test_unregistered_points_to_a_service_hall_with_id() -> None:
    zh = render(MessageId.UNREGISTERED, Lang.ZH)
    assert "营业厅" in zh and "身份证" in zh
    en = render(MessageId.UNREGISTERED, Lang.EN)
    assert "service hall" in en and "ID" in en


def test_a_wallet_without_pin_is_sent_to_set_one_not_to_register() -> None:
    zh, en = render(MessageId.PIN_NOT_SET, Lang.ZH), render(MessageId.PIN_NOT_SET, Lang.EN)
    assert "设置" in zh and "营业厅" in zh and "开通" not in zh
    assert "set one" in en and "service hall" in en and "register" not in en.lower()


def test_a_full_payee_wallet_names_the_payee_masked() -> None:
    zh = render(MessageId.PAYEE_LIMIT, Lang.ZH, payee="8613900139000")
    en = render(MessageId.PAYEE_LIMIT, Lang.EN, payee="8613900139000")
    assert "上限" in zh and "13900139000" not in zh
    assert en.startswith("The wallet of ") and "13900139000" not in en and "Nothing was paid" in en


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("fen", "zh", "en"),
    [
        (0, "0.00元", "¥0.00"),
        (5, "0.05元", "¥0.05"),
        (123450, "1,234.50元", "¥1,234.50"),
        (100_000_000, "1,000,000.00元", "¥1,000,000.00"),
        (-5, "-0.05元", "-¥0.05"),
    ],
)
def test_money_format(fen: int, zh: str, en: str) -> None:
    assert format_money(fen, Lang.ZH) == zh
    assert format_money(fen, Lang.EN) == en


@given(st.integers(min_value=0, max_value=10**13))
@settings(max_examples=200, deadline=None)
def test_money_format_reads_back(fen: int) -> None:
    zh = render(MessageId.BALANCE, Lang.ZH, balance_fen=fen).removeprefix("您的手机钱包余额为")
    en = render(MessageId.BALANCE, Lang.EN, balance_fen=fen).removeprefix("Wallet balance: ")
    assert int(zh.removesuffix("元").replace(",", "").replace(".", "")) == fen
    assert int(en.removeprefix("¥").replace(",", "").replace(".", "")) == fen


def test_amounts_in_replies() -> None:
    assert render(MessageId.BALANCE, Lang.ZH, balance_fen=123450) == "您的手机钱包余额为1,234.50元"
    assert render(MessageId.BALANCE, Lang.EN, balance_fen=123450) == "Wallet balance: ¥1,234.50"
    assert render(MessageId.AMOUNT_INVALID, Lang.ZH, max_fen=AMOUNT_MAX_FEN).endswith("不超过50,000.00元")


def test_topup_with_bonus() -> None:
    # 满百送30: a top-up of 100 yuan brings 30 yuan of bonus airtime.
    text = render(MessageId.TOPUP_OK_BONUS, Lang.ZH, amount_fen=10000, bonus_fen=3000, msisdn="8613800138000", balance_fen=90000)
    assert text == "已为138****8000充值话费100.00元，另赠话费30.00元，钱包余额900.00元"
    text = render(MessageId.TOPUP_OK, Lang.EN, amount_fen=10000, msisdn="8613800138000", balance_fen=90000)
    assert text == "Topped up ¥100.00 to 138****8000. Wallet balance: ¥900.00"


@pytest.mark.parametrize(
    ("msisdn", "shown"),
    [("8613800138000", "138****8000"), ("447700900123", "+4477****0123"), ("12025550123", "+120****0123"), ("12345678", "+****5678")],
)
def test_msisdn_masking(msisdn: str, shown: str) -> None:
    assert mask_msisdn(msisdn) == shown
    assert render(MessageId.PAYEE_UNKNOWN, Lang.EN, payee=msisdn) == f"{shown} has no wallet. Nothing was paid"


def test_payee_merchant() -> None:
    assert (
        render(MessageId.PAY_OK, Lang.ZH, amount_fen=1250, payee="M123456", balance_fen=0) == "已向商户M123456付款12.50元，钱包余额0.00元"
    )


def test_limits_and_billers_are_named() -> None:
    names = {render(MessageId.LIMIT_EXCEEDED, Lang.ZH, limit=kind, limit_fen=100000) for kind in LimitKind}
    assert len(names) == len(LimitKind)
    assert render(MessageId.LIMIT_EXCEEDED, Lang.EN, limit=LimitKind.PER_DAY, limit_fen=500000) == (
        "Over your daily limit of ¥5,000.00. Nothing was paid"
    )
    for biller in Biller:
        zh = render(MessageId.BILL_OK, Lang.ZH, biller=biller, account="1234567", amount_fen=100, balance_fen=0)
        assert zh.index("缴费成功") > 0


def test_history_lines() -> None:
    entries = [
        HistoryEntry(date(2024, 6, 1), EntryKind.TOPUP, -10000),
        HistoryEntry(date(2024, 6, 2), EntryKind.BONUS, 3000),
        HistoryEntry(date(2024, 6, 3), EntryKind.PAY, -123456),
    ]
    assert (
        render(MessageId.HISTORY, Lang.ZH, entries=entries) == "最近交易：\n06-01 充话费 -100.00\n06-02 赠送 +30.00\n06-03 付款 -1,234.56"
    )
    assert render(MessageId.HISTORY, Lang.EN, entries=entries) == (
        "Last transactions:\n06-01 TOPUP -100.00\n06-02 BONUS +30.00\n06-03 PAY -1,234.56"
    )
    assert render(MessageId.HISTORY, Lang.ZH, entries=[]) == "最近交易：暂无"
    assert render(MessageId.HISTORY, Lang.EN, entries=()) == "Last transactions: none"
    with pytest.raises(CatalogueError):
        render(MessageId.HISTORY, Lang.ZH, entries=entries * 2)


# ------------------------------------------------------------------ misuse


@pytest.mark.parametrize(
    ("message_id", "lang", "params"),
    [
        ("no_such_message", "zh", {}),
        (MessageId.HELP, "fr", {}),
        (MessageId.BALANCE, "zh", {}),
        (MessageId.BALANCE, "zh", {"balance_fen": 1, "extra": 2}),
        (MessageId.HELP, "en", {"pin": "739251"}),
        (MessageId.BALANCE, "en", {"balance_fen": 1, "new_PIN": "739251"}),
        (MessageId.BALANCE, "en", {"balance_fen": True}),
        (MessageId.BALANCE, "en", {"balance_fen": 1.5}),
        (MessageId.BALANCE, "en", {"balance_fen": "100"}),
        (MessageId.BALANCE, "en", {"balance_fen": 10**14}),
        (MessageId.PIN_WRONG, "en", {"tries_left": -1}),
        (MessageId.PIN_WRONG, "en", {"tries_left": "2"}),
        (MessageId.PAYEE_UNKNOWN, "en", {"payee": "Alice"}),
        (MessageId.PAYEE_UNKNOWN, "en", {"payee": "13800138000 "}),
        (MessageId.BANK_BALANCE, "en", {"card_tail": "12345", "balance_fen": 1}),
        (MessageId.BILL_OK, "en", {"biller": "water", "account": "1234", "amount_fen": 1, "balance_fen": 1}),
        (MessageId.BILL_OK, "en", {"biller": Biller.WATER, "account": "12", "amount_fen": 1, "balance_fen": 1}),
        (MessageId.LIMIT_EXCEEDED, "en", {"limit": "per_day", "limit_fen": 1}),
        (MessageId.HISTORY, "en", {"entries": "06-01 PAY"}),
        (MessageId.HISTORY, "en", {"entries": [("06-01", "pay", 1)]}),
    ],
)
def test_misuse_is_a_catalogue_error(message_id: str, lang: str, params: dict[str, object]) -> None:
    with pytest.raises(CatalogueError) as info:
        render(message_id, lang, **params)
    assert isinstance(info.value, SmsError) and isinstance(info.value, TypeError)
    assert "739251" not in str(info.value)
