"""The USSD menu channel, sans I/O: every flow to the command SMS builds, errors, copies, time-outs, bounds, sizes, no PIN anywhere."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simwallet.gateway.esme.ussd_channel import (
    HELD_TOKENS_MAX,
    SessionRef,
    UssdChannel,
    UssdEnded,
    UssdHold,
    UssdInbound,
    UssdReply,
    UssdServe,
    UssdStep,
    request_key,
)
from simwallet.gateway.esme.ussd_menus import (
    USSD_GSM_SEPTETS_MAX,
    USSD_UCS2_UNITS_MAX,
    Dialogue,
    Say,
    Step,
    UssdTextTooLong,
    UssdUsageError,
    fit_ussd,
    fits_ussd,
    prompt,
    say,
    ussd_segment,
    ussd_size,
)
from simwallet.gateway.ledger.model import Channel
from simwallet.gateway.smpp.tlv import UssdServiceOp as Op
from simwallet.gateway.sms.catalogue import CATALOGUE, Biller, EntryKind, HistoryEntry, Lang, LimitKind, MessageId, ParamKind, render
from simwallet.gateway.sms.commands import CommandKind, PayeeKind, is_weak_pin, parse_command
from simwallet.gateway.sms.segments import decode_payload
from simwallet.gateway.wallet.outcomes import Outcome, ServiceReply, unavailable

PHONE = "8613800138000"
CODE = "*166#"
PIN = "135790"
NEW = "246802"


@dataclass
class Phone:
    """One subscriber talking to a channel: each message gets its own SMSC id and token."""

    channel: UssdChannel
    msisdn: str = PHONE
    now: float = 0.0
    counter: itertools.count[int] = field(default_factory=itertools.count)
    last_id: str = ""

    def send(self, op: int, text: str, *, smsc_id: str | None = None, token: Hashable | None = None) -> UssdStep:
        n = next(self.counter)
        self.last_id = smsc_id or f"{self.msisdn}-{n}"
        return self.channel.receive(UssdInbound(token or f"{self.msisdn}-t{n}", self.last_id, self.msisdn, CODE, op, text), self.now)

    def dial(self, text: str = CODE) -> UssdStep:
        return self.send(Op.PSSR_INDICATION, text)

    def answer(self, text: str) -> UssdStep:
        return self.send(Op.USSR_CONFIRM, text)

    def reply(self, text: str) -> UssdReply:
        step = self.answer(text)
        assert isinstance(step, UssdReply)
        return step

    def walk(self, answers: Sequence[str], dialled: str = CODE) -> list[UssdStep]:
        return [self.dial(dialled), *(self.answer(a) for a in answers)]


def served(steps: Sequence[UssdStep]) -> UssdServe:
    *prompts, last = steps
    for step in prompts:
        assert isinstance(step, UssdReply) and step.op is Op.USSR_REQUEST and not step.end and fits_ussd(step.text)
    assert isinstance(last, UssdServe)
    return last


def ok(message_id: MessageId, lang: Lang, **params: object) -> ServiceReply:
    return ServiceReply(message_id=message_id, params=params, lang=lang, outcome=Outcome.OK)


# --- every flow, both languages, to the command SMS builds ---------------------------------------

# (answers after dialling *166#, the equivalent SMS, a piece of the confirmation prompt). "0" on the menu is English.
FLOWS = [
    (["1", PIN], f"余额 {PIN}", "查询钱包余额"),
    (["0", "1", PIN], f"BAL {PIN}", "Wallet balance"),
    (["2", "1", "100", PIN], f"充值 100 {PIN}", "为本机充值100.00元"),
    (["0", "2", "1", "100元", PIN], f"TOPUP 100 {PIN}", "Top up ¥100.00 to this phone"),
    (["2", "2", "１３８００１３８００１", "25.5", PIN], f"充值 25.50 13800138001 {PIN}", "为13800138001充值25.50元"),
    (["0", "2", "2", "+447700900123", "25.50", PIN], f"TOPUP 25.50 +447700900123 {PIN}", "Top up ¥25.50 to +447700900123"),
    (["3", "13800138001", "50", PIN], f"付款 13800138001 50 {PIN}", "向13800138001付款50.00元"),
    (["3", "商户1234567", "8.8", PIN], f"付款 商户1234567 8.8 {PIN}", "向商户M1234567付款8.80元"),
    (["0", "3", "m123456", "50", PIN], f"PAY M123456 50 {PIN}", "Pay ¥50.00 to merchant M123456"),
    (["0", "3", "138 0013 8001", "¥1,000".replace(",", ""), PIN], f"PAY 13800138001 1000 {PIN}", "Pay ¥1,000.00 to 13800138001"),
    (["4", "2", "1234567", "100", PIN], f"缴费 电费 1234567 100 {PIN}", "电费 户号1234567\n缴费100.00元"),
    (["4", "1", "w0001", "30", PIN], f"缴费 水费 W0001 30 {PIN}", "水费 户号W0001"),
    (["0", "4", "3", "ab1234", "12", PIN], f"BILL GAS AB1234 12 {PIN}", "Gas bill, account AB1234: pay ¥12.00"),
    (["0", "4", "4", "88887777", "60", PIN], f"BILL PHONE 88887777 60 {PIN}", "Phone bill"),
    (["5", PIN], f"银行余额 {PIN}", "查询银行卡余额"),
    (["0", "5", PIN], f"BANK {PIN}", "Bank card balance"),
    (["7", PIN], f"明细 {PIN}", "查询交易明细"),
    (["0", "7", PIN], f"HIST {PIN}", "Transaction history"),
    (["6", PIN, NEW, NEW], f"改密 {PIN} {NEW} {NEW}", None),
    (["0", "6", PIN, NEW, NEW], f"PIN {PIN} {NEW} {NEW}", None),
]


@pytest.mark.parametrize(("answers", "sms", "confirm"), FLOWS, ids=[f[1].replace(PIN, "<pin>") for f in FLOWS])
def test_every_flow_builds_the_request_the_equivalent_sms_builds(answers: list[str], sms: str, confirm: str | None) -> None:
    phone = Phone(UssdChannel())
    steps = phone.walk(answers)
    serve = served(steps)
    request = serve.request
    assert request.command == parse_command(sms)
    assert request.lang is parse_command(sms).lang and request.channel is Channel.USSD and request.msisdn == PHONE
    assert request.key == f"ussd:{PHONE}:{phone.last_id}" and serve.session == SessionRef(PHONE, 1)
    assert serve.tokens == (f"{PHONE}-t{len(answers)}",) and serve.msisdn == PHONE and serve.service_code == CODE
    pin_prompt = steps[-2]
    assert isinstance(pin_prompt, UssdReply)
    if confirm is not None:
        assert confirm in pin_prompt.text
    for step in steps:
        assert PIN not in repr(step) and NEW not in repr(step)
        assert isinstance(step, UssdServe) or (PIN not in step.text and NEW not in step.text)


def test_dialling_shows_the_chinese_menu_and_zero_switches_the_language_both_ways() -> None:
    phone = Phone(UssdChannel())
    menu = phone.dial()
    assert menu == UssdReply(PHONE, Op.USSR_REQUEST, say(Say.MENU, Lang.ZH), (f"{PHONE}-t0",), False, CODE)
    assert phone.reply("0").text == say(Say.MENU, Lang.EN)
    assert phone.reply("０").text == say(Say.MENU, Lang.ZH)  # a full-width 0 reads as 0


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("*166#", say(Say.MENU, Lang.ZH)),
        ("*166*1#", say(Say.CONFIRM_PIN, Lang.ZH, summary=say(Say.ABOUT_BALANCE, Lang.ZH))),
        ("*166*2#", say(Say.MENU, Lang.EN)),
        ("*166*2*1#", say(Say.CONFIRM_PIN, Lang.EN, summary=say(Say.ABOUT_BALANCE, Lang.EN))),
        ("*166*9#", say(Say.MENU, Lang.ZH)),  # an unknown shortcut under the code: the menu
        ("*166*1*135790#", say(Say.MENU, Lang.ZH)),  # a PIN in the dialled string is never read
        ("*166", say(Say.MENU, Lang.ZH)),  # the final # dropped by the SMSC
        ("", say(Say.MENU, Lang.ZH)),  # no text: the destination address is the dialled string
    ],
)
def test_dialled_strings_and_shortcuts(dialled: str, expected: str) -> None:
    step = Phone(UssdChannel()).dial(dialled)
    assert isinstance(step, UssdReply) and step.op is Op.USSR_REQUEST and step.text == expected


def test_the_balance_shortcut_serves_a_balance_command() -> None:
    assert served(Phone(UssdChannel()).walk([PIN], "*166*1#")).request.command == parse_command(f"余额 {PIN}")
    assert served(Phone(UssdChannel()).walk([PIN], "*166*2*1#")).request.command == parse_command(f"BAL {PIN}")


def test_a_string_outside_the_service_code_ends_with_unknown_code() -> None:
    channel = UssdChannel()
    for dialled in ("*167#", "*1666#", "#166#"):
        step = Phone(channel).dial(dialled)
        assert isinstance(step, UssdReply) and step.op is Op.PSSR_RESPONSE and step.end
        assert "号码有误" in step.text and "Unknown code" in step.text
    assert channel.sessions == 0


# --- the service's answer ----------------------------------------------------------------------------------


def test_complete_ends_the_dialogue_with_the_rendered_reply_and_answers_every_copy() -> None:
    channel = UssdChannel()
    phone = Phone(channel)
    serve = served(phone.walk(["0", "1", PIN]))
    final_id = phone.last_id
    copy = phone.send(Op.USSR_CONFIRM, PIN, smsc_id=final_id, token="copy")  # redelivered while served
    assert isinstance(copy, UssdHold) and channel.held == 2
    reply = channel.complete(serve.session, ok(MessageId.BALANCE, Lang.EN, balance_fen=12345))
    assert reply == UssdReply(PHONE, Op.PSSR_RESPONSE, "Wallet balance: ¥123.45", (*serve.tokens, "copy"), True, CODE)
    assert channel.sessions == 0 and channel.held == 0
    again = phone.send(Op.USSR_CONFIRM, PIN, smsc_id=final_id, token="late")  # after the reply: the same final text
    assert again == UssdReply(PHONE, Op.PSSR_RESPONSE, reply.text, ("late",), True, CODE)
    assert channel.complete(serve.session, ok(MessageId.BALANCE, Lang.EN, balance_fen=1)).text == ""


def test_the_reply_is_rendered_in_the_sessions_language_and_a_long_history_is_cut_by_lines() -> None:
    channel = UssdChannel()
    serve = served(Phone(channel).walk(["7", PIN]))
    entries = [HistoryEntry(date(2024, 12, day), EntryKind.PAY, -1_234_567) for day in range(1, 6)]
    reply = channel.complete(serve.session, ok(MessageId.HISTORY, Lang.ZH, entries=entries))
    full = render(MessageId.HISTORY, Lang.ZH, entries=entries)
    assert not fits_ussd(full) and fits_ussd(reply.text)
    assert reply.text.endswith("\n…") and full.startswith(reply.text.removesuffix("…"))


def test_a_request_that_cannot_be_served_ends_with_the_unavailable_text() -> None:
    channel = UssdChannel()
    serve = served(Phone(channel).walk(["1", PIN]))
    reply = channel.complete(serve.session, unavailable(Lang.ZH))
    assert reply.op is Op.PSSR_RESPONSE and reply.end and reply.text == render(MessageId.UNAVAILABLE, Lang.ZH)


def test_complete_refuses_what_is_not_a_session_and_a_reply() -> None:
    with pytest.raises(UssdUsageError):
        UssdChannel().complete("session", ok(MessageId.BALANCE, Lang.ZH, balance_fen=1))  # type: ignore[arg-type]


# --- input errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "wrong", "error", "lang"),
    [
        ([], "8", Say.CHOICE_BAD, Lang.ZH),
        (["2"], "3", Say.CHOICE_BAD, Lang.ZH),
        (["2", "2"], "12345", Say.NUMBER_BAD, Lang.ZH),
        (["2", "1"], "1.234", Say.AMOUNT_BAD, Lang.ZH),
        (["2", "1"], "50000.01", Say.AMOUNT_BAD, Lang.ZH),
        (["0", "3"], "M12", Say.PAYEE_BAD, Lang.EN),
        (["0", "3", "M123456"], "-5", Say.AMOUNT_BAD, Lang.EN),
        (["4"], "5", Say.CHOICE_BAD, Lang.ZH),
        (["4", "2"], "12", Say.ACCOUNT_BAD, Lang.ZH),
        (["4", "2"], "ABC-1234", Say.ACCOUNT_BAD, Lang.ZH),
        (["1"], "12345", Say.PIN_FORMAT, Lang.ZH),
        (["0", "1"], "1234567", Say.PIN_FORMAT, Lang.EN),
        (["6"], "abcdef", Say.PIN_FORMAT, Lang.ZH),
        (["6", PIN], "123456", Say.PIN_WEAK, Lang.ZH),
        (["0", "6", PIN], "888888", Say.PIN_WEAK, Lang.EN),
        (["6", PIN], PIN, Say.PIN_SAME, Lang.ZH),
        (["6", PIN, NEW], "12", Say.PIN_FORMAT, Lang.ZH),
    ],
)
def test_a_wrong_answer_repeats_the_prompt_after_a_short_error(answers: list[str], wrong: str, error: Say, lang: Lang) -> None:
    phone = Phone(UssdChannel())
    steps = phone.walk(answers)
    before = steps[-1]
    assert isinstance(before, UssdReply)
    refused = phone.reply(wrong)
    assert refused.op is Op.USSR_REQUEST and not refused.end
    first_line, rest = refused.text.split("\n", 1)
    assert first_line.startswith(say(error, lang, max="")[:4]) and rest == before.text
    assert wrong not in first_line


def test_too_many_wrong_answers_end_the_dialogue_and_a_right_one_resets_the_count() -> None:
    channel = UssdChannel(retries_max=2)
    phone = Phone(channel)
    phone.walk(["2", "1"])
    assert not phone.reply("x").end and not phone.reply("y").end  # two re-prompts
    assert phone.reply("100").op is Op.USSR_REQUEST  # a right answer: the count starts again
    assert not phone.reply("1").end and not phone.reply("2").end  # PIN format, twice
    last = phone.reply("3")
    assert last.op is Op.PSSR_RESPONSE and last.end and last.text == say(Say.TOO_MANY_ERRORS, Lang.ZH, code=CODE)
    assert channel.sessions == 0
    after = phone.reply(PIN)  # the next answer: the session ended
    assert after.end and after.text == say(Say.ENDED, Lang.ZH, code=CODE)


def test_two_different_new_pins_go_back_to_the_new_pin_prompt() -> None:
    phone = Phone(UssdChannel())
    phone.walk(["6", PIN, NEW])
    mismatch = phone.reply("975310")
    assert mismatch.text == say(Say.PIN_MISMATCH, Lang.ZH) + "\n" + say(Say.NEW_PIN, Lang.ZH)
    assert phone.reply("975310").text == say(Say.REPEAT_PIN, Lang.ZH)
    serve = phone.answer("975310")
    assert isinstance(serve, UssdServe) and serve.request.command == parse_command(f"改密 {PIN} 975310 975310")


def test_zero_goes_back_to_the_menu_from_any_step_and_forgets_the_flow() -> None:
    phone = Phone(UssdChannel())
    phone.walk(["0", "3", "13800138001", "50"])
    assert phone.reply("0").text == say(Say.MENU, Lang.EN)  # the language stays
    serve = served([phone.answer("3"), phone.answer("M123456"), phone.answer("7"), phone.answer(PIN)])
    assert serve.request.command == parse_command(f"PAY M123456 7 {PIN}")


def test_a_dialogue_takes_a_bounded_number_of_answers() -> None:
    phone = Phone(UssdChannel())
    phone.dial()
    steps = [phone.reply("0") for _ in range(60)]
    assert all(not s.end for s in steps[:50]) and steps[50].end and steps[50].text == say(Say.ENDED, Lang.ZH, code=CODE)


# --- copies, restarts, stray messages ------------------------------------------------------------------------


def test_a_copy_of_the_last_answer_gets_the_same_prompt_and_does_not_advance() -> None:
    phone = Phone(UssdChannel())
    phone.walk(["2"])
    first = phone.reply("2")
    copy = phone.send(Op.USSR_CONFIRM, "2", smsc_id=phone.last_id, token="copy")
    assert copy == UssdReply(first.msisdn, first.op, first.text, ("copy",), False, CODE)
    assert phone.reply("13800138001").text == say(Say.TOPUP_AMOUNT, Lang.ZH)  # still at the number step before it


def test_a_late_copy_of_an_earlier_answer_is_answered_with_nothing_sent() -> None:
    phone = Phone(UssdChannel())
    phone.dial()
    first_id = phone.last_id
    phone.answer("2")
    old_answer_id = phone.last_id
    phone.answer("1")
    for smsc_id, op in ((first_id, Op.PSSR_INDICATION), (old_answer_id, Op.USSR_CONFIRM)):
        late = phone.send(op, "2", smsc_id=smsc_id, token="late")
        assert isinstance(late, UssdReply) and late.text == "" and late.tokens == ("late",) and not late.end
    assert phone.reply("100").text.startswith("为本机充值100.00元")  # still at the amount step


def test_dialling_again_restarts_the_session_and_answers_what_the_old_one_held() -> None:
    channel = UssdChannel()
    phone = Phone(channel)
    serve = served(phone.walk(["1", PIN]))
    phone.send(Op.USSR_CONFIRM, PIN, smsc_id=phone.last_id, token="copy")
    menu = phone.dial()
    assert isinstance(menu, UssdReply) and menu.text == say(Say.MENU, Lang.ZH)
    assert menu.tokens == (f"{PHONE}-t2", "copy", f"{PHONE}-t4") and channel.sessions == 1 and channel.held == 0
    late = channel.complete(serve.session, ok(MessageId.BALANCE, Lang.ZH, balance_fen=100))
    assert late.op is Op.USSN_REQUEST and late.tokens == () and late.text == "您的手机钱包余额为1.00元"
    assert phone.reply("5").text.startswith("查询银行卡余额")  # the new dialogue goes on


def test_an_answer_without_a_session_is_told_in_both_languages_to_dial_again() -> None:
    reply = Phone(UssdChannel()).reply("1")
    assert reply.op is Op.PSSR_RESPONSE and reply.end
    assert reply.text == say(Say.ENDED, Lang.ZH, code=CODE) + "\n" + say(Say.ENDED, Lang.EN, code=CODE)


@pytest.mark.parametrize("op", [Op.USSR_REQUEST, Op.USSN_REQUEST, Op.PSSR_RESPONSE, Op.PSSD_RESPONSE, 4, 20, 99, 255])
def test_an_operation_no_dialogue_sends_ends_it_with_a_clear_text(op: int) -> None:
    channel = UssdChannel()
    phone = Phone(channel)
    phone.walk(["0", "2"])
    step = phone.send(op, "1")
    assert isinstance(step, UssdReply) and step.op is Op.PSSR_RESPONSE and step.end
    assert step.text == say(Say.UNSUPPORTED, Lang.EN, code=CODE) and channel.sessions == 0
    alone = Phone(channel, "8613900139000").send(op, "1")
    assert isinstance(alone, UssdReply) and alone.end and "不支持" in alone.text and "Unsupported" in alone.text


def test_phase_1_pssd_gets_a_pssd_response_and_a_ussn_confirm_is_only_acknowledged() -> None:
    phone = Phone(UssdChannel())
    pssd = phone.send(Op.PSSD_INDICATION, CODE)
    assert isinstance(pssd, UssdReply) and pssd.op is Op.PSSD_RESPONSE and pssd.end
    phone.walk(["2"])
    confirm = phone.send(Op.USSN_CONFIRM, "")
    assert isinstance(confirm, UssdReply) and confirm.text == "" and not confirm.end
    assert phone.reply("1").text == say(Say.TOPUP_AMOUNT, Lang.ZH)  # unchanged


def test_a_message_from_no_number_is_acknowledged_and_dropped() -> None:
    step = UssdChannel().receive(UssdInbound("t", "A1", "MyBank", CODE, Op.PSSR_INDICATION, CODE), 0.0)
    assert step == UssdReply("", Op.PSSR_RESPONSE, "", ("t",), True, CODE)


def test_misuse_is_refused() -> None:
    with pytest.raises(UssdUsageError):
        UssdChannel().receive(UssdInbound("t", "", PHONE, CODE, Op.PSSR_INDICATION, CODE), 0.0)
    for kwargs in ({"service_code": "166"}, {"service_code": "*16a#"}, {"timeout_s": 0}, {"sessions_max": 0}, {"retries_max": -1}):
        with pytest.raises(UssdUsageError):
            UssdChannel(**kwargs)  # type: ignore[arg-type]


def test_the_request_key_holds_the_smsc_id_or_a_stable_digest_of_it() -> None:
    assert request_key(PHONE, "0a1b2c") == f"ussd:{PHONE}:0a1b2c"
    for odd in ("id#1", "x" * 200, "tab\there"):
        key = request_key(PHONE, odd)
        assert key == request_key(PHONE, odd) and key.startswith(f"ussd:{PHONE}:h") and "#" not in key
    assert request_key(PHONE, "id#1") != request_key(PHONE, "id#2")


# --- time-outs and bounds ------------------------------------------------------------------------------------


def test_an_idle_session_times_out_and_the_next_answer_is_told_so() -> None:
    channel = UssdChannel(timeout_s=120.0)
    phone = Phone(channel)
    phone.walk(["2"])
    phone.now = 100.0
    assert channel.expire(100.0) == []
    phone.reply("1")  # activity: the clock starts again
    [ended] = channel.expire(220.0)
    assert ended == UssdEnded(
        PHONE, ended.reason, UssdReply(PHONE, Op.PSSR_RESPONSE, say(Say.TIMED_OUT, Lang.ZH, code=CODE), (), True, CODE)
    )
    assert ended.reason == "timeout" and channel.sessions == 0
    phone.now = 230.0
    late = phone.reply("100")
    assert late.op is Op.PSSR_RESPONSE and late.end and late.text == say(Say.TIMED_OUT, Lang.ZH, code=CODE)
    phone.now = 400.0  # the tombstone is gone too
    assert phone.reply("100").text.endswith(say(Say.ENDED, Lang.EN, code=CODE))


def test_an_answer_after_the_timeout_is_told_so_even_before_the_sweep() -> None:
    phone = Phone(UssdChannel(timeout_s=60.0))
    phone.walk(["0"])
    phone.now = 61.0
    assert phone.reply("1").text == say(Say.TIMED_OUT, Lang.EN, code=CODE)


def test_an_abandoned_request_answers_its_held_tokens_at_the_timeout_and_its_reply_becomes_a_notice() -> None:
    channel = UssdChannel(timeout_s=60.0)
    phone = Phone(channel)
    serve = served(phone.walk(["1", PIN]))
    phone.send(Op.USSR_CONFIRM, PIN, smsc_id=phone.last_id, token="copy")
    [ended] = channel.expire(61.0)
    assert ended.reply.tokens == (*serve.tokens, "copy") and ended.reply.text == say(Say.TIMED_OUT, Lang.ZH, code=CODE)
    late = channel.complete(serve.session, ok(MessageId.BALANCE, Lang.ZH, balance_fen=5))
    assert late.op is Op.USSN_REQUEST and late.tokens == () and late.text == "您的手机钱包余额为0.05元"


def test_the_least_recently_active_session_is_evicted_when_the_table_is_full() -> None:
    channel = UssdChannel(sessions_max=2)
    phones = [Phone(channel, f"861380013800{i}") for i in range(3)]
    phones[0].walk(["0"])
    phones[1].dial()
    phones[0].now = phones[1].now = phones[2].now = 1.0
    phones[0].reply("2")  # the first is active again: the second is now the oldest
    phones[2].dial()
    assert channel.sessions == 2
    [ended] = channel.expire(1.0)
    assert ended.msisdn == phones[1].msisdn and ended.reason == "evicted" and ended.reply.text == say(Say.ENDED, Lang.ZH, code=CODE)
    assert phones[1].reply("1").text == say(Say.ENDED, Lang.ZH, code=CODE)
    assert phones[0].reply("1").text == say(Say.TOPUP_AMOUNT, Lang.EN)


# --- sizes ----------------------------------------------------------------------------------------------------------

_BIG = {
    "code": "*12345678#",
    "max": "",
    "summary": "",
    "amount": "",
    "number": "+447700900123456",
    "merchant": "M12345678",
    "biller": "Electricity",
    "account": "A" * 20,
}


def _worst_dialogues(lang: Lang) -> list[Dialogue]:
    """A dialogue at every step, with the longest values each can show."""
    out = []
    for step in Step:
        for flow, extra in (
            ("topup", {"target": "447700900123456"}),
            ("pay", {"payee": (PayeeKind.MSISDN, "447700900123456")}),
            ("pay", {"payee": (PayeeKind.MERCHANT, "M12345678")}),
            ("bill", {"biller": Biller.ELECTRICITY, "account": "A" * 20}),
            ("balance", {}),
            ("bank_balance", {}),
            ("history", {}),
            ("change_pin", {}),
        ):
            d = Dialogue(lang, amount_fen=5_000_000, **extra)  # type: ignore[arg-type]
            d.flow, d.step = CommandKind(flow), step
            out.append(d)
    return out


# The error lines each step can put before its prompt.
_ERRORS: dict[Step, tuple[Say, ...]] = {
    Step.MENU: (Say.CHOICE_BAD,),
    Step.TOPUP_WHO: (Say.CHOICE_BAD,),
    Step.TOPUP_NUMBER: (Say.NUMBER_BAD,),
    Step.TOPUP_AMOUNT: (Say.AMOUNT_BAD,),
    Step.PAY_PAYEE: (Say.PAYEE_BAD,),
    Step.PAY_AMOUNT: (Say.AMOUNT_BAD,),
    Step.BILL_BILLER: (Say.CHOICE_BAD,),
    Step.BILL_ACCOUNT: (Say.ACCOUNT_BAD,),
    Step.BILL_AMOUNT: (Say.AMOUNT_BAD,),
    Step.OLD_PIN: (Say.PIN_FORMAT,),
    Step.NEW_PIN: (Say.PIN_FORMAT, Say.PIN_SAME, Say.PIN_WEAK, Say.PIN_MISMATCH),
    Step.REPEAT_PIN: (Say.PIN_FORMAT,),
    Step.PIN: (Say.PIN_FORMAT,),
}


@pytest.mark.parametrize("lang", list(Lang))
def test_every_prompt_with_each_of_its_error_lines_fits_one_ussd_string(lang: Lang) -> None:
    assert set(_ERRORS) == set(Step)
    largest = "50,000.00元" if lang is Lang.ZH else "¥50,000.00"
    for d in _worst_dialogues(lang):
        for error in ("", *(say(e, lang, max=largest) + "\n" for e in _ERRORS[d.step])):
            text = error + prompt(d)
            assert fits_ussd(text), (d.step, error, ussd_size(text))


def test_the_error_lines_are_the_ones_each_step_declares() -> None:
    # Drive every step with answers it may refuse: a refusal is one error line of _ERRORS[step], then the step's prompt.
    refusals = 0
    for step, path in _PATHS.items():
        for answer in ("8", "x", "12", "1.234", "M1", "123456", "975310", "ABC-1", ""):
            channel = UssdChannel()
            phone = Phone(channel)
            phone.walk(path)
            if step is None:
                continue
            reply = phone.answer(answer)
            session = channel._sessions.get(PHONE)
            if not isinstance(reply, UssdReply) or session is None or reply.text == prompt(session.dialogue):
                continue
            error, rest = reply.text.split("\n", 1)
            assert rest == prompt(session.dialogue)
            assert error in {say(e, Lang.ZH, max="50,000.00元") for e in _ERRORS[session.dialogue.step]}, (step, answer)
            refusals += 1
    assert refusals > 50


@pytest.mark.parametrize("lang", list(Lang))
def test_every_text_of_the_channel_fits_one_ussd_string(lang: Lang) -> None:
    assert len(Say.__members__) == len(Say)  # no two texts share a value (an enum alias would hide one)
    for what in Say:
        text = say(what, lang, **{**_BIG, "max": "¥50,000.00", "summary": "x" * 10, "amount": "¥50,000.00"})
        assert fits_ussd(text), what
    for what in (Say.ENDED, Say.UNSUPPORTED, Say.UNKNOWN_CODE, Say.TIMED_OUT):
        both = say(what, Lang.ZH, code=_BIG["code"]) + "\n" + say(what, Lang.EN, code=_BIG["code"])
        assert fits_ussd(both), what


def test_english_menus_are_gsm_and_chinese_ones_ucs2() -> None:
    assert ussd_size(say(Say.MENU, Lang.EN))[0] == 0x00 and ussd_size(say(Say.MENU, Lang.ZH))[0] == 0x08


_WORST_PARAMS = {
    ParamKind.MONEY: 99_999_999,
    ParamKind.COUNT: 999,
    ParamKind.MSISDN: "447700900123456",
    ParamKind.PAYEE: "M12345678",
    ParamKind.ACCOUNT: "A" * 20,
    ParamKind.CARD_TAIL: "1234",
    ParamKind.BILLER: Biller.ELECTRICITY,
    ParamKind.LIMIT: LimitKind.PER_TRANSACTION,
    ParamKind.ENTRIES: [HistoryEntry(date(2024, 12, 31), EntryKind.REFUND, -99_999_999)] * 5,
}


@pytest.mark.parametrize("message_id", list(MessageId))
def test_every_service_reply_fits_uncut_except_a_long_history(message_id: MessageId) -> None:
    for lang in Lang:
        channel = UssdChannel()
        serve = served(Phone(channel).walk(["0", "1", PIN] if lang is Lang.EN else ["1", PIN]))
        params = {name: _WORST_PARAMS[kind] for name, kind in CATALOGUE[message_id].params.items()}
        reply = channel.complete(serve.session, ServiceReply(message_id=message_id, params=params, lang=lang, outcome=Outcome.OK))
        full = render(message_id, lang, **params)
        assert fits_ussd(reply.text) and ussd_segment(reply.text)
        assert reply.text == full or CATALOGUE[message_id].may_be_long


# --- ussd_segment and fit_ussd --------------------------------------------------------------------------------------


def test_ussd_segment_encodes_gsm_unpacked_and_ucs2_and_refuses_beyond_one_string() -> None:
    assert ussd_segment("Pay ¥5") == (0x00, bytes([0x50, 0x61, 0x79, 0x20, 0x03, 0x35]))  # TS 23.038 §6.2.1: ¥ is 0x03
    assert ussd_segment("余额") == (0x08, "余额".encode("utf-16-be"))
    assert ussd_segment("a" * USSD_GSM_SEPTETS_MAX)[1] == b"a" * USSD_GSM_SEPTETS_MAX
    with pytest.raises(UssdTextTooLong) as too_long:
        ussd_segment("€" * 91 + "a")  # an extension character takes two septets: 183
    assert (too_long.value.units, too_long.value.limit, too_long.value.code) == (183, 182, "ussd_text_too_long")
    assert ussd_segment("中" * USSD_UCS2_UNITS_MAX)[0] == 0x08
    for text in ("中" * (USSD_UCS2_UNITS_MAX + 1), "😀" * 40 + "中"):  # a surrogate pair counts two units
        with pytest.raises(UssdTextTooLong):
            ussd_segment(text)
    with pytest.raises(UssdUsageError):
        ussd_segment("\ud800")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_ussd_segment_round_trips_whatever_it_accepts(text: str) -> None:
    try:
        coding, data = ussd_segment(text)
    except UssdUsageError:
        assert not fits_ussd(text) or any("\ud800" <= c <= "\udfff" for c in text)
        return
    assert decode_payload(coding, data) == text
    assert len(data) <= 182 if coding == 0 else len(data) <= 160


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=400))
def test_fit_ussd_keeps_what_fits_and_cuts_the_rest_to_a_prefix(text: str) -> None:
    fitted = fit_ussd(text)
    assert fits_ussd(fitted)
    if fits_ussd(text):
        assert fitted == text
    else:
        assert fitted.endswith(("…", "...")) and text.startswith(fitted.removesuffix("…").removesuffix("..."))


# --- properties: no PIN anywhere, every token answered once, every (step, operation) pair -----------------------------

_strong_pins = st.text("0123456789", min_size=6, max_size=6).filter(lambda p: not is_weak_pin(p))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=_strong_pins, new=_strong_pins, flow=st.sampled_from(FLOWS), wrong=st.booleans())
def test_no_pin_appears_in_any_reply_repr_or_table(pin: str, new: str, flow: tuple[list[str], str, str | None], wrong: bool) -> None:
    answers, _, _ = flow
    others = "".join(a for a in answers if a not in (PIN, NEW))
    assume(pin != new and pin not in others and new not in others and pin not in PHONE and new not in PHONE)
    answers = [pin if a == PIN else new if a == NEW else a for a in answers]
    if wrong:  # a PIN typed where a menu choice is wanted
        answers = [pin, *answers]
    channel = UssdChannel()
    phone = Phone(channel)
    steps = phone.walk(answers)
    serve = steps[-1]
    assert isinstance(serve, UssdServe)
    assert all(s.old_pin == s.new_pin == "" for s in (x.dialogue for x in channel._sessions.values()))
    copy = phone.send(Op.USSR_CONFIRM, answers[-1], smsc_id=phone.last_id)
    reply = channel.complete(serve.session, ok(MessageId.PIN_CHANGED, serve.request.lang))
    seen = [repr(s) for s in steps] + [repr(copy), repr(reply), repr(channel._sessions), repr(channel._ended), repr(channel.expire(1e9))]
    seen += [s.text for s in steps if isinstance(s, UssdReply)] + [reply.text, str(vars(channel))]
    for text in seen:
        assert pin not in text and new not in text


# (operation, text) a phone may send, weighted towards what completes a request: the balance shortcut, then a PIN.
_messages = st.sampled_from(
    [(Op.PSSR_INDICATION, "*166*1#")] * 4
    + [(Op.USSR_CONFIRM, PIN)] * 6
    + [(Op.PSSR_INDICATION, CODE), (Op.USSR_CONFIRM, "1"), (Op.USSR_CONFIRM, "2"), (Op.USSR_CONFIRM, "100")]
    + [(Op.USSR_CONFIRM, "0"), (Op.USSR_CONFIRM, "x"), (Op.USSN_CONFIRM, ""), (Op.PSSD_INDICATION, CODE), (Op.PSSR_RESPONSE, ""), (7, "")]
)
_gaps_s = st.sampled_from([0.0, 0.0, 0.0, 1.0, 30.0, 70.0])
_copies = st.sampled_from([False, False, False, True])  # whether the message is a copy of the phone's last one


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 2]), _messages, _copies, _gaps_s, st.booleans()), min_size=4, max_size=60))
def test_every_token_is_answered_exactly_once_whatever_arrives(events: list[tuple[int, tuple[int, str], bool, float, bool]]) -> None:
    channel = UssdChannel(timeout_s=60.0, sessions_max=2)
    phones = [Phone(channel, f"86138001380{i:02d}") for i in range(3)]
    issued: list[Hashable] = []
    answered: list[Hashable] = []
    pending: list[SessionRef] = []
    now = 0.0

    def take(reply: UssdReply) -> None:
        assert fits_ussd(reply.text)
        answered.extend(reply.tokens)

    for who, (op, text), repeat, dt, finish in events:
        now += dt
        phone = phones[who]
        phone.now = now
        token = f"tok{len(issued)}"
        issued.append(token)
        step = phone.send(op, text, smsc_id=phone.last_id if repeat and phone.last_id else None, token=token)
        if isinstance(step, UssdReply):
            take(step)
        elif isinstance(step, UssdServe):
            pending.append(step.session)
        if finish and pending:
            take(channel.complete(pending.pop(0), ok(MessageId.PIN_CHANGED, Lang.ZH)))
        for ended in channel.expire(now):
            take(ended.reply)
    for ref in pending:
        take(channel.complete(ref, ok(MessageId.PIN_CHANGED, Lang.ZH)))
    for ended in channel.expire(now + 1e6):
        take(ended.reply)
    assert sorted(answered) == sorted(issued)  # none lost, none twice
    assert channel.sessions == 0 and channel.held == 0


_PATHS: dict[Step | None, list[str]] = {
    Step.MENU: [],
    Step.TOPUP_WHO: ["2"],
    Step.TOPUP_NUMBER: ["2", "2"],
    Step.TOPUP_AMOUNT: ["2", "1"],
    Step.PAY_PAYEE: ["3"],
    Step.PAY_AMOUNT: ["3", "13800138001"],
    Step.BILL_BILLER: ["4"],
    Step.BILL_ACCOUNT: ["4", "1"],
    Step.BILL_AMOUNT: ["4", "1", "1234567"],
    Step.OLD_PIN: ["6"],
    Step.NEW_PIN: ["6", PIN],
    Step.REPEAT_PIN: ["6", PIN, NEW],
    Step.PIN: ["1"],
    None: ["1", PIN],  # serving
}


def test_the_paths_reach_every_step() -> None:
    assert set(_PATHS) == {*Step, None}
    for step, path in _PATHS.items():
        if step is not None:
            channel = UssdChannel()
            Phone(channel).walk(path)
            assert channel._sessions[PHONE].dialogue.step is step


@pytest.mark.parametrize("op", [*Op, 4, 99])
@pytest.mark.parametrize("state", list(_PATHS), ids=lambda s: s.name if s is not None else "SERVING")
def test_every_state_and_operation_pair_gives_a_step(state: Step | None, op: int) -> None:
    channel = UssdChannel()
    phone = Phone(channel)
    phone.walk(_PATHS[state])
    for text in ("", "1", PIN, "9" * 70):
        step = phone.send(op, text)
        assert isinstance(step, UssdReply | UssdServe | UssdHold)
        if isinstance(step, UssdReply):
            assert fits_ussd(step.text) and step.end == (step.op in (Op.PSSR_RESPONSE, Op.PSSD_RESPONSE))


def test_copies_held_while_serving_are_bounded() -> None:
    channel = UssdChannel()
    phone = Phone(channel)
    serve = served(phone.walk(["1", PIN]))
    final_id = phone.last_id
    steps = [phone.send(Op.USSR_CONFIRM, PIN, smsc_id=final_id, token=f"c{i}") for i in range(20)]
    assert sum(isinstance(s, UssdHold) for s in steps) == HELD_TOKENS_MAX - 1 and channel.held == HELD_TOKENS_MAX
    extra = [s for s in steps if isinstance(s, UssdReply)]
    assert len(extra) == 20 - (HELD_TOKENS_MAX - 1) and all(s.text == "" and len(s.tokens) == 1 for s in extra)
    reply = channel.complete(serve.session, ok(MessageId.BALANCE, Lang.ZH, balance_fen=1))
    assert len(reply.tokens) == HELD_TOKENS_MAX
