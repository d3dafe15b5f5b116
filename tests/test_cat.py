"""CAT codecs (TS 102 223 / TS 31.111) against published vectors: every vector both ways, objects written out by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.cat import (
    ICON_NOT_SELF_EXPLANATORY,
    CommandDetails,
    CommandType,
    Dcs,
    DeviceIdentity,
    DisplayText,
    Duration,
    EventDownload,
    EventType,
    FileList,
    GeneralResult,
    GetInkey,
    GetInput,
    GetInputQualifier,
    IconIdentifier,
    Item,
    ItemIconIdentifierList,
    LocalInformationType,
    MenuSelection,
    PlayTone,
    PollingOff,
    PollInterval,
    ProvideLocalInformation,
    Refresh,
    RefreshMode,
    ResponseLength,
    Result,
    SelectItem,
    SendShortMessage,
    SetUpEventList,
    SetUpMenu,
    SmsPpDownload,
    TerminalProblem,
    TerminalResponse,
    TextString,
    TimeUnit,
    Tone,
    UnknownEnvelope,
    UnknownProactiveCommand,
    parse_envelope,
    parse_proactive_command,
    parse_terminal_response,
    peek_command_details,
)
from simwallet.applet.protocols.cat_tlv import Address
from simwallet.applet.protocols.tlv import Ctlv

VECTORS = json.loads((Path(__file__).parent / "vectors" / "cat.json").read_text(encoding="utf-8"))

T = TextString
SECONDS = TimeUnit.SECONDS


def _items(*texts: str, start: int = 1) -> tuple[Item, ...]:
    return tuple(Item(start + i, t) for i, t in enumerate(texts))


ITEMS_4 = _items("Item 1", "Item 2", "Item 3", "Item 4")
ITEMS_3 = ITEMS_4[:3]
LONG_DEFAULT = "".join(f"***{d * 10}###" for d in "1234567890")

PROACTIVE: dict[str, object] = {
    "display_text_1": DisplayText(qualifier=0x80, text=T("Toolkit Test 1")),
    "display_text_2_high_priority": DisplayText(qualifier=0x81, text=T("Toolkit Test 2")),
    "display_text_3_packed": DisplayText(qualifier=0x80, text=T("Toolkit Test 3", Dcs.GSM7_PACKED)),
    "display_text_7_ucs2": DisplayText(qualifier=0x80, text=T("ЗДРАВСТВУЙТЕ", Dcs.UCS2)),
    "display_text_8_ucs2_chinese": DisplayText(qualifier=0x80, text=T("你好", Dcs.UCS2)),
    "display_text_10_text_without_cr": DisplayText(qualifier=0x80, text=T("Saldo 2.04 E. Validez 20/05/13. ", Dcs.GSM7_PACKED)),
    "display_text_11_duration": DisplayText(qualifier=0x80, text=T("10 Second"), duration=Duration(SECONDS, 10)),
    "display_text_12_icon": DisplayText(qualifier=0x80, text=T("Basic Icon"), icon=IconIdentifier(1)),
    "display_text_16_dcs_12": DisplayText(text=T("Toolkit Test GROUP:0x10, 7BIT", 0x12)),
    "display_text_18_dcs_1a": DisplayText(text=T("Toolkit Test GROUP:0x10, UCS2", 0x1A)),
    "display_text_19_dcs_f2": DisplayText(text=T("Toolkit Test GROUP:0xF0, 7BIT", 0xF2)),
    "display_text_20_dcs_f6": DisplayText(text=T("Toolkit Test GROUP:0xF0, 8BIT", 0xF6)),
    "get_inkey_1_packed": GetInkey(text=T('Enter "0"', Dcs.GSM7_PACKED)),
    "get_inkey_2_null_text": GetInkey(text=T(None)),
    "get_inkey_3_empty_text": GetInkey(text=T("", Dcs.GSM7_PACKED)),
    "get_inkey_11_duration": GetInkey(text=T('Enter "+"'), duration=Duration(SECONDS, 10)),
    "get_inkey_10_icon_without_cr": GetInkey(qualifier=0x80, text=T("<ICON>"), icon=IconIdentifier(1, ICON_NOT_SELF_EXPLANATORY)),
    "get_input_1": GetInput(text=T("Enter 12345"), response_length=ResponseLength(5, 5)),
    "get_input_2_packed": GetInput(qualifier=0x08, text=T("Enter 67*#+", Dcs.GSM7_PACKED), response_length=ResponseLength(5, 5)),
    "get_input_4_hidden": GetInput(
        qualifier=GetInputQualifier.HIDDEN, text=T("Password 1<SEND>2345678"), response_length=ResponseLength(4, 8)
    ),
    "get_input_9_default_text": GetInput(text=T("Enter:"), response_length=ResponseLength(160, 160), default_text=T(LONG_DEFAULT)),
    "set_up_menu_4_help": SetUpMenu(qualifier=0x80, title="Toolkit Menu", items=ITEMS_4),
    "set_up_menu_5_next_actions": SetUpMenu(title="Toolkit Menu", items=ITEMS_4, next_actions=(0x13, 0x10, 0x15, 0x26)),
    "set_up_menu_6_icons": SetUpMenu(
        title="Toolkit Menu", items=ITEMS_3, icon=IconIdentifier(1), item_icons=ItemIconIdentifierList((5, 5, 5))
    ),
    "set_up_menu_10_chinese": SetUpMenu(title="工具箱单", items=_items("项目一", "项目二", "项目三", "项目四")),
    "set_up_menu_11_remove": SetUpMenu.remove(),
    "select_item_1": SelectItem(title="Toolkit Select", items=ITEMS_4),
    "select_item_7_items_without_text": SelectItem(
        title="Toolkit Select", items=_items("", "", ""), item_icons=ItemIconIdentifierList((5, 5, 5))
    ),
    "select_item_8_presentation_help": SelectItem(qualifier=0x83, title="Toolkit Select", items=ITEMS_3),
    "select_item_9_text_attributes": SelectItem(
        title="Toolkit Select 1", items=ITEMS_4[:2], text_attribute=h("001000B4"), item_text_attributes=h("000600B4000600B4")
    ),
    "select_item_12_alpha_81": SelectItem(title="81ル0", items=_items("81ル1", "81ル2", "81ル3")),
    "select_item_13_alpha_82": SelectItem(title="82ル0", items=_items("82ル1", "82ル2", "82ル3")),
    "select_item_14_default_item": SelectItem(title="Toolkit Select", items=ITEMS_3, next_actions=(0x00, 0x00, 0x81), default_item=2),
    "send_sms_1": SendShortMessage(address=Address("112233445566778"), tpdu=h("0100099110325476F840F40C54657374204D657373616765")),
    "send_sms_2_alpha": SendShortMessage(
        alpha="Short Message", address=Address("112233445566778"), tpdu=h("0100099110325476F840F00D53F45B4E0735CBF379F85C06")
    ),
    "send_sms_null_alpha": SendShortMessage(
        alpha="", address=Address("112233445566778"), tpdu=h("0100099110325476F840F40C54657374204D657373616765")
    ),
    "send_sms_no_address_text_attribute": SendShortMessage(
        alpha="Text Attribute 1", tpdu=h("010002911040F00120"), text_attribute=h("001000B4")
    ),
    "send_sms_asterix_trace": SendShortMessage(
        alpha="",
        tpdu=h("4100038119F000F631027100002C0EC00000888B39C361C66D5F3DC4EFCEF508CC228021DD34E577B147E54EFF18B3922C9176644E2E8AA9A695"),
    ),
    "play_tone_1_bare": PlayTone(destination=DeviceIdentity.TERMINAL),
    "play_tone_7_all": PlayTone(
        qualifier=1,
        destination=DeviceIdentity.TERMINAL,
        alpha="Play Tone",
        tone=Tone.DIAL,
        duration=Duration(TimeUnit.TENTHS_OF_SECONDS, 2),
        icon=IconIdentifier(3),
    ),
    "refresh_1_file_change": Refresh(qualifier=RefreshMode.FILE_CHANGE, files=FileList((h("3F002FE2"),))),
    "refresh_2_uicc_reset": Refresh(qualifier=RefreshMode.UICC_RESET),
    "poll_interval_1_minutes": PollInterval(duration=Duration(TimeUnit.MINUTES, 0x1A)),
    "polling_off": PollingOff(),
    "set_up_event_list_2": SetUpEventList(events=(EventType.IDLE_SCREEN_AVAILABLE, EventType.LANGUAGE_SELECTION)),
    "set_up_event_list_5_remove": SetUpEventList(events=()),
    "provide_local_info_language": ProvideLocalInformation(qualifier=LocalInformationType.LANGUAGE_SETTING),
    "set_up_call_unknown": UnknownProactiveCommand(
        type=CommandType.SET_UP_CALL,
        qualifier=0x04,
        objects=(Ctlv(0x05, b"Disconnect"), Ctlv(0x06, h("811032042143651C2C"), True), Ctlv(0x05, b"Message")),
    ),
}

TERMINAL_RESPONSES: dict[str, object] = {
    "tr_launch_browser_ok": TerminalResponse(CommandDetails(1, CommandType.LAUNCH_BROWSER, 0), Result(0)),
    "tr_display_text_screen_busy": TerminalResponse.answer(
        CommandDetails(2, CommandType.DISPLAY_TEXT, 1),
        GeneralResult.TERMINAL_CURRENTLY_UNABLE_TO_PROCESS,
        bytes([TerminalProblem.SCREEN_IS_BUSY]),
    ),
    "tr_select_item_help": TerminalResponse.answer(
        CommandDetails(3, CommandType.SELECT_ITEM, 0), GeneralResult.HELP_INFORMATION_REQUIRED_BY_USER, item_identifier=5
    ),
    "tr_get_inkey_yes": TerminalResponse.answer(CommandDetails(4, CommandType.GET_INKEY, 4), text=TextString.yes_no(True)),
    "tr_get_inkey_no_response": TerminalResponse.answer(
        CommandDetails(5, CommandType.GET_INKEY, 4), GeneralResult.NO_RESPONSE_FROM_USER, duration=Duration(SECONDS, 10)
    ),
    "tr_get_input_yes": TerminalResponse.answer(CommandDetails(6, CommandType.GET_INPUT, 1), text=T("Yes")),
    "tr_local_info_language": TerminalResponse.answer(CommandDetails(13, CommandType.PROVIDE_LOCAL_INFORMATION, 4), language="zh"),
    "tr_local_info_imei": TerminalResponse(
        CommandDetails(11, CommandType.PROVIDE_LOCAL_INFORMATION, 1), Result(0), extra=(Ctlv(0x14, h("1234567890123450")),)
    ),
    "tr_send_sm_asterix_trace": TerminalResponse.answer(CommandDetails(1, CommandType.SEND_SHORT_MESSAGE, 0)),
}

ENVELOPES: dict[str, object] = {
    "menu_selection_help": MenuSelection(1, help_request=True),
    "menu_selection_item_0": MenuSelection(0),
    "event_user_activity": EventDownload.user_activity(),
    "event_idle_screen_available": EventDownload.idle_screen_available(),
    "event_language_selection": EventDownload.language_selection("zh"),
    "event_location_status": EventDownload(
        EventType.LOCATION_STATUS, extra=(Ctlv(0x1B, b"\x00", True), Ctlv(0x13, h("64F629283301230737"), True))
    ),
    "event_mt_call": EventDownload(
        EventType.MT_CALL, DeviceIdentity.NETWORK, extra=(Ctlv(0x1C, b"\x00", True), Ctlv(0x06, h("918967452301"), True))
    ),
    "sms_pp_download_asterix_trace": SmsPpDownload(
        h("44038119F07FF6151124135822042502700000201115351515C000004D5C2C7F43D3E774316C66CE8E1D5045755BACEF5DC83203")
    ),
}


def _cases(section: str, expected: dict[str, object]) -> list[Any]:
    vectors = VECTORS[section]
    assert {v["id"] for v in vectors} == set(expected), "every vector has a hand-written object and vice versa"
    return [pytest.param(v, expected[v["id"]], id=v["id"]) for v in vectors]


def _check(vector: dict[str, str], obj: Any, parse: Callable[[bytes], Any]) -> None:
    # The published bytes parse to the object; the object builds the canonical bytes, which parse back.
    assert parse(h(vector["hex"])) == obj
    canonical = h(vector.get("canonical", vector["hex"]))
    assert_both_ways(parse, lambda o: o.to_bytes(), canonical, obj)


@pytest.mark.parametrize(("vector", "obj"), _cases("proactive_commands", PROACTIVE))
def test_proactive_command_vectors(vector: dict[str, str], obj: Any) -> None:
    _check(vector, obj, parse_proactive_command)
    assert peek_command_details(h(vector["hex"])) == obj.details


@pytest.mark.parametrize(("vector", "obj"), _cases("terminal_responses", TERMINAL_RESPONSES))
def test_terminal_response_vectors(vector: dict[str, str], obj: Any) -> None:
    _check(vector, obj, parse_terminal_response)


@pytest.mark.parametrize(("vector", "obj"), _cases("envelopes", ENVELOPES))
def test_envelope_vectors(vector: dict[str, str], obj: Any) -> None:
    _check(vector, obj, parse_envelope)


def test_non_canonical_vectors_differ_only_where_noted() -> None:
    # A canonical form is only given where the source's CR flags or alpha form differ from the encoder's.
    for section in ("proactive_commands", "terminal_responses", "envelopes"):
        for v in VECTORS[section]:
            if "canonical" in v:
                assert v["canonical"] != v["hex"] and "note" in v


def test_yes_no_answer_reads_back() -> None:
    tr = parse_terminal_response(h("8103042204 02028281 830100 8D020401"))
    assert tr.text is not None and tr.text.answer is True
    assert TextString.yes_no(False).to_value() == h("0400")
    with pytest.raises(CodecError):
        _ = T("Yes").answer


def test_qualifier_flags_and_defaults() -> None:
    cmd = PROACTIVE["get_input_4_hidden"]
    assert isinstance(cmd, GetInput) and cmd.hidden
    assert isinstance(PROACTIVE["set_up_menu_11_remove"], SetUpMenu) and PROACTIVE["set_up_menu_11_remove"].removes_menu
    # The destination the spec names is the default and is left out of the object.
    display = DisplayText(text=T("x"))
    assert display.destination is None and display.devices.destination == DeviceIdentity.DISPLAY
    assert SendShortMessage(tpdu=b"\x01").devices.destination == DeviceIdentity.NETWORK
    assert PlayTone().devices.destination == DeviceIdentity.EARPIECE
    assert display.details == CommandDetails(1, CommandType.DISPLAY_TEXT, 0)


def test_wrong_messages_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="not a proactive command"):
        parse_proactive_command(h("D103 810301"))
    with pytest.raises(CodecError, match="TEXT_STRING"):
        parse_proactive_command(h("D009 8103012180 82028102"))
    with pytest.raises(CodecError, match="DEVICE_IDENTITIES"):
        parse_proactive_command(h("D005 8103012180"))
    with pytest.raises(CodecError, match="SELECT ITEM needs"):
        parse_proactive_command(h("D00B 8103012400 82028182 8F00"))
    with pytest.raises(CodecError, match="only allowed alone"):
        parse_proactive_command(h("D012 8103012500 82028182 8500 8F00 8F03014142"))
    with pytest.raises(CodecError, match="not the UICC"):
        parse_envelope(h("D307 82020182 900101"))
    with pytest.raises(CodecError, match="exactly one event"):
        parse_envelope(h("D608 99020405 82028281"))
    with pytest.raises(CodecError, match="RESULT"):
        parse_terminal_response(h("8103011500 82028281"))
    with pytest.raises(CodecError, match="exceeds"):
        DisplayText(text=T("x" * 250))
    with pytest.raises(CodecError):
        SelectItem(items=())
    with pytest.raises(CodecError):
        TextString(None, Dcs.UCS2)


def test_unknown_envelope_and_source_keep_their_bytes() -> None:
    timer = h("D70C 82028281 A40101 A503000010")
    env = parse_envelope(timer)
    assert isinstance(env, UnknownEnvelope) and env.tag == 0xD7 and env.to_bytes() == timer
    # A D0 whose source is not the UICC is kept whole rather than trusted.
    odd = h("D00D 8103012180 82028202 8D020441")
    cmd = parse_proactive_command(odd)
    assert isinstance(cmd, UnknownProactiveCommand) and cmd.source == DeviceIdentity.TERMINAL and cmd.to_bytes() == odd


def test_unrecognised_objects_are_kept_in_order() -> None:
    # DISPLAY TEXT with a Frame identifier (68, not modelled) after the text: kept in extra, written back.
    data = h("D010 8103012180 82028102 8D020441 E80101")
    cmd = parse_proactive_command(data)
    assert isinstance(cmd, DisplayText) and cmd.extra == (Ctlv(0x68, b"\x01", True),)
    assert cmd.to_bytes() == data
