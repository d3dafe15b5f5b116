"""The virtual UICC driven with APDUs directly (no PC/SC): TS 102 221 commands, status words, PINs, persistence."""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simwallet.applet.card.image import CardExistsError, CardNotFoundError, CardStore, ImageError
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.spec import CardSpec
from simwallet.applet.card.uicc import Uicc, iccid_to_bcd
from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.fcp import Fcp, FileStructure, PinStatus

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((Path(__file__).parent / "vectors" / "uicc.json").read_text())
ICCID = "8988211000000430010"
USIM_AID = "A0000000871002FF86FF0389FFFFFFFF"
PIN1 = "31323334FFFFFFFF"  # "1234"
PIN2 = "35363738FFFFFFFF"  # "5678"
PUK1 = "3132333435363738"  # "12345678"
ADM1 = "3838383838383838"  # "88888888"
WRONG = "39393939FFFFFFFF"  # "9999"
SECRETS = CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"88888888", pin2=b"5678", puk2=b"87654321")


@functools.cache
def spec() -> CardSpec:
    return CardSpec.from_mapping(yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text())["card"])


def fixed_rng(n: int) -> bytes:
    return bytes(range(n))


def make_card(store: CardStore | None = None, **kwargs: Any) -> Uicc:
    card = Uicc.manufacture(spec(), kwargs.pop("iccid", ICCID), SECRETS, store, rng=fixed_rng, **kwargs)
    card.power_on()
    return card


def send(card: Uicc, apdu: str) -> tuple[bytes, int]:
    response = card.apdu(bytes.fromhex(apdu.replace(" ", "")))
    assert len(response) >= 2
    return response[:-2], int.from_bytes(response[-2:], "big")


def sw(card: Uicc, apdu: str) -> int:
    return send(card, apdu)[1]


def ok(card: Uicc, apdu: str) -> bytes:
    data, status = send(card, apdu)
    assert status == 0x9000, f"{apdu} -> {status:04X}"
    return data


def select(card: Uicc, fid: str) -> Fcp:
    """SELECT by FID with Le: the FCP comes back directly."""
    return Fcp.from_bytes(ok(card, f"00A40004 02 {fid} 00"))


def select_path(card: Uicc, path: str) -> Fcp:
    return Fcp.from_bytes(ok(card, f"00A40804 {len(bytes.fromhex(path)):02X} {path} 00"))


def select_usim(card: Uicc) -> Fcp:
    return Fcp.from_bytes(ok(card, f"00A40404 10 {USIM_AID} 00"))


@pytest.fixture
def card() -> Uicc:
    return make_card()


# -- ATR, power, T=0 responses ------------------------------------------------------------------------------------


def test_atr_and_iccid(card: Uicc) -> None:
    assert card.atr() == spec().atr
    vector = VECTORS["ef_iccid"]["vectors"][0]
    assert iccid_to_bcd(vector["iccid"]) == bytes.fromhex(vector["content"])
    assert card.file_content("EF.ICCID") == iccid_to_bcd(ICCID) == bytes.fromhex(vector["content"])
    select(card, "2FE2")
    assert ok(card, "00B000000A") == bytes.fromhex(vector["content"])
    with pytest.raises(CodecError):
        iccid_to_bcd("89ABC")


def test_select_without_le_answers_61xx_then_get_response(card: Uicc) -> None:
    data, status = send(card, "00A40004023F00")
    assert data == b"" and status >> 8 == 0x61
    length = status & 0xFF
    # Wrong Le: 6CXX with the right length, the data stays pending.
    assert send(card, f"00C00000{length + 1:02X}") == (b"", 0x6C00 | length)
    fcp = Fcp.from_bytes(ok(card, f"00C00000{length:02X}"))
    assert fcp.fid == 0x3F00 and fcp.structure is FileStructure.DF
    assert sw(card, f"00C00000{length:02X}") == 0x6985  # nothing pending any more


def test_get_response_in_chunks_and_le_00(card: Uicc) -> None:
    _, status = send(card, "00A40004023F00")
    total = status & 0xFF
    first, status = send(card, "00C0000010")
    assert len(first) == 0x10 and status == 0x6100 | (total - 0x10)
    rest = ok(card, "00C0000000")  # Le 00: everything left
    assert Fcp.from_bytes(first + rest).fid == 0x3F00
    _, status = send(card, "00A40004023F00")
    assert sw(card, "00C00100" + f"{status & 0xFF:02X}") == 0x6A86
    assert sw(card, "00C00000") == 0x6C00 | (status & 0xFF)  # no Le at all
    assert ok(card, f"00C00000{status & 0xFF:02X}")
    # Any other command drops pending data.
    send(card, "00A40004023F00")
    ok(card, "00A4000C022FE2")
    assert sw(card, "00C0000000") == 0x6985


def test_select_with_le_answers_directly_and_p2_variants(card: Uicc) -> None:
    assert select(card, "3F00").fid == 0x3F00
    assert send(card, "00A4000C023F00") == (b"", 0x9000)
    fci = Fcp.from_bytes(ok(card, "00A4000002 2FE2 00"))  # P2 00 (FCI) is answered with the FCP
    assert fci.fid == 0x2FE2
    assert sw(card, "00A4000802 3F00") == 0x6A86  # FMD not offered
    assert sw(card, "00A4000402 3F") == 0x6700
    data, status = send(card, "00A4000402 3F00 05")  # Le shorter than the FCP: cut, the rest by GET RESPONSE
    assert len(data) == 5 and status >> 8 == 0x61
    assert Fcp.from_bytes(data + ok(card, f"00C00000{status & 0xFF:02X}")).fid == 0x3F00


