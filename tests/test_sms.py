"""SMS TPDUs (3GPP TS 23.040 §9.2) and their fields: published vectors, both ways, whole domains, hostile bytes.

Vectors come from tests/vectors/sms.json (provenance in tests/vectors/README.md).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import assume, given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gsm7 import GSM7_CHARACTERS, encode_gsm7
from simwallet.applet.protocols.sms import (
    DCS_GSM7,
    DCS_SIM_DATA_DOWNLOAD,
    PID_SIM_DATA_DOWNLOAD,
    TPDU_OCTETS_MAX,
    Address,
    Alphabet,
    CodingGroup,
    Concatenation,
    DataCoding,
    Direction,
    EnhancedValidity,
    IndicationType,
    Npi,
    PortAddressing,
    RawIe,
    Reassembler,
    SmsCommand,
    SmsDeliver,
    SmsDeliverReport,
    SmsStatusReport,
    SmsSubmit,
    SmsSubmitReport,
    SplitText,
    Ton,
    Tpdu,
    UserData,
    UserDataHeader,
    decode_text,
    encode_text,
    parse_sms_deliver,
    parse_sms_submit,
    parse_sms_tpdu,
    parse_toa_value,
    relative_vp_at_least,
    relative_vp_from_timedelta,
    relative_vp_to_timedelta,
    split_for_concatenation,
    split_smsc_address,
    submits_for_text,
)
from simwallet.applet.protocols.sms_address import ADDRESS_DIGITS_MAX, parse_address, parse_rp_address
from simwallet.applet.protocols.sms_text import DropReason
from simwallet.applet.protocols.sms_time import EVP_FORMAT_HHMMSS, EVP_FORMAT_SECONDS, encode_timestamp, parse_timestamp
from simwallet.applet.protocols.sms_udh import (
    IEI_CPI,
    encode_user_data,
    fill_bits,
    header_septets,
    information_element,
    parse_udh,
    parse_user_data,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "sms.json").read_text(encoding="utf-8"))
TPDU_VECTORS = [pytest.param(v, id=v["id"]) for v in VECTORS["tpdus"]]


def _parser(direction: Direction, rp_error: bool | None = None) -> Any:
    return lambda data: parse_sms_tpdu(data, direction, rp_error=rp_error)


def _to_bytes(tpdu: Tpdu) -> bytes:
    return tpdu.to_bytes()


# ------------------------------------------------------------------ strategies

digit_addresses = st.builds(
    Address,
    st.integers(0, 7).filter(lambda ton: ton != Ton.ALPHANUMERIC),
    st.integers(0, 15),
    st.text(alphabet="0123456789*#abc", max_size=ADDRESS_DIGITS_MAX),
)
alpha_addresses = st.builds(
    Address.alphanumeric,
    st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=11).filter(lambda t: len(encode_gsm7(t)) <= 11),
)
addresses = st.one_of(digit_addresses, alpha_addresses)
zones = st.integers(-79, 79).map(lambda q: timezone(timedelta(minutes=15 * q)))
timestamps = st.builds(
    lambda moment, tz: moment.replace(microsecond=0, tzinfo=tz),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2089, 12, 31, 23, 59, 59)),
    zones,
)
ies = st.builds(information_element, st.integers(0, 255), st.binary(max_size=8))
headers = st.builds(lambda items: UserDataHeader(tuple(items)), st.lists(ies, max_size=4))
codings = st.integers(0, 255).map(DataCoding)


@st.composite
def coded_user_data(draw: st.DrawFn, octets_max: int = 140) -> tuple[DataCoding, UserData]:
    coding = draw(codings)
    header = draw(st.none() | headers)
    body = draw(st.binary(max_size=160))
    if coding.counts_septets:
        body = bytes(b & 0x7F for b in body)
    user_data = UserData(body, header)
    try:
        encode_user_data(coding, user_data, octets_max)
    except CodecError:
        assume(False)
    return coding, user_data


validities = st.one_of(
    st.none(),
    st.integers(0, 255).map(relative_vp_to_timedelta),
    timestamps,
    st.binary(min_size=7, max_size=7).map(EnhancedValidity),
)


@st.composite
def delivers(draw: st.DrawFn) -> SmsDeliver:
    coding, user_data = draw(coded_user_data())
    flags = draw(st.lists(st.booleans(), min_size=4, max_size=4))
    return SmsDeliver(
        oa=draw(addresses),
        scts=draw(timestamps),
        ud=user_data,
        pid=draw(st.integers(0, 255)),
        dcs=coding,
        mms=flags[0],
        lp=flags[1],
        sri=flags[2],
        rp=flags[3],
    )


@st.composite
def submits(draw: st.DrawFn) -> SmsSubmit:
    coding, user_data = draw(coded_user_data())
    flags = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    return SmsSubmit(
        da=draw(addresses),
        mr=draw(st.integers(0, 255)),
        ud=user_data,
        pid=draw(st.integers(0, 255)),
        dcs=coding,
        vp=draw(validities),
        rd=flags[0],
        srr=flags[1],
        rp=flags[2],
    )


@st.composite
def optional_fields(draw: st.DrawFn) -> dict[str, Any]:
    pid = draw(st.none() | st.integers(0, 255))
    dcs = draw(st.none() | codings)
    ud: UserData | None = None
    if draw(st.booleans()):
        coding, ud = draw(coded_user_data(octets_max=120))
        dcs = coding
    return {"pid": pid, "dcs": dcs, "ud": ud}


@st.composite
def reports(draw: st.DrawFn) -> tuple[Tpdu, Direction, bool | None]:
    kind = draw(st.sampled_from(["deliver-report", "submit-report", "status-report", "command"]))
    if kind == "command":
        cmd = SmsCommand(
            mr=draw(st.integers(0, 255)),
            ct=draw(st.integers(0, 255)),
            mn=draw(st.integers(0, 255)),
            da=draw(addresses),
            pid=draw(st.integers(0, 255)),
            cd=draw(st.binary(max_size=100)),
            srr=draw(st.booleans()),
            udhi=draw(st.booleans()),
        )
        return cmd, Direction.MS_TO_SC, None
    fields = draw(optional_fields())
    if kind == "status-report":
        report = SmsStatusReport(
            mr=draw(st.integers(0, 255)),
            ra=draw(addresses),
            scts=draw(timestamps),
            dt=draw(timestamps),
            st=draw(st.integers(0, 255)),
            srq=draw(st.booleans()),
            mms=draw(st.booleans()),
            lp=draw(st.booleans()),
            **fields,
        )
        return report, Direction.SC_TO_MS, None
    fcs = draw(st.none() | st.integers(0, 255))
    if kind == "deliver-report":
        return SmsDeliverReport(fcs=fcs, **fields), Direction.MS_TO_SC, fcs is not None
    return SmsSubmitReport(scts=draw(timestamps), fcs=fcs, **fields), Direction.SC_TO_MS, fcs is not None


# ------------------------------------------------------------------ published TPDUs


def _address_of(tpdu: Tpdu) -> Address:
    for name in ("oa", "da", "ra"):
        if hasattr(tpdu, name):
            address: Address = getattr(tpdu, name)
            return address
    raise AssertionError("no address field")


@pytest.mark.parametrize("vector", TPDU_VECTORS)
def test_published_tpdu(vector: dict[str, Any]) -> None:
    data = h(vector["pdu"])
    smsc: Address | None = None
    if not vector.get("tpdu_only"):
        smsc, data = split_smsc_address(data)
    parse = _parser(Direction[vector["direction"]], vector.get("rp_error"))
    tpdu = parse(data)
    expect = vector["expect"]
    assert type(tpdu).__name__ == expect["type"]
    if "smsc" in expect:
        assert (str(smsc) if smsc else None) == expect["smsc"]
    for key, value in expect.items():
        if key not in ("type", "smsc"):
            assert _observe(tpdu, data, key) == value, key
    if vector["both_ways"]:
        assert_both_ways(parse, _to_bytes, data, tpdu)
    else:
        # Parse-only vectors (see their notes) still re-encode to something that parses to the same TPDU.
        assert tpdu.to_bytes() != data
        assert parse(tpdu.to_bytes()) == tpdu


def _observe(tpdu: Any, data: bytes, key: str) -> Any:
    """The value a vector's ``expect`` entry ``key`` is compared with."""
    if key in ("address", "ton", "npi"):
        return getattr(_address_of(tpdu), "number" if key == "address" else key)
    if key in ("scts", "dt"):
        return getattr(tpdu, key).isoformat()
    if key == "vp_minutes":
        return tpdu.vp / timedelta(minutes=1)
    if key in ("dcs", "message_class"):
        return tpdu.dcs.value if key == "dcs" else tpdu.dcs.message_class
    if key == "mwi":
        return [tpdu.dcs.message_waiting_active, tpdu.dcs.indication_type]
    if key == "udl":
        return data[-len(_ud_octets(tpdu)) - 1]
    if key == "body":
        return (tpdu.cd if isinstance(tpdu, SmsCommand) else tpdu.ud.body).hex()
    special = {"concatenation": _concatenation, "ports": _ports, "cpi": _cpi}
    if key in special:
        return special[key](tpdu)
    return getattr(tpdu, key)


