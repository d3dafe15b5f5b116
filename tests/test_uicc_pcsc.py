"""The virtual UICC end to end: pyscard → private pcscd → vpcd → VpcdLink → Uicc, with its card image on disk.

T=0 is what pcscd negotiates for this ATR, and pcscd hands case 4 commands
through unchanged, so the card answers 61XX and the test fetches the data with
GET RESPONSE, as a T=0 terminal does. No timing is asserted: waits are bounded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pcsc_helpers import connect, transmit, wait_for_card
from smartcard.scard import SCARD_LEAVE_CARD, SCARD_PROTOCOL_T0, SCardDisconnect  # type: ignore[import-untyped]

from simwallet.applet.card.image import CardStore
from simwallet.applet.card.link import VpcdLink, port_for_reader
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.spec import CardSpec
from simwallet.applet.card.uicc import Uicc, iccid_to_bcd
from simwallet.applet.protocols.fcp import Fcp, FileStructure
from simwallet.provisioning.pcscd import PrivatePcscd

ROOT = Path(__file__).resolve().parent.parent
READER_0 = "Virtual PCD 00 00"
ICCID = "8988211000000430010"
USIM_AID = "A0000000871002FF86FF0389FFFFFFFF"
PIN1 = "31323334FFFFFFFF"
PIN2_WRONG = "30303030FFFFFFFF"
PIN1_WRONG = "39393939FFFFFFFF"
ADM1 = "3838383838383838"
IMSI = "082982608200002080"
SECRETS = CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"88888888", pin2=b"5678", puk2=b"87654321")


@functools.cache
def spec() -> CardSpec:
    return CardSpec.from_mapping(yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text())["card"])


class Reader:
    """One card inserted in reader 0 through its own link; ``pull()`` takes it out again."""

    def __init__(self, pcscd: PrivatePcscd, context: int, card: Uicc) -> None:
        self.context = context
        self.card = card
        self.link = VpcdLink(card, port=port_for_reader(0, base_port=pcscd.base_port))
        self.link.start()
        self.atr = wait_for_card(context, READER_0)
        self.handle, self.protocol = connect(context, READER_0)

    def send(self, apdu: str) -> tuple[bytes, int]:
        response = transmit(self.handle, bytes.fromhex(apdu.replace(" ", "")))
        return response[:-2], int.from_bytes(response[-2:], "big")

    def ok(self, apdu: str) -> bytes:
        data, sw = self.send(apdu)
        assert sw == 0x9000, f"{apdu} -> {sw:04X}"
        return data

    def case4(self, apdu: str) -> bytes:
        """A case 4 command sent the T=0 way (no Le): 61XX, then GET RESPONSE."""
        data, sw = self.send(apdu)
        assert data == b"" and sw >> 8 == 0x61, f"{apdu} -> {sw:04X}"
        return self.ok(f"00C00000{sw & 0xFF:02X}")

    def pull(self) -> None:
        SCardDisconnect(self.handle, SCARD_LEAVE_CARD)
        self.link.stop()
        wait_for_card(self.context, READER_0, present=False)


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    return CardStore(tmp_path / "cards")


@pytest.fixture
def readers(pcscd: PrivatePcscd, context: int) -> Iterator[list[Reader]]:
    inserted: list[Reader] = []
    yield inserted
    for reader in inserted:
        if reader.link.connected:
            reader.pull()


def test_usim_through_pcsc_and_a_restart(pcscd: PrivatePcscd, context: int, store: CardStore, readers: list[Reader]) -> None:
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    reader = Reader(pcscd, context, card)
    readers.append(reader)
    assert reader.atr == spec().atr
    assert reader.protocol == SCARD_PROTOCOL_T0

    mf = Fcp.from_bytes(reader.case4("00A40004 02 3F00"))
    assert (mf.fid, mf.structure) == (0x3F00, FileStructure.DF)
    assert Fcp.from_bytes(reader.ok("00A40004 02 3F00 00")).fid == 0x3F00  # with Le: the data at once
    iccid = Fcp.from_bytes(reader.case4("00A40004 02 2FE2"))
    assert iccid.file_size == 10
    assert reader.ok("00B000000A") == iccid_to_bcd(ICCID)

    assert reader.send(f"0020000108{PIN1_WRONG}") == (b"", 0x63C2)
    assert reader.send(f"0020000108{PIN1}") == (b"", 0x9000)
    usim = Fcp.from_bytes(reader.case4(f"00A40404 10 {USIM_AID}"))
    assert usim.df_name == bytes.fromhex(USIM_AID)
    assert reader.ok("00B0870009") == b"\xff" * 9  # EF.IMSI by SFI, PIN1 verified
    assert reader.send(f"002000 0A 08 {ADM1}") == (b"", 0x9000)
    assert reader.ok(f"00D68700 09 {IMSI}") == b""
    assert reader.ok("00B0870009") == bytes.fromhex(IMSI)
    assert reader.send(f"0020008108{PIN2_WRONG}") == (b"", 0x63C2)  # a wrong PIN2 that must survive
    reader.pull()

    # The card process restarts: a new Uicc from the same store goes into the reader.
    again = Uicc.load(store, ICCID, spec())
    reader = Reader(pcscd, context, again)
    readers.append(reader)
    assert reader.send("00200081") == (b"", 0x63C2)  # the counter kept
    assert reader.send("00200001") == (b"", 0x63C3)  # PIN1's counter was restored; nothing is verified
    reader.case4(f"00A40404 10 {USIM_AID}")
    assert reader.send("00B0870009") == (b"", 0x6982)
    assert reader.send(f"0020000108{PIN1}") == (b"", 0x9000)
    assert reader.ok("00B0870009") == bytes.fromhex(IMSI)
    reader.pull()


def test_same_card_back_in_the_reader_loses_its_session(pcscd: PrivatePcscd, context: int, store: CardStore, readers: list[Reader]) -> None:
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    reader = Reader(pcscd, context, card)
    readers.append(reader)
    assert reader.send("0020008108 35363738FFFFFFFF") == (b"", 0x9000)
    assert reader.send("00200081") == (b"", 0x9000)  # verified
    assert reader.send(f"0020000108{PIN1_WRONG}") == (b"", 0x63C2)
    reader.pull()
    reader = Reader(pcscd, context, card)
    readers.append(reader)
    assert reader.send("00200081") == (b"", 0x63C3)  # removal ended the session
    assert reader.send("00200001") == (b"", 0x63C2)
    assert Uicc.load(store, ICCID, spec()).pin_tries(0x01) == 2
    reader.pull()
