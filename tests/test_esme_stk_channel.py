"""The STK channel (gateway/esme/stk_channel.py) between the real wallet applet and the real wallet service.

Every request is built by the wallet applet on a virtual card (tests/wallet_helpers.py), driven through its
STK menu by a handset with a scripted user; its SMS-SUBMIT becomes the deliver_sm an SMSC would hand the
gateway (TP-DCS → data_coding, UDHI → esm_class 0x40, TP-PID → protocol_id, the UDH and the packet as the
user data). The channel's answer goes back as the SMS-DELIVER an SMSC makes of the submit_sm (TP-PID 7F,
DCS F6, UDHI) through ENVELOPE SMS-PP DOWNLOAD, and the applet must show it. The databases are real (the
``db_url`` fixture: SQLite and PostgreSQL); the cryptography is the project's own, never mocked.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from gateway_helpers import register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_book import Clock, us
from wallet_helpers import ICCID, SCTS, SERVICE_NUMBER, TAR, WALLET_KVN, WALLET_MASTER, WALLET_PIN, Card, personalized_card, wallet_keyset

from simwallet.applet.handset import Handset
from simwallet.applet.handset_user import ScriptedUser
from simwallet.applet.protocols import secured
from simwallet.applet.protocols.secured import ChecksumType, CounterMode, PorMode, Spi
from simwallet.applet.protocols.sms import Address, Npi, SmsDeliver, Ton, UserData, parse_sms_submit
from simwallet.applet.protocols.sms_dcs import DataCoding
from simwallet.applet.protocols.sms_udh import parse_udh
from simwallet.applet.protocols.wallet_messages import WALLET_SPI, Operation, WalletRequest, WalletResponse, WalletStatus
from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.diversify import WalletKeys, card_wallet_keys
from simwallet.gateway.esme import stk_store
from simwallet.gateway.esme.stk_channel import (
    StkChannel,
    StkInbound,
    StkReject,
    StkRejectReason,
    StkServe,
    StkSubmit,
    StkUsageError,
    wallet_response,
)
from simwallet.gateway.esme.stk_store import keystore_masters
from simwallet.gateway.keystore import KeyStore
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Transfer, TransferKind
from simwallet.gateway.sms.catalogue import Biller, EntryKind, HistoryEntry, Lang, MessageId, render
from simwallet.gateway.sms.commands import Balance, BankBalance, Bill, Command, History, Pay, PayeeKind, TopUp
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import metadata
from simwallet.gateway.wallet import ServiceReply, WalletService, pin_verification_key
from simwallet.gateway.wallet.outcomes import Outcome, reply

T0_US = us(2026, 6, 1, 2)
A, B = "8613800138000", "8613900139000"  # the card's number; another customer's
OTHER_ICCID = "8986001234567890099"
FUNDS_A = 50_000  # 500 yuan; the basic tier allows 1,000 yuan a transaction
WALLET_A = "customer:A1/customer_wallet"


def masters_of(*versions: tuple[int, WalletKeys]) -> Callable[[int], WalletKeys | None]:
    table = dict(versions)
    return table.get


@dataclass
class World:
    engine: sa.Engine
    ledger: Ledger
    registry: CardRegistry
    service: WalletService
    channel: StkChannel
    card: Card
    clock: Clock
    smsc_ids: Iterator[int]

    def phone(self, *answers: str, language: str = "zh") -> Handset:
        handset = Handset(self.card.uicc.apdu, language=language, user=ScriptedUser(answers))
        handset.power_up()
        return handset

    def send(self, item: str, *answers: str, language: str = "zh") -> tuple[Handset, StkInbound]:
        """Choose ``item`` in the wallet's menu, answer its prompts and the PIN: the deliver_sm of its SMS."""
        handset = self.phone(*answers, WALLET_PIN, language=language)
        handset.select(item)
        [tpdu] = handset.sent
        return handset, self.inbound(tpdu)

    def inbound(self, tpdu: bytes, *, smsc_id: str | None = None, source: str = A) -> StkInbound:
        """What an SMSC hands the gateway for the card's SMS-SUBMIT (its fields as SMPP 3.4 §4.6.1 carries them)."""
        submit = parse_sms_submit(tpdu)
        assert submit.ud.header is not None
        payload = submit.ud.header.to_bytes() + submit.ud.body
        smsc = smsc_id or f"mo-{next(self.smsc_ids)}"
        return StkInbound(smsc, smsc, source, submit.da.number, submit.dcs.value, 0x40, submit.pid, payload)

    def serve(self, serve: StkServe) -> ServiceReply:
        if serve.answer is not None:
            return serve.answer
        assert serve.request is not None
        return self.service.handle(serve.request)

    def accept(self, inbound: StkInbound) -> StkServe:
        result = self.channel.receive(inbound)
        assert isinstance(result, StkServe), result
        return result

    def answer(self, handset: Handset, submit: StkSubmit) -> bytes | None:
        """The SMSC's SMS-DELIVER of the submit_sm, downloaded to the card (TS 31.111 §7.1.1.2)."""
        assert (submit.protocol_id, submit.data_coding, submit.esm_class) == (0x7F, 0xF6, 0x40)
        header, end = parse_udh(submit.short_message)
        ud = UserData(submit.short_message[end:], header)
        oa = Address(Ton.UNKNOWN, Npi.ISDN, submit.source)
        deliver = SmsDeliver(oa=oa, scts=SCTS, ud=ud, pid=submit.protocol_id, dcs=DataCoding(submit.data_coding))
        return handset.deliver_sms_pp(deliver.to_bytes())

    def balance(self) -> int:
        return self.ledger.account(WALLET_A).balance

    def counters(self) -> stk_store.CounterRow | None:
        with self.engine.connect() as conn:
            return stk_store.read_row(conn, ICCID)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = open_engine(db_url)
    clock = Clock(T0_US)
    ledger = Ledger(engine, clock=clock)
    registry = CardRegistry(engine, ledger, clock=clock)
    register(registry, ICCID, "460001234567001", A, "customer:A1", wallet_key_version=WALLET_KVN)
    register(registry, OTHER_ICCID, "460001234567002", B, "customer:B2", wallet_key_version=WALLET_KVN)
    ledger.open_accounts(
        [
            AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC"),
            AccountSpec(AccountKind.MERCHANT, "merchant:M123456", "merchant:M123456"),
            AccountSpec(AccountKind.BILLER, "biller:electricity", "biller:electricity"),
        ]
    )
    ledger.post_one(Transfer("fund-a", "bank:ICBC/bank_settlement", WALLET_A, FUNDS_A, TransferKind.DEPOSIT, Channel.BANK))
    service = WalletService(engine, ledger, registry, pin_key=pin_verification_key(bytes(range(16))), clock=clock)
    channel = StkChannel(engine, registry, masters_of((WALLET_KVN, WALLET_MASTER)), clock=clock)
    try:
        yield World(engine, ledger, registry, service, channel, personalized_card(None), clock, itertools.count(1))
    finally:
        engine.dispose()