def _concatenation(tpdu: Tpdu) -> list[Any] | None:
    header = tpdu.ud.header  # type: ignore[union-attr]
    c = header.concatenation if header else None
    return [c.reference, c.total, c.sequence, c.wide] if c else None


def _ports(tpdu: Tpdu) -> list[Any] | None:
    header = tpdu.ud.header  # type: ignore[union-attr]
    p = header.port_addressing if header else None
    return [p.destination, p.originator, p.wide] if p else None


def _ud_octets(tpdu: Tpdu) -> bytes:
    return encode_user_data(tpdu.dcs, tpdu.ud)[1]  # type: ignore[union-attr,arg-type]


def _cpi(tpdu: Tpdu) -> str:
    header = tpdu.ud.header  # type: ignore[union-attr]
    assert header is not None and header.find(IEI_CPI) == RawIe(IEI_CPI, b"")
    return str(tpdu.ud.body.hex())  # type: ignore[union-attr]


def test_hellohello_submit_built_by_hand() -> None:
    submit = SmsSubmit(
        da=Address.international("+46708251358"),
        ud=UserData(encode_gsm7("hellohello")),
        vp=timedelta(days=4),
    )
    assert_both_ways(parse_sms_submit, _to_bytes, h("11000B916407281553F80000AA0AE8329BFD4697D9EC37"), submit)


def test_hellohello_deliver_built_by_hand() -> None:
    deliver = SmsDeliver(
        oa=Address(Ton.SUBSCRIBER, Npi.NATIONAL, "27838890001"),
        scts=datetime(1999, 3, 29, 15, 16, 59, tzinfo=timezone(timedelta(hours=2))),
        ud=UserData(encode_gsm7("hellohello")),
    )
    assert_both_ways(parse_sms_deliver, _to_bytes, h("040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"), deliver)