def test_mf_fcp_contents(card: Uicc) -> None:
    fcp = select(card, "3F00")
    assert fcp.descriptor.structure is FileStructure.DF
    assert fcp.proprietary == bytes.fromhex("800171")
    assert fcp.pin_status is not None
    assert fcp.pin_status.pins == (PinStatus(0x01, True), PinStatus(0x81, True), PinStatus(0x0A, True))
    assert fcp.security.fid == 0x2F06  # type: ignore[union-attr]
    iccid = select(card, "2FE2")
    assert (iccid.file_size, iccid.sfi, iccid.effective_sfi) == (10, 2, 2)


# -- SELECT by FID, path, AID ------------------------------------------------------------------------------------------


def test_select_by_fid_follows_ts_102_221_8_4_1(card: Uicc) -> None:
    select(card, "7F10")  # DF.TELECOM
    assert select(card, "6F3A").fid == 0x6F3A  # child EF
    assert select(card, "7F20").fid == 0x7F20  # sibling DF of the current DF (DF.GSM)
    assert sw(card, "00A4000C02 2FE2") == 0x6A82  # an EF of the parent is not reachable
    assert select(card, "3F00").fid == 0x3F00
    assert select(card, "7F10").fid == 0x7F10
    assert select(card, "5F50").fid == 0x5F50  # DF.GRAPHICS
    assert select(card, "7F10").fid == 0x7F10  # its parent
    assert select(card, "5F50").fid == 0x5F50
    assert select(card, "5F50").fid == 0x5F50  # the current DF itself
    assert sw(card, "00A4000C02 7FFF") == 0x6A82  # no application selected yet
    assert sw(card, "00A4000C02 1234") == 0x6A82
    assert sw(card, "00A4000C02 6F07") == 0x6A82  # EF.IMSI of DF.GSM is not a child of DF.GRAPHICS
    # No data: the MF (ISO/IEC 7816-4 §7.1.1).
    assert Fcp.from_bytes(ok(card, "00A40004 00")).fid == 0x3F00


def test_select_child_and_parent_df(card: Uicc) -> None:
    select(card, "3F00")
    assert Fcp.from_bytes(ok(card, "00A40104 02 7F10 00")).fid == 0x7F10
    assert sw(card, "00A4010C 02 6F3A") == 0x6A82  # P1 01 selects DFs only
    assert Fcp.from_bytes(ok(card, "00A40304 00")).fid == 0x3F00
    assert sw(card, "00A4030C") == 0x6A82  # the MF has no parent
    assert sw(card, "00A4050C 02 3F00") == 0x6A86


def test_select_by_path(card: Uicc) -> None:
    assert select_path(card, "7F105F504F20").fid == 0x4F20
    assert select_path(card, "3F007F10").fid == 0x7F10  # a leading MF is tolerated
    assert Fcp.from_bytes(ok(card, "00A40904 02 6F3A 00")).fid == 0x6F3A  # from the current DF (DF.TELECOM)
    assert sw(card, "00A4080C 04 2FE26F07") == 0x6A82  # through an EF
    assert sw(card, "00A4080C 03 7F105F") == 0x6700
    assert sw(card, "00A4080C 02 7FFF") == 0x6A82  # no current application
    select_usim(card)
    select(card, "3F00")
    assert select_path(card, "7FFF6F07").fid == 0x6F07
    assert select(card, "7FFF").df_name == bytes.fromhex(USIM_AID)


def test_select_by_aid(card: Uicc) -> None:
    fcp = select_usim(card)
    assert fcp.df_name == bytes.fromhex(USIM_AID) and fcp.fid is None
    assert select(card, "6F07").fid == 0x6F07  # the ADF is now the current DF
    assert select(card, "3F00").fid == 0x3F00
    partial = Fcp.from_bytes(ok(card, "00A40404 07 A0000000871002 00"))
    assert partial.df_name == bytes.fromhex(USIM_AID)
    assert sw(card, "00A4040C 07 A0000000871004") == 0x6A82  # no ISIM
    assert sw(card, "00A4040E 07 A0000000871002") == 0x6A82  # next occurrence: there is only one
    assert sw(card, "00A4040D 07 A0000000871002") == 0x9000  # last occurrence
    assert sw(card, "00A4040C 00") == 0x6700
    assert sw(card, "00A4048C 07 A0000000871002") == 0x6A86
    # Ending the application session: back to the MF, 7FFF names nothing.
    assert sw(card, f"00A4044C 10 {USIM_AID}") == 0x9000
    assert sw(card, "00A4000C02 7FFF") == 0x6A82
    assert sw(card, f"00A4044C 10 {USIM_AID}") == 0x6A82


# -- READ / UPDATE BINARY ------------------------------------------------------------------------------------------------


def verify(card: Uicc, reference: str, block: str) -> int:
    return sw(card, f"002000{reference} 08 {block}")


