"""BER-TLV (ISO/IEC 7816-4 §5.2) and COMPREHENSION-TLV (TS 101 220 §7.1.1) codecs: both ways, whole domain, bytewise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.tlv import (
    CTLV_LENGTH_MAX,
    LENGTH_BYTES_MAX,
    TLV_DEPTH_MAX,
    VALUE_LENGTH_MAX,
    Ctlv,
    Tlv,
    encode_ctlv,
    encode_ctlvs,
    encode_tlv,
    encode_tlvs,
    find,
    parse_ctlv,
    parse_ctlvs,
    parse_tlv,
    parse_tlvs,
    walk,
)

T = TypeVar("T")



def feed_bytewise(parse_one: Callable[[bytes], tuple[T, int]], data: bytes) -> list[T]:
    """Deliver ``data`` one byte at a time to a reader that waits on TruncatedError."""
    out: list[T] = []
    buffer = b""
    for byte in data:
        buffer += bytes([byte])
        try:
            obj, used = parse_one(buffer)
        except TruncatedError:
            continue
        out.append(obj)
        buffer = buffer[used:]
    assert buffer == b"", "bytes left over at the end of the stream"
    return out



# ------------------------------------------------------------------ strategies

# Tag bytes: first byte not 00/FF; 11111 in the low bits announces more bytes.
_single_first = st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F)
_multi_first = st.integers(0, 6).map(lambda c: c << 5 | 0x1F)  # 1F, 3F, … DF (FF excluded)
ber_tags = st.one_of(
    _single_first,
    st.builds(lambda f, s: f << 8 | s, _multi_first, st.integers(0x00, 0x7F)),
    st.builds(lambda f, m, s: f << 16 | m << 8 | s, _multi_first, st.integers(0x80, 0xFF), st.integers(0x00, 0x7F)),
)
values = st.binary(max_size=300)
tlvs = st.builds(Tlv, ber_tags, values)
ctlvs = st.builds(Ctlv, st.integers(1, 0x7FFF), st.binary(max_size=CTLV_LENGTH_MAX), st.booleans())


# ------------------------------------------------------------------ BER-TLV known answers

BER_VECTORS = [
    # ISO/IEC 7816-4 §5.2: one-byte tag, short length.
    ("aid", h("84 05 A0 00 00 00 87"), Tlv(0x84, h("A0 00 00 00 87"))),
    ("empty", h("88 00"), Tlv(0x88, b"")),
    # Two-byte tags: EMV/ISO 5F2D (language preference), GP 9F70 (life cycle), BF0C (FCI discretionary).
    ("5F2D", h("5F 2D 02 65 6E"), Tlv(0x5F2D, b"en")),
    ("9F70", h("9F 70 01 07"), Tlv(0x9F70, h("07"))),
    ("BF0C", h("BF 0C 03 C1 01 00"), Tlv(0xBF0C, h("C1 01 00"))),
    # Low tag number in two-byte form (EMV 9F05) round-trips as written.
    ("9F05", h("9F 05 00"), Tlv(0x9F05, b"")),
    # Three-byte tag.
    ("DF8101", h("DF 81 01 01 FF"), Tlv(0xDF8101, h("FF"))),
    # Length boundaries: 7F short, 80 and FF in 81, 0100 and FFFF in 82, 010000 in 83.
    ("len7F", h("04 7F") + bytes(0x7F), Tlv(0x04, bytes(0x7F))),
    ("len80", h("04 81 80") + bytes(0x80), Tlv(0x04, bytes(0x80))),
    ("lenFF", h("04 81 FF") + bytes(0xFF), Tlv(0x04, bytes(0xFF))),
    ("len100", h("04 82 01 00") + bytes(0x100), Tlv(0x04, bytes(0x100))),
    ("lenFFFF", h("04 82 FF FF") + bytes(0xFFFF), Tlv(0x04, bytes(0xFFFF))),
    ("len10000", h("04 83 01 00 00") + bytes(0x10000), Tlv(0x04, bytes(0x10000))),
]


@pytest.mark.parametrize(("data", "obj"), [pytest.param(d, o, id=i) for i, d, o in BER_VECTORS])
def test_ber_vectors(data: bytes, obj: Tlv) -> None:
    assert_both_ways(Tlv.from_bytes, Tlv.to_bytes, data, obj)
    assert encode_tlv(obj.tag, obj.value) == data
    assert parse_tlv(data + b"\x90\x00") == (obj, len(data))


def test_constructed_template_and_children() -> None:
    # EF.DIR record of a real USIM (public SIMtrace2 capture): application
    # template 61 with AID 4F and label 50, then FF padding up to the record length.
    record = h("61 19 4F 10 A0 00 00 00 87 10 02 FF FF FF FF 89 07 09 00 00 50 05 55 53 69 6D 31") + b"\xff" * 11
    with pytest.raises(CodecError):
        parse_tlvs(record)
    (app,) = parse_tlvs(record, padding=True)
    assert app.tag == 0x61 and app.constructed
    aid, label = app.children()
    assert aid == Tlv(0x4F, h("A0 00 00 00 87 10 02 FF FF FF FF 89 07 09 00 00"))
    assert label == Tlv(0x50, b"USim1")
    assert find(app.children(), 0x50) == label
    assert find(app.children(), 0x51) is None
    assert list(walk([app])) == [app, aid, label]
    assert Tlv.nest(0x61, [aid, label]) == app


def test_padding_between_and_around_objects() -> None:
    a, b = Tlv(0x80, b"\x01"), Tlv(0x81, b"")
    data = b"\x00\xff" + a.to_bytes() + b"\x00" + b.to_bytes() + b"\xff\xff"
    assert parse_tlvs(data, padding=True) == [a, b]
    with pytest.raises(CodecError):
        parse_tlvs(data)
    assert parse_tlvs(b"\xff" * 5, padding=True) == []


def test_non_minimal_length_is_accepted_and_canonicalised() -> None:
    # ISO/IEC 7816-4 §5.2.2.2: '81' may carry 00..7F; '82' may carry 0000..00FF.
    for data in (h("84 81 02 01 02"), h("84 82 00 02 01 02"), h("84 83 00 00 02 01 02")):
        tlv = Tlv.from_bytes(data)
        assert tlv == Tlv(0x84, h("01 02"))
        assert tlv.to_bytes() == h("84 02 01 02")


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        pytest.param(h("84 80 01 02 00 00"), False, id="indefinite-length"),
        pytest.param(h("84 84 00 00 00 01 00"), False, id="four-length-bytes"),
        pytest.param(h("1F 81 81 01 00"), False, id="four-byte-tag"),
        pytest.param(h("00 01 00"), False, id="tag-00"),
        pytest.param(h("FF 01 00"), False, id="tag-FF"),
        pytest.param(h("5F"), True, id="tag-cut"),
        pytest.param(h("DF 81"), True, id="three-byte-tag-cut"),
        pytest.param(h("84"), True, id="length-missing"),
        pytest.param(h("84 82 01"), True, id="long-length-cut"),
        pytest.param(h("84 05 01 02"), True, id="value-cut"),
        pytest.param(b"", True, id="empty"),
    ],
)
def test_ber_malformed(data: bytes, truncated: bool) -> None:
    with pytest.raises(CodecError) as info:
        parse_tlv(data)
    assert isinstance(info.value, TruncatedError) is truncated
    assert info.value.offset is not None


@pytest.mark.parametrize("tag", [0, 0x1F, 0xFF, 0x9F85, 0x5F0101, 0xFF01, 0x9F, 0x1F0101, 1 << 24, -1])
def test_invalid_tag_values_are_refused(tag: int) -> None:
    with pytest.raises(CodecError):
        Tlv(tag, b"")


def test_value_limits_and_types() -> None:
    assert LENGTH_BYTES_MAX == 3 and VALUE_LENGTH_MAX == 0xFFFFFF
    with pytest.raises(TypeError):
        Tlv(0x80, bytearray(b"x"))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        Tlv(0x04, bytes(VALUE_LENGTH_MAX + 1))
    with pytest.raises(CodecError):
        Tlv(0x80, b"").children()
    with pytest.raises(CodecError):
        Tlv.nest(0x80, [])


def expected_length_field(length: int) -> bytes:
    """ISO/IEC 7816-4 §5.2.2.2, written out independently of the codec."""
    if length < 0x80:
        return bytes([length])
    width = (length.bit_length() + 7) // 8
    return bytes([0x80 | width]) + length.to_bytes(width, "big")


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.integers(0, 0x200), st.integers(0, VALUE_LENGTH_MAX)))
def test_length_field_whole_domain(length: int) -> None:
    data = b"\x04" + expected_length_field(length) + bytes(length)
    assert_both_ways(Tlv.from_bytes, Tlv.to_bytes, data, Tlv(0x04, bytes(length)))
    if length:
        with pytest.raises(TruncatedError):
            parse_tlv(data[:-1])


def test_nesting_limit() -> None:
    inner = Tlv(0x80, b"")
    for _ in range(TLV_DEPTH_MAX - 1):
        inner = Tlv.nest(0xA0, [inner])
    assert len(list(walk([inner]))) == TLV_DEPTH_MAX
    with pytest.raises(CodecError):
        list(walk([Tlv.nest(0xA0, [inner])]))


def test_walk_with_non_tlv_content() -> None:
    with pytest.raises(CodecError):
        list(walk([Tlv(0xA5, b"\x80")]))


@given(tlvs)
def test_tlv_round_trip(tlv: Tlv) -> None:
    data = tlv.to_bytes()
    assert_both_ways(Tlv.from_bytes, Tlv.to_bytes, data, tlv)
    assert tlv.constructed == bool(tlv.tag_bytes[0] & 0x20)


@given(st.lists(tlvs, max_size=8))
def test_sequence_round_trip_whole_bytewise_and_trailing(items: list[Tlv]) -> None:
    data = encode_tlvs(items)
    assert_both_ways(parse_tlvs, encode_tlvs, data, items)
    assert feed_bytewise(parse_tlv, data) == items
    # Trailing data: parse_tlv leaves it, from_bytes and parse_tlvs refuse it.
    if items:
        first = items[0].to_bytes()
        assert parse_tlv(first + b"\x01") == (items[0], len(first))
        with pytest.raises(CodecError):
            Tlv.from_bytes(first + b"\x01")
    with pytest.raises(TruncatedError):
        parse_tlvs(data + b"\x01")


@given(tlvs)
def test_every_strict_prefix_is_truncated(tlv: Tlv) -> None:
    data = tlv.to_bytes()
    for end in range(len(data)):
        with pytest.raises(TruncatedError):
            parse_tlv(data[:end])


@given(st.binary(max_size=64))
def test_ber_parsers_raise_only_codec_error(data: bytes) -> None:
    for parse in (parse_tlv, Tlv.from_bytes, parse_tlvs, lambda d: parse_tlvs(d, padding=True), lambda d: list(walk(parse_tlvs(d)))):
        with contextlib.suppress(CodecError):
            parse(data)


# ------------------------------------------------------------------ COMPREHENSION-TLV

# 3GPP TS 31.124 / ETSI TS 102 384, DISPLAY TEXT 1.1.1: the proactive command
# (BER-TLV D0) with command details, device identities and text string CTLVs.
DISPLAY_TEXT = h("D0 1A 81 03 01 21 80 82 02 81 02 8D 0F 04") + b"Toolkit Test 1"
DISPLAY_TEXT_CTLVS = [
    Ctlv(0x01, h("01 21 80"), True),
    Ctlv(0x02, h("81 02"), True),
    Ctlv(0x0D, b"\x04Toolkit Test 1", True),
]
# Its terminal response: command details, device identities, result 00.
TERMINAL_RESPONSE = h("81 03 01 21 80 82 02 82 81 83 01 00")
TERMINAL_RESPONSE_CTLVS = [Ctlv(0x01, h("01 21 80"), True), Ctlv(0x02, h("82 81"), True), Ctlv(0x03, h("00"), True)]


def test_ctlv_vectors() -> None:
    proactive = Tlv.from_bytes(DISPLAY_TEXT)
    assert proactive.tag == 0xD0
    assert_both_ways(parse_ctlvs, encode_ctlvs, proactive.value, DISPLAY_TEXT_CTLVS)
    assert_both_ways(parse_ctlvs, encode_ctlvs, TERMINAL_RESPONSE, TERMINAL_RESPONSE_CTLVS)
    assert find(DISPLAY_TEXT_CTLVS, 0x0D) == DISPLAY_TEXT_CTLVS[2]
    # Three-byte tag format: 7F, CR in b16, tag value 0080.
    assert_both_ways(Ctlv.from_bytes, Ctlv.to_bytes, h("7F 80 80 02 AA BB"), Ctlv(0x80, h("AA BB"), True))
    assert_both_ways(Ctlv.from_bytes, Ctlv.to_bytes, h("7F 00 7F 00"), Ctlv(0x7F, b"", False))
    assert encode_ctlv(0x05, b"", comprehension_required=False) == h("05 00")


@pytest.mark.parametrize("first", range(256))
def test_ctlv_every_first_tag_byte(first: int) -> None:
    data = bytes([first, 0x00])
    if first == 0x7F:
        return  # three-byte format, covered above
    if first in (0x00, 0x80, 0xFF):
        with pytest.raises(CodecError):
            Ctlv.from_bytes(data)
        return
    assert_both_ways(Ctlv.from_bytes, Ctlv.to_bytes, data, Ctlv(first & 0x7F, b"", bool(first & 0x80)))


def test_ctlv_every_length() -> None:
    for length in range(CTLV_LENGTH_MAX + 1):
        head = bytes([length]) if length < 0x80 else bytes([0x81, length])
        data = b"\x05" + head + bytes(length)
        assert_both_ways(Ctlv.from_bytes, Ctlv.to_bytes, data, Ctlv(0x05, bytes(length)))
    with pytest.raises(CodecError):
        Ctlv(0x05, bytes(CTLV_LENGTH_MAX + 1))


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        pytest.param(h("05 81 7F") + bytes(0x7F), False, id="81-non-minimal"),
        pytest.param(h("05 82 01 00"), False, id="82-too-long"),
        pytest.param(h("05 80"), False, id="80"),
        pytest.param(h("7F 00 05 00"), False, id="three-byte-for-single-byte-tag"),
        pytest.param(h("7F 80 00 00"), False, id="three-byte-tag-zero"),
        pytest.param(h("7F 80"), True, id="three-byte-tag-cut"),
        pytest.param(h("05"), True, id="length-missing"),
        pytest.param(h("05 81"), True, id="81-cut"),
        pytest.param(h("05 03 00"), True, id="value-cut"),
    ],
)
def test_ctlv_malformed(data: bytes, truncated: bool) -> None:
    with pytest.raises(CodecError) as info:
        parse_ctlv(data)
    assert isinstance(info.value, TruncatedError) is truncated


@pytest.mark.parametrize("tag", [0, 0x8000, -1])
def test_ctlv_invalid_tag_values(tag: int) -> None:
    with pytest.raises(CodecError):
        Ctlv(tag, b"")


@given(ctlvs)
def test_ctlv_round_trip(ctlv: Ctlv) -> None:
    assert_both_ways(Ctlv.from_bytes, Ctlv.to_bytes, ctlv.to_bytes(), ctlv)


@given(st.lists(ctlvs, max_size=6))
def test_ctlv_sequence_whole_bytewise_and_trailing(items: list[Ctlv]) -> None:
    data = encode_ctlvs(items)
    assert_both_ways(parse_ctlvs, encode_ctlvs, data, items)
    assert feed_bytewise(parse_ctlv, data) == items
    for end in range(len(data) - (len(items[-1].to_bytes()) if items else 0) + 1, len(data)):
        with pytest.raises(TruncatedError):
            parse_ctlvs(data[:end])
    if items:
        assert parse_ctlv(data + b"\x01") == (items[0], len(items[0].to_bytes()))
        with pytest.raises(CodecError):
            Ctlv.from_bytes(items[0].to_bytes() + b"\x01")


@given(st.binary(max_size=64))
def test_ctlv_parsers_raise_only_codec_error(data: bytes) -> None:
    for parse in (parse_ctlv, parse_ctlvs, Ctlv.from_bytes):
        with contextlib.suppress(CodecError):
            parse(data)