def test_sms_pp_download_deliver_built_by_hand() -> None:
    # The pySim OTA command packet in an SMS-PP data download (PID 7F, DCS F6, UDH 70 00).
    packet = h("0020150619353" + "5b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")
    deliver = SmsDeliver(
        oa=Address(Ton.UNKNOWN, Npi.ISDN, "12345678"),
        scts=datetime(2022, 7, 25, tzinfo=UTC),
        ud=UserData(packet, UserDataHeader((RawIe(IEI_CPI),))),
        pid=PID_SIM_DATA_DOWNLOAD,
        dcs=DCS_SIM_DATA_DOWNLOAD,
        mms=False,
    )
    vector = next(v for v in VECTORS["tpdus"] if v["id"] == "pysim-ota-3des-ciphered-cc-udl-corrected")
    assert_both_ways(parse_sms_deliver, _to_bytes, h(vector["pdu"]), deliver)


def test_pysim_ota_tpdu_with_udl_3_is_refused() -> None:
    # Collection §5.6 discrepancy 2: TP-UDL 03 announces 3 octets but 37 follow.
    bad = h("400881214365877ff62270520000000003027000" + "0020150619353" + "5b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")
    with pytest.raises(CodecError, match="after TP-UD"):
        parse_sms_deliver(bad)


def test_report_form_is_inferred_from_the_second_octet() -> None:
    error = SmsDeliverReport(fcs=0xD5)
    ack = SmsDeliverReport(pid=0x7F, dcs=DCS_SIM_DATA_DOWNLOAD, ud=UserData(h("027100") + b"\x00" * 4))
    assert parse_sms_tpdu(error.to_bytes(), Direction.MS_TO_SC) == error
    assert parse_sms_tpdu(ack.to_bytes(), Direction.MS_TO_SC) == ack
    # A reserved FCS below 80 needs the RP layer's word.
    low = SmsDeliverReport(fcs=0x12)
    assert parse_sms_tpdu(low.to_bytes(), Direction.MS_TO_SC, rp_error=True) == low


def test_reserved_mti_is_refused() -> None:
    for direction in Direction:
        with pytest.raises(CodecError, match="reserved"):
            parse_sms_tpdu(h("03") + bytes(30), direction)


def test_unknown_bits_are_ignored() -> None:
    # §9.2.2: TP-LP/unused bit 4 of SMS-DELIVER set; the TPDU parses and re-encodes without it.
    data = bytearray(h("040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"))
    data[0] |= 0x10
    assert parse_sms_deliver(bytes(data)).to_bytes()[0] == 0x04


# ------------------------------------------------------------------ whole-domain round trips


@given(delivers())
def test_deliver_round_trip(deliver: SmsDeliver) -> None:
    assert_both_ways(_parser(Direction.SC_TO_MS), _to_bytes, deliver.to_bytes(), deliver)


@given(submits())
def test_submit_round_trip(submit: SmsSubmit) -> None:
    assert_both_ways(_parser(Direction.MS_TO_SC), _to_bytes, submit.to_bytes(), submit)


@given(reports())
def test_report_and_command_round_trip(case: tuple[Tpdu, Direction, bool | None]) -> None:
    tpdu, direction, rp_error = case
    assert_both_ways(_parser(direction, rp_error), _to_bytes, tpdu.to_bytes(), tpdu)


def test_tpdu_size_limit() -> None:
    with pytest.raises(CodecError):
        SmsCommand(mr=0, ct=0, mn=0, da=Address.international("1"), cd=bytes(160))
    with pytest.raises(CodecError):
        SmsDeliver(oa=Address.international("1"), scts=datetime(2024, 1, 1, tzinfo=UTC), ud=UserData(bytes(141)), dcs=DataCoding(4))
    with pytest.raises(CodecError):
        parse_sms_tpdu(bytes(TPDU_OCTETS_MAX + 1), Direction.SC_TO_MS)


# ------------------------------------------------------------------ hostile bytes


def _parse_all_ways(data: bytes) -> None:
    for direction in Direction:
        for rp_error in (None, True, False):
            with contextlib.suppress(CodecError):
                parse_sms_tpdu(data, direction, rp_error=rp_error)


@given(st.binary(max_size=180))
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    _parse_all_ways(data)


@given(st.binary(max_size=40), st.integers(0, 3))
def test_field_parsers_raise_only_codec_error(data: bytes, offset: int) -> None:
    with contextlib.suppress(CodecError):
        split_smsc_address(data)
    parsers: tuple[Any, ...] = (parse_address, parse_rp_address, parse_udh, parse_timestamp, parse_toa_value)
    for parse in parsers:
        with contextlib.suppress(CodecError):
            parse(data, offset)
    for coding in (DCS_GSM7, DataCoding(0x04), DataCoding(0x08)):
        for udhi in (False, True):
            with contextlib.suppress(CodecError):
                parse_user_data(coding, udhi, data[0] if data else 0, data, 1)


@given(st.one_of(delivers(), submits()))
def test_truncated_and_trailing_deliver_submit(tpdu: SmsDeliver | SmsSubmit) -> None:
    data = tpdu.to_bytes()
    direction = Direction.SC_TO_MS if isinstance(tpdu, SmsDeliver) else Direction.MS_TO_SC
    for end in range(len(data)):
        with pytest.raises(CodecError):
            parse_sms_tpdu(data[:end], direction)
    with pytest.raises(CodecError):
        parse_sms_tpdu(data + b"\x00", direction)