def test_read_binary_offsets_le_and_errors(card: Uicc) -> None:
    select(card, "2FE2")
    content = card.file_content("EF.ICCID")
    assert ok(card, "00B0000304") == content[3:7]
    assert ok(card, "00B0000000") == content  # Le 00: to the end
    assert send(card, "00B000050A") == (b"", 0x6C05)  # past the end: 6CXX with what is there
    assert sw(card, "00B0000A01") == 0x6B00
    assert sw(card, "00B0010001") == 0x6B00
    data, status = send(card, "00B00000")  # no Le: 61XX, then GET RESPONSE
    assert (data, status) == (b"", 0x610A)
    assert ok(card, "00C000000A") == content
    select(card, "2F00")
    assert sw(card, "00B0000001") == 0x6981  # a record file
    select(card, "7F10")
    assert sw(card, "00B0000001") == 0x6986  # no current EF


def test_read_binary_by_sfi(card: Uicc) -> None:
    select(card, "3F00")
    assert ok(card, "00B082000A") == card.file_content("EF.ICCID")  # SFI 2
    assert ok(card, "00B0820204") == card.file_content("EF.ICCID")[2:6]
    assert ok(card, "00B0000000") == card.file_content("EF.ICCID")  # it became the current EF
    assert sw(card, "00B0830001") == 0x6A82  # no SFI 3 in the MF
    assert sw(card, "00B0A20001") == 0x6A86  # b7-b6 must be 0
    select_usim(card)
    assert sw(card, "00B0870009") == 0x6982  # EF.IMSI needs PIN1
    assert verify(card, "01", PIN1) == 0x9000
    assert ok(card, "00B0870009") == b"\xff" * 9


def test_update_binary_access_and_limits(card: Uicc) -> None:
    select_usim(card)
    select(card, "6F07")
    imsi = "082982608200002080"
    assert sw(card, f"00D6000009{imsi}") == 0x6982
    assert verify(card, "01", PIN1) == 0x9000
    assert sw(card, f"00D6000009{imsi}") == 0x6982  # PIN1 is not ADM1
    assert verify(card, "0A", ADM1) == 0x9000
    assert ok(card, f"00D6000009{imsi}") == b""
    assert card.file_content("ADF.USIM/EF.IMSI") == bytes.fromhex(imsi)
    assert ok(card, "00D6000102AAAA") == b""
    assert card.file_content("ADF.USIM/EF.IMSI")[:4] == bytes.fromhex("08AAAA60")
    assert sw(card, "00D600080211 22") == 0x6700  # past the end
    assert sw(card, "00D6000900") == 0x6B00
    assert sw(card, "00D60009") == 0x6B00
    assert sw(card, "00D60000") == 0x6700  # no data
    # EF.ICCID is never updatable, ADM1 or not.
    select(card, "3F00")
    assert sw(card, "00D682000100") == 0x6982
    # By SFI from the ADF: EF.UST (SFI 4).
    select_usim(card)
    assert ok(card, "00D6840001FF") == b""
    assert card.file_content("ADF.USIM/EF.UST")[0] == 0xFF


# -- records -------------------------------------------------------------------------------------------------------------------


def test_read_record_modes_and_pointer(card: Uicc) -> None:
    select(card, "2F00")
    records = card.file_records("EF.DIR")
    assert ok(card, "00B2010426") == records[0]
    assert ok(card, "00B2010400") == records[0]  # Le 00
    assert send(card, "00B2010410") == (b"", 0x6C26)
    assert sw(card, "00B2050426") == 0x6A83
    assert sw(card, "00B2000426") == 0x6A83  # current record before the pointer is set
    assert ok(card, "00B2000226") == records[0]  # next from nothing: record 1
    assert ok(card, "00B2000226") == records[1]
    assert ok(card, "00B2000426") == records[1]  # current
    assert ok(card, "00B2000326") == records[0]  # previous
    assert sw(card, "00B2000326") == 0x6A83  # linear fixed: no wrap
    select(card, "2F00")
    assert ok(card, "00B2000326") == records[3]  # previous from nothing: the last record
    assert sw(card, "00B2000226") == 0x6A83
    assert ok(card, "00B2030426") == records[2]  # absolute leaves the pointer
    assert sw(card, "00B2000226") == 0x6A83
    assert sw(card, "00B2000126") == 0x6A86  # mode 1 is not defined
    select(card, "2FE2")
    assert sw(card, "00B2010400") == 0x6981


def test_read_record_by_sfi(card: Uicc) -> None:
    select(card, "3F00")
    dir_sfi = (30 << 3) | 0x04
    assert ok(card, f"00B201{dir_sfi:02X}26")[:2] == bytes.fromhex("6118")
    data, status = send(card, f"00B201{dir_sfi:02X}")
    assert (data, status) == (b"", 0x6126)


def test_update_record_linear(card: Uicc) -> None:
    select(card, "7F10")
    select(card, "6F40")  # EF.MSISDN, update PIN1
    record = "AA" * 30
    assert sw(card, f"00DC01041E{record}") == 0x6982
    assert verify(card, "01", PIN1) == 0x9000
    assert ok(card, f"00DC02041E{record}") == b""
    assert card.file_records("DF.TELECOM/EF.MSISDN") == [b"\xff" * 30, b"\xaa" * 30]
    assert sw(card, f"00DC03041E{record}") == 0x6A83
    assert sw(card, "00DC0104 02 AAAA") == 0x6700
    assert ok(card, f"00DC00021E{'BB' * 30}") == b""  # next from nothing: record 1
    assert card.file_records("DF.TELECOM/EF.MSISDN")[0] == b"\xbb" * 30


