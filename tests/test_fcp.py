"""FCP template of ETSI TS 102 221 §11.1.1.3: real card vectors, whole-domain fields, round trips, malformed input."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from random import Random

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.fcp import (
    LCSI_OPERATIONAL_ACTIVATED,
    NO_SFI,
    ArrReference,
    CompactSecurity,
    ExpandedSecurity,
    Fcp,
    FileDescriptor,
    FileStructure,
    PinStatus,
    PinStatusTemplate,
)
from simwallet.applet.protocols.tlv import Tlv, encode_tlvs, parse_tlvs


def fcp_of(*children: bytes) -> bytes:
    return Tlv(0x62, b"".join(children)).to_bytes()


USIM_AID = h("A0 00 00 00 87 10 02 FF FF FF FF 89 07 09 00 00")
PINS_01_0A_0B = PinStatusTemplate((PinStatus(0x01, False), PinStatus(0x0A, True), PinStatus(0x0B, True)))
PINS_01_81_0A_0B = PinStatusTemplate((PinStatus(0x01, False), PinStatus(0x81, True), PinStatus(0x0A, True), PinStatus(0x0B, True)))

# The brief's EF.ICCID example, with its template length corrected from 1E to
# 1C: the objects inside add up to 28 bytes (the 1E belongs to the variant with
# a six-byte A5 captured below).
ICCID = h("62 1C 82 02 41 21 83 02 2F E2 A5 03 80 01 71 8A 01 05 8B 03 2F 06 03 80 02 00 0A 88 01 10")

VECTORS = [
    pytest.param(
        ICCID, replace(Fcp.transparent_ef(0x2FE2, 10, sfi=2, arr=(0x2F06, 3)), proprietary=h("80 01 71")), id="ICCID-brief",
    ),
    # Public SIMtrace2 capture of a commercial USIM: SELECT MF, EF.ICCID, EF.PL, EF.DIR.
    pytest.param(
        h(
            "62 54 82 02 78 21 83 02 3F 00 A5 19 80 01 71 83 02 7F FF CB 0D 00 00 00 00 00 00 00 00 00 00 00 00 00"
            " CA 01 82 8A 01 05 AB 1B 84 01 2E 90 00 84 01 88 A4 06 83 01 01 95 01 08 84 01 FC A4 06 83 01 0A 95 01 08"
            " C6 0F 90 01 70 83 01 01 83 01 0A 83 01 0B 83 01 81"
        ),
        Fcp.df(
            0x3F00,
            pin_status=PinStatusTemplate((PinStatus(0x01, False), PinStatus(0x0A, True), PinStatus(0x0B, True), PinStatus(0x81, True))),
            arr=ExpandedSecurity(h("84 01 2E 90 00 84 01 88 A4 06 83 01 01 95 01 08 84 01 FC A4 06 83 01 0A 95 01 08")),
            proprietary=h("80 01 71 83 02 7F FF CB 0D 00 00 00 00 00 00 00 00 00 00 00 00 00 CA 01 82"),
        ),
        id="MF-trace-expanded",
    ),
    pytest.param(
        h("62 1E 82 02 41 21 83 02 2F E2 A5 06 C0 01 00 CA 01 80 8A 01 05 8B 03 2F 06 04 80 02 00 0A 88 00"),
        replace(Fcp.transparent_ef(0x2FE2, 10, sfi=NO_SFI, arr=(0x2F06, 4)), proprietary=h("C0 01 00 CA 01 80")),
        id="ICCID-trace-no-sfi",
    ),
    pytest.param(
        h("62 23 82 02 41 21 83 02 2F 05 A5 0A C0 01 00 CD 02 FF 01 CA 01 84 8A 01 05 8B 03 2F 06 05 80 02 00 0A 88 01 28"),
        replace(Fcp.transparent_ef(0x2F05, 10, sfi=5, arr=(0x2F06, 5)), proprietary=h("C0 01 00 CD 02 FF 01 CA 01 84")),
        id="PL-trace",
    ),
    pytest.param(
        h("62 22 82 05 42 21 00 26 02 83 02 2F 00 A5 06 C0 01 00 CA 01 80 8A 01 05 8B 03 2F 06 04 80 02 00 4C 88 01 F0"),
        replace(Fcp.linear_fixed_ef(0x2F00, 0x26, 2, sfi=30, arr=(0x2F06, 4)), proprietary=h("C0 01 00 CA 01 80")),
        id="DIR-trace",
    ),
    # onomondo/softsim tests: MF with compact security, ADF.USIM without a file identifier.
    pytest.param(
        h("62 2D 82 02 78 21 83 02 3F 00 A5 09 80 01 71 83 04 00 01 8D 08 8A 01 05 8C 04 26 1A 00 00"
          " C6 0F 90 01 70 83 01 01 83 01 81 83 01 0A 83 01 0B"),
        Fcp.df(0x3F00, pin_status=PINS_01_81_0A_0B, arr=CompactSecurity(h("26 1A 00 00")), proprietary=h("80 01 71 83 04 00 01 8D 08")),
        id="MF-softsim-compact",
    ),
    pytest.param(
        h("62 38 82 02 78 21 84 10") + USIM_AID
        + h("A5 09 80 01 71 83 04 00 01 8D 08 8A 01 05 8C 01 00 C6 0F 90 01 70 83 01 01 83 01 81 83 01 0A 83 01 0B"),
        Fcp.df(None, aid=USIM_AID, pin_status=PINS_01_81_0A_0B, arr=CompactSecurity(h("00")), proprietary=h("80 01 71 83 04 00 01 8D 08")),
        id="ADF-USIM-softsim",
    ),
    # Referenced security with (SEID, record) pairs and a total file size.
    pytest.param(
        h("62 33 82 02 78 21 83 02 3F 00 A5 0C 80 01 61 87 01 01 83 04 00 07 DB F0 8A 01 05 8B 06 2F 06 01 02 00 02"
          " C6 0C 90 01 60 83 01 01 83 01 0A 83 01 0D 81 02 FF FF"),
        Fcp.df(
            0x3F00,
            pin_status=PinStatusTemplate((PinStatus(0x01, False), PinStatus(0x0A, True), PinStatus(0x0D, True))),
            arr=ArrReference(0x2F06, se_records=((1, 2), (0, 2))),
            proprietary=h("80 01 61 87 01 01 83 04 00 07 DB F0"),
            total_file_size=0xFFFF,
        ),
        id="MF-se-pairs",
    ),
    # osmocom pySim tests: MF and EF.DIR of a sysmocom card; EF.IMSI from softsim.
    pytest.param(
        h("62 2C 82 02 78 21 83 02 3F 00 A5 0C 80 01 71 83 04 00 03 A7 38 87 01 01 8A 01 05 8B 03 2F 06 01"
          " C6 0C 90 01 60 83 01 01 83 01 0A 83 01 0B"),
        Fcp.df(0x3F00, pin_status=PINS_01_0A_0B, arr=(0x2F06, 1), proprietary=h("80 01 71 83 04 00 03 A7 38 87 01 01")),
        id="MF-pysim",
    ),
    pytest.param(
        h("62 1A 82 05 42 21 00 21 01 83 02 2F 00 8A 01 05 8B 03 2F 06 04 80 02 00 21 88 01 F0"),
        Fcp.linear_fixed_ef(0x2F00, 0x21, 1, sfi=30, arr=(0x2F06, 4)),
        id="DIR-pysim",
    ),
    pytest.param(
        h("62 17 82 02 41 21 83 02 6F 07 8A 01 05 8B 03 6F 06 05 80 02 00 09 88 01 38"),
        Fcp.transparent_ef(0x6F07, 9, sfi=7, arr=(0x6F06, 5)),
        id="IMSI-softsim",
    ),
]


@pytest.mark.parametrize(("data", "obj"), VECTORS)
def test_vectors(data: bytes, obj: Fcp) -> None:
    assert_both_ways(Fcp.from_bytes, Fcp.to_bytes, data, obj)


def test_iccid_fields() -> None:
    fcp = Fcp.from_bytes(ICCID)
    assert fcp.structure is FileStructure.TRANSPARENT and not fcp.is_df
    assert fcp.fid == 0x2FE2 and fcp.file_size == 10 and fcp.sfi == 2 == fcp.effective_sfi
    assert fcp.security == ArrReference(0x2F06, 3)
    assert fcp.lcsi == LCSI_OPERATIONAL_ACTIVATED
    assert parse_tlvs(fcp.proprietary or b"") == [Tlv(0x80, h("71"))]


def test_brief_vector_with_length_1e_is_truncated() -> None:
    with pytest.raises(TruncatedError):
        Fcp.from_bytes(h("62 1E") + ICCID[2:])


def test_cyclic_and_record_descriptor() -> None:
    fcp = Fcp.cyclic_ef(0x6F39, 3, 10, arr=(0x6F06, 2))
    assert fcp.to_bytes() == h("62 17 82 05 46 21 00 03 0A 83 02 6F 39 8A 01 05 8B 03 6F 06 02 80 02 00 1E")
    assert fcp.descriptor.record_length == 3 and fcp.descriptor.record_count == 10
    assert fcp.effective_sfi == 0x39 & 0x1F
    assert replace(fcp, sfi=NO_SFI).effective_sfi is None
    assert Fcp.transparent_ef(0x6F00, 1, arr=(0x6F06, 1)).effective_sfi is None  # low five bits 0


# ------------------------------------------------------------------ whole domain of the one-byte fields

_VALID_DESCRIPTOR_BYTES = {0x38: FileStructure.DF, 0x39: FileStructure.BER_TLV, 0x01: FileStructure.TRANSPARENT,
                           0x02: FileStructure.LINEAR_FIXED, 0x06: FileStructure.CYCLIC}


@pytest.mark.parametrize("byte", range(256))
def test_every_descriptor_byte(byte: int) -> None:
    accepted = 0
    for tail in (h("21"), h("21 00 1A 05")):
        data = bytes([byte]) + tail
        try:
            descriptor = FileDescriptor.from_bytes(data)
        except CodecError:
            continue
        accepted += 1
        assert descriptor.to_bytes() == data
        assert descriptor.shareable == bool(byte & 0x40)
        assert descriptor.internal == bool(byte & 0x08 and byte & 0x30 == 0)
        assert descriptor.structure is _VALID_DESCRIPTOR_BYTES[byte & 0x3F if byte & 0x38 == 0x38 else byte & 0x07]
    low = byte & 0x3F
    valid = byte < 0x80 and (low in (0x38, 0x39) or (low & 0x30 == 0 and low & 0x07 in (1, 2, 6)))
    assert accepted == (1 if valid else 0)


@pytest.mark.parametrize("byte", range(256))
def test_every_data_coding_record_length_and_count_byte(byte: int) -> None:
    data = bytes([0x42, byte, byte, byte, byte])
    assert_both_ways(FileDescriptor.from_bytes, FileDescriptor.to_bytes, data, FileDescriptor(
        FileStructure.LINEAR_FIXED, record_length=byte << 8 | byte, record_count=byte, data_coding=byte))


@pytest.mark.parametrize("byte", range(256))
def test_every_sfi_byte(byte: int) -> None:
    data = fcp_of(h("82 02 41 21 83 02 6F 07 8A 01 05 8B 03 6F 06 01 80 02 00 09 88 01"), bytes([byte]))
    if byte & 0x07 or not 1 <= byte >> 3 <= 30:
        with pytest.raises(CodecError):
            Fcp.from_bytes(data)
        return
    assert_both_ways(Fcp.from_bytes, Fcp.to_bytes, data, Fcp.transparent_ef(0x6F07, 9, sfi=byte >> 3, arr=(0x6F06, 1)))


def test_every_lcsi_and_arr_record_byte() -> None:
    for byte in range(256):
        fcp = Fcp.transparent_ef(0x6F07, 9, lcsi=byte, arr=(0x6F06, byte))
        data = fcp_of(h("82 02 41 21 83 02 6F 07 8A 01"), bytes([byte]), h("8B 03 6F 06"), bytes([byte]), h("80 02 00 09"))
        assert_both_ways(Fcp.from_bytes, Fcp.to_bytes, data, fcp)


# ------------------------------------------------------------------ strategies and round trips

byte = st.integers(0, 0xFF)
fid = st.integers(0, 0xFFFF)
raw = st.binary(max_size=24)
ef_descriptors = st.one_of(
    st.builds(FileDescriptor, st.just(FileStructure.TRANSPARENT), st.booleans(), st.booleans(), data_coding=byte),
    st.builds(FileDescriptor, st.sampled_from([FileStructure.LINEAR_FIXED, FileStructure.CYCLIC]), st.booleans(),
              st.booleans(), fid, byte, byte),
    st.builds(FileDescriptor, st.just(FileStructure.BER_TLV), st.booleans(), data_coding=byte),
)
securities = st.one_of(
    st.builds(ArrReference, fid, byte),
    st.builds(lambda f, pairs: ArrReference(f, se_records=tuple(pairs)), fid, st.lists(st.tuples(byte, byte), min_size=1, max_size=4)),
    st.builds(CompactSecurity, raw),
    st.builds(ExpandedSecurity, raw),
)
pin_templates = st.builds(
    PinStatusTemplate, st.lists(st.builds(PinStatus, byte, st.booleans(), st.none() | byte), max_size=20).map(tuple),
)
sizes = st.integers(0, 0xFFFFFFFF)
extras = st.lists(st.builds(Tlv, st.sampled_from([0x85, 0x86, 0xC7, 0x5F20, 0xBF0C, 0xDF8101]), raw), max_size=2).map(tuple)
common = {"proprietary": st.none() | raw, "lcsi": byte, "security": securities, "total_file_size": st.none() | sizes, "extra": extras}
efs = st.builds(Fcp, descriptor=ef_descriptors, fid=fid, file_size=sizes, sfi=st.none() | st.just(NO_SFI) | st.integers(1, 30), **common)
dfs = st.builds(
    Fcp, descriptor=st.builds(FileDescriptor, st.just(FileStructure.DF), st.booleans(), data_coding=byte),
    fid=st.none() | fid, df_name=st.none() | st.binary(min_size=1, max_size=16), pin_status=pin_templates, **common,
)
fcps = st.one_of(efs, dfs)


@given(fcps)
def test_fcp_round_trip(fcp: Fcp) -> None:
    assert_both_ways(Fcp.from_bytes, Fcp.to_bytes, fcp.to_bytes(), fcp)


@given(fcps, st.randoms(use_true_random=False))
def test_any_order_is_accepted(fcp: Fcp, rng: Random) -> None:
    children = fcp.to_tlvs()
    rng.shuffle(children)
    # Unknown objects keep the order they arrived in.
    extra = tuple(t for t in children if t in fcp.extra)
    assert Fcp.from_bytes(Tlv.nest(0x62, children).to_bytes()) == replace(fcp, extra=extra)


@given(fcps)
def test_prefixes_truncated_and_trailing_refused(fcp: Fcp) -> None:
    data = fcp.to_bytes()
    for end in range(len(data)):
        with pytest.raises(TruncatedError):
            Fcp.from_bytes(data[:end])
    with pytest.raises(CodecError):
        Fcp.from_bytes(data + h("90 00"))


@given(pin_templates)
def test_pin_status_round_trip(template: PinStatusTemplate) -> None:
    assert_both_ways(PinStatusTemplate.from_bytes, PinStatusTemplate.to_bytes, template.to_bytes(), template)


@given(securities.filter(lambda s: isinstance(s, ArrReference)))
def test_arr_reference_round_trip(arr: ArrReference) -> None:
    assert_both_ways(ArrReference.from_bytes, ArrReference.to_bytes, arr.to_bytes(), arr)


def test_pin_status_with_usage_qualifier() -> None:
    # TS 102 221 §9.5.2: the usage qualifier DO precedes the key reference it qualifies.
    data = h("90 01 C0 95 01 08 83 01 01 83 01 81")
    template = PinStatusTemplate((PinStatus(0x01, True, 0x08), PinStatus(0x81, True)))
    assert_both_ways(PinStatusTemplate.from_bytes, PinStatusTemplate.to_bytes, data, template)
    nine = PinStatusTemplate(tuple(PinStatus(k, k % 2 == 0) for k in range(9)))
    assert nine.to_bytes()[:4] == h("90 02 AA 80")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(h("83 01 01"), id="no-ps-do"),
        pytest.param(h("90 00 83 01 01"), id="empty-ps-do"),
        pytest.param(h("90 02 80 00 83 01 01"), id="ps-do-too-long"),
        pytest.param(h("90 01 A0 83 01 01"), id="bit-for-missing-key"),
        pytest.param(h("90 01 80 95 01 08"), id="qualifier-alone"),
        pytest.param(h("90 01 80 95 01 08 95 01 00 83 01 01"), id="two-qualifiers"),
        pytest.param(h("90 01 80 83 02 01 01"), id="key-reference-two-bytes"),
        pytest.param(h("90 01 80 84 01 01"), id="unknown-tag"),
    ],
)
def test_pin_status_malformed(data: bytes) -> None:
    with pytest.raises(CodecError):
        PinStatusTemplate.from_bytes(data)


EF_BODY = [h("82 02 41 21"), h("83 02 6F 07"), h("8A 01 05"), h("8B 03 6F 06 01"), h("80 02 00 09")]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(Tlv(0x6F, encode_tlvs(parse_tlvs(b"".join(EF_BODY)))).to_bytes(), id="not-62"),
        pytest.param(fcp_of(*EF_BODY, h("83 02 6F 08")), id="duplicate-fid"),
        pytest.param(fcp_of(*EF_BODY, h("8C 01 00")), id="two-security-attributes"),
        pytest.param(fcp_of(*EF_BODY[1:]), id="no-descriptor"),
        pytest.param(fcp_of(*EF_BODY[:2], *EF_BODY[3:]), id="no-lcsi"),
        pytest.param(fcp_of(*EF_BODY[:3], EF_BODY[4]), id="no-security"),
        pytest.param(fcp_of(*EF_BODY[:4]), id="ef-without-size"),
        pytest.param(fcp_of(EF_BODY[0], *EF_BODY[2:]), id="ef-without-fid"),
        pytest.param(fcp_of(*EF_BODY, h("C6 03 90 01 00")), id="ef-with-pin-status"),
        pytest.param(fcp_of(*EF_BODY, h("84 01 01")), id="ef-with-df-name"),
        pytest.param(fcp_of(h("82 02 78 21"), *EF_BODY[1:4]), id="df-without-pin-status"),
        pytest.param(fcp_of(h("82 02 78 21"), *EF_BODY[1:], h("C6 03 90 01 00")), id="df-with-size"),
        pytest.param(fcp_of(h("82 02 78 21"), *EF_BODY[1:4], h("C6 03 90 01 00 88 00")), id="df-with-sfi"),
        pytest.param(fcp_of(h("82 02 78 21 84 11"), bytes(17), *EF_BODY[1:4], h("C6 03 90 01 00")), id="df-name-17"),
        pytest.param(fcp_of(h("82 02 42 21"), *EF_BODY[1:]), id="record-ef-short-descriptor"),
        pytest.param(fcp_of(h("82 05 41 21 00 10 02"), *EF_BODY[1:]), id="transparent-long-descriptor"),
        pytest.param(fcp_of(h("82 01 41"), *EF_BODY[1:]), id="descriptor-one-byte"),
        pytest.param(fcp_of(*EF_BODY[:1], h("83 03 6F 07 00"), *EF_BODY[2:]), id="fid-three-bytes"),
        pytest.param(fcp_of(*EF_BODY[:2], h("8A 02 05 00"), *EF_BODY[3:]), id="lcsi-two-bytes"),
        pytest.param(fcp_of(*EF_BODY[:3], h("8B 05 6F 06 01 02 03"), EF_BODY[4]), id="arr-five-bytes"),
        pytest.param(fcp_of(*EF_BODY[:3], h("8B 02 6F 06"), EF_BODY[4]), id="arr-two-bytes"),
        pytest.param(fcp_of(*EF_BODY[:4], h("80 01 09")), id="size-one-byte"),
        pytest.param(fcp_of(*EF_BODY[:4], h("80 05 00 00 00 00 09")), id="size-five-bytes"),
        pytest.param(fcp_of(*EF_BODY, h("88 02 10 00")), id="sfi-two-bytes"),
        pytest.param(fcp_of(*EF_BODY) + h("00"), id="trailing-byte"),
        pytest.param(fcp_of(*EF_BODY, h("00")), id="padding-inside"),
    ],
)
def test_malformed_fcp(data: bytes) -> None:
    with pytest.raises(CodecError):
        Fcp.from_bytes(data)


def test_non_minimal_sizes_are_canonicalised() -> None:
    fcp = Fcp.from_bytes(fcp_of(*EF_BODY[:4], h("80 04 00 00 00 09 81 03 00 00 10")))
    assert fcp.file_size == 9 and fcp.total_file_size == 16
    assert fcp.to_bytes() == fcp_of(*EF_BODY, h("81 02 00 10"))


def test_unknown_objects_are_kept_last() -> None:
    data = fcp_of(h("C7 01 AA"), *EF_BODY)
    fcp = Fcp.from_bytes(data)
    assert fcp.extra == (Tlv(0xC7, h("AA")),)
    assert fcp.to_bytes() == fcp_of(*EF_BODY, h("C7 01 AA"))
    with pytest.raises(CodecError):
        replace(fcp, extra=(Tlv(0x83, h("6F 08")),))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Fcp.transparent_ef(0x10000, 1, arr=(0x2F06, 1)),
        lambda: Fcp.transparent_ef(0x6F07, -1, arr=(0x2F06, 1)),
        lambda: Fcp.transparent_ef(0x6F07, 1, arr=(0x2F06, 256)),
        lambda: Fcp.transparent_ef(0x6F07, 1, sfi=31, arr=(0x2F06, 1)),
        lambda: Fcp.linear_fixed_ef(0x6F07, 0x10000, 1, arr=(0x2F06, 1)),
        lambda: Fcp.cyclic_ef(0x6F07, 1, 256, arr=(0x2F06, 1)),
        lambda: Fcp.df(0x3F00, aid=b"", pin_status=PINS_01_0A_0B, arr=(0x2F06, 1)),
        lambda: FileDescriptor(FileStructure.DF, internal=True),
        lambda: FileDescriptor(FileStructure.TRANSPARENT, record_length=1, record_count=1),
        lambda: ArrReference(0x2F06),
        lambda: ArrReference(0x2F06, 1, ((1, 1),)),
        lambda: PinStatus(0x100, True),
    ],
)
def test_invalid_fields_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(CodecError):
        make()


_FCP_TAGS = [0x82, 0x83, 0x84, 0xA5, 0x8A, 0x8B, 0x8C, 0xAB, 0xC6, 0x80, 0x81, 0x88]


@given(st.lists(st.builds(Tlv, st.sampled_from(_FCP_TAGS), st.binary(max_size=6)), max_size=12))
def test_structured_garbage_raises_only_codec_error(children: list[Tlv]) -> None:
    # Well-formed TLV with the FCP's own tags and random contents reaches every field decoder.
    with contextlib.suppress(CodecError):
        Fcp.from_bytes(Tlv.nest(0x62, children).to_bytes())
    for child in children:
        for parse in (FileDescriptor.from_bytes, ArrReference.from_bytes, PinStatusTemplate.from_bytes):
            with contextlib.suppress(CodecError):
                parse(child.value)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    for parse in (Fcp.from_bytes, FileDescriptor.from_bytes, ArrReference.from_bytes, PinStatusTemplate.from_bytes):
        with contextlib.suppress(CodecError):
            parse(data)
    with contextlib.suppress(CodecError):
        Fcp.from_bytes(Tlv(0x62, data).to_bytes())