@given(reports(), st.binary(min_size=1, max_size=3))
def test_truncated_and_trailing_reports(case: tuple[Tpdu, Direction, bool | None], extra: bytes) -> None:
    tpdu, direction, rp_error = case
    data = tpdu.to_bytes()
    for end in range(len(data)):
        with contextlib.suppress(CodecError):
            parse_sms_tpdu(data[:end], direction, rp_error=rp_error)
    with contextlib.suppress(CodecError):
        parse_sms_tpdu(data + extra, direction, rp_error=rp_error)


@given(st.one_of(delivers(), submits()), st.integers(0, 200), st.integers(1, 255))
def test_corrupted_octet_raises_only_codec_error(tpdu: SmsDeliver | SmsSubmit, index: int, flip: int) -> None:
    data = bytearray(tpdu.to_bytes())
    data[index % len(data)] ^= flip
    _parse_all_ways(bytes(data))


# ------------------------------------------------------------------ addresses (§9.1.2.5)


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in VECTORS["addresses"]])
def test_published_address(vector: dict[str, Any]) -> None:
    address = Address(vector["ton"], vector["npi"], vector["number"])
    assert_both_ways(lambda data: parse_address(data)[0], Address.to_bytes, h(vector["hex"]), address)


@given(addresses)
def test_tp_address_round_trip(address: Address) -> None:
    data = address.to_bytes()
    assert parse_address(data + b"\xaa") == (address, len(data))
    if not address.is_alphanumeric:
        assert data[0] == len(address.number)


@given(digit_addresses)
def test_rp_and_toa_value_round_trip(address: Address) -> None:
    rp = address.to_rp_bytes()
    assert rp[0] == len(rp) - 1
    assert parse_rp_address(rp) == (address, len(rp))
    assert parse_toa_value(address.to_toa_value()) == address


@pytest.mark.parametrize("ton", range(8))
@pytest.mark.parametrize("npi", range(16))
def test_every_ton_npi(ton: int, npi: int) -> None:
    number = "Wallet" if ton == Ton.ALPHANUMERIC else "12*#abc"
    address = Address(ton, npi, number)
    assert address.type_of_address == 0x80 | ton << 4 | npi
    assert parse_address(address.to_bytes())[0] == address


def test_alphanumeric_address() -> None:
    address = Address.alphanumeric("Wallet")
    data = address.to_bytes()
    # 6 septets = 42 bits: 11 useful semi-octets in 6 octets.
    assert data[:2] == h("0B D0")
    assert len(data) == 2 + 6
    assert parse_address(data)[0] == address


def test_international_helper_and_str() -> None:
    address = Address.international("+4912345")
    assert address.to_bytes() == h("07 91 9421 43 F5")
    assert str(address) == "+4912345"


def test_rp_address_empty_and_smsc() -> None:
    assert parse_rp_address(h("00")) == (None, 1)
    assert split_smsc_address(h("00 11")) == (None, h("11"))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("03 01 21F3", CodecError),  # TOA bit 8 clear
        ("04 81 2F43", CodecError),  # filler inside the digits
        ("15 81" + "11" * 11, CodecError),  # 21 digits
        ("05 81 2143", TruncatedError),
        ("05", TruncatedError),
    ],
)
def test_bad_tp_addresses(data: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_address(h(data))


@pytest.mark.parametrize(
    "kwargs", [{"ton": 8, "npi": 0, "number": "1"}, {"ton": 1, "npi": 16, "number": "1"}, {"ton": 1, "npi": 1, "number": "12d"}]
)
def test_bad_address_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        Address(**kwargs)


def test_alphanumeric_address_limits() -> None:
    with pytest.raises(CodecError):
        Address.alphanumeric("twelve chars")
    with pytest.raises(CodecError):
        Address.alphanumeric("€€€€€€")  # 12 septets
    with pytest.raises(CodecError):
        Address.alphanumeric("Wallet").to_rp_bytes()


# ------------------------------------------------------------------ time stamps (§9.2.3.11)


@pytest.mark.parametrize("vector", VECTORS["timestamps"], ids=lambda v: v["iso"])
def test_published_timestamp(vector: dict[str, Any]) -> None:
    assert_both_ways(parse_timestamp, encode_timestamp, h(vector["hex"]), datetime.fromisoformat(vector["iso"]))


@given(timestamps)
def test_timestamp_round_trip(moment: datetime) -> None:
    parsed = parse_timestamp(encode_timestamp(moment))
    assert parsed == moment
    assert parsed.utcoffset() == moment.utcoffset()


def test_timestamp_zone_sign_and_minus_zero() -> None:
    assert encode_timestamp(datetime(2006, 6, 6, 15, 3, 3, tzinfo=timezone(timedelta(hours=-7))))[-1] == 0x8A
    # Sign bit with zero quarters reads as UTC.
    assert parse_timestamp(h("20806291731408")).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 1, 1),  # naive
        datetime(2024, 1, 1, microsecond=1, tzinfo=UTC),
        datetime(2090, 1, 1, tzinfo=UTC),
        datetime(1989, 12, 31, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10))),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=20))),
    ],
)
def test_unencodable_timestamps(moment: datetime) -> None:
    with pytest.raises(CodecError):
        encode_timestamp(moment)


@pytest.mark.parametrize(
    "data", ["24 31 10 00 00 00 00", "24 10 23 00 00 00 00", "24 10 10 42 00 00 00", "A4 10 10 00 00 00 00", "24 10 10 00 00 00 A0"]
)
def test_bad_timestamps(data: str) -> None:
    with pytest.raises(CodecError):
        parse_timestamp(h(data))


# ------------------------------------------------------------------ validity period (§9.2.3.12)