def test_cyclic_file_order(card: Uicc) -> None:
    assert verify(card, "01", PIN1) == 0x9000
    select(card, "7F10")
    select(card, "6F44")  # EF.LND, cyclic 5 × 30
    for i in range(1, 8):
        assert ok(card, f"00DC00031E{bytes([i]).hex() * 30}") == b""
    # Record 1 is the most recent write; seven writes into five records keep 7, 6, 5, 4, 3.
    assert [r[0] for r in card.file_records("DF.TELECOM/EF.LND")] == [7, 6, 5, 4, 3]
    assert ok(card, "00B201041E")[0] == 7
    select(card, "6F44")
    assert [ok(card, "00B200021E")[0] for _ in range(6)] == [7, 6, 5, 4, 3, 7]  # next wraps around
    assert [ok(card, "00B200031E")[0] for _ in range(2)] == [3, 4]  # previous wraps too
    assert sw(card, f"00DC01041E{'00' * 30}") == 0x6A86  # only PREVIOUS writes a cyclic file


def test_search_record(card: Uicc) -> None:
    assert verify(card, "01", PIN1) == 0x9000
    select(card, "7F10")
    select(card, "6F3A")  # EF.ADN, 20 × 30
    for number in (2, 5, 9):
        assert ok(card, f"00DC{number:02X}041E 4142 {'FF' * 28}") == b""
    assert ok(card, "00A20104 02 4142 00") == bytes([2, 5, 9])
    assert ok(card, "00B2000400")[:2] == b"AB"  # the record pointer is on the first match
    assert ok(card, "00A20604 02 4142 00") == bytes([9])
    assert ok(card, "00A20905 02 4142 00") == bytes([9, 5, 2])
    assert ok(card, "00A20104 02 4143 00") == b""
    assert send(card, "00A20104 02 4142") == (b"", 0x6103)  # no Le: by GET RESPONSE
    assert ok(card, "00C0000003") == bytes([2, 5, 9])
    # Enhanced: indication 04 (from P1, forward, offset given), offset 1, pattern 42.
    assert ok(card, "00A20106 03 04 01 42 00") == bytes([2, 5, 9])
    # Enhanced with the offset after the first 41: pattern 42 follows it.
    assert ok(card, "00A20106 03 0C 41 42 00") == bytes([2, 5, 9])
    # Enhanced, backward from the record before P1.
    assert ok(card, "00A20906 03 07 00 41 00") == bytes([5, 2])
    assert sw(card, "00A21504 02 4142") == 0x6A83
    assert sw(card, "00A20107 02 4142") == 0x6A86
    assert sw(card, "00A20104") == 0x6700
    select(card, "6F3A")
    assert sw(card, "00A20004 02 4142") == 0x6A83  # current record undefined


# -- STATUS ---------------------------------------------------------------------------------------------------------


def test_status(card: Uicc) -> None:
    assert Fcp.from_bytes(ok(card, "80F2000000")).fid == 0x3F00
    select_usim(card)
    select(card, "6F07")
    assert Fcp.from_bytes(ok(card, "80F2000000")).df_name == bytes.fromhex(USIM_AID)
    assert ok(card, "80F2010100") == bytes.fromhex(f"8410{USIM_AID}")
    assert ok(card, "80F2000C") == b""
    _, status = send(card, "80F20000")
    assert status >> 8 == 0x61
    assert sw(card, "80F2000200") == 0x6A86
    assert sw(card, "80F2030000") == 0x6A86
    assert sw(card, "00F2000000") == 0x6E00  # STATUS is CLA 8X
    assert sw(card, "80B0000001") == 0x6E00  # READ BINARY is CLA 0X
    fresh = make_card()
    assert sw(fresh, "80F2000100") == 0x6A88  # no application


# -- PINs --------------------------------------------------------------------------------------------------------------


def test_verify_counts_down_and_blocks(card: Uicc) -> None:
    assert sw(card, "0020000100") == 0x63C3  # Le but no data: the same question
    assert sw(card, "00200001") == 0x63C3
    assert verify(card, "01", WRONG) == 0x63C2
    assert verify(card, "01", WRONG) == 0x63C1
    assert card.pin_tries(0x01) == 1
    assert verify(card, "01", PIN1) == 0x9000  # a right PIN restores the counter
    assert sw(card, "00200001") == 0x9000  # verified: nothing to ask
    card.power_off()
    card.power_on()
    assert sw(card, "00200001") == 0x63C3
    for expected in (0x63C2, 0x63C1, 0x63C0):
        assert verify(card, "01", WRONG) == expected
    assert verify(card, "01", PIN1) == 0x6983  # blocked, even with the right PIN
    assert sw(card, "00200001") == 0x63C0


def test_verify_malformed_blocks(card: Uicc) -> None:
    assert verify(card, "01", "3132FFFFFFFFFFFF") == 0x6A80  # two digits
    assert verify(card, "01", "31323334FF35FFFF") == 0x6A80  # digit after padding
    assert verify(card, "01", "3132333441FFFFFF") == 0x6A80  # not a digit
    assert sw(card, "0020000104 31323334") == 0x6700
    assert card.pin_tries(0x01) == 3  # none of these cost a try
    assert verify(card, "02", PIN1) == 0x6A88  # no such key
    assert sw(card, f"00200101 08 {PIN1}") == 0x6A86
    # ADM1 blocks may be any 8 bytes (hex ADM keys).
    assert verify(card, "0A", "00112233445566FF") == 0x63C9


