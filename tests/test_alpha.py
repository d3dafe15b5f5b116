"""Alpha identifier coding (TS 102 221 Annex A): the four forms both ways, padding, shortest choice, hostile input."""

from __future__ import annotations

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import alpha_length, decode_alpha, encode_alpha
from simwallet.applet.protocols.gsm7 import GSM7_CHARACTERS

# Texts and encodings from the Mozilla B2G STK tests (dom/icc/tests/marionette, public domain): see tests/vectors/README.md.
PUBLISHED = [
    ("546F6F6C6B6974204D656E75", "Toolkit Menu"),
    ("8104613831EB30", "81ル0"),
    ("810C089794A09092A1A292A399A295", "ЗДРАВСТВУЙТЕ"),
    ("805DE551777BB15355", "工具箱单"),
]
# Other forms of the same kind of text that decode but are not what the encoder picks (it writes the shortest).
DECODE_ONLY = [
    ("820430A03832CB30", "82ル0"),
    ("800038003030EB0030", "80ル0"),
    ("80041704140420041004120421042204120423041904220415", "ЗДРАВСТВУЙТЕ"),
    ("820D041087849080829192829389928533", "ЗДРАВСТВУЙТЕ3"),
]


@pytest.mark.parametrize(("hexdata", "text"), PUBLISHED, ids=[t for _, t in PUBLISHED])
def test_published_both_ways(hexdata: str, text: str) -> None:
    assert_both_ways(decode_alpha, encode_alpha, h(hexdata), text)


@pytest.mark.parametrize(("hexdata", "text"), DECODE_ONLY, ids=[t for _, t in DECODE_ONLY])
def test_other_forms_decode(hexdata: str, text: str) -> None:
    assert decode_alpha(h(hexdata)) == text
    assert decode_alpha(encode_alpha(text)) == text
    assert len(encode_alpha(text)) <= len(h(hexdata))


def test_form_choice() -> None:
    assert encode_alpha("Ab€") == h("41621B65")  # default alphabet with an extension character
    assert encode_alpha("ル") == h("8030EB")  # one character: 80 is shortest
    assert encode_alpha("ルル") == h("8030EB30EB")  # 5 bytes in 80 and 81 alike: 80 wins the tie
    assert encode_alpha("ルルル")[0] == 0x81
    # 3078..3090 cross a 128 boundary: only a 16-bit base holds them all (8 bytes against 9 in the 80 form).
    assert encode_alpha("\u3078\u3080\u3090\u3085") == h("820430788088988D")
    assert encode_alpha("你好吗")[0] == 0x80  # too far apart for any base


def test_padding_and_length() -> None:
    assert encode_alpha("abc", 6) == h("616263FFFFFF")
    assert decode_alpha(h("616263FFFFFF")) == "abc"
    assert decode_alpha(h("8030EBFFFF")) == "ル"
    assert decode_alpha(h("8104613831EB30FFFF")) == "81ル0"
    assert decode_alpha(h("FFFFFF")) == "" and decode_alpha(b"") == "" and encode_alpha("", 3) == h("FFFFFF")
    assert alpha_length("ЗДРАВСТВУЙТЕ") == 15
    with pytest.raises(CodecError, match="needs 4 bytes"):
        encode_alpha("abcd", 3)


@pytest.mark.parametrize(
    "bad",
    ["83414243", "61E2", "8104613831EB30FF00", "81056138", "82", "8030EB31", "810161", "81021B80"],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(CodecError):
        decode_alpha(h(bad))


def test_unencodable() -> None:
    with pytest.raises(CodecError):
        encode_alpha("😀")
    with pytest.raises(CodecError):
        encode_alpha("\uffff")


gsm_text = st.text(alphabet=sorted(GSM7_CHARACTERS), max_size=60)
bmp_text = st.text(alphabet=st.characters(max_codepoint=0xFFFE), max_size=60)


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    raw = encode_alpha(text)
    assert raw[:1] not in (b"\x80", b"\x81", b"\x82") or not text
    assert decode_alpha(raw) == text


@settings(max_examples=300)
@given(bmp_text, st.integers(0, 8))
def test_bmp_round_trip_with_padding(text: str, pad: int) -> None:
    size = alpha_length(text) + pad
    raw = encode_alpha(text, size)
    assert len(raw) == size and decode_alpha(raw) == text


@given(st.integers(0, 0x7F), st.integers(0x80, 0xFFFE), st.text(alphabet="0123456789", max_size=5))
def test_base_window_round_trip(offset: int, low: int, digits: str) -> None:
    # Characters sharing a 128-wide window, mixed with digits: the 81/82 forms.
    text = digits + chr(low) + chr(min(low + offset, 0xFFFE)) + digits
    assert decode_alpha(encode_alpha(text)) == text


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_random_bytes_only_codec_error(data: bytes) -> None:
    _decodes_and_reencodes(data)


@pytest.mark.parametrize("first", range(256))
def test_every_first_byte(first: int) -> None:
    # Each first byte selects a form or is refused; nothing else escapes.
    _decodes_and_reencodes(bytes([first, 0x02, 0x30, 0x41, 0x42, 0xFF]))
    _decodes_and_reencodes(bytes([first, 0x02, 0xFF, 0xFF, 0xC1, 0xFF]))


def _decodes_and_reencodes(data: bytes) -> None:
    """Only CodecError escapes, and whatever decodes is text the encoder can write back."""
    try:
        text = decode_alpha(data)
    except CodecError:
        return
    assert decode_alpha(encode_alpha(text)) == text
