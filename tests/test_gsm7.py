"""GSM 7-bit default alphabet and packing (3GPP TS 23.038 §6.1.2, §6.2.1): tables, both ways, whole domain.

Vectors come from tests/vectors/sms.json (provenance in tests/vectors/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gsm7 import (
    CR,
    ESCAPE,
    FILL_BITS_MAX,
    GSM7_CHARACTERS,
    GSM7_EXTENSION_CHARACTERS,
    can_encode_gsm7,
    decode_gsm7,
    encode_gsm7,
    pack_septets,
    pack_ussd,
    packed_length,
    septet_length,
    unpack_septets,
    unpack_ussd,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "sms.json").read_text(encoding="utf-8"))

gsm7_text = st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=200)
septet_strings = st.binary(max_size=300).map(lambda b: bytes(x & 0x7F for x in b))


# ------------------------------------------------------------------ tables


def test_default_table_matches_android_table() -> None:
    table = VECTORS["gsm7_default_table"]["text"]
    assert len(table) == 128
    for code, char in enumerate(table):
        if code == ESCAPE:
            continue
        assert encode_gsm7(char) == bytes([code])
        assert decode_gsm7(bytes([code])) == char


def test_extension_table_matches_android_table() -> None:
    block = VECTORS["gsm7_extension_table"]
    for char, code in zip(block["text"], block["codes"], strict=True):
        assert encode_gsm7(char) == bytes([ESCAPE, code])
        assert decode_gsm7(bytes([ESCAPE, code])) == char
    assert set(block["text"]) == GSM7_EXTENSION_CHARACTERS


def test_alphabet_size() -> None:
    # 127 base characters (0x1B is the escape) and 10 in the extension table.
    assert len(GSM7_CHARACTERS) == 137


def test_euro_and_escape() -> None:
    assert encode_gsm7("€") == h("1B 65")
    assert septet_length("€5 [x]") == 9


@pytest.mark.parametrize("code", [c for c in range(128) if c not in (0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65, ESCAPE)])
def test_unknown_extension_falls_back_to_the_base_table(code: int) -> None:
    # TS 23.038 §6.2.1.1: a code the extension table lacks reads as the main table's character.
    assert decode_gsm7(bytes([ESCAPE, code])) == decode_gsm7(bytes([code]))


def test_double_escape_and_trailing_escape_read_as_space() -> None:
    assert decode_gsm7(h("1B 1B")) == " "
    assert decode_gsm7(h("41 1B")) == "A "


@pytest.mark.parametrize(("text", "index", "char"), [("abc\u00e7", 3, "ç"), ("日本", 0, "日"), ("ok`", 2, "`")])
def test_unencodable_character_is_named_with_its_index(text: str, index: int, char: str) -> None:
    assert not can_encode_gsm7(text)
    with pytest.raises(CodecError) as info:
        encode_gsm7(text)
    assert repr(char) in str(info.value)
    assert f"index {index}" in str(info.value)


def test_decode_refuses_eight_bit_values() -> None:
    with pytest.raises(CodecError):
        decode_gsm7(b"\x80")


@given(gsm7_text)
def test_text_round_trip(text: str) -> None:
    assert can_encode_gsm7(text)
    septets = encode_gsm7(text)
    assert decode_gsm7(septets) == text
    assert septet_length(text) == len(septets) == len(text) + sum(c in GSM7_EXTENSION_CHARACTERS for c in text)


@given(septet_strings)
def test_decode_any_septets_never_raises_and_reencodes_stably(septets: bytes) -> None:
    text = decode_gsm7(septets)
    assert decode_gsm7(encode_gsm7(text)) == text


@given(st.text(max_size=50))
def test_can_encode_agrees_with_encode(text: str) -> None:
    try:
        encode_gsm7(text)
    except CodecError:
        assert not can_encode_gsm7(text)
    else:
        assert can_encode_gsm7(text)


# ------------------------------------------------------------------ packing


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["text"]) for v in VECTORS["gsm7_packed"]])
def test_published_packing(vector: dict[str, Any]) -> None:
    septets = encode_gsm7(vector["text"])
    assert len(septets) == vector["septets"]
    packed = h(vector["hex"])
    if vector.get("ussd"):
        assert_both_ways(unpack_ussd, pack_ussd, packed, septets)
    assert_both_ways(lambda data: unpack_septets(data, vector["septets"]), pack_septets, packed, septets)


def test_fill_bits_shift_the_septets() -> None:
    # One fill bit (after a 6-octet UDH) moves 'h' (0x68) up by one bit.
    assert pack_septets(b"\x68", 1) == h("D0")
    assert unpack_septets(h("D0"), 1, 1) == b"\x68"
    # Fill bits alone occupy an octet.
    assert pack_septets(b"", 3) == h("00")
    assert unpack_septets(h("00"), 0, 3) == b""


@given(septet_strings, st.integers(0, FILL_BITS_MAX))
def test_pack_round_trip(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill)
    assert len(packed) == packed_length(len(septets), fill)
    assert unpack_septets(packed, len(septets), fill) == septets


@given(septet_strings, st.integers(0, FILL_BITS_MAX))
def test_unpack_wants_exactly_the_packed_octets(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill)
    if packed:
        with pytest.raises(TruncatedError):
            unpack_septets(packed[:-1], len(septets), fill)
    with pytest.raises(CodecError):
        unpack_septets(packed + b"\x00", len(septets), fill)


def test_pack_refuses_bad_input() -> None:
    with pytest.raises(CodecError):
        pack_septets(b"\x80")
    with pytest.raises(CodecError):
        pack_septets(b"", FILL_BITS_MAX + 1)
    with pytest.raises(CodecError):
        unpack_septets(b"", -1)


# ------------------------------------------------------------------ USSD CR rule (§6.1.2.3.1)


def test_ussd_seven_septets_are_padded_with_cr() -> None:
    septets = encode_gsm7("*123*1#")
    packed = pack_ussd(septets)
    assert len(packed) == 7
    # The spare 7 bits hold CR, not zeros (which would read '@').
    assert unpack_septets(packed, 8)[-1] == CR
    assert unpack_ussd(packed) == septets
    # Plain packing leaves zeros, which a receiver counting octets would read as '@'.
    assert decode_gsm7(unpack_septets(pack_septets(septets), 8)) == "*123*1#@"


def test_ussd_wanted_final_cr_on_an_octet_boundary_is_doubled() -> None:
    septets = encode_gsm7("1234567\r")
    packed = pack_ussd(septets)
    assert unpack_ussd(packed) == septets + bytes([CR])


@given(septet_strings)
def test_ussd_round_trip(septets: bytes) -> None:
    got = unpack_ussd(pack_ussd(septets))
    if septets and len(septets) % 8 == 0 and septets[-1] == CR:
        assert got == septets + bytes([CR])
    else:
        assert got == septets


@given(st.binary(max_size=200))
def test_unpack_ussd_accepts_any_octets(data: bytes) -> None:
    septets = unpack_ussd(data)
    assert all(s < 0x80 for s in septets)