def test_unblock_pin(card: Uicc) -> None:
    for _ in range(3):
        verify(card, "01", WRONG)
    assert verify(card, "01", PIN1) == 0x6983
    assert sw(card, "002C0001") == 0x63CA  # PUK tries left
    assert sw(card, f"002C0001 10 3837363534333231 {PIN1}") == 0x63C9  # wrong PUK
    assert sw(card, f"002C0001 10 {PUK1} 31313131FFFFFFFF") == 0x9000
    assert verify(card, "01", PIN1) == 0x63C2  # the old PIN is gone
    assert verify(card, "01", "31313131FFFFFFFF") == 0x9000
    assert sw(card, "002C0001") == 0x63CA
    assert sw(card, f"002C0001 08 {PUK1}") == 0x6700
    assert sw(card, f"002C0001 10 {PUK1} 3131FFFFFFFFFFFF") == 0x6A80
    assert sw(card, f"002C000A 10 {PUK1} {PIN1}") == 0x6A86  # ADM1 has no PUK


def test_unblock_counter_exhaustion(card: Uicc) -> None:
    for expected in range(9, -1, -1):
        assert sw(card, f"002C0081 10 3131313131313131 {PIN2}") == 0x63C0 | expected
    assert sw(card, f"002C0081 10 3837363534333231 {PIN2}") == 0x6983  # the right PUK2, too late
    assert sw(card, "002C0081") == 0x63C0


def test_change_pin(card: Uicc) -> None:
    assert sw(card, f"00240001 10 {WRONG} 31313131FFFFFFFF") == 0x63C2
    assert sw(card, f"00240001 10 {PIN1} 313131313131FFFF") == 0x9000
    card.power_off()
    card.power_on()
    assert verify(card, "01", PIN1) == 0x63C2
    assert verify(card, "01", "313131313131FFFF") == 0x9000
    assert sw(card, f"00240001 08 {PIN1}") == 0x6700
    assert sw(card, f"0024000A 10 {ADM1} 3939393939393939") == 0x9000  # ADM1 can be changed
    assert verify(card, "0A", "3939393939393939") == 0x9000


def test_disable_and_enable_pin1(card: Uicc) -> None:
    select_usim(card)
    assert sw(card, "00B0870009") == 0x6982
    assert sw(card, f"00260001 08 {WRONG}") == 0x63C2
    assert sw(card, f"00260001 08 {PIN1}") == 0x9000
    card.power_off()
    card.power_on()
    select_usim(card)
    assert ok(card, "00B0870009") == b"\xff" * 9  # a disabled PIN1 is a met condition
    assert Fcp.from_bytes(ok(card, "80F2000000")).pin_status.pins[0] == PinStatus(0x01, False)  # type: ignore[union-attr]
    assert sw(card, "00200001") == 0x9000
    assert verify(card, "01", PIN1) == 0x6984  # VERIFY of a disabled PIN
    assert sw(card, f"00240001 10 {PIN1} {PIN1}") == 0x6984
    assert sw(card, f"00260001 08 {PIN1}") == 0x6985  # already disabled
    assert sw(card, f"00280001 08 {PIN1}") == 0x9000
    assert sw(card, f"00280001 08 {PIN1}") == 0x6985  # already enabled
    card.power_off()
    card.power_on()
    select_usim(card)
    assert sw(card, "00B0870009") == 0x6982
    assert sw(card, f"0026000A 08 {ADM1}") == 0x6A86  # ADM1 cannot be disabled
    assert sw(card, f"00268001 08 {PIN1}") == 0x6A86  # no universal PIN to replace it


def test_pin2_and_adm1_conditions(card: Uicc) -> None:
    assert verify(card, "01", PIN1) == 0x9000
    select(card, "7F10")
    select(card, "6F3B")  # EF.FDN: update PIN2
    assert sw(card, f"00DC01041E{'00' * 30}") == 0x6982
    assert verify(card, "81", PIN2) == 0x9000
    assert ok(card, f"00DC01041E{'00' * 30}") == b""
    select_usim(card)
    select(card, "6F46")  # EF.SPN: update ADM1
    assert sw(card, "00D6000001 00") == 0x6982
    assert verify(card, "0A", "3838383838383839") == 0x63C9
    assert verify(card, "0A", ADM1) == 0x9000
    assert ok(card, "00D6000001 00") == b""


def test_power_events_end_the_session(card: Uicc) -> None:
    for event in (card.power_off, card.reset, card.power_on):
        assert verify(card, "01", PIN1) == 0x9000
        select_usim(card)
        send(card, "00A40004026F07")  # leaves data pending
        event()
        assert sw(card, "00200001") == 0x63C3
        assert sw(card, "00C0000000") == 0x6985
        assert sw(card, "00A4000C027FFF") == 0x6A82


# -- life cycle -------------------------------------------------------------------------------------------------------


