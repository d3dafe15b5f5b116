"""Shared parts of the wallet tests: a usim-wallet card with the wallet applet, its personalization, a backend.

The card is built as the card maker does (:mod:`simwallet.applet.card.virtual` with the card type of
``cards/card-types/usim-wallet.yaml``, whose ``gp.load_files`` gets the wallet's load file here until the card
type lists it), personalized through the issuer security domain over SCP03 (INSTALL for install and make
selectable, INSTALL for personalization, STORE DATA with the sensitive DGIs encrypted under the DEK), and
talked to as the backend would: wallet keys diversified from a master by the ICCID, requests unwrapped with
them, answers wrapped into an SMS-DELIVER for SMS-PP data download.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from simwallet.applet.card import virtual
from simwallet.applet.card.image import CardStore
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.registry import GpRegistry
from simwallet.applet.card.toolkit import ToolkitEngine
from simwallet.applet.card.uicc import Uicc
from simwallet.applet.card.wallet import WALLET_INSTANCE_AID, WALLET_LOAD_FILE_AID, WALLET_MODULE_AID, WalletApplet
from simwallet.applet.card.wallet_flows import DEFAULT_MENU, DEFAULT_MENU_TITLES
from simwallet.applet.protocols import gp
from simwallet.applet.protocols.apdu import ResponseApdu
from simwallet.applet.protocols.scp03 import Scp03Host, StaticKeys
from simwallet.applet.protocols.secured import (
    CcAlgorithm,
    CipherAlgorithm,
    CommandPacket,
    KeySet,
    Kic,
    Kid,
    Spi,
    Tar,
    unwrap_command,
    wrap_command,
)
from simwallet.applet.protocols.sms import (
    DCS_SIM_DATA_DOWNLOAD,
    PID_SIM_DATA_DOWNLOAD,
    Address,
    Npi,
    RawIe,
    SmsDeliver,
    SmsSubmit,
    Ton,
    UserData,
    UserDataHeader,
    parse_sms_submit,
)
from simwallet.applet.protocols.sms_udh import IEI_CPI
from simwallet.applet.protocols.wallet_messages import (
    WALLET_SPI,
    WalletKeySet,
    WalletMenuItem,
    WalletPersonalization,
    WalletRequest,
    WalletResponse,
)
from simwallet.gateway.diversify import WalletKeys, card_wallet_keys

CARD_TYPE_FILE = Path(__file__).parent.parent / "cards" / "card-types" / "usim-wallet.yaml"
ICCID = "89860012345678901234"
ISD_KEYS = StaticKeys(enc=bytes(range(16)), mac=bytes(range(16, 32)), dek=bytes(range(32, 48)), kvn=0x30)
SECRETS = CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"87654321", pin2=b"5678", puk2=b"11223344")
WALLET_MASTER = WalletKeys(kic=bytes.fromhex("000102030405060708090A0B0C0D0E0F"), kid=bytes.fromhex("F0E0D0C0B0A090807060504030201000"))
WALLET_KVN = 1
TAR = bytes.fromhex("B00010")
SERVICE_NUMBER = "1065800010"
WALLET_PIN = "246810"
SMSC = Address(Ton.INTERNATIONAL, Npi.ISDN, "8613800210500")
SCTS = datetime(2026, 11, 23, 21, 30, 5, tzinfo=timezone(timedelta(hours=8)))


def card_type_mapping() -> dict[str, Any]:
    card: dict[str, Any] = copy.deepcopy(yaml.safe_load(CARD_TYPE_FILE.read_text(encoding="utf-8"))["card"])
    card["gp"].setdefault("load_files", [{"aid": WALLET_LOAD_FILE_AID.hex().upper(), "modules": [WALLET_MODULE_AID.hex().upper()]}])
    return card


CARD_TYPE = virtual.CardType.from_mapping(card_type_mapping())


@dataclass
class Card:
    """A virtual card and the parts the tests look into."""

    uicc: Uicc
    registry: GpRegistry
    toolkit: ToolkitEngine

    @property
    def wallet(self) -> WalletApplet:
        instance = self.registry.instance(WALLET_INSTANCE_AID)
        assert instance is not None and isinstance(instance.app, WalletApplet)
        return instance.app


def _build(make: Callable[[virtual.ToolkitFactory], Uicc]) -> Card:
    parts: dict[str, Any] = {}

    def toolkit(uicc: Uicc, registry: GpRegistry) -> ToolkitEngine:
        parts["registry"], parts["toolkit"] = registry, ToolkitEngine(uicc.services, registry)
        return parts["toolkit"]

    uicc = make(toolkit)
    return Card(uicc, parts["registry"], parts["toolkit"])


def manufacture(store_dir: Path | None) -> Card:
    store = None if store_dir is None else CardStore(store_dir)
    return _build(lambda toolkit: virtual.manufacture(CARD_TYPE, ICCID, SECRETS, ISD_KEYS, store, toolkit=toolkit))


def reload(store_dir: Path) -> Card:
    """The same card after the card process restarted: everything from its image."""
    return _build(lambda toolkit: virtual.load(CARD_TYPE, ICCID, CardStore(store_dir), toolkit=toolkit))


def transmit(uicc: Uicc, capdu: bytes) -> ResponseApdu:
    """One exchange with a raw T=0 card: GET RESPONSE after 61XX."""
    rapdu = uicc.apdu(capdu)
    data = b""
    while rapdu[-2] == 0x61:
        data += rapdu[:-2]
        rapdu = uicc.apdu(bytes([0x00, 0xC0, 0x00, 0x00, rapdu[-1]]))
    return ResponseApdu(data + rapdu[:-2], int.from_bytes(rapdu[-2:], "big"))


class IsdSession:
    """The service hall's secure channel to the issuer security domain (SCP03, C-MAC, C-DEC, R-MAC, R-ENC)."""

    def __init__(self, uicc: Uicc, level: int = 0x33) -> None:
        self.uicc = uicc
        assert transmit(uicc, bytes.fromhex("00A4040008A00000015100000000")).sw == 0x9000
        self.host = Scp03Host(ISD_KEYS)
        self.host.receive_initialize_update(transmit(uicc, self.host.initialize_update(bytes(range(8)))).to_bytes())
        self.host.receive_external_authenticate(transmit(uicc, self.host.external_authenticate(level)).to_bytes())

    def send(self, plain: bytes) -> ResponseApdu:
        return ResponseApdu.from_bytes(self.host.unwrap(transmit(self.uicc, self.host.wrap(plain)).to_bytes()))

    def ok(self, plain: bytes) -> bytes:
        response = self.send(plain)
        assert response.sw == 0x9000, f"{response.sw:04X}"
        return response.data

    def store(self, dgis: list[tuple[int, bytes, bool]]) -> None:
        """INSTALL [for personalization] of the wallet and STORE DATA with ``dgis`` (sensitive ones under the DEK)."""
        self.ok(gp.install_for_personalization_command(WALLET_INSTANCE_AID))
        for command in gp.store_data_commands([gp.Dgi(tag, value) for tag, value, _ in dgis], dek=ISD_KEYS.dek):
            self.ok(command)