def opened(submit: StkSubmit, last_counter: int = 0) -> tuple[secured.CommandPacket, WalletResponse]:
    """The answer as the card reads it, unwrapped here with the card's keys."""
    keyset = wallet_keyset().keyset()
    packet = secured.unwrap_command(submit.short_message, lambda tar, kic, kid: keyset, last_counter=last_counter)
    return packet, WalletResponse.from_bytes(packet.data)


# --- requests from the applet's menu become service requests ----------------------------------------------


def test_balance_from_the_menu_to_the_screen(world: World) -> None:
    handset, inbound = world.send("余额查询")
    # The applet's MO message, as the SMSC hands it on: 8-bit data class 2, UDHI, PID 00, to the service number.
    assert (inbound.data_coding, inbound.esm_class, inbound.protocol_id, inbound.destination) == (0xF6, 0x40, 0x00, SERVICE_NUMBER)
    serve = world.accept(inbound)
    assert serve.request is not None and serve.answer is None and not serve.redelivery
    assert serve.request.key == f"stk:{ICCID}:1" and serve.request.channel is Channel.STK
    assert serve.request.msisdn == A and serve.request.lang is Lang.ZH and serve.request.pin_verified_by_card
    assert serve.request.command == Balance(lang=Lang.ZH, pin="")
    assert (serve.iccid, serve.counter, serve.request_id, serve.tar, serve.operation) == (ICCID, 1, 1, TAR, Operation.BALANCE)
    answer = world.serve(serve)
    submit = world.channel.respond(serve, answer)
    assert (submit.destination, submit.source, submit.counter) == (A, SERVICE_NUMBER, 1)
    assert len(submit.short_message) <= secured.SMS_USER_DATA_MAX_OCTETS
    packet, response = opened(submit)
    assert (packet.spi, packet.tar.to_bytes(), packet.counter) == (WALLET_SPI, TAR, 1)
    assert (response.request_id, response.status, response.balance_fen) == (1, WalletStatus.OK, FUNDS_A)
    assert world.answer(handset, submit) == b""  # no PoR: the wallet's SPI asks for none
    assert handset.screen[-1] == render(MessageId.BALANCE, Lang.ZH, balance_fen=FUNDS_A) == "您的手机钱包余额为500.00元"
    assert world.card.wallet.state.server_counter == 1 and world.card.wallet.state.refused == 0
    row = world.counters()
    assert row is not None and (row.card_counter, row.smsc_id, row.gateway_counter, row.updated_at) == (1, inbound.smsc_id, 1, T0_US)