def test_deactivate_and_activate(card: Uicc) -> None:
    select_usim(card)
    assert sw(card, "00040000 02 6F46") == 0x6982  # deactivate needs ADM1
    assert verify(card, "0A", ADM1) == 0x9000
    assert sw(card, "00040000 02 6F46") == 0x9000
    data, status = send(card, "00A40004 02 6F46 00")
    assert status == 0x6283 and Fcp.from_bytes(data).lcsi == 0x04
    assert sw(card, "00B0000001") == 0x6283
    assert sw(card, "00D6000001 00") == 0x6283
    assert sw(card, "00440000") == 0x9000  # the current file
    assert select(card, "6F46").lcsi == 0x05
    assert ok(card, "00B0000001") == b"\xff"
    # A deactivated DF shuts its subtree.
    assert sw(card, "00040800 02 7F20") == 0x9000
    assert sw(card, "00A4080C 04 7F206F46") == 0x6283  # a file under a deactivated DF is invalidated too
    assert sw(card, "00B0000001") == 0x6283
    assert sw(card, "00440800 02 7F20") == 0x9000
    assert sw(card, "00040001") == 0x6A86
    assert sw(card, "00040000 02 1234") == 0x6A82


# -- classes and instructions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        ("01A4000C023F00", 0x6881),  # logical channel 1
        ("40A4000C023F00", 0x6881),  # logical channel 4
        ("0070000001", 0x6881),  # MANAGE CHANNEL
        ("0CA4000C023F00", 0x6882),  # secure messaging
        ("0CB0000001", 0x6882),
        ("A0A40000023F00", 0x6E00),  # the GSM class
        ("FFA4000C023F00", 0x6E00),
        ("00EE000000", 0x6D00),
        ("8001000000", 0x6D00),
        ("0088000000", 0x6D00),  # AUTHENTICATE is not offered
        ("8010000002FFFF", 0x6D00),  # no toolkit
        ("0010000002FFFF", 0x6E00),
        ("00A4", 0x6700),
        ("00B000000501", 0x6700),  # Lc inconsistent with the body
    ],
)
def test_status_words_of_bad_commands(card: Uicc, apdu: str, expected: int) -> None:
    assert sw(card, apdu) == expected


class BrokenToolkit:
    """A toolkit whose envelope handler has a bug."""

    def __init__(self) -> None:
        self.powered_off = 0

    def terminal_profile(self, profile: bytes) -> None: ...

    def pending_length(self) -> int:
        return 0

    def fetch(self) -> bytes:
        return b""

    def terminal_response(self, data: bytes) -> None: ...

    def envelope(self, data: bytes) -> bytes:
        raise RuntimeError(f"bug while handling {data.hex()}")

    def power_off(self) -> None:
        self.powered_off += 1


def test_unexpected_exception_answers_6f00_without_payload_in_log(caplog: pytest.LogCaptureFixture) -> None:
    card = make_card(toolkit=BrokenToolkit())
    with caplog.at_level(logging.DEBUG, logger="simwallet.applet.card.uicc"):
        assert sw(card, "80C20000 04 D1021234") == 0x6F00
    assert "RuntimeError" in caplog.text and "INS C2" in caplog.text
    assert "d1021234" not in caplog.text.lower()  # neither the APDU nor the exception's message
    assert sw(card, "00A4000C023F00") == 0x9000  # the card goes on


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cla=st.sampled_from([0x00, 0x80, 0x01, 0x0C, 0x84, 0xA0, 0x40]) | st.integers(0, 255),
    ins=st.sampled_from([0xA4, 0xB0, 0xD6, 0xB2, 0xDC, 0xA2, 0x20, 0x24, 0x26, 0x28, 0x2C, 0x04, 0x44, 0xC0, 0xF2, 0x10, 0x12, 0x14, 0xC2])
    | st.integers(0, 255),
    p1=st.sampled_from([0x00, 0x01, 0x03, 0x04, 0x08, 0x09, 0x82, 0x87]) | st.integers(0, 255),
    p2=st.sampled_from([0x00, 0x04, 0x0C, 0x01, 0x81, 0x0A, 0x02, 0x03, 0xF4]) | st.integers(0, 255),
    body=st.binary(max_size=40),
)
def test_random_apdus_never_break_the_card(cla: int, ins: int, p1: int, p2: int, body: bytes) -> None:
    card = _hypothesis_card()
    response = card.apdu(bytes([cla, ins, p1, p2]) + body)
    assert len(response) >= 2
    sw1 = response[-2]
    assert sw1 in {0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x90, 0x91}, response.hex()
    if sw1 not in (0x90, 0x91, 0x62):
        assert len(response) == 2  # errors carry no data


@functools.cache
def _hypothesis_card() -> Uicc:
    # One card for the whole run: state carried from one example to the next only widens what is explored.
    return make_card()


# -- applications and the toolkit ----------------------------------------------------------------------------------------


class FakeApp:
    def __init__(self, aid: str, state: dict[str, Any] | None = None) -> None:
        self._aid = bytes.fromhex(aid)
        self.log: list[str] = []
        self.state = dict(state or {"counter": 0})

    @property
    def aid(self) -> bytes:
        return self._aid

    def select(self, command: CommandApdu) -> ResponseApdu:
        self.log.append("select")
        return ResponseApdu(b"\x6f\x03\x84\x01\x01", 0x9000)

    def deselect(self) -> None:
        self.log.append("deselect")

    def process(self, command: CommandApdu) -> ResponseApdu:
        self.log.append(f"process {command.cla:02X}{command.ins:02X}")
        self.state["counter"] += 1
        return ResponseApdu(b"\xca\xfe", 0x9000)

    def power_off(self) -> None:
        self.log.append("power_off")

    def export_state(self) -> dict[str, Any]:
        return dict(self.state)


