"""The SMS channel, sans I/O: parts held until their message is complete, keys stable across redeliveries, direct answers."""

from __future__ import annotations

from simwallet.gateway.esme.sms_channel import Answer, Hold, Inbound, Serve, SmsChannel, normalize_address, reply_segments
from simwallet.gateway.sms.catalogue import Lang, MessageId
from simwallet.gateway.sms.commands import Balance, TopUp
from simwallet.gateway.sms.segments import Reassembler, encode_reply
from simwallet.gateway.wallet.outcomes import Outcome, ServiceReply

PHONE = "8613800138000"
SHORT_CODE = "10658000"


def inbound(token: str, smsc_id: str, text_part: bytes, *, esm_class: int = 0, data_coding: int = 0, source: str = PHONE) -> Inbound:
    return Inbound(token, smsc_id, source, SHORT_CODE, data_coding, esm_class, text_part)


def test_a_one_part_command_becomes_a_request_keyed_by_the_smsc_id() -> None:
    step = SmsChannel().receive(inbound("t1", "A1", b"BAL 135790"), 0.0)
    assert isinstance(step, Serve)
    assert step.request.key == f"sms:{PHONE}:A1" and step.request.msisdn == PHONE and step.reply_to == SHORT_CODE
    assert isinstance(step.request.command, Balance) and step.request.lang is Lang.EN
    assert step.tokens == ("t1",)
    assert "135790" not in repr(step)


def test_a_long_message_is_held_until_complete_and_answers_every_part_and_copy() -> None:
    text = "充值 100 13800138001 135790 " + "。" * 80  # UCS2, two parts
    parts = encode_reply(text, ref=9)
    assert len(parts) == 2
    channel = SmsChannel()
    first = inbound("t1", "P1", parts[0].short_message, esm_class=parts[0].esm_class, data_coding=parts[0].data_coding)
    copy = inbound("t1b", "P1", parts[0].short_message, esm_class=parts[0].esm_class, data_coding=parts[0].data_coding)
    second = inbound("t2", "P2", parts[1].short_message, esm_class=parts[1].esm_class, data_coding=parts[1].data_coding)
    assert isinstance(channel.receive(first, 0.0), Hold)
    assert isinstance(channel.receive(copy, 1.0), Hold)  # the SMSC delivered part 1 again
    assert channel.held == 2
    step = channel.receive(second, 2.0)
    assert isinstance(step, Serve) and isinstance(step.request.command, TopUp)
    assert step.request.key == f"sms:{PHONE}:P1"
    assert sorted(map(str, step.tokens)) == ["t1", "t1b", "t2"]
    assert channel.held == 0
    late = channel.receive(second, 3.0)  # a late copy of a part already served: answered, nothing held
    assert isinstance(late, Answer) and late.text == "" and channel.held == 0


def test_the_same_message_delivered_again_after_a_restart_has_the_same_key() -> None:
    parts = encode_reply(" " * 200 + "BAL 135790", ref=3)
    keys = []
    for _ in range(2):
        channel = SmsChannel()
        steps = [channel.receive(inbound(f"t{i}", f"S{i}", p.short_message, esm_class=p.esm_class), 0.0) for i, p in enumerate(parts)]
        serve = steps[-1]
        assert isinstance(serve, Serve)
        keys.append(serve.request.key)
    assert keys[0] == keys[1] == f"sms:{PHONE}:S0"


def test_a_bad_command_gets_the_syntax_in_the_senders_language() -> None:
    step = SmsChannel().receive(inbound("t1", "A1", "付款 100".encode("utf-16-be"), data_coding=8), 0.0)
    assert isinstance(step, Answer) and step.destination == PHONE and step.reply_to == SHORT_CODE
    assert "付款" in step.text and step.tokens == ("t1",)


def test_undecodable_or_unanswerable_input_is_acknowledged() -> None:
    channel = SmsChannel()
    odd = channel.receive(inbound("t1", "A1", b"BAL", data_coding=0x04), 0.0)  # 8-bit binary is not a command
    assert isinstance(odd, Answer) and odd.destination == PHONE and "BAL" in odd.text
    nobody = channel.receive(inbound("t2", "A2", b"BAL 135790", source="MyBank"), 0.0)
    assert isinstance(nobody, Answer) and nobody.destination == "" and nobody.tokens == ("t2",)


def test_an_abandoned_long_message_is_answered_as_incomplete() -> None:
    parts = encode_reply("y" * 300, ref=4)
    channel = SmsChannel(Reassembler(timeout_s=10.0))
    assert isinstance(channel.receive(inbound("t1", "L1", parts[0].short_message, esm_class=parts[0].esm_class), 0.0), Hold)
    assert channel.expire(5.0) == []
    [answer] = channel.expire(11.0)
    assert answer.destination == PHONE and answer.reply_to == SHORT_CODE and answer.tokens == ("t1",)
    assert channel.held == 0


def test_replies_are_rendered_in_the_requests_language() -> None:
    zh = ServiceReply(message_id=MessageId.WALLET_LOCKED, params={}, lang=Lang.ZH, outcome=Outcome.LOCKED)
    [segment] = reply_segments(zh, ref=1)
    assert segment.data_coding == 0x08
    en = ServiceReply(message_id=MessageId.WALLET_LOCKED, params={}, lang=Lang.EN, outcome=Outcome.LOCKED)
    [segment] = reply_segments(en, ref=1)
    assert segment.data_coding == 0x00


def test_addresses() -> None:
    assert normalize_address("+8613800138000") == PHONE
    assert normalize_address(PHONE) == PHONE
    assert normalize_address("MyBank") is None and normalize_address("") is None and normalize_address("1" * 21) is None
