"""An STK wallet request end to end: the virtual card over PC/SC → handset → SMSC → gateway → ledger → back to the card's screen.

Everything real: the personalized wallet applet on a virtual UICC behind
pyscard → the private pcscd → vpcd; the handset simulator driving it; the
project's SMSC simulator and the gateway over SMPP on loopback; the wallet
service and the STK channel on SQLite and the throwaway PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from gateway_helpers import fund, open_bank, register, service_transfers
from pcsc_helpers import connect, transmit, wait_for_card
from smartcard.scard import SCARD_LEAVE_CARD, SCardDisconnect  # type: ignore[import-untyped]
from wallet_helpers import ICCID, SERVICE_NUMBER, WALLET_KVN, WALLET_MASTER, WALLET_PIN, personalized_card

from simwallet.applet.card.link import VpcdLink, port_for_reader
from simwallet.applet.handset import Handset
from simwallet.applet.handset_user import ScriptedUser
from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.esme.app import Gateway, GatewayConfig
from simwallet.gateway.esme.stk_channel import StkChannel
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.smsc import Account, SmscConfig, SmscServer
from simwallet.gateway.smsc import AccountKind as SmscAccountKind
from simwallet.gateway.smsc.air import sms_deliver_for, submit_sm_for
from simwallet.gateway.smsc.phone import PhoneClient
from simwallet.gateway.smsc.store import STORE_FILE_NAME
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.wallet import WalletService, pin_verification_key
from simwallet.provisioning.pcscd import PrivatePcscd

A = "8613800138000"
WAIT_S = 10.0
SCTS = datetime(2026, 11, 23, 21, 30, 5, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture
def reader(pcscd: PrivatePcscd, context: int) -> Iterator[str]:
    card = personalized_card(None)
    link = VpcdLink(card.uicc, port=port_for_reader(0, base_port=pcscd.base_port))
    link.start()
    name = pcscd.reader_names[0]
    try:
        wait_for_card(context, name)
        yield name
    finally:
        link.stop()
        wait_for_card(context, name, present=False)


def test_balance_and_top_up_from_the_cards_menu_and_a_replay_refused(reader: str, context: int, db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    ledger = Ledger(engine)
    registry = CardRegistry(engine, ledger)
    register(registry, ICCID, "460001234567890", A, "customer:A1", wallet_key_version=WALLET_KVN)
    open_bank(ledger)
    fund(ledger, "fund-a", "customer:A1", 50_000)
    service = WalletService(engine, ledger, registry, pin_key=pin_verification_key(bytes(16)))
    stk = StkChannel(engine, registry, {WALLET_KVN: WALLET_MASTER}.get)
    handle, _ = connect(context, reader)
    handset = Handset(lambda capdu: transmit(handle, capdu), user=ScriptedUser([WALLET_PIN, "1", "50", WALLET_PIN]))

    async def request(gateway_phone: PhoneClient, item: str) -> tuple[str, object]:
        sent = len(handset.sent)
        await asyncio.to_thread(handset.select, item)
        [tpdu] = handset.sent[sent:]
        submit = submit_sm_for(tpdu, A)
        await gateway_phone.submit(submit)
        answer = await gateway_phone.next_message(A, WAIT_S)
        assert answer.protocol_id == 0x7F and answer.data_coding == 0xF6
        await asyncio.to_thread(handset.deliver_sms_pp, sms_deliver_for(answer, SCTS))
        return handset.screen[-1], submit

    async def scenario() -> tuple[list[str], int]:
        accounts = (
            Account("gateway", "gwsecret", SmscAccountKind.ESME, prefixes=(SERVICE_NUMBER,)),
            Account("phones", "phsecret", SmscAccountKind.PHONES),
        )
        smsc = SmscServer(SmscConfig(accounts), tmp_path / "smsc")
        await smsc.start()
        stop = asyncio.Event()
        gateway = Gateway(GatewayConfig(port=smsc.port, system_id="gateway", password="gwsecret"), service, stk=stk)
        task = asyncio.create_task(gateway.run(stop))
        phone = PhoneClient("127.0.0.1", smsc.port, "phones", "phsecret", A)
        await phone.start()
        try:
            await asyncio.to_thread(handset.power_up)
            balance, _ = await request(phone, "余额查询")
            topped, top_up = await request(phone, "话费充值")
            # The same packet sent again (a new SMSC message, the same counter): dropped, answered with nothing.
            await phone.submit(top_up)  # type: ignore[arg-type]
            with pytest.raises(TimeoutError):
                await phone.next_message(A, 1.5)
            replays = int(gateway.metrics.errors.labels("stk_replay")._value.get())
            return [balance, topped], replays
        finally:
            await phone.stop()
            stop.set()
            await asyncio.wait_for(task, WAIT_S)
            await smsc.stop()

    try:
        screens, replays = asyncio.run(scenario())
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)
    assert screens == ["您的手机钱包余额为500.00元", "已为138****8000充值话费50.00元，钱包余额450.00元"]
    assert replays == 1
    # Each secured answer carried its request's client reference (the SMSC suppresses a second send of it).
    with sqlite3.connect(tmp_path / "smsc" / STORE_FILE_NAME) as store:
        references = store.execute("SELECT count(*) FROM client_references WHERE origin = 'gateway'").fetchone()[0]
    assert references == 2
    assert service_transfers(engine, "svc:stk:") == 1
    assert ledger.account("customer:A1/customer_wallet").balance == 45_000
    engine.dispose()