class FakeRegistry:
    def __init__(self, *apps: FakeApp) -> None:
        self.apps = list(apps)
        self.locked = False

    def find(self, aid_prefix: bytes) -> FakeApp | None:
        return next((a for a in self.apps if a.aid.startswith(aid_prefix)), None)

    def __iter__(self) -> Iterator[FakeApp]:
        return iter(self.apps)

    def card_locked(self) -> bool:
        return self.locked

    def export_state(self) -> dict[str, Any]:
        return {"locked": self.locked, "aids": [a.aid.hex() for a in self.apps]}


ISD_AID = "A000000151000000"
WALLET_AID = "A0000005591010FFFF"


def test_application_selection_and_routing() -> None:
    isd, wallet = FakeApp(ISD_AID), FakeApp(WALLET_AID)
    card = make_card(registry=FakeRegistry(isd, wallet))
    assert isd.log == wallet.log == ["power_off"]  # power on ends any earlier session
    isd.log.clear()
    wallet.log.clear()
    assert send(card, f"00A40400 09 {WALLET_AID} 00") == (bytes.fromhex("6f03840101"), 0x9000)
    assert send(card, "80CA006600") == (b"\xca\xfe", 0x9000)
    assert send(card, "00B0000002") == (b"\xca\xfe", 0x9000)  # every command goes to the application
    assert send(card, "84E6000000") == (b"\xca\xfe", 0x9000)  # secure messaging CLA too
    _, status = send(card, "80CA0066")  # no Le: T=0 style
    assert status == 0x6102
    assert ok(card, "00C0000002") == b"\xca\xfe"
    assert wallet.log == ["select", "process 80CA", "process 00B0", "process 84E6", "process 80CA"]
    select(card, "3F00")
    assert wallet.log[-1] == "deselect"
    assert sw(card, "80CA006600") == 0x6D00  # the card itself has no GET DATA
    # Another application: the first is deselected before the second is selected.
    ok(card, f"00A40400 09 {WALLET_AID} 00")
    ok(card, f"00A40400 08 {ISD_AID} 00")
    assert wallet.log[-1] == "deselect" and isd.log == ["select"]
    # Partial AID, next occurrence across the ADF and the applications.
    ok(card, f"00A40400 05 {ISD_AID[:10]} 00")
    assert sw(card, "00A4040C 05 A000000000") == 0x6A82
    card.power_off()
    assert isd.log[-1] == "power_off" and wallet.log[-1] == "power_off"


def test_locked_card_selects_only_the_isd() -> None:
    isd, wallet = FakeApp(ISD_AID), FakeApp(WALLET_AID)
    registry = FakeRegistry(isd, wallet)
    card = make_card(registry=registry)
    registry.locked = True
    assert sw(card, f"00A4040C 09 {WALLET_AID}") == 0x6A82
    assert sw(card, f"00A4040C 08 {ISD_AID}") == 0x6105  # the ISD's FCI, by GET RESPONSE
    select_usim(card)  # the file system's ADFs stay selectable


class FakeToolkit:
    def __init__(self) -> None:
        self.profile = b""
        self.queue: list[bytes] = []
        self.responses: list[bytes] = []

    def terminal_profile(self, profile: bytes) -> None:
        self.profile = profile
        self.queue.append(bytes.fromhex("D009810301250082028182"))

    def pending_length(self) -> int:
        return len(self.queue[0]) if self.queue else 0

    def fetch(self) -> bytes:
        return self.queue.pop(0)

    def terminal_response(self, data: bytes) -> None:
        self.responses.append(data)

    def envelope(self, data: bytes) -> bytes:
        return b"\x00\x01\x02" if data[0] == 0xD1 else b""

    def power_off(self) -> None:
        self.queue.clear()


def test_toolkit_commands_and_91xx() -> None:
    toolkit = FakeToolkit()
    card = make_card(toolkit=toolkit)
    assert sw(card, "80100000 03 FFFFFF") == 0x910B
    assert toolkit.profile == b"\xff\xff\xff"
    assert sw(card, "00A4000C023F00") == 0x910B  # any 9000 becomes 91XX while a command waits
    assert send(card, "8012000005") == (b"", 0x6C0B)
    assert ok(card, "801200000B") == bytes.fromhex("D009810301250082028182")
    assert sw(card, "801200000B") == 0x6985  # nothing to fetch
    assert sw(card, "80140000 0C 810301250082028281830100") == 0x9000
    assert toolkit.responses == [bytes.fromhex("810301250082028281830100")]
    assert send(card, "80C20000 04 D1020000") == (b"", 0x6103)  # envelope data by GET RESPONSE
    assert ok(card, "00C0000003") == b"\x00\x01\x02"
    assert sw(card, "80C20000 04 D3020000") == 0x9000
    assert sw(card, "80C20000") == 0x6700
    assert sw(card, "80C20100 04 D3020000") == 0x6A86
    toolkit.queue.append(b"\xd0" * 300)
    assert sw(card, "80F2000C") == 0x912C  # XX is the length's low byte


# -- persistence -------------------------------------------------------------------------------------------------------