@pytest.mark.parametrize("octet", range(256))
def test_relative_vp_every_value_both_ways(octet: int) -> None:
    duration = relative_vp_to_timedelta(octet)
    assert relative_vp_from_timedelta(duration) == octet
    assert relative_vp_at_least(duration) == octet
    submit = SmsSubmit(da=Address.international("1"), vp=duration)
    data = submit.to_bytes()
    assert data[0] & 0x18 == 0x10
    assert data[-2] == octet
    assert parse_sms_submit(data).vp == duration


def test_relative_vp_mapping_is_the_specs() -> None:
    # §9.2.3.12.1, each range's first and last value: (VP + 1) × 5 min, not VP + 1 × 5.
    assert relative_vp_to_timedelta(0) == timedelta(minutes=5)
    assert relative_vp_to_timedelta(143) == timedelta(hours=12)
    assert relative_vp_to_timedelta(144) == timedelta(hours=12, minutes=30)
    assert relative_vp_to_timedelta(167) == timedelta(hours=24)
    assert relative_vp_to_timedelta(168) == timedelta(days=2)
    assert relative_vp_to_timedelta(196) == timedelta(days=30)
    assert relative_vp_to_timedelta(197) == timedelta(weeks=5)
    assert relative_vp_to_timedelta(255) == timedelta(weeks=63)
    durations = [relative_vp_to_timedelta(o) for o in range(256)]
    assert durations == sorted(durations) and len(set(durations)) == 256


@pytest.mark.parametrize("vector", VECTORS["validity_relative"], ids=lambda v: f"{v['octet']:02X}")
def test_published_relative_vp(vector: dict[str, Any]) -> None:
    duration = timedelta(minutes=vector["minutes"])
    assert_both_ways(
        lambda d: relative_vp_to_timedelta(d[0]), lambda t: bytes([relative_vp_from_timedelta(t)]), bytes([vector["octet"]]), duration
    )


def test_relative_vp_rounding() -> None:
    assert relative_vp_at_least(timedelta(minutes=7)) == 1
    assert relative_vp_at_least(timedelta(0)) == 0
    with pytest.raises(CodecError):
        relative_vp_from_timedelta(timedelta(minutes=7))
    with pytest.raises(CodecError):
        relative_vp_at_least(timedelta(weeks=64))
    with pytest.raises(CodecError):
        SmsSubmit(da=Address.international("1"), vp=timedelta(minutes=7))


@pytest.mark.parametrize("vector", VECTORS["validity_enhanced"], ids=lambda v: v["hex"])
def test_published_enhanced_vp(vector: dict[str, Any]) -> None:
    vp = EnhancedValidity(h(vector["hex"]))
    expected = None if vector["seconds"] is None else timedelta(seconds=vector["seconds"])
    assert vp.duration == expected
    fmt = vp.vp_format
    assert EnhancedValidity.build(expected, vp_format=fmt).octets == vp.octets
    submit = SmsSubmit(da=Address.international("1"), vp=vp)
    assert parse_sms_submit(submit.to_bytes()) == submit


def test_enhanced_vp_flags_and_errors() -> None:
    vp = EnhancedValidity.build(timedelta(seconds=30), vp_format=EVP_FORMAT_SECONDS, single_shot=True)
    assert vp.octets == h("42 1E 00 00 00 00 00") and vp.single_shot and not vp.extended
    assert EnhancedValidity.build(timedelta(hours=99, seconds=1), vp_format=EVP_FORMAT_HHMMSS).octets[:4] == h("03 99 00 10")
    with pytest.raises(CodecError):
        EnhancedValidity(h("05 00 00 00 00 00 00")).duration  # noqa: B018 - reserved format
    with pytest.raises(CodecError):
        EnhancedValidity(h("81 00 00 00 00 00 00")).duration  # noqa: B018 - extension octets
    with pytest.raises(CodecError):
        EnhancedValidity(b"\x00")
    with pytest.raises(CodecError):
        EnhancedValidity.build(timedelta(seconds=256), vp_format=EVP_FORMAT_SECONDS)


# ------------------------------------------------------------------ data coding scheme (TS 23.038 §4)


@pytest.mark.parametrize("value", range(256))
def test_every_dcs_reads_consistently(value: int) -> None:
    dcs = DataCoding(value)
    group = value >> 4
    if group < 0x8:
        assert dcs.alphabet is (Alphabet.GSM7, Alphabet.EIGHT_BIT, Alphabet.UCS2, Alphabet.GSM7)[value >> 2 & 3]
        assert dcs.message_class == (value & 3 if value & 0x10 else None)
        assert dcs.compressed == bool(value & 0x20)
        assert dcs.automatic_deletion == (group >= 0x4)
    elif group < 0xC:
        assert dcs.group is CodingGroup.RESERVED and dcs.alphabet is Alphabet.GSM7
    elif group < 0xF:
        assert dcs.alphabet is (Alphabet.UCS2 if group == 0xE else Alphabet.GSM7)
        assert dcs.message_waiting_active == bool(value & 0x08)
        assert dcs.indication_type == IndicationType(value & 3)
    else:
        assert dcs.alphabet is (Alphabet.EIGHT_BIT if value & 0x04 else Alphabet.GSM7)
        assert dcs.message_class == value & 3
    assert dcs.counts_septets == (dcs.alphabet is Alphabet.GSM7 and not dcs.compressed)