def test_english_balance(world: World) -> None:
    handset, inbound = world.send("Balance", language="en")
    serve = world.accept(inbound)
    assert serve.lang is Lang.EN and serve.request is not None and serve.request.command == Balance(lang=Lang.EN, pin="")
    world.answer(handset, world.channel.respond(serve, world.serve(serve)))
    assert handset.screen[-1] == "Wallet balance: ¥500.00"


@pytest.mark.parametrize(
    ("item", "answers", "command", "message_id", "status", "moved"),
    [
        ("话费充值", ("1", "50"), TopUp(lang=Lang.ZH, amount_fen=5000, target=None, pin=""), MessageId.TOPUP_OK, WalletStatus.OK, 5000),
        (
            "话费充值",
            ("2", "13900139000", "30"),
            TopUp(lang=Lang.ZH, amount_fen=3000, target=B, pin=""),
            MessageId.TOPUP_OK,
            WalletStatus.OK,
            3000,
        ),
        (
            "付款",
            ("付款给商户", "123456", "12"),
            Pay(lang=Lang.ZH, payee_kind=PayeeKind.MERCHANT, payee="M123456", amount_fen=1200, pin=""),
            MessageId.PAY_OK,
            WalletStatus.OK,
            1200,
        ),
        (
            "付款",
            ("付款给手机号", "13900139000", "20"),
            Pay(lang=Lang.ZH, payee_kind=PayeeKind.MSISDN, payee=B, amount_fen=2000, pin=""),
            MessageId.PAY_OK,
            WalletStatus.OK,
            2000,
        ),
        (
            "缴费",
            ("2", "4567890", "99"),
            Bill(lang=Lang.ZH, biller=Biller.ELECTRICITY, account="4567890", amount_fen=9900, pin=""),
            MessageId.BILL_OK,
            WalletStatus.OK,
            9900,
        ),
        ("银行卡余额", (), BankBalance(lang=Lang.ZH, pin=""), MessageId.BANK_NOT_LINKED, WalletStatus.DECLINED, 0),
        (
            "付款",
            ("付款给商户", "123456", "800"),
            Pay(lang=Lang.ZH, payee_kind=PayeeKind.MERCHANT, payee="M123456", amount_fen=80000, pin=""),
            MessageId.INSUFFICIENT_FUNDS,
            WalletStatus.INSUFFICIENT_FUNDS,
            0,
        ),
        (
            "付款",
            ("付款给商户", "123456", "1500"),
            Pay(lang=Lang.ZH, payee_kind=PayeeKind.MERCHANT, payee="M123456", amount_fen=150000, pin=""),
            MessageId.LIMIT_EXCEEDED,
            WalletStatus.LIMIT_EXCEEDED,
            0,
        ),
        (
            "付款",
            ("付款给手机号", "13700137000", "20"),
            Pay(lang=Lang.ZH, payee_kind=PayeeKind.MSISDN, payee="8613700137000", amount_fen=2000, pin=""),
            MessageId.PAYEE_UNKNOWN,
            WalletStatus.UNKNOWN_PAYEE,
            0,
        ),
    ],
)
def test_each_operation_becomes_its_command_and_its_answer_is_shown(
    world: World, item: str, answers: tuple[str, ...], command: Command, message_id: MessageId, status: WalletStatus, moved: int
) -> None:
    handset, inbound = world.send(item, *answers)
    serve = world.accept(inbound)
    assert serve.request is not None and serve.request.command == command
    answer = world.serve(serve)
    assert answer.message_id is message_id
    submit = world.channel.respond(serve, answer)
    _, response = opened(submit)
    assert response.status == status
    # The wallet balance travels where the reply states the wallet's balance, and only there.
    assert response.balance_fen == answer.params.get("balance_fen" if message_id is not MessageId.BANK_BALANCE else "")
    world.answer(handset, submit)
    text = render(answer.message_id, answer.lang, **answer.params)
    assert handset.screen[-1] == text or (handset.screen[-1].endswith("…") and text.startswith(handset.screen[-1][:-1]))
    assert world.balance() == FUNDS_A - moved


