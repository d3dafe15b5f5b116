"""The handset simulator (simwallet.applet.handset): T=0 handling, each proactive command's terminal response,
SMS-PP download while busy, and the balance flow end to end through PC/SC and through ``simwallet phone stk``.

The first tests talk to a scripted card (a plain function standing in for the APDU transport) to reach what
a well-behaved card never does: wrong lengths, unknown commands, endless sessions. The end-to-end tests use the
real stack: pyscard → the private pcscd → vpcd → VpcdLink → the virtual card with the wallet.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from codec_helpers import h
from pcsc_helpers import connect, transmit, wait_for_card
from smartcard.scard import SCARD_LEAVE_CARD, SCardDisconnect  # type: ignore[import-untyped]
from wallet_helpers import TAR, WALLET_PIN, Backend, Card, personalized_card

from simwallet.applet.card.link import VpcdLink, port_for_reader
from simwallet.applet.errors import CardStatusError
from simwallet.applet.handset import WALLET_PROFILE, CardBusyError, Handset, HandsetError
from simwallet.applet.handset_user import ScriptedUser
from simwallet.applet.protocols.cat import (
    DisplayText,
    Duration,
    GeneralResult,
    GetInkey,
    GetInkeyQualifier,
    GetInput,
    GetInputQualifier,
    Item,
    LocalInformationType,
    PollInterval,
    ProvideLocalInformation,
    ResponseLength,
    SelectItem,
    SetUpMenu,
    Tag,
    TerminalResponse,
    TextString,
    TimeUnit,
    UnknownProactiveCommand,
    parse_terminal_response,
)
from simwallet.applet.protocols.sms_time import encode_timestamp
from simwallet.provisioning.cli.root import cli
from simwallet.provisioning.pcscd import PrivatePcscd

NOW = datetime(2026, 11, 23, 21, 30, 5, tzinfo=timezone(timedelta(hours=8)))


class ScriptCard:
    """A card that sends the proactive commands it is given and records the terminal responses.

    ``announce`` overrides the XX of 91XX (to make the handset hit 6CXX); ``busy`` answers every envelope 9300.
    """

    def __init__(self, commands: list[bytes], *, announce: int | None = None, busy: bool = False, endless: bool = False) -> None:
        self.commands = deque(commands)
        self.announce = announce
        self.busy = busy
        self.endless = endless
        self.responses: list[TerminalResponse] = []
        self.apdus: list[bytes] = []
        self._response = b""

    def _sw(self) -> bytes:
        if not self.commands:
            return h("9000")
        return bytes([0x91, self.announce if self.announce is not None else len(self.commands[0])])

    def __call__(self, capdu: bytes) -> bytes:
        self.apdus.append(capdu)
        ins = capdu[1]
        if ins == 0x12:  # FETCH
            command = self.commands[0]
            if capdu[4] != len(command):
                return bytes([0x6C, len(command)])
            if not self.endless:
                self.commands.popleft()
            return command + h("9000")
        if ins == 0x14:  # TERMINAL RESPONSE
            self.responses.append(parse_terminal_response(capdu[5:]))
            return self._sw()
        if ins == 0xC2:  # ENVELOPE: two bytes of response data, announced with 61XX
            if self.busy:
                return h("9300")
            self._response = h("ABCD")
            return h("6102")
        if ins == 0xC0:  # GET RESPONSE
            data, self._response = self._response, b""
            return data + self._sw()
        return self._sw()  # SELECT, TERMINAL PROFILE, STATUS


def handset_for(card: Callable[[bytes], bytes], *answers: str, **options: object) -> Handset:
    handset = Handset(card, user=ScriptedUser(answers), clock=lambda: NOW, **options)  # type: ignore[arg-type]
    handset.power_up()
    return handset


def test_fetch_follows_6cxx_and_envelopes_follow_61xx() -> None:
    menu = SetUpMenu(title="Shop", items=(Item(1, "Buy"),)).to_bytes()
    card = ScriptCard([menu], announce=0xFF)
    handset = handset_for(card)
    assert handset.menu() == (Item(1, "Buy"),)
    fetches = [apdu for apdu in card.apdus if apdu[1] == 0x12]
    assert [f[4] for f in fetches] == [0xFF, len(menu)]
    assert handset.deliver_sms_pp(h("00")) == h("ABCD")
    assert card.apdus[-1] == h("00C0000002")


def test_each_command_gets_the_terminal_response_the_spec_gives_it() -> None:
    commands = [
        UnknownProactiveCommand(type=0x40),
        ProvideLocalInformation(qualifier=LocalInformationType.LANGUAGE_SETTING),
        ProvideLocalInformation(qualifier=LocalInformationType.DATE_TIME_AND_TIME_ZONE),
        ProvideLocalInformation(qualifier=LocalInformationType.IMEI),
        PollInterval(duration=Duration(TimeUnit.SECONDS, 30)),
        GetInkey(text=TextString("Sure?"), qualifier=GetInkeyQualifier.YES_NO),
        GetInput(
            text=TextString.auto("名字"),
            response_length=ResponseLength(1, 8),
            qualifier=GetInputQualifier.UCS2 | GetInputQualifier.ALPHABET,
        ),
        SelectItem(items=(Item(1, "A"), Item(2, "B"))),
        GetInput(text=TextString("Code"), response_length=ResponseLength(1, 8)),
        DisplayText(text=TextString("Bye")),
    ]
    # DISPLAY TEXT without its text string: command data not understood.
    broken = h("D0 09 81 03 01 21 00 82 02 81 02")
    card = ScriptCard([c.to_bytes() for c in commands] + [broken])
    handset = handset_for(card, "y", "王", "B", language="en")
    results = [(r.result.general, r.language, r.duration, r.text, r.item_identifier) for r in card.responses]
    assert results == [
        (GeneralResult.COMMAND_TYPE_NOT_UNDERSTOOD, None, None, None, None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, "en", None, None, None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, None, None, None),
        (GeneralResult.BEYOND_TERMINAL_CAPABILITIES, None, None, None, None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, Duration(TimeUnit.SECONDS, 30), None, None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, None, TextString.yes_no(True), None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, None, TextString("王", 0x08), None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, None, None, 2),
        (GeneralResult.PROACTIVE_SESSION_TERMINATED_BY_USER, None, None, None, None),
        (GeneralResult.PERFORMED_SUCCESSFULLY, None, None, None, None),
        (GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD, None, None, None, None),
    ]
    [stamp] = card.responses[2].extra
    assert (stamp.tag, stamp.value) == (Tag.DATE_TIME_AND_TIME_ZONE, encode_timestamp(NOW))
    assert handset.screen == ["Bye"]
    assert card.responses[0].command.number == commands[0].number


def test_a_card_that_never_ends_its_session_is_given_up() -> None:
    card = ScriptCard([DisplayText(text=TextString("again")).to_bytes()], endless=True)
    with pytest.raises(HandsetError, match="proactive commands in one session"):
        handset_for(card)


def test_a_card_that_stays_busy_refuses_the_envelope() -> None:
    card = ScriptCard([SetUpMenu(title="T", items=(Item(1, "x"),)).to_bytes()], busy=True)
    handset = handset_for(card)
    with pytest.raises(CardBusyError):
        handset.select(1)
    with pytest.raises(HandsetError, match="no item"):
        handset.select("nothing")


def test_an_error_status_word_is_raised() -> None:
    def card(capdu: bytes) -> bytes:
        return h("6F00") if capdu[1] == 0xC2 else h("9000")

    handset = handset_for(card)
    with pytest.raises(CardStatusError) as raised:
        handset.deliver_sms_pp(h("00"))
    assert raised.value.sw == 0x6F00


def test_an_sms_arriving_during_a_prompt_waits_for_the_end_of_the_session() -> None:
    card, backend = personalized_card(None), Backend()
    early = backend.answer(99, "您有一条新消息")

    class Interrupted(ScriptedUser):
        def get_input(self, command: GetInput) -> str | None:
            assert handset.deliver_sms_pp(early) is None  # 9300: the card is in the middle of a session
            return super().get_input(command)

    handset = Handset(card.uicc.apdu, user=Interrupted([WALLET_PIN]))
    handset.power_up()
    handset.select("余额查询")
    assert handset.screen == ["请求已发送，请稍候……", "您有一条新消息"]
    assert handset.deferred_responses == [b""] and len(handset.sent) == 1


def test_the_default_profile_offers_what_the_wallet_uses() -> None:
    from simwallet.applet.protocols.cat import Facility

    for facility in (Facility.GET_INPUT, Facility.SELECT_ITEM, Facility.SEND_SHORT_MESSAGE, Facility.SET_UP_MENU, Facility.UCS2_DISPLAY):
        assert WALLET_PROFILE.supports(facility)


# --- end to end through PC/SC --------------------------------------------------------------------------------


@pytest.fixture
def linked(pcscd: PrivatePcscd, context: int) -> Iterator[tuple[Card, str]]:
    card = personalized_card(None)
    link = VpcdLink(card.uicc, port=port_for_reader(0, base_port=pcscd.base_port))
    link.start()
    reader = pcscd.reader_names[0]
    try:
        wait_for_card(context, reader)
        yield card, reader
    finally:
        link.stop()
        wait_for_card(context, reader, present=False)


def test_balance_through_pcsc(linked: tuple[Card, str], context: int) -> None:
    card, reader = linked
    handle, _ = connect(context, reader)
    try:
        handset = Handset(lambda capdu: transmit(handle, capdu), user=ScriptedUser([WALLET_PIN]))
        handset.power_up()
        assert handset.menu_title == "手机钱包"
        handset.select("余额查询")
        backend = Backend()
        _, packet, request = backend.receive(handset.sent[0])
        assert packet.tar.to_bytes() == TAR and request.request_id == 1
        assert handset.deliver_sms_pp(backend.answer(request.request_id, "余额 88.00 元", balance_fen=8800)) == b""
        assert handset.screen == ["请求已发送，请稍候……", "余额 88.00 元"]
        assert card.wallet.state.server_counter == 1
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)


def test_phone_stk_runs_a_script(linked: tuple[Card, str], tmp_path: Path) -> None:
    card, _ = linked
    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    result = CliRunner().invoke(cli, ["--db", db, "--json", "phone", "stk", "--reader", "0", "--script", f"1,{WALLET_PIN}"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["menu_title"] == "手机钱包" and document["menu"][0] == {"id": 1, "text": "余额查询"}
    assert document["screen"] == ["请求已发送，请稍候……"]
    [sms] = document["sms"]
    assert (sms["destination"], sms["pid"], sms["dcs"], sms["tar"], sms["spi"], sms["counter"]) == (
        "1065800010",
        "00",
        "F6",
        "B00010",
        "1600",
        "ciphered",
    )
    assert card.wallet.state.request_counter == 1


def test_phone_stk_reports_a_missing_reader(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    result = CliRunner().invoke(cli, ["--db", db, "phone", "stk", "--reader", "7", "--script", "1"])
    assert result.exit_code == 3 and "no reader with index 7" in result.output