@pytest.mark.parametrize("alphabet", list(Alphabet))
@pytest.mark.parametrize("message_class", [None, 0, 1, 2, 3])
def test_dcs_build_reads_back(alphabet: Alphabet, message_class: int | None) -> None:
    dcs = DataCoding.build(alphabet, message_class)
    assert (dcs.alphabet, dcs.message_class, dcs.group) == (alphabet, message_class, CodingGroup.GENERAL)
    if message_class is not None and alphabet is not Alphabet.UCS2:
        grouped = DataCoding.build(alphabet, message_class, class_group=True)
        assert (grouped.alphabet, grouped.message_class, grouped.group) == (alphabet, message_class, CodingGroup.DATA_CODING_CLASS)


def test_dcs_well_known_values() -> None:
    assert DataCoding.build(Alphabet.EIGHT_BIT, 2, class_group=True) == DCS_SIM_DATA_DOWNLOAD == DataCoding(0xF6)
    assert DataCoding.build(Alphabet.GSM7) == DCS_GSM7
    assert DataCoding.build(Alphabet.UCS2).value == 0x08
    assert DataCoding.build(Alphabet.GSM7, 0).value == 0x10
    assert DataCoding.message_waiting(True, IndicationType.VOICEMAIL, store=False).value == 0xC8
    assert DataCoding.message_waiting(False, IndicationType.EMAIL, ucs2=True).value == 0xE2
    with pytest.raises(CodecError):
        DataCoding.build(Alphabet.UCS2, 1, class_group=True)
    with pytest.raises(CodecError):
        DataCoding(256)


# ------------------------------------------------------------------ user data header (§9.2.3.24)


def test_udh_typed_and_raw_elements() -> None:
    data = h("0B 05 04 0B84 23F0 00 03 2A 02 01")
    header = UserDataHeader((PortAddressing(2948, 9200), Concatenation(42, 2, 1)))
    assert_both_ways(lambda d: parse_udh(d)[0], UserDataHeader.to_bytes, data, header)
    assert header.concatenation == Concatenation(42, 2, 1)
    assert header.port_addressing == PortAddressing(2948, 9200)
    wide = UserDataHeader((Concatenation(0x1234, 2, 1, wide=True), RawIe(0x71)))
    assert wide.to_bytes() == h("08 08 04 1234 02 01 71 00")
    assert UserDataHeader((PortAddressing(5, 6, wide=False),)).to_bytes() == h("04 04 02 05 06")


@pytest.mark.parametrize("data", ["05 00 03 01 00 01", "05 00 03 01 02 00", "05 00 03 01 02 03", "04 00 02 01 02", "06 08 04 00 01 00 01"])
def test_invalid_concatenation_stays_raw(data: str) -> None:
    # §9.2.3.24.1: a receiver ignores such an element; parsing keeps it raw so nothing is lost.
    header, _ = parse_udh(h(data))
    assert header.concatenation is None
    assert isinstance(header.elements[0], RawIe)
    assert header.to_bytes() == h(data)


def test_last_concatenation_counts_and_raw_ie_guard() -> None:
    header = UserDataHeader((Concatenation(1, 2, 1), Concatenation(9, 3, 3)))
    assert header.concatenation == Concatenation(9, 3, 3)
    with pytest.raises(CodecError):
        RawIe(0x00, h("01 02 01"))
    with pytest.raises(CodecError):
        Concatenation(256, 2, 1)


@given(headers)
def test_udh_round_trip(header: UserDataHeader) -> None:
    data = header.to_bytes()
    assert parse_udh(data) == (header, len(data))


@pytest.mark.parametrize("data", ["05 00 03 01", "03 00 05 01 02", "02 00"])
def test_bad_udh(data: str) -> None:
    with pytest.raises(CodecError):
        parse_udh(h(data))


@pytest.mark.parametrize("header_octets", range(1, 30))
def test_fill_bits_for_every_header_length(header_octets: int) -> None:
    header = UserDataHeader((RawIe(0x24, bytes(header_octets - 3)),)) if header_octets >= 3 else UserDataHeader()
    size = len(header.to_bytes())
    covered = header_septets(size)
    assert 7 * covered - 8 * size == fill_bits(size)
    assert 0 <= fill_bits(size) <= 6
    text = encode_gsm7("fill bits")
    udl, octets = encode_user_data(DCS_GSM7, UserData(text, header))
    assert udl == covered + len(text)
    assert len(octets) == (7 * udl + 7) // 8
    assert octets[:size] == header.to_bytes()
    assert parse_user_data(DCS_GSM7, True, udl, b"\x00" + octets, 1) == UserData(text, header)


def test_known_header_septet_counts() -> None:
    assert (header_septets(6), fill_bits(6)) == (7, 1)  # 8-bit concatenation: 153 septets left
    assert (header_septets(7), fill_bits(7)) == (8, 0)  # 16-bit concatenation: 152 septets left
    assert (header_septets(5), fill_bits(5)) == (6, 2)


def test_user_data_limits() -> None:
    with pytest.raises(CodecError):
        encode_user_data(DCS_GSM7, UserData(bytes(161)))
    with pytest.raises(CodecError):
        encode_user_data(DCS_GSM7, UserData(b"\x80"))
    assert encode_user_data(DCS_GSM7, UserData(bytes(160)))[0] == 160
    with pytest.raises(CodecError):
        parse_user_data(DCS_GSM7, True, 0, b"\x00", 1)
    with pytest.raises(CodecError):
        parse_user_data(DCS_GSM7, True, 1, h("00 05"), 1)  # header covers more septets than TP-UDL


# ------------------------------------------------------------------ submits_for_text