def test_history_built_by_the_applet(world: World) -> None:
    # The default menu has no history item: the applet builds the request as its flow would.
    tpdu = world.card.wallet.prepare_request(Operation.HISTORY, "zh", {"count": 5})
    assert tpdu is not None
    serve = world.accept(world.inbound(tpdu))
    assert serve.request is not None and serve.request.command == History(lang=Lang.ZH, pin="")
    _, response = opened(world.channel.respond(serve, world.serve(serve)))
    assert response.ok and response.text.text is not None and response.text.text.startswith("最近交易")


def test_pin_change_is_a_notice_answered_without_the_service(world: World) -> None:
    handset = world.phone(WALLET_PIN, "1357", "1357")
    handset.select("修改密码")
    serve = world.accept(world.inbound(handset.sent[0]))
    assert serve.request is None and serve.answer is not None and serve.operation is Operation.PIN_CHANGED
    assert (serve.answer.message_id, serve.answer.outcome) == (MessageId.PIN_CHANGED, Outcome.OK)
    world.answer(handset, world.channel.respond(serve, serve.answer))
    assert handset.screen == ["密码已修改。", render(MessageId.PIN_CHANGED, Lang.ZH)]


def test_a_biller_code_the_catalogue_lacks_is_answered_here(world: World) -> None:
    handset, inbound = world.send("缴费", "1001", "4567890", "99")
    serve = world.accept(inbound)
    assert serve.request is None and serve.answer is not None and serve.answer.message_id is MessageId.BILLER_INVALID
    submit = world.channel.respond(serve, serve.answer)
    assert opened(submit)[1].status == WalletStatus.INVALID_REQUEST
    world.answer(handset, submit)
    assert handset.screen[-1] == render(MessageId.BILLER_INVALID, Lang.ZH)


# --- replays, redeliveries, forgeries --------------------------------------------------------------------