def test_image_is_private_and_holds_no_pin_values(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    make_card(store)
    path = tmp_path / "cards" / f"{ICCID}.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    for secret in (PIN1, PIN2, PUK1, ADM1, "1234", "12345678", "88888888"):
        assert secret.lower() not in text.lower()
    assert json.loads(text)["format"] == 1
    assert [p.name for p in (tmp_path / "cards").iterdir()] == [f"{ICCID}.json"]  # no temporary left
    assert store.iccids() == [ICCID]
    with pytest.raises(CardExistsError):
        make_card(store)


def test_salted_digests_differ_per_card(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    Uicc.manufacture(spec(), ICCID, SECRETS, store, rng=lambda n: b"\x01" * n)
    Uicc.manufacture(spec(), "8988211000000430028", SECRETS, store, rng=lambda n: b"\x02" * n)
    first = json.loads(store.path(ICCID).read_text())["pins"]["01"]["digest"]
    second = json.loads(store.path("8988211000000430028").read_text())["pins"]["01"]["digest"]
    assert first != second


def test_restart_keeps_contents_and_counters(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = make_card(store)
    assert verify(card, "01", WRONG) == 0x63C2
    assert verify(card, "0A", ADM1) == 0x9000
    select_usim(card)
    ok(card, "00D68700 09 082982608200002080")
    assert verify(card, "81", WRONG) == 0x63C2
    assert sw(card, "00040000 02 6F46") == 0x9000
    # The process dies: a new card object from the same store.
    again = Uicc.load(store, ICCID, spec())
    again.power_on()
    assert again.pin_tries(0x01) == 2 and again.pin_tries(0x81) == 2
    assert sw(again, "00200001") == 0x63C2
    assert again.file_content("ADF.USIM/EF.IMSI") == bytes.fromhex("082982608200002080")
    assert again.fs.file("ADF.USIM/EF.SPN").active is False
    assert verify(again, "01", PIN1) == 0x9000  # the PIN digest survived too


def test_application_state_is_persisted(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    wallet = FakeApp(WALLET_AID)
    registry = FakeRegistry(wallet)
    card = make_card(store, registry=registry)
    card.set_registry_state_source(registry.export_state)
    ok(card, f"00A40400 09 {WALLET_AID} 00")
    ok(card, "80CA006600")
    ok(card, "80CA006600")
    card.services.persist()
    assert card.services.iccid == iccid_to_bcd(ICCID)
    assert card.services.pin_verified(0x01) is False
    again = Uicc.load(store, ICCID, spec())
    assert again.registry_state() == again.app_state("gp") == {"locked": False, "aids": [WALLET_AID.lower()]}
    assert again.app_state(bytes.fromhex(WALLET_AID)) == {"counter": 2}
    assert again.app_state(bytes.fromhex(ISD_AID)) is None
    rebuilt = FakeApp(WALLET_AID, again.app_state(bytes.fromhex(WALLET_AID)))
    again.attach(registry=FakeRegistry(rebuilt))  # no state source this time: the saved registry state is kept
    again.power_on()
    ok(again, f"00A40400 09 {WALLET_AID} 00")
    ok(again, "80CA006600")
    assert rebuilt.state == {"counter": 3}
    # The card's own changes (a PIN counter) persist the image with the applications' states as they last
    # persisted them: an application that changed without calling persist() (as the contract asks) is not saved.
    select(again, "3F00")
    assert verify(again, "01", WRONG) == 0x63C2
    reloaded = Uicc.load(store, ICCID, spec())
    assert reloaded.pin_tries(0x01) == 2
    assert reloaded.app_state(bytes.fromhex(WALLET_AID)) == {"counter": 2}
    assert reloaded.registry_state() == {"locked": False, "aids": [WALLET_AID.lower()]}
    # Once the application persists, its state is saved.
    again.services.persist()
    assert Uicc.load(store, ICCID, spec()).app_state(bytes.fromhex(WALLET_AID)) == {"counter": 3}


def test_fsync_store_and_load_errors(tmp_path: Path) -> None:
    store = CardStore(tmp_path, fsync=True)
    card = make_card(store)
    assert verify(card, "01", WRONG) == 0x63C2
    assert Uicc.load(store, ICCID, spec()).pin_tries(0x01) == 2
    with pytest.raises(CardNotFoundError):
        Uicc.load(store, "8988211000000430028", spec())
    doc = yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text())["card"]
    other = CardSpec.from_mapping({**doc, "name": "other"})
    with pytest.raises(ImageError, match="usim-wallet"):
        Uicc.load(store, ICCID, other)
    image = json.loads(store.path(ICCID).read_text())
    image["pins"]["01"]["tries"] = 7
    store.path(ICCID).write_text(json.dumps(image))
    store.log_path(ICCID).write_bytes(b"")  # the logged counter would override the snapshot's
    with pytest.raises(ImageError, match="PIN1"):
        Uicc.load(store, ICCID, spec())
    store.path(ICCID).write_text("{not json")
    with pytest.raises(ImageError):
        Uicc.load(store, ICCID, spec())
    with pytest.raises(CodecError):
        store.path("12345")


def test_card_secrets_stay_secret() -> None:
    assert "1234" not in repr(SECRETS) and "8888" not in repr(SECRETS)
    assert "1234" not in repr(make_card().pins)
    with pytest.raises(CodecError, match="pin1") as info:
        CardSecrets(pin1=b"12a4", puk1=b"12345678", adm1=b"88888888")
    assert "12a4" not in str(info.value)
    with pytest.raises(CodecError, match="puk1"):
        CardSecrets(pin1=b"1234", puk1=b"1234", adm1=b"88888888")
    with pytest.raises(CodecError, match="adm1"):
        CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"12")
    with pytest.raises(TypeError):
        CardSecrets(pin1="1234", puk1=b"12345678", adm1=b"88888888")  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="PIN2"):
        Uicc.manufacture(spec(), ICCID, CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"88888888"), None)
