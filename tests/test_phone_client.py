"""Simulated phones (simwallet.gateway.smsc.phone and .inbox) against the real embedded SMSC on loopback.

Text MO segmented (GSM 7-bit and UCS2) and MT joined back; USSD dialogues;
binary SMS-PP handed out raw; bounded inboxes; duplicates shown once;
rebinding after the SMSC restarts; refused binds; the load-generation pool.
The inbox is also fed random deliver_sm (hypothesis): it never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_smsc import ACCOUNTS, GW, Peer

from simwallet.gateway.smpp import DeliverSm, ItsSessionInfo, OptionalParams, UssdServiceOp
from simwallet.gateway.smpp.aio import SmppRequestError
from simwallet.gateway.sms.segments import MoPart, Reassembler, encode_reply
from simwallet.gateway.smsc import PhoneClient, PhoneError, Phones, SmscConfig, SmscServer, smsc_message_id
from simwallet.gateway.smsc.errors import InboxTimeout
from simwallet.gateway.smsc.inbox import Inboxes
from simwallet.gateway.smsc.phone import range_regex
from simwallet.gateway.smsc.router import SMSC_MESSAGE_ID_TAG

TEST_TIMEOUT_S = 20.0
ME = "8613800000001"
RANGE = "86138000000[0-9]{2}"


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await coro

    asyncio.run(bounded())


@contextlib.asynccontextmanager
async def attached(state_dir: Path, **options: Any) -> AsyncIterator[tuple[SmscServer, Peer, PhoneClient]]:
    """An SMSC, the gw application bound to it, and a phone client for 86138000000xx."""
    server = SmscServer(SmscConfig(ACCOUNTS), state_dir)
    await server.start()
    try:
        async with Peer(server.port) as gw, PhoneClient("127.0.0.1", server.port, "phones", "secret", RANGE, **options) as phones:
            yield server, gw, phones
    finally:
        await server.stop()


async def mo_text(gw: Peer, parts: int) -> tuple[str, tuple[str, ...]]:
    """The text the ESME reassembles from ``parts`` deliver_sm, and their SMSC ids."""
    reassembler, ids, text = Reassembler(), [], None
    for _ in range(parts):
        got = await gw.next()
        ids.append(smsc_message_id(got.tlvs) or "")
        done = reassembler.receive(MoPart(got.source_addr, got.data_coding, got.esm_class, got.short_message), now=0.0)
        text = done.text if done is not None else text
    assert text is not None
    return text, tuple(ids)


@pytest.mark.parametrize(
    ("text", "parts", "coding"),
    [("BAL 1234", 1, 0x00), ("余额 123456", 1, 0x08), ("TOPUP 100 {€} " * 20, 3, 0x00), ("转账给朋友 " * 30, 3, 0x08)],
)
def test_send_text_segments_and_the_esme_reassembles(tmp_path: Path, text: str, parts: int, coding: int) -> None:
    async def main() -> None:
        async with attached(tmp_path) as (_, gw, phones):
            ids = await phones.send_text(ME, GW, text)
            assert len(ids) == parts
            got_text, got_ids = await mo_text(gw, parts)
            assert got_text == text and sorted(got_ids) == sorted(ids)

    run(main())


def test_mt_text_joined_binary_raw_and_receipts(tmp_path: Path) -> None:
    async def main() -> None:
        async with attached(tmp_path) as (_, gw, phones):
            text = "您的余额为 100.00 元。感谢使用钱包服务。" * 4
            sent = []
            for segment in encode_reply(text, ref=9):
                fields = {"esm_class": segment.esm_class, "data_coding": segment.data_coding, "short_message": segment.short_message}
                sent.append(await gw.submit(source_addr=GW, destination_addr=ME, **fields))
            message = await phones.next_message(ME)
            assert message.text == text and message.parts == len(sent) == 2 and sorted(message.message_ids) == sorted(sent)
            assert message.source == GW and not message.is_receipt
            packet = bytes.fromhex("027000") + bytes(range(40))
            await gw.submit(source_addr=GW, destination_addr=ME, esm_class=0x40, protocol_id=0x7F, data_coding=0xF6, short_message=packet)
            binary = await phones.next_message(ME)
            assert binary.text is None and binary.short_message == packet and (binary.protocol_id, binary.data_coding) == (0x7F, 0xF6)
            # A phone asking for a receipt gets it in its inbox.
            (mine,) = await phones.send_text(ME, GW, "BAL 1234", registered_delivery=1)
            await gw.next()
            receipt = await phones.next_message(ME)
            assert receipt.is_receipt and receipt.receipted_message_id == mine and receipt.text and "stat:DELIVRD" in receipt.text

    run(main())


def test_ussd_dialogue(tmp_path: Path) -> None:
    async def main() -> None:
        async with attached(tmp_path) as (_, gw, phones):
            await phones.send_ussd(ME, "*166#")
            dial = await gw.next()
            assert dial.destination_addr == "*166#" and dial.tlvs.ussd_service_op == UssdServiceOp.PSSR_INDICATION
            session = ItsSessionInfo(3)
            menu = OptionalParams.of(ussd_service_op=UssdServiceOp.USSR_REQUEST, its_session_info=session)
            await gw.submit(source_addr="*166", destination_addr=ME, short_message=b"1 Balance\n2 Top up", tlvs=menu)
            shown = await phones.next_message(ME)
            assert (shown.text, shown.ussd_service_op, shown.its_session_info) == ("1 Balance\n2 Top up", 2, session)
            # The answer goes back to whoever asked.
            await phones.send_ussd(ME, "1", UssdServiceOp.USSR_CONFIRM, its_session_info=ItsSessionInfo(3, 1))
            answer = await gw.next()
            assert (answer.destination_addr, answer.short_message, answer.tlvs.ussd_service_op) == ("*166", b"1", 18)
            with pytest.raises(PhoneError):
                await phones.send_ussd("8613800000002", "1", UssdServiceOp.USSR_CONFIRM)

    run(main())


def test_bounded_inbox_and_timeouts(tmp_path: Path) -> None:
    async def main() -> None:
        async with attached(tmp_path, inbox_max=3) as (server, gw, phones):
            for n in range(5):
                await gw.submit(source_addr=GW, destination_addr=ME, short_message=b"msg %d" % n)
            while server.stats().accounts["phones"].delivered < 5:
                await asyncio.sleep(0.01)
            assert phones.unread(ME) == 3 and phones.inboxes.dropped == 2
            assert [(await phones.next_message(ME)).text for _ in range(3)] == ["msg 2", "msg 3", "msg 4"]
            with pytest.raises(InboxTimeout):
                await phones.next_message(ME, timeout_s=0.05)
            with pytest.raises(PhoneError):
                await phones.send_text("8613999999999", GW, "not mine")

    run(main())


def test_rebinds_after_the_smsc_restarts(tmp_path: Path) -> None:
    async def main() -> None:
        server = SmscServer(SmscConfig(ACCOUNTS), tmp_path)
        await server.start()
        port = server.port
        phones = PhoneClient("127.0.0.1", port, "phones", "secret", RANGE)
        await phones.start()
        await server.stop()
        # Accepted while nobody is bound for it: kept in the store across the restart.
        server = SmscServer(SmscConfig(ACCOUNTS), tmp_path)
        await server.start(port=port)
        try:
            async with Peer(port) as gw:
                ids = await phones.send_text(ME, GW, "after restart")
                got = await gw.next()
                assert got.short_message == b"after restart" and smsc_message_id(got.tlvs) == ids[0]
                assert phones.binds == 2
        finally:
            await phones.stop()
            await server.stop()

    run(main())


def test_refused_bind_raises_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        server = SmscServer(SmscConfig(ACCOUNTS), tmp_path)
        await server.start()
        try:
            phones = PhoneClient("127.0.0.1", server.port, "phones", "wrong", RANGE)
            with pytest.raises(SmppRequestError) as refused:
                await phones.start(timeout_s=5.0)
            assert refused.value.code == "ESME_RINVPASWD"
            await phones.stop()
        finally:
            await server.stop()

    run(main())


def test_phones_pool_sends_from_every_msisdn(tmp_path: Path) -> None:
    async def main() -> None:
        server = SmscServer(SmscConfig(ACCOUNTS), tmp_path)
        await server.start()
        try:
            async with (
                Peer(server.port) as gw,
                Phones("127.0.0.1", server.port, "phones", "secret", first="8613900000095", count=10) as pool,
            ):
                assert len(pool) == 10 and pool.msisdns[-1] == "8613900000104"
                result = await pool.send_from_all(GW, lambda msisdn: f"BAL {msisdn[-4:]}", concurrency=4)
                assert (result.accepted, result.throttled, result.failed) == (10, 0, 0)
                sources = sorted([(await gw.next()).source_addr for _ in range(10)])
                assert sources == list(pool.msisdns)
            slow = Phones("127.0.0.1", server.port, "slow", "secret", first="8613900000000", count=20)
            async with slow:
                result = await slow.send_from_all(GW, "BAL 1234", concurrency=20)
                assert result.accepted + result.throttled == 20 and result.throttled >= 15
        finally:
            await server.stop()

    run(main())


def test_range_regex() -> None:
    assert range_regex("8613900000095", 10) == "8613900000[0-9]{3}"
    assert range_regex("8613900000090", 10) == "861390000009[0-9]{1}"
    assert range_regex("8613900000000", 1) == "8613900000000"
    assert range_regex("8613800000000", 1000) == "8613800000[0-9]{3}"
    with pytest.raises(PhoneError):
        range_regex("99", 5)


def deliver(to: str = ME, **fields: Any) -> DeliverSm:
    return DeliverSm(source_addr=GW, destination_addr=to, **fields)


def test_inbox_duplicates_and_sar_parts() -> None:
    async def main() -> None:
        inboxes = Inboxes()
        first = deliver(short_message=b"once", tlvs=OptionalParams.of(unknown=[_id("00000007")]))
        assert inboxes.receive(first) is not None
        assert inboxes.receive(first) is None and inboxes.duplicates == 1
        parts = [
            deliver(short_message=chunk, tlvs=OptionalParams.of(sar_msg_ref_num=300, sar_total_segments=2, sar_segment_seqnum=n))
            for n, chunk in ((2, b"world"), (1, b"hello "))
        ]
        assert inboxes.receive(parts[0]) is None
        joined = inboxes.receive(parts[1])
        assert joined is not None and joined.text == "hello world" and joined.parts == 2
        assert [(await inboxes.next(ME, 0.1)).text for _ in range(2)] == ["once", "hello world"]

    run(main())


def _id(message_id: str) -> Any:
    from simwallet.gateway.smpp import Tlv

    return Tlv(SMSC_MESSAGE_ID_TAG, message_id.encode() + b"\0")


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=254),
    esm_class=st.sampled_from([0x00, 0x04, 0x40, 0x44, 0xC0]),
    data_coding=st.sampled_from([0x00, 0x01, 0x03, 0x04, 0x08, 0xF6, 0x11]),
    protocol_id=st.sampled_from([0x00, 0x7F]),
    sar=st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(1, 255), st.integers(1, 255)),
    ussd=st.none() | st.integers(0, 255),
)
def test_inbox_takes_any_deliver_sm(
    payload: bytes, esm_class: int, data_coding: int, protocol_id: int, sar: tuple[int, int, int] | None, ussd: int | None
) -> None:
    reference, total, sequence = sar if sar is not None else (None, None, None)
    tlvs = OptionalParams.of(sar_msg_ref_num=reference, sar_total_segments=total, sar_segment_seqnum=sequence, ussd_service_op=ussd)
    body = deliver(esm_class=esm_class, data_coding=data_coding, protocol_id=protocol_id, short_message=payload, tlvs=tlvs)
    inboxes = Inboxes()
    message = inboxes.receive(body)
    if message is not None:
        assert message.msisdn == ME and inboxes.unread(ME) == 1
        assert message.text is None or isinstance(message.text, str)