def test_replay_is_refused_and_a_redelivery_answered_again_without_posting_twice(world: World) -> None:
    handset, inbound = world.send("付款", "付款给商户", "123456", "12")
    first = world.accept(inbound)
    world.answer(handset, world.channel.respond(first, world.serve(first)))
    assert world.balance() == FUNDS_A - 1200
    replay = world.channel.receive(replace(inbound, smsc_id="mo-other", token="t2"))
    assert isinstance(replay, StkReject) and replay.reason is StkRejectReason.REPLAY and replay.token == "t2"
    again = world.accept(inbound)  # the SMSC delivers the same message again: same id, same counter
    assert again.redelivery and again.request == first.request
    answer = world.serve(again)
    assert answer.replayed and world.balance() == FUNDS_A - 1200
    submit = world.channel.respond(again, answer)
    assert submit.counter == 2  # a new answer takes the next counter, which the card accepts
    world.answer(handset, submit)
    assert handset.screen[-2] == handset.screen[-1] and world.card.wallet.state.refused == 0
    # Once a later request is accepted, the old message is a replay even with its own SMSC id.
    _, later = world.send("余额查询")
    world.accept(later)
    assert getattr(world.channel.receive(inbound), "reason", None) is StkRejectReason.REPLAY


def test_every_flipped_bit_of_the_ciphered_part_is_a_forgery_and_spends_no_counter(world: World) -> None:
    _, inbound = world.send("余额查询")
    body = 3 + 2 + 1 + 2 + 1 + 1 + 3  # UDH, CPL, CHL, SPI, KIc, KID, TAR: then CNTR onwards, ciphered
    cc = body + 5 + 1  # after CNTR and PCNTR, inside the first cipher block
    for offset in [cc, cc + 7, *range(body, len(inbound.payload), 5)]:
        forged = bytearray(inbound.payload)
        forged[offset] ^= 0x01
        result = world.channel.receive(replace(inbound, payload=bytes(forged)))
        assert isinstance(result, StkReject) and result.reason is StkRejectReason.FORGED, offset
    assert world.counters() is None
    assert world.accept(inbound).counter == 1


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(3 + 3, StkRejectReason.INSECURE), (3 + 8, StkRejectReason.UNKNOWN_TAR), (3 + 6, StkRejectReason.FORGED)],
    ids=["spi", "tar", "kic"],
)
def test_flipped_header_bits(world: World, offset: int, reason: StkRejectReason) -> None:
    _, inbound = world.send("余额查询")
    forged = bytearray(inbound.payload)
    forged[offset] ^= 0x01
    result = world.channel.receive(replace(inbound, payload=bytes(forged)))
    assert isinstance(result, StkReject) and result.reason is reason


def test_wrong_keys_are_forged_and_an_unknown_version_is_no_key(world: World) -> None:
    _, inbound = world.send("余额查询")
    wrong = WalletKeys(kic=bytes(16), kid=bytes(16))
    other = StkChannel(world.engine, world.registry, masters_of((WALLET_KVN, wrong)), clock=world.clock)
    assert getattr(other.receive(inbound), "reason", None) is StkRejectReason.FORGED
    none = StkChannel(world.engine, world.registry, masters_of(), clock=world.clock)
    assert getattr(none.receive(inbound), "reason", None) is StkRejectReason.UNKNOWN_KEY
    assert world.accept(inbound).counter == 1


def test_keys_from_a_real_key_store(world: World, tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "keys.json", "passphrase", kdf_n=2)
    from simwallet.applet.protocols.scp03 import kcv

    store.import_version(
        "wallet",
        WALLET_KVN,
        {"kic": WALLET_MASTER.kic, "kid": WALLET_MASTER.kid},
        {n: kcv(k) for n, k in (("kic", WALLET_MASTER.kic), ("kid", WALLET_MASTER.kid))},
    )
    channel = StkChannel(world.engine, world.registry, keystore_masters(store), clock=world.clock)
    handset, inbound = world.send("余额查询")
    serve = channel.receive(inbound)
    assert isinstance(serve, StkServe)
    world.answer(handset, channel.respond(serve, world.serve(serve)))
    assert handset.screen[-1] == "您的手机钱包余额为500.00元"
    assert keystore_masters(store)(WALLET_KVN + 1) is None


