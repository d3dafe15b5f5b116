"""CAT codecs (TS 102 223): round trips over the field domains, and hostile input where only CodecError may escape."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.cat import (
    Address,
    Alphabet,
    CommandDetails,
    Dcs,
    DeviceIdentities,
    DisplayText,
    Duration,
    EventDownload,
    Facility,
    FileList,
    GetInkey,
    GetInput,
    IconIdentifier,
    Item,
    ItemIconIdentifierList,
    Language,
    MenuSelection,
    PlayTone,
    PollInterval,
    ResponseLength,
    Result,
    SelectItem,
    SendShortMessage,
    SetUpEventList,
    SetUpMenu,
    SmsPpDownload,
    TerminalProfile,
    TerminalResponse,
    TextString,
    dcs_alphabet,
    parse_envelope,
    parse_proactive_command,
    parse_terminal_profile,
    parse_terminal_response,
)
from simwallet.applet.protocols.gsm7 import GSM7_CHARACTERS

VECTORS = json.loads((Path(__file__).parent / "vectors" / "cat.json").read_text(encoding="utf-8"))
BYTE = st.integers(0, 255)
gsm_text = st.text(alphabet=sorted(GSM7_CHARACTERS), max_size=40)
bmp_text = st.text(alphabet=st.characters(max_codepoint=0xFFFF), max_size=40)


# ------------------------------------------------------------------ one-byte fields, whole domain


@pytest.mark.parametrize("value", range(256))
def test_every_byte_value_round_trips(value: int) -> None:
    objects: list[tuple[Any, bytes]] = [
        (CommandDetails(value, value ^ 0x5A, 255 - value), bytes([value, value ^ 0x5A, 255 - value])),
        (DeviceIdentities(value, 255 - value), bytes([value, 255 - value])),
        (Result(value, bytes([value])), bytes([value, value])),
        (Duration(value % 3, value), bytes([value % 3, value])),
        (Duration(value, 1), bytes([value, 1])),
        (IconIdentifier(value, 255 - value), bytes([255 - value, value])),
        (ResponseLength(value, 255 - value), bytes([value, 255 - value])),
        (Item(value, "x"), bytes([value, 0x78])),
        (ItemIconIdentifierList((value, value), value), bytes([value, value, value])),
        (Address("12", value), bytes([value, 0x21])),
    ]
    for obj, value_bytes in objects:
        assert_both_ways(type(obj).from_value, lambda o: o.to_value(), value_bytes, obj)


@pytest.mark.parametrize("dcs", range(256))
def test_every_dcs(dcs: int) -> None:
    # Each DCS names an alphabet (and a text in it round-trips) or is refused as compressed or reserved.
    try:
        alphabet = dcs_alphabet(dcs)
    except CodecError:
        with pytest.raises(CodecError):
            TextString("abc", dcs)
        with pytest.raises(CodecError):
            TextString.from_value(bytes([dcs, 0x41]))
        return
    text = "Ça coute 10€ à Øre" if alphabet is not Alphabet.UCS2 else "Цена ₹10"
    ts = TextString(text, dcs)
    assert TextString.from_value(ts.to_value()) == ts


@pytest.mark.parametrize("value", range(256))
def test_every_single_byte_command_field(value: int) -> None:
    # Number and qualifier of a command, the tone, the default item and the event: all 256 values.
    for cmd in (
        DisplayText(number=value, qualifier=value, text=TextString("a")),
        PlayTone(tone=value, destination=value),
        SelectItem(items=(Item(value, "a"),), default_item=value, next_actions=(value,)),
        SetUpEventList(events=(value,)),
    ):
        assert_both_ways(parse_proactive_command, lambda c: c.to_bytes(), cmd.to_bytes(), cmd)
    for env in (MenuSelection(value, source=value), EventDownload(value, source=value)):
        assert_both_ways(parse_envelope, lambda e: e.to_bytes(), env.to_bytes(), env)


# ------------------------------------------------------------------ texts


@given(gsm_text, st.sampled_from([Dcs.GSM7_PACKED, Dcs.GSM_8BIT, 0xF0, 0xF4, 0x11]))
def test_gsm_text_string_round_trip(text: str, dcs: int) -> None:
    # Packed texts do not carry their septet count: a final CR on an octet boundary is the documented exception.
    assume(not (dcs_alphabet(dcs) is Alphabet.GSM7_PACKED and text.endswith("\r")))
    ts = TextString(text, dcs)
    assert TextString.from_value(ts.to_value()) == ts


@given(bmp_text)
def test_ucs2_text_string_round_trip(text: str) -> None:
    ts = TextString(text, Dcs.UCS2)
    assert TextString.from_value(ts.to_value()) == ts
    auto = TextString.auto(text)
    assert TextString.from_value(auto.to_value()) == auto


@given(st.text(alphabet="0123456789*#,?e", max_size=40), BYTE)
def test_address_round_trip(digits: str, ton_npi: int) -> None:
    addr = Address(digits, ton_npi)
    assert Address.from_value(addr.to_value()) == addr


@given(st.lists(st.lists(st.binary(min_size=2, max_size=2).filter(lambda f: f != b"\x3f\x00"), max_size=3), max_size=4))
def test_file_list_round_trip(paths: list[list[bytes]]) -> None:
    files = FileList(tuple(b"\x3f\x00" + b"".join(p) for p in paths))
    assert FileList.from_value(files.to_value()) == files


def test_language_and_bad_simple_values() -> None:
    assert Language.from_value(b"en") == Language("en")
    for bad in (b"e", b"\x1b\x41", b"\xe0n"):
        with pytest.raises(CodecError):
            Language.from_value(bad)
    for parse, value in [
        (CommandDetails.from_value, b"\x01\x21"),
        (Address.from_value, h("91F121")),
        (Address.from_value, h("911F")),
        (FileList.from_value, h("023F002FE2")),
        (FileList.from_value, h("012FE2")),
        (TextString.from_value, h("0841")),
        (TextString.from_value, h("0480")),
        (Result.from_value, b""),
    ]:
        with pytest.raises(CodecError):
            parse(value)


# ------------------------------------------------------------------ whole messages


icons = st.none() | st.builds(IconIdentifier, BYTE, BYTE)
durations = st.none() | st.builds(Duration, BYTE, BYTE)
texts = st.builds(TextString.auto, st.text(alphabet=st.characters(max_codepoint=0xFFFF), max_size=30))
items = st.lists(st.builds(Item, BYTE, bmp_text.map(lambda t: t[:12])), min_size=1, max_size=6).map(tuple)
common = {"number": BYTE, "qualifier": BYTE, "extra": st.just(())}
commands = st.one_of(
    st.builds(DisplayText, text=texts, icon=icons, immediate_response=st.booleans(), duration=durations, **common),
    st.builds(GetInkey, text=texts, icon=icons, duration=durations, **common),
    st.builds(
        GetInput,
        text=texts,
        response_length=st.builds(ResponseLength, BYTE, BYTE),
        default_text=st.none() | texts,
        icon=icons,
        duration=durations,
        **common,
    ),
    st.builds(SetUpMenu, title=bmp_text, items=items | st.just(()), next_actions=st.none() | st.lists(BYTE).map(tuple), **common),
    st.builds(
        SelectItem,
        items=items,
        title=st.none() | bmp_text,
        default_item=st.none() | BYTE,
        item_icons=st.none() | st.builds(ItemIconIdentifierList, st.lists(BYTE, max_size=6).map(tuple), BYTE),
        **common,
    ),
    st.builds(
        SendShortMessage,
        tpdu=st.binary(max_size=160),
        alpha=st.none() | bmp_text,
        address=st.none() | st.builds(Address, st.text(alphabet="0123456789", max_size=20)),
        **common,
    ),
    st.builds(PollInterval, duration=st.builds(Duration, BYTE, BYTE), **common),
)


def _built(factory: Callable[[], Any]) -> Any:
    """The object, or a rejected example when the field values make it longer than its message allows."""
    try:
        return factory()
    except CodecError:
        assume(False)


@settings(max_examples=400)
@given(st.data())
def test_command_round_trip(data: st.DataObject) -> None:
    cmd = _built(lambda: data.draw(commands))
    assert parse_proactive_command(cmd.to_bytes()) == cmd


@given(
    st.builds(CommandDetails, BYTE, BYTE, BYTE),
    st.builds(Result, BYTE, st.binary(max_size=4)),
    durations,
    st.none() | texts,
    st.none() | BYTE,
    st.none() | st.sampled_from(["en", "zh", "fr", "sw"]),
)
def test_terminal_response_round_trip(
    details: CommandDetails, result: Result, duration: Duration | None, text: TextString | None, item: int | None, lang: str | None
) -> None:
    tr = _built(lambda: TerminalResponse(details, result, duration, text, item, lang))
    assert parse_terminal_response(tr.to_bytes()) == tr


@given(st.binary(max_size=200), st.none() | st.builds(Address, st.text(alphabet="0123456789", max_size=20)))
def test_sms_pp_download_round_trip(tpdu: bytes, address: Address | None) -> None:
    env = _built(lambda: SmsPpDownload(tpdu, address))
    assert parse_envelope(env.to_bytes()) == env


# ------------------------------------------------------------------ terminal profile


@pytest.mark.parametrize("facility", list(Facility), ids=[f.name for f in Facility])
def test_each_facility_is_its_own_bit(facility: Facility) -> None:
    tp = TerminalProfile.from_facilities([facility])
    assert tp.facilities == {facility} and len(tp.data) == facility.byte
    assert sum(bin(b).count("1") for b in tp.data) == 1
    assert_both_ways(parse_terminal_profile, TerminalProfile.to_bytes, tp.data, tp)


def test_wallet_profile_and_numbers() -> None:
    wanted = {
        Facility.PROFILE_DOWNLOAD,
        Facility.SMS_PP_DATA_DOWNLOAD,
        Facility.MENU_SELECTION,
        Facility.UCS2_ENTRY,
        Facility.UCS2_DISPLAY,
        Facility.DISPLAY_TEXT,
        Facility.GET_INKEY,
        Facility.GET_INPUT,
        Facility.SELECT_ITEM,
        Facility.SET_UP_MENU,
        Facility.SEND_SHORT_MESSAGE,
        Facility.SET_UP_EVENT_LIST,
        Facility.EVENT_LANGUAGE_SELECTION,
        Facility.PROVIDE_LOCAL_INFORMATION_LANGUAGE,
    }
    tp = TerminalProfile.from_facilities(wanted, length=20).with_soft_keys(2).with_screen_height(8).with_screen_width(20)
    assert tp.to_bytes() == h("0B 60 07 23 01 01 00 00 08 00 02 00 00 08 14 00 00 00 00 00")
    assert tp.facilities == wanted and tp.soft_keys == 2 and tp.screen_height == 8 and tp.screen_width == 20
    assert tp.with_channels(7).channels == 7 and tp.channels == 0
    assert not TerminalProfile(b"\xff").supports(Facility.SET_UP_MENU)
    with pytest.raises(CodecError):
        tp.with_screen_height(32)
    with pytest.raises(CodecError):
        TerminalProfile.from_facilities([Facility.SET_UP_MENU], length=3)
    with pytest.raises(CodecError):
        parse_terminal_profile(b"")


@given(st.binary(min_size=1, max_size=40))
def test_profile_keeps_unknown_bits(data: bytes) -> None:
    tp = parse_terminal_profile(data)
    assert tp.to_bytes() == data
    rebuilt = TerminalProfile.from_facilities(tp.facilities, length=len(data))
    # Named bits agree; everything else was preserved only in the parsed copy.
    assert rebuilt.facilities == tp.facilities
    assert all(r & ~d == 0 for r, d in zip(rebuilt.data, data, strict=True))


# ------------------------------------------------------------------ hostile input


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "proactive_commands": parse_proactive_command,
    "terminal_responses": parse_terminal_response,
    "envelopes": parse_envelope,
}
SAMPLES = [(section, h(v["hex"])) for section in PARSERS for v in VECTORS[section]]


def _only_codec_errors(parse: Callable[[bytes], Any], data: bytes) -> None:
    try:
        obj = parse(data)
    except CodecError:
        return
    # Whatever parses builds, and what it builds parses to the same object.
    assert parse(obj.to_bytes()) == obj


@pytest.mark.parametrize(("section", "data"), SAMPLES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(SAMPLES)])
def test_truncated_and_trailing(section: str, data: bytes) -> None:
    parse = PARSERS[section]
    for end in range(len(data)):
        _only_codec_errors(parse, data[:end])
    for tail in (b"\x00", b"\x81", b"\x90\x01\x01"):
        _only_codec_errors(parse, data + tail)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.randoms(use_true_random=False))
def test_mutated_vectors(sample: tuple[str, bytes], rnd: random.Random) -> None:
    section, data = sample
    mutated = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
    _only_codec_errors(PARSERS[section], bytes(mutated))


@settings(max_examples=300)
@given(st.sampled_from(list(PARSERS)), st.binary(max_size=300))
def test_random_bytes(section: str, data: bytes) -> None:
    _only_codec_errors(PARSERS[section], data)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_objects_inside_a_valid_frame(body: bytes) -> None:
    # Valid D0/D3 frames around random COMPREHENSION-TLV bytes reach the object parsers.
    head = h("810301") + bytes([body[0] if body else 0x21]) + b"\x00" + h("82028102")
    for frame in (b"\xd0", b"\xd3", b"\xd6", b"\xd1"):
        value = (head if frame == b"\xd0" else b"") + body
        if len(value) < 128:
            parse = parse_proactive_command if frame == b"\xd0" else parse_envelope
            _only_codec_errors(parse, frame + bytes([len(value)]) + value)
    _only_codec_errors(parse_terminal_response, h("8103012300 82028281 830100") + body)
