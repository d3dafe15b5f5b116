"""EF contents of TS 31.102 §4.2 / TS 102 221 §13: published vectors both ways, whole-domain round trips, malformed input."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.efs import (
    AccessClasses,
    AdditionalInfo,
    Address,
    AdministrativeData,
    DiallingNumber,
    HplmnSearchPeriod,
    Iccid,
    Imsi,
    LanguageList,
    Npi,
    ServiceProviderName,
    ServiceTable,
    SmsParameters,
    SpnDisplayCondition,
    Ton,
    UeOperationMode,
    validity_from_minutes,
    validity_minutes,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "efs.json").read_text(encoding="utf-8"))


def cases(block: str) -> Any:
    return pytest.mark.parametrize("v", VECTORS[block]["vectors"], ids=lambda v: v["id"])


# --- published vectors -----------------------------------------------------------------------------


@cases("iccid")
def test_iccid_vectors(v: dict[str, Any]) -> None:
    assert_both_ways(Iccid.from_bytes, Iccid.to_bytes, h(v["hex"]), Iccid(v["iccid"]))
    assert Iccid(v["iccid"]).luhn_ok


@cases("imsi")
def test_imsi_vectors(v: dict[str, Any]) -> None:
    assert_both_ways(Imsi.from_bytes, Imsi.to_bytes, h(v["hex"]), Imsi(v["imsi"]))


@cases("ad")
def test_ad_vectors(v: dict[str, Any]) -> None:
    obj = AdministrativeData(UeOperationMode(v["operation_mode"]), AdditionalInfo(v["additional_info"]), v["mnc_length"])
    assert_both_ways(AdministrativeData.from_bytes, AdministrativeData.to_bytes, h(v["hex"]), obj)


@cases("spn")
def test_spn_vectors(v: dict[str, Any]) -> None:
    obj = ServiceProviderName(v["name"], SpnDisplayCondition(v["display_condition"]))
    assert_both_ways(ServiceProviderName.from_bytes, ServiceProviderName.to_bytes, h(v["hex"]), obj)


@cases("dialling_numbers")
def test_dialling_number_vectors(v: dict[str, Any]) -> None:
    data = h(v["hex"])
    obj = DiallingNumber(v["alpha"], v["number"], v["ton"], v["npi"])
    assert_both_ways(DiallingNumber.from_bytes, lambda o: o.to_bytes(len(data)), data, obj)


@cases("smsp")
def test_smsp_vectors(v: dict[str, Any]) -> None:
    data = h(v["hex"])
    centre = v["service_centre"]
    obj = SmsParameters(v["alpha"], None, Address(centre["number"], centre["ton"], centre["npi"]), v["pid"], v["dcs"], v["validity"])
    assert_both_ways(SmsParameters.from_bytes, lambda o: o.to_bytes(len(data)), data, obj)


@cases("ust")
def test_ust_vectors(v: dict[str, Any]) -> None:
    data = h(v["hex"])
    assert_both_ways(ServiceTable.from_bytes, lambda o: o.to_bytes(len(data)), data, ServiceTable(frozenset(v["services"])))


@cases("languages")
def test_language_vectors(v: dict[str, Any]) -> None:
    data = h(v["hex"])
    assert_both_ways(LanguageList.from_bytes, lambda o: o.to_bytes(len(data)), data, LanguageList(tuple(v["languages"])))


@cases("acc")
def test_acc_vectors(v: dict[str, Any]) -> None:
    assert_both_ways(AccessClasses.from_bytes, AccessClasses.to_bytes, h(v["hex"]), AccessClasses(frozenset(v["classes"])))


@cases("hpplmn")
def test_hpplmn_vectors(v: dict[str, Any]) -> None:
    assert_both_ways(HplmnSearchPeriod.from_bytes, HplmnSearchPeriod.to_bytes, h(v["hex"]), HplmnSearchPeriod(v["period"]))


# --- clause details --------------------------------------------------------------------------------


def test_iccid_of_twenty_digits_fills_every_nibble() -> None:
    assert_both_ways(Iccid.from_bytes, Iccid.to_bytes, h("98 68 00 21 43 65 87 09 21 83"), Iccid("89860012345678901238"))


def test_imsi_of_even_length_has_identity_nibble_1_and_an_f_pad() -> None:
    # 14 digits: identity nibble 1 (even), 15 nibbles in 8 bytes, the last nibble F.
    assert_both_ways(Imsi.from_bytes, Imsi.to_bytes, h("08 21 43 65 87 09 21 43 F5"), Imsi("23456789012345"))


@pytest.mark.parametrize(
    "data",
    [
        h("FF FF FF FF FF FF FF FF FF"),  # never written
        h("08 29 82 60 82 00 00 20 80 00"),  # trailing byte
        h("08 22 82 60 82 00 00 20 80"),  # identity nibble 2
        h("08 21 82 60 82 00 00 20 80"),  # parity says even, 15 digits
        h("09 29 82 60 82 00 00 20 80"),  # length byte 9
        h("08 29 82 F0 82 00 00 20 80"),  # digit after the F end mark
        h("03 29 82 F0 FF FF FF FF FF"),  # 3 digits: too short for an IMSI
        h("08 29 82 60 82 00 00 20 8A"),  # nibble A is no digit
        h("05 29 82 60 FF FF FF FF 00"),  # non-FF after the IMSI
    ],
)
def test_imsi_refuses_malformed_files(data: bytes) -> None:
    with pytest.raises(CodecError):
        Imsi.from_bytes(data)


def test_spn_in_ucs2_and_its_limit() -> None:
    spn = ServiceProviderName("中国移动", SpnDisplayCondition.SHOW_PLMN_AT_HOME)
    assert_both_ways(ServiceProviderName.from_bytes, ServiceProviderName.to_bytes, h("01 80 4E2D 56FD 79FB 52A8" + " FF" * 7), spn)
    # 8 Chinese characters need 1 + 16 bytes in the 80 form and no 81/82 form fits them: one byte too many.
    with pytest.raises(CodecError, match="16"):
        ServiceProviderName("中国移动通信集团")


def test_ad_bits_and_modes() -> None:
    ad = AdministrativeData(UeOperationMode.CELL_TEST, AdditionalInfo.CIPHERING_INDICATOR | AdditionalInfo.EXTENDED_DRX, 3, h("AB"))
    assert_both_ways(AdministrativeData.from_bytes, AdministrativeData.to_bytes, h("04 00 09 03 AB"), ad)
    # Byte 4's high nibble is RFU: ignored when read.
    assert AdministrativeData.from_bytes(h("00 00 00 F2")).mnc_length == 2
    for bad in (h("00 00"), h("05 00 00 02"), h("00 00 00 04"), bytes(17)):
        with pytest.raises(CodecError):
            AdministrativeData.from_bytes(bad)
    with pytest.raises(CodecError):
        AdministrativeData(mnc_length=4)


def test_service_table_sizes() -> None:
    table = ServiceTable(frozenset({1, 9, 17}))
    assert table.to_bytes() == h("01 01 01")
    assert table.to_bytes(5) == h("01 01 01 00 00")
    with pytest.raises(CodecError, match="needs 3 bytes"):
        table.to_bytes(2)
    with pytest.raises(CodecError):
        ServiceTable(frozenset({0}))


def test_language_list_pads_and_refuses() -> None:
    assert LanguageList(("zh", "en")).to_bytes(6) == b"zhen\xff\xff"
    assert LanguageList.from_bytes(b"\xff\xffzh\xff\xff") == LanguageList(("zh",))
    for bad in (("EN",), ("eng",), ("z1",)):
        with pytest.raises(CodecError):
            LanguageList(bad)
    for data in (b"zhe", b"Zh", b"\x00\x01"):
        with pytest.raises(CodecError):
            LanguageList.from_bytes(data)
    with pytest.raises(CodecError):
        LanguageList(("zh", "en")).to_bytes(3)


def test_access_class_from_the_last_imsi_digit() -> None:
    assert AccessClasses.from_imsi("460001234567897").to_bytes() == h("00 80")
    assert AccessClasses.from_imsi("460001234567890").to_bytes() == h("00 01")
    with pytest.raises(CodecError):
        AccessClasses.from_imsi("")


def test_dialling_number_extended_digits_and_identifiers() -> None:
    record = DiallingNumber("", "*21#p?", Ton.UNKNOWN, Npi.ISDN, ccp=1, ext=2)
    data = h("04 81 2A B1 DC FF FF FF FF FF FF FF 01 02")
    assert_both_ways(DiallingNumber.from_bytes, lambda o: o.to_bytes(14), data, record)


def test_dialling_number_refusals() -> None:
    with pytest.raises(CodecError, match="20"):
        DiallingNumber(number="1" * 21)
    with pytest.raises(CodecError):
        DiallingNumber(number="+8613800138000")
    with pytest.raises(CodecError):
        DiallingNumber(ccp=255)
    with pytest.raises(CodecError, match="alpha"):
        DiallingNumber("Eigene Rufnummer!").to_bytes(30)
    with pytest.raises(CodecError):
        DiallingNumber().to_bytes(13)
    for data in (
        h("0C 91" + "11" * 10 + "FF FF"),  # BCD length 12
        h("00 91" + "11" * 10 + "FF FF"),  # BCD length 0
        h("08 91 94 71 F2 19 91 81 F3 FF FF FF FF FF"),  # digit after F
        h("08 91 94 71 FF FF FF FF FF FF FF FF FF FF"),  # length says 7 bytes of digits, 2 present
        h("03 91 E1 FF FF FF FF FF FF FF FF FF FF FF"),  # nibble E is RFU
    ):
        with pytest.raises(CodecError):
            DiallingNumber.from_bytes(data)


def test_smsp_with_every_parameter() -> None:
    record = SmsParameters("SC", Address("10086", Ton.NATIONAL), Address("8613800210500"), 0x00, 0x08, 0xA7)
    data = h(
        "53 43 FF FF"  # alpha
        "E0"  # all five present
        "05 A1 01 80 F6 FF FF FF FF FF FF FF"  # TP-DA: 5 digits, national
        "08 91 68 31 08 20 01 05 F0 FF FF FF"  # TS-SCA: 8 bytes, international
        "00 08 A7"
    )
    assert_both_ways(SmsParameters.from_bytes, lambda o: o.to_bytes(32), data, record)


def test_smsp_refusals() -> None:
    with pytest.raises(CodecError):
        SmsParameters(pid=256)
    with pytest.raises(CodecError):
        Address("1", Ton.ALPHANUMERIC)
    with pytest.raises(CodecError):
        SmsParameters("a very long alpha").to_bytes(30)
    for data in (
        h("E1" + "FF" * 12 + "0C 81" + "11" * 10 + "00 00 00"),  # service centre length 12
        h("E2 15 81" + "11" * 10 + "FF" * 12 + "00 00 00"),  # TP-DA of 21 digits
        h("E1" + "FF" * 12 + "05 81 00 F1 55 F5 FF FF FF FF FF FF 00 00 00"),  # F inside the digits
    ):
        with pytest.raises(CodecError):
            SmsParameters.from_bytes(data)


def test_validity_period_ranges_of_ts_23_040() -> None:
    # TS 23.040 §9.2.3.12.1: (VP+1)×5 min; 12 h + (VP-143)×30 min; (VP-166) days; (VP-192) weeks.
    expected = {0: 5, 11: 60, 143: 720, 144: 750, 167: 1440, 168: 2 * 1440, 196: 30 * 1440, 197: 5 * 7 * 1440, 255: 63 * 7 * 1440}
    assert {vp: validity_minutes(vp) for vp in expected} == expected


def test_validity_period_every_value_round_trips_and_grows() -> None:
    minutes = [validity_minutes(vp) for vp in range(256)]
    assert minutes == sorted(set(minutes))
    assert [validity_from_minutes(m) for m in minutes] == list(range(256))


@pytest.mark.parametrize("minutes", [0, 4, 7, 725, 2000, 31 * 1440, 64 * 7 * 1440, -5])
def test_validity_without_relative_encoding_names_the_neighbours(minutes: int) -> None:
    with pytest.raises(CodecError, match="relative encoding"):
        validity_from_minutes(minutes)


# --- whole-domain round trips ---------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
dialling = st.text(alphabet="0123456789*#p?", max_size=20)
alpha_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), max_codepoint=0xFFFE), max_size=6)
ton = st.sampled_from([t for t in Ton if t != Ton.ALPHANUMERIC])
npi = st.integers(0, 15)
record_id = st.one_of(st.none(), st.integers(0, 254))
byte_or_none = st.one_of(st.none(), st.integers(0, 255))


@given(digits)
def test_iccid_round_trip(text: str) -> None:
    assert Iccid.from_bytes(Iccid(text).to_bytes()) == Iccid(text)


@given(st.text(alphabet="0123456789", min_size=6, max_size=15))
def test_imsi_round_trip(text: str) -> None:
    data = Imsi(text).to_bytes()
    assert len(data) == 9
    assert Imsi.from_bytes(data) == Imsi(text)


@given(st.sampled_from(list(UeOperationMode)), st.integers(0, 0xFFFF), st.sampled_from([None, 2, 3]), st.binary(max_size=12))
def test_ad_round_trip(mode: UeOperationMode, info: int, mnc: int | None, rfu: bytes) -> None:
    ad = AdministrativeData(mode, AdditionalInfo(info), mnc, rfu if mnc is not None else b"")
    assert AdministrativeData.from_bytes(ad.to_bytes()) == ad


@given(alpha_text, st.integers(0, 255))
def test_spn_round_trip(name: str, condition: int) -> None:
    try:
        spn = ServiceProviderName(name, SpnDisplayCondition(condition))
    except CodecError:
        return  # does not fit 16 bytes
    assert ServiceProviderName.from_bytes(spn.to_bytes()) == spn


@given(st.frozensets(st.integers(1, 8 * 20)), st.integers(20, 40))
def test_ust_round_trip(services: frozenset[int], size: int) -> None:
    table = ServiceTable(services)
    assert ServiceTable.from_bytes(table.to_bytes(size)) == table


@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=2), max_size=10), st.integers(0, 4))
def test_languages_round_trip(codes: list[str], spare: int) -> None:
    languages = LanguageList(tuple(codes))
    assert LanguageList.from_bytes(languages.to_bytes(2 * (len(codes) + spare))) == languages


@given(st.frozensets(st.integers(0, 15)))
def test_acc_round_trip(classes: frozenset[int]) -> None:
    assert AccessClasses.from_bytes(AccessClasses(classes).to_bytes()) == AccessClasses(classes)


@given(st.integers(0, 255))
def test_hpplmn_round_trip_all_values(period: int) -> None:
    assert HplmnSearchPeriod.from_bytes(bytes([period])) == HplmnSearchPeriod(period)
    assert HplmnSearchPeriod(period).to_bytes() == bytes([period])


@given(alpha_text, dialling, st.integers(0, 7), npi, record_id, record_id, st.integers(14, 40))
def test_dialling_number_round_trip(alpha: str, number: str, ton_: int, npi_: int, ccp: int | None, ext: int | None, length: int) -> None:
    record = DiallingNumber(alpha, number, ton_, npi_, ccp, ext)
    try:
        data = record.to_bytes(length)
    except CodecError:
        return  # the alpha identifier does not fit this record length
    assert len(data) == length
    assert DiallingNumber.from_bytes(data) == record


@given(
    alpha_text,
    st.one_of(st.none(), st.builds(Address, dialling, ton, npi)),
    st.one_of(st.none(), st.builds(Address, dialling, ton, npi)),
    byte_or_none,
    byte_or_none,
    byte_or_none,
    st.integers(28, 50),
)
def test_smsp_round_trip(
    alpha: str, da: Address | None, sca: Address | None, pid: int | None, dcs: int | None, vp: int | None, length: int
) -> None:
    record = SmsParameters(alpha, da, sca, pid, dcs, vp)
    try:
        data = record.to_bytes(length)
    except CodecError:
        return
    assert SmsParameters.from_bytes(data) == record


# --- malformed input: only CodecError escapes -----------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    Iccid.from_bytes,
    Imsi.from_bytes,
    AdministrativeData.from_bytes,
    ServiceProviderName.from_bytes,
    ServiceTable.from_bytes,
    LanguageList.from_bytes,
    AccessClasses.from_bytes,
    HplmnSearchPeriod.from_bytes,
    DiallingNumber.from_bytes,
    SmsParameters.from_bytes,
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__qualname__)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_codec_error(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(CodecError):
        parse(data)


@pytest.mark.parametrize(
    ("parse", "data", "shortest", "fixed"),
    [
        (Iccid.from_bytes, h("988812010000400310f0"), 10, True),
        (Imsi.from_bytes, h("082982608200002080"), 9, True),
        (ServiceProviderName.from_bytes, h("0147534d2d52204348ffffffffffffffff"), 17, True),
        (AccessClasses.from_bytes, h("802b"), 2, True),
        (HplmnSearchPeriod.from_bytes, h("05"), 1, True),
        (AdministrativeData.from_bytes, h("00000002"), 3, False),
        (DiallingNumber.from_bytes, h("0891946110325476f8ffffffffff"), 14, False),
        (SmsParameters.from_bytes, h("e1ffffffffffffffffffffffff0581005155f5ffffffffffff000000"), 28, False),
    ],
    ids=lambda x: getattr(x, "__qualname__", None),
)
def test_truncated_and_trailing(parse: Callable[[bytes], object], data: bytes, shortest: int, fixed: bool) -> None:
    """Cut below the clause's minimum: TruncatedError. A fixed-size file with a byte more: CodecError."""
    parse(data)
    for cut in range(shortest):
        with pytest.raises(TruncatedError):
            parse(data[:cut])
    if fixed:
        with pytest.raises(CodecError):
            parse(data + b"\xff")