def test_packets_that_are_not_the_wallets(world: World) -> None:
    _, inbound = world.send("余额查询")
    keyset = wallet_keyset().keyset()
    asks_por = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True)
    cases = {
        StkRejectReason.UNKNOWN_CARD: replace(inbound, source="8618800188000"),
        StkRejectReason.MALFORMED: replace(inbound, esm_class=0x00),
        StkRejectReason.INSECURE: replace(inbound, payload=secured.wrap_command(b"\x01", keyset, spi=asks_por, tar=TAR, counter=9)),
    }
    for reason, bad in [
        *cases.items(),
        (StkRejectReason.MALFORMED, replace(inbound, data_coding=0x08)),
        (StkRejectReason.MALFORMED, replace(inbound, payload=inbound.payload[3:])),
        (StkRejectReason.MALFORMED, replace(inbound, payload=inbound.payload + b"\x00")),
        (StkRejectReason.MALFORMED, replace(inbound, smsc_id="")),
        (
            StkRejectReason.UNKNOWN_TAR,
            replace(inbound, payload=secured.wrap_command(b"\x01", keyset, spi=WALLET_SPI, tar=b"\xb0\x00\x20", counter=9)),
        ),
        (StkRejectReason.UNKNOWN_CARD, replace(inbound, source="not a number")),
    ]:
        result = world.channel.receive(bad)
        assert isinstance(result, StkReject) and result.reason is reason, reason
    # Authentic, but no wallet request: refused, and its counter is spent.
    junk = secured.wrap_command(b"\x09junk", keyset, spi=WALLET_SPI, tar=TAR, counter=5)
    result = world.channel.receive(replace(inbound, payload=junk))
    assert isinstance(result, StkReject) and result.reason is StkRejectReason.INVALID_REQUEST
    assert getattr(world.channel.receive(inbound), "reason", None) is StkRejectReason.REPLAY  # counter 1 < 5


def test_counters_survive_a_new_channel_and_a_new_engine(world: World, db_url: str) -> None:
    handset, inbound = world.send("余额查询")
    serve = world.accept(inbound)
    world.answer(handset, world.channel.respond(serve, world.serve(serve)))
    engine = open_engine(db_url)
    try:
        channel = StkChannel(engine, CardRegistry(engine, Ledger(engine)), masters_of((WALLET_KVN, WALLET_MASTER)))
        assert getattr(channel.receive(replace(inbound, smsc_id="mo-late")), "reason", None) is StkRejectReason.REPLAY
        again = channel.receive(inbound)
        assert isinstance(again, StkServe) and again.redelivery
        submit = channel.respond(again, world.serve(again))
        assert submit.counter == 2
        world.answer(handset, submit)
        assert world.card.wallet.state.server_counter == 2 and world.card.wallet.state.refused == 0
    finally:
        engine.dispose()


def test_respond_refuses_a_serve_this_database_never_accepted(world: World) -> None:
    _, inbound = world.send("余额查询")
    serve = world.accept(inbound)
    stranger = replace(serve, iccid=OTHER_ICCID)
    with pytest.raises(StkUsageError):
        world.channel.respond(stranger, reply(MessageId.UNAVAILABLE, Lang.ZH, Outcome.UNAVAILABLE))
    with pytest.raises(StkUsageError):
        world.channel.respond(replace(serve, key_version=9), world.serve(serve))


# --- secrets stay out of logs and reprs ----------------------------------------------------------------------


def test_no_key_pin_or_packet_in_logs_or_reprs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, inbound = world.send("余额查询")
    forged = bytearray(inbound.payload)
    forged[-1] ^= 0x80
    seen: list[object] = [world.channel.receive(replace(inbound, payload=bytes(forged)))]
    serve = world.accept(inbound)
    seen += [serve, world.channel.receive(replace(inbound, smsc_id="x")), inbound, world.channel]
    submit = world.channel.respond(serve, world.serve(serve))
    seen.append(submit)
    card_keys = card_wallet_keys(WALLET_MASTER, ICCID)
    secrets = [k.hex() for k in (*WALLET_MASTER, *card_keys)] + [WALLET_PIN, inbound.payload[3:].hex(), submit.short_message[3:].hex()]
    text = (caplog.text + "".join(repr(x) for x in seen)).lower()
    assert "forged" in caplog.text and "replay" in caplog.text
    for secret in secrets:
        assert secret.lower() not in text