def wallet_keyset() -> WalletKeySet:
    keys = card_wallet_keys(WALLET_MASTER, ICCID)
    return WalletKeySet(WALLET_KVN, CipherAlgorithm.AES_CBC, keys.kic, CcAlgorithm.AES_CMAC, keys.kid)


def personalization(languages: tuple[str, ...] = ("zh", "en"), pin: str = WALLET_PIN) -> WalletPersonalization:
    menu = tuple(WalletMenuItem(i, op, tuple((lang, titles[lang]) for lang in languages)) for i, op, titles in DEFAULT_MENU)
    titles = tuple((lang, DEFAULT_MENU_TITLES[lang]) for lang in languages)
    return WalletPersonalization(SERVICE_NUMBER, TAR, languages, titles, menu, pin, wallet_keyset())


def install_wallet(uicc: Uicc, *, personalize: bool = True) -> None:
    session = IsdSession(uicc)
    session.ok(gp.install_for_install_command(WALLET_LOAD_FILE_AID, WALLET_MODULE_AID, WALLET_INSTANCE_AID))
    if personalize:
        session.store(personalization().to_dgis())


def personalized_card(store_dir: Path | None) -> Card:
    card = manufacture(store_dir)
    install_wallet(card.uicc)
    return card


class Backend:
    """The wallet's server side as far as the card sees it: its own counter per card, the card's keys."""

    def __init__(self) -> None:
        self.keyset: KeySet = wallet_keyset().keyset()
        self.card_counter = 0  # the last CNTR accepted from the card
        self.counter = 0  # the last CNTR this backend sent the card

    def lookup(self, tar: Tar, kic: Kic, kid: Kid) -> KeySet | None:
        return self.keyset if tar.to_bytes() == TAR else None

    def receive(self, tpdu: bytes) -> tuple[SmsSubmit, CommandPacket, WalletRequest]:
        """Unwrap a card's SMS-SUBMIT; the request counter must be higher than the last one."""
        submit = parse_sms_submit(tpdu)
        packet = unwrap_command(submit.ud.body, self.lookup, last_counter=self.card_counter)
        self.card_counter = packet.last_counter
        return submit, packet, WalletRequest.from_bytes(packet.data)

    def answer(self, request_id: int, text: str, *, status: int = 0, balance_fen: int | None = None, spi: Spi = WALLET_SPI) -> bytes:
        """The SMS-DELIVER (TP-PID 7F, DCS F6, UDH 70) carrying the answer to ``request_id``."""
        self.counter += 1
        body = WalletResponse.make(request_id, status, text, balance_fen).to_bytes()
        packet = wrap_command(body, self.keyset, spi=spi, tar=TAR, counter=self.counter, with_udh=False)
        ud = UserData(packet, UserDataHeader((RawIe(IEI_CPI),)))
        oa = Address(Ton.UNKNOWN, Npi.ISDN, SERVICE_NUMBER)
        return SmsDeliver(oa=oa, scts=SCTS, ud=ud, pid=PID_SIM_DATA_DOWNLOAD, dcs=DCS_SIM_DATA_DOWNLOAD).to_bytes()