def test_submits_for_text_count_message_references() -> None:
    text = "x" * 400
    submits_ = submits_for_text(Address.international("+4912345"), text, reference=7, first_mr=254)
    assert [s.mr for s in submits_] == [254, 255, 0]
    for number, submit in enumerate(submits_, start=1):
        assert parse_sms_submit(submit.to_bytes()) == submit
        header = submit.ud.header
        assert header is not None and header.concatenation == Concatenation(7, 3, number)
    assert "".join(s.text for s in submits_) == text


# ------------------------------------------------------------------ text, concatenation, reassembly


class FakeClock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reassemble(split: SplitText, order: list[int] | None = None, source: str = "+4912345") -> str | None:
    reassembler = Reassembler(FakeClock())
    indexes = order if order is not None else list(range(len(split.parts)))
    result: str | None = None
    for position, index in enumerate(indexes):
        part = split.parts[index]
        result = reassembler.add(source, part.header, part.body, split.coding)
        if position < len(indexes) - 1:
            assert result is None
    assert reassembler.open_messages == 0
    return result


def _sizes(split: SplitText) -> list[int]:
    return [len(part.body) for part in split.parts]


def test_encode_text_chooses_the_alphabet() -> None:
    assert encode_text("Balance: 100 €") == (DCS_GSM7, encode_gsm7("Balance: 100 €"))
    assert encode_text("余额 1234") == (DataCoding(0x08), "余额 1234".encode("utf-16-be"))
    assert encode_text("ok 😀")[1] == h("006F 006B 0020 D83D DE00")
    assert encode_text("hi", message_class=0)[0] == DataCoding(0x10)
    with pytest.raises(CodecError):
        encode_text("bad \ud800")


def test_decode_text_errors() -> None:
    with pytest.raises(CodecError):
        decode_text(DataCoding(0x04), b"abc")
    with pytest.raises(CodecError):
        decode_text(DataCoding(0x08), b"\x00")
    with pytest.raises(CodecError):
        decode_text(DataCoding(0x08), h("D83D 0041"))
    with pytest.raises(CodecError):
        decode_text(DataCoding(0x20), b"")  # compressed


@pytest.mark.parametrize(
    ("septets", "sizes"),
    [
        (160, [160]),
        (161, [153, 8]),
        (152 * 2, [153, 151]),
        (153 * 2, [153, 153]),
        (154 * 2, [153, 153, 2]),
        (153 * 255, [153] * 255),
    ],
)
def test_gsm7_segment_boundaries(septets: int, sizes: list[int]) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(septets))
    split = split_for_concatenation(text, 0x42)
    assert _sizes(split) == sizes
    if len(sizes) > 1:
        assert [p.header.concatenation for p in split.parts] == [Concatenation(0x42, len(sizes), n) for n in range(1, len(sizes) + 1)]  # type: ignore[union-attr]
    else:
        assert split.parts[0].header is None
    assert _reassemble(split) == text


def test_gsm7_escape_is_never_split() -> None:
    text = "a" * 152 + "€" + "b" * 10
    split = split_for_concatenation(text, 1)
    assert _sizes(split) == [152, 12]
    assert split.parts[1].body[:2] == h("1B 65")
    assert _reassemble(split) == text
    # 159 septets and an extension character do not fit one message.
    assert len(split_for_concatenation("a" * 159 + "€", 1).parts) == 2
    assert len(split_for_concatenation("a" * 158 + "€", 1).parts) == 1


def test_wide_reference_leaves_152_septets_and_66_units() -> None:
    split = split_for_concatenation("x" * 400, 0x1234, wide_reference=True)
    assert _sizes(split) == [152, 152, 96]
    assert split.parts[0].header.to_bytes() == h("06 08 04 1234 03 01")  # type: ignore[union-attr]
    ucs2 = split_for_concatenation("日" * 140, 0x1234, wide_reference=True)
    assert _sizes(ucs2) == [132, 132, 16]


@pytest.mark.parametrize(("chars", "sizes"), [(70, [140]), (71, [134, 8]), (134, [134, 134]), (135, [134, 134, 2])])
def test_ucs2_segment_boundaries(chars: int, sizes: list[int]) -> None:
    text = "日" * chars
    split = split_for_concatenation(text, 9)
    assert split.coding.alphabet is Alphabet.UCS2
    assert _sizes(split) == sizes
    assert _reassemble(split) == text


def test_surrogate_pair_is_never_split() -> None:
    text = "日" * 66 + "😀" + "日" * 5
    split = split_for_concatenation(text, 3)
    assert _sizes(split) == [132, 14]
    assert split.parts[1].body[:4] == "😀".encode("utf-16-be")
    assert _reassemble(split) == text
    assert len(split_for_concatenation("日" * 68 + "😀", 3).parts) == 1


def test_ports_go_in_every_part() -> None:
    split = split_for_concatenation("y" * 200, 5, ports=PortAddressing(16001, 16002))
    assert len(split.parts) == 2
    for part in split.parts:
        assert part.header is not None and part.header.port_addressing == PortAddressing(16001, 16002)
    single = split_for_concatenation("short", 5, ports=PortAddressing(1, 2))
    assert single.parts[0].header == UserDataHeader((PortAddressing(1, 2),))


def test_segment_limit() -> None:
    with pytest.raises(CodecError, match="segments"):
        split_for_concatenation("z" * (153 * 3 + 1), 1, segments_max=3)
    with pytest.raises(CodecError):
        split_for_concatenation("z" * (153 * 255 + 1), 1)
    with pytest.raises(CodecError):
        split_for_concatenation("z", 256)