# --- the pure parts and bad input --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lang=st.sampled_from(list(Lang)),
    entries=st.lists(st.tuples(st.integers(1, 28), st.sampled_from(list(EntryKind)), st.integers(1, 10**9)), min_size=0, max_size=5),
)
def test_every_reply_fits_one_secured_sms(lang: Lang, entries: list[tuple[int, EntryKind, int]]) -> None:
    history = tuple(HistoryEntry(date(2026, 5, day), kind, fen) for day, kind, fen in entries)
    for answer in (
        reply(MessageId.HISTORY, lang, Outcome.OK, {"entries": history}),
        reply(MessageId.BANK_NOT_LINKED, lang, Outcome.REFUSED),
        reply(MessageId.PAY_OK, lang, Outcome.OK, {"amount_fen": 10**12, "payee": "M12345678", "balance_fen": 10**12 - 1}),
    ):
        response = wallet_response(7, answer)
        text = render(answer.message_id, answer.lang, **answer.params)
        shown = response.text.text or ""
        assert (
            shown == text or (shown[-1:] == "…" and text.startswith(shown[:-1])) or (shown.endswith("...") and text.startswith(shown[:-3]))
        )
        assert WalletResponse.from_bytes(response.to_bytes()) == response


def test_a_balance_that_fits_travels_and_one_that_does_not_is_dropped_before_the_text() -> None:
    short = wallet_response(1, reply(MessageId.BALANCE, Lang.EN, Outcome.OK, {"balance_fen": 12345}))
    assert (short.balance_fen, short.text.text, short.status) == (12345, "Wallet balance: ¥123.45", WalletStatus.OK)
    locked = wallet_response(1, reply(MessageId.WALLET_LOCKED, Lang.EN, Outcome.LOCKED))
    assert locked.status == WalletStatus.DECLINED and (locked.text.text or "").endswith("...")
    busy = wallet_response(1, replace(reply(MessageId.UNAVAILABLE, Lang.ZH, Outcome.UNAVAILABLE), stored=False))
    assert busy.status == WalletStatus.TRY_LATER


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=150),
    udh=st.booleans(),
    data_coding=st.sampled_from([0xF6, 0x04, 0x00, 0x08]),
    esm_class=st.sampled_from([0x40, 0x00, 0xC0]),
)
def test_random_bytes_are_only_ever_rejected(world: World, body: bytes, udh: bool, data_coding: int, esm_class: int) -> None:
    payload = (b"\x02\x70\x00" if udh else b"") + body
    result = world.channel.receive(StkInbound("t", "mo-x", A, SERVICE_NUMBER, data_coding, esm_class, 0, payload))
    assert isinstance(result, StkReject)


# A genuine request of the card (counter 1000, built with its keys as the applet builds it), to mutate.
GENUINE = secured.wrap_command(
    WalletRequest(request_id=1000, operation=Operation.BALANCE, language="zh").to_bytes(),
    wallet_keyset().keyset(),
    spi=WALLET_SPI,
    tar=TAR,
    counter=1000,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, len(GENUINE) - 1), value=st.integers(0, 255), keep=st.integers(0, len(GENUINE)))
def test_a_mutated_genuine_packet_is_rejected_unless_unchanged(world: World, at: int, value: int, keep: int) -> None:
    mutated = bytearray(GENUINE)
    mutated[at] = value
    payload = bytes(mutated[:keep])
    result = world.channel.receive(StkInbound("t", f"mo-{at}-{value}-{keep}", A, SERVICE_NUMBER, 0xF6, 0x40, 0, payload))
    if payload == GENUINE:
        # Accepted once; then a replay (another SMSC id) or a redelivery (the same one).
        assert isinstance(result, StkServe) or getattr(result, "reason", None) is StkRejectReason.REPLAY
    else:
        assert isinstance(result, StkReject)


# --- the table -------------------------------------------------------------------------------------------


def test_the_migration_creates_the_declared_table(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert [d for d in diffs if "stk_counters" in repr(d)] == []
        assert "stk_counters" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