def _check_split(split: SplitText, text: str, order: list[int]) -> None:
    for part in split.parts:
        submit = SmsSubmit(da=Address.international("1"), ud=part, dcs=split.coding)
        assert len(submit.to_bytes()) <= TPDU_OCTETS_MAX
    assert _reassemble(split, order) == text


@given(st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=700), st.randoms(use_true_random=False))
def test_gsm7_split_reassemble_round_trip(text: str, rng: Any) -> None:
    split = split_for_concatenation(text, 77)
    order = list(range(len(split.parts)))
    rng.shuffle(order)
    _check_split(split, text, order)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300), st.randoms(use_true_random=False))
def test_any_text_split_reassemble_round_trip(text: str, rng: Any) -> None:
    split = split_for_concatenation(text, 0xBEEF, wide_reference=True)
    order = list(range(len(split.parts)))
    rng.shuffle(order)
    _check_split(split, text, order)


@given(st.text(alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=300))
def test_bmp_text_round_trip_through_tpdus(text: str) -> None:
    submits_ = submits_for_text(Address.international("1"), text, reference=1, first_mr=0)
    reassembler = Reassembler(FakeClock())
    results = []
    for submit in submits_:
        parsed = parse_sms_submit(submit.to_bytes())
        results.append(reassembler.add("1", parsed.ud.header, parsed.ud.body, parsed.dcs))
    assert results[-1] == text and all(r is None for r in results[:-1])


def _segment(reference: int, total: int, sequence: int, body: bytes, *, wide: bool = False) -> tuple[UserDataHeader, bytes]:
    return UserDataHeader((Concatenation(reference, total, sequence, wide=wide),)), body


def test_reassembler_duplicates_sources_and_ie_forms() -> None:
    reassembler = Reassembler(FakeClock())
    gsm = DCS_GSM7
    assert reassembler.add("A", *_segment(1, 2, 2, encode_gsm7("lo")), gsm) is None
    assert reassembler.add("A", *_segment(1, 2, 2, encode_gsm7("lo")), gsm) is None
    assert reassembler.duplicates == 1
    # Same reference from another sender, or in the 16-bit form, is another message.
    assert reassembler.add("B", *_segment(1, 2, 1, encode_gsm7("Hel")), gsm) is None
    assert reassembler.add("A", *_segment(1, 2, 1, encode_gsm7("Hel")), gsm) == "Hello"
    assert reassembler.open_messages == 1
    assert reassembler.add("A", *_segment(1, 2, 1, encode_gsm7("x"), wide=True), gsm) is None
    assert reassembler.add("B", *_segment(1, 2, 2, encode_gsm7("lo")), gsm) == "Hello"


def test_reassembler_single_parts_pass_through() -> None:
    reassembler = Reassembler(FakeClock())
    assert reassembler.add("A", None, encode_gsm7("plain"), DCS_GSM7) == "plain"
    assert reassembler.add("A", *_segment(5, 1, 1, encode_gsm7("one")), DCS_GSM7) == "one"
    # §9.2.3.24.1: an invalid concatenation IE is ignored, so the part is a whole message.
    header, _ = parse_udh(h("05 00 03 01 02 03"))
    assert reassembler.add("A", header, encode_gsm7("odd"), DCS_GSM7) == "odd"
    assert reassembler.open_messages == 0


def test_reassembler_expiry_and_overflow_are_counted() -> None:
    clock = FakeClock()
    reassembler = Reassembler(clock, expiry_s=60.0, open_messages_max=2)
    assert reassembler.add("A", *_segment(1, 2, 1, b"a"), DCS_GSM7) is None
    clock.now += 30
    assert reassembler.add("A", *_segment(2, 2, 1, b"b"), DCS_GSM7) is None
    clock.now += 10
    assert reassembler.add("A", *_segment(3, 2, 1, b"c"), DCS_GSM7) is None  # drops reference 1, the oldest
    assert reassembler.drops == {DropReason.EXPIRED: 0, DropReason.OVERFLOW: 1}
    assert reassembler.open_messages == 2
    clock.now += 50
    assert reassembler.expire() == 1  # reference 2, first seen 60 s ago
    assert reassembler.drops[DropReason.EXPIRED] == 1
    assert reassembler.add("A", *_segment(3, 2, 2, b"e"), DCS_GSM7) == "ce"
    assert reassembler.add("A", *_segment(1, 2, 2, b"d"), DCS_GSM7) is None  # reference 1 starts over
    clock.now += 60
    assert reassembler.add("A", *_segment(4, 2, 1, b"f"), DCS_GSM7) is None  # expires reference 1 on the way
    assert reassembler.drops == {DropReason.EXPIRED: 2, DropReason.OVERFLOW: 1}
    assert reassembler.open_messages == 1
    with pytest.raises(ValueError):
        Reassembler(clock, open_messages_max=0)


def test_reassembler_joins_before_decoding_and_mixed_codings() -> None:
    reassembler = Reassembler(FakeClock())
    pair = "😀".encode("utf-16-be")
    ucs2 = DataCoding(0x08)
    # A sender that cut a surrogate pair still reads, since the bodies are joined first.
    assert reassembler.add("A", *_segment(4, 2, 1, pair[:2]), ucs2) is None
    assert reassembler.add("A", *_segment(4, 2, 2, pair[2:]), ucs2) == "😀"
    assert reassembler.add("A", *_segment(5, 2, 1, encode_gsm7("ab")), DCS_GSM7) is None
    assert reassembler.add("A", *_segment(5, 2, 2, "日".encode("utf-16-be")), ucs2) == "ab日"
