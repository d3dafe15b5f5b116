"""The handset (ME) simulator: drives a UICC's toolkit over any APDU transport, as a feature phone does.

Spec: ETSI TS 102 221 §7.3.1.1 (T=0: 61XX asks for GET RESPONSE, 6CXX for a
resend with Le = XX), §7.4.2.2 and §11.2 (TERMINAL PROFILE, FETCH while the
card answers 91XX, TERMINAL RESPONSE, ENVELOPE); ETSI TS 102 223 §5.2 (the
profile), §6.4 (what the terminal does for each proactive command), §6.8
(TERMINAL RESPONSE), §7.3 (MENU SELECTION), §8.12 (general results); 3GPP
TS 31.111 §7.1.1.2 (SMS-PP DOWNLOAD: the card's response data goes back to
the network; on 9300 the ME retries later).

Theory of operation
-------------------
``transport`` is any ``bytes -> bytes`` APDU exchange: ``uicc.apdu`` in unit
tests, a raw pyscard ``SCardTransmit`` through pcscd and vpcd, or provisioning's
``CardConnection.transmit`` wrapped to bytes. The handset follows 61XX and
6CXX itself, so a raw T=0 transport works as well as one that already does.

After TERMINAL PROFILE, and after every command the card answers with 91XX,
the handset runs the *proactive loop*: FETCH, act, TERMINAL RESPONSE, until
the card answers 9000. Acting means: SET UP MENU remembered (:meth:`menu`),
DISPLAY TEXT appended to :attr:`screen`, GET INPUT / GET INKEY / SELECT ITEM
answered by the :class:`~simwallet.applet.handset_user.User`, SEND SHORT
MESSAGE handed to ``sms_out``, PROVIDE LOCAL INFORMATION answered with the
language (and the time, given a clock). The user's answers are passed on as
given: a simulator may play a terminal that lets a user type anything.

An SMS-PP DOWNLOAD that the card refuses with 9300 waits: if the handset is
inside a proactive session (the SMS came in while the user was typing), it is
delivered when the session ends and its response lands in
:attr:`deferred_responses`; otherwise the handset lets the card finish what
it has pending (STATUS, then the loop) and tries again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Final

from simwallet.applet.errors import AppletError, CardStatusError, CodecError
from simwallet.applet.handset_user import ScriptedUser, User
from simwallet.applet.protocols.apdu import ResponseApdu
from simwallet.applet.protocols.cat import (
    Address,
    CommandDetails,
    Dcs,
    DisplayText,
    Facility,
    GeneralResult,
    GetInkey,
    GetInkeyQualifier,
    GetInput,
    GetInputQualifier,
    Item,
    LocalInformationType,
    MenuSelection,
    PollInterval,
    ProactiveCommand,
    ProvideLocalInformation,
    SelectItem,
    SendShortMessage,
    SetUpEventList,
    SetUpMenu,
    SmsPpDownload,
    Tag,
    TerminalProfile,
    TerminalResponse,
    TextString,
    UnknownProactiveCommand,
    parse_proactive_command,
    peek_command_details,
)
from simwallet.applet.protocols.sms_time import encode_timestamp
from simwallet.applet.protocols.tlv import Ctlv

# A session longer than this is a card in a loop, not a dialogue.
PROACTIVE_COMMANDS_PER_SESSION_MAX: Final = 64
# Envelopes the card answers 9300 are tried again this many times after it has finished its session.
ENVELOPE_RETRIES_MAX: Final = 3
# GET RESPONSE chains and 6CXX resends in one exchange: real cards chain a few.
GET_RESPONSE_CHAIN_MAX: Final = 32
# SMS-PP downloads waiting for the end of the current session.
DEFERRED_SMS_MAX: Final = 8
# TS 102 221 §10.1: the CAT commands and STATUS are class 80; GET RESPONSE 00.
_CLA_CAT = 0x80
_INS_TERMINAL_PROFILE, _INS_FETCH, _INS_TERMINAL_RESPONSE, _INS_ENVELOPE = 0x10, 0x12, 0x14, 0xC2
_INS_STATUS, _INS_GET_RESPONSE = 0xF2, 0xC0
# TS 102 221 §11.1.1: SELECT by DF name (partial AID of the USIM), FCP, first occurrence.
_SELECT_USIM: Final = bytes.fromhex("00A4040407A000000087100200")
SW_OK: Final = 0x9000
SW_BUSY: Final = 0x9300

# A feature phone with everything the wallet uses (TS 102 223 §5.2).
WALLET_PROFILE: Final = TerminalProfile.from_facilities(
    [
        Facility.PROFILE_DOWNLOAD,
        Facility.SMS_PP_DATA_DOWNLOAD,
        Facility.MENU_SELECTION,
        Facility.COMMAND_RESULT,
        Facility.UCS2_ENTRY,
        Facility.UCS2_DISPLAY,
        Facility.DISPLAY_TEXT,
        Facility.GET_INKEY,
        Facility.GET_INPUT,
        Facility.MORE_TIME,
        Facility.PLAY_TONE,
        Facility.POLL_INTERVAL,
        Facility.POLLING_OFF,
        Facility.SELECT_ITEM,
        Facility.SEND_SHORT_MESSAGE,
        Facility.SET_UP_MENU,
        Facility.SET_UP_EVENT_LIST,
        Facility.EVENT_LANGUAGE_SELECTION,
        Facility.PROVIDE_LOCAL_INFORMATION_DATE_TIME,
        Facility.PROVIDE_LOCAL_INFORMATION_LANGUAGE,
    ]
)


class HandsetError(AppletError):
    """The card did something a handset cannot go on from (a loop, a status word out of place)."""


class CardBusyError(HandsetError):
    """The card kept answering 9300 (toolkit busy) to an envelope."""


class Handset:
    """A feature phone around a card: power-up, the STK menu, the proactive loop, SMS-PP download."""

    def __init__(
        self,
        transport: Callable[[bytes], bytes],
        *,
        language: str = "zh",
        profile: TerminalProfile = WALLET_PROFILE,
        sms_out: Callable[[bytes], None] | None = None,
        user: User | None = None,
        clock: Callable[[], datetime] | None = None,
        on_display: Callable[[str], None] | None = None,
    ) -> None:
        self._transport = transport
        self.language = language
        self.profile = profile
        self.user: User = user if user is not None else ScriptedUser()
        self._sms_out = sms_out
        self._clock = clock
        self._on_display = on_display
        # Every DISPLAY TEXT, oldest first.
        self.screen: list[str] = []
        # Every SMS-SUBMIT TPDU the card sent (also handed to sms_out).
        self.sent: list[bytes] = []
        # Responses to SMS-PP downloads delivered after the session that held them up.
        self.deferred_responses: list[bytes] = []
        self.events: tuple[int, ...] = ()
        self._menu: SetUpMenu | None = None
        self._in_session = False
        self._deferred: list[tuple[bytes, Address | None]] = []

    def __repr__(self) -> str:
        return f"Handset(language={self.language!r}, menu_items={len(self.menu())}, screen={len(self.screen)})"

    # -- the user's view --

    def menu(self) -> tuple[Item, ...]:
        """The items of the card's current SET UP MENU (none before it sent one, or after it removed it)."""
        return () if self._menu is None else self._menu.items

    @property
    def menu_title(self) -> str | None:
        return None if self._menu is None else self._menu.title

    def power_up(self, *, select_usim: bool = True) -> None:
        """What a phone does after the ATR: select the USIM (as phones do), TERMINAL PROFILE, then the proactive loop."""
        if select_usim:
            self._exchange(_SELECT_USIM)
        self._run(bytes([_CLA_CAT, _INS_TERMINAL_PROFILE, 0, 0, len(self.profile.data)]) + self.profile.data)

    def select(self, item: int | str) -> None:
        """Choose a menu item by identifier or exact text: ENVELOPE MENU SELECTION, then the card's session."""
        wanted = next((i for i in self.menu() if item in (i.identifier, i.text)), None)
        if wanted is None:
            raise HandsetError(f"the card's menu has no item {item!r}")
        self._envelope(MenuSelection(wanted.identifier).to_bytes())

    def deliver_sms_pp(self, tpdu: bytes, smsc: Address | None = None) -> bytes | None:
        """An SMS-DELIVER for the card (TP-PID 7F): ENVELOPE SMS-PP DOWNLOAD; the response data for the network.

        None when the card is busy with the session this call interrupted: the
        download then happens when that session ends (see :attr:`deferred_responses`).
        """
        envelope = SmsPpDownload(tpdu, smsc).to_bytes()
        if self._in_session:
            response = self._exchange(self._envelope_apdu(envelope))
            if response.sw == SW_BUSY:
                if len(self._deferred) >= DEFERRED_SMS_MAX:
                    raise CardBusyError(f"more than {DEFERRED_SMS_MAX} SMS-PP downloads wait for the card")
                self._deferred.append((tpdu, smsc))
                return None
            return self._finish(response)
        return self._envelope(envelope)

    # -- APDU level --

    def _exchange(self, capdu: bytes) -> ResponseApdu:
        """One command, following 61XX (GET RESPONSE) and 6CXX (resend with Le = XX)."""
        rapdu = self._transport(capdu)
        data = bytearray()
        for _ in range(GET_RESPONSE_CHAIN_MAX):
            if len(rapdu) < 2:
                raise HandsetError(f"the card answered {len(rapdu)} bytes, not an R-APDU")
            sw1, sw2 = rapdu[-2], rapdu[-1]
            if sw1 == 0x6C:
                rapdu = self._transport(_with_le(capdu, sw2))
                continue
            data += rapdu[:-2]
            if sw1 not in (0x61, 0x9F):
                return ResponseApdu(bytes(data), sw1 << 8 | sw2)
            rapdu = self._transport(bytes([capdu[0] & 0x03, _INS_GET_RESPONSE, 0, 0, sw2]))
        raise HandsetError(f"more than {GET_RESPONSE_CHAIN_MAX} GET RESPONSE or resends in one exchange")

    def _envelope_apdu(self, envelope: bytes) -> bytes:
        return bytes([_CLA_CAT, _INS_ENVELOPE, 0, 0, len(envelope)]) + envelope

    def _envelope(self, envelope: bytes) -> bytes:
        for _ in range(ENVELOPE_RETRIES_MAX + 1):
            response = self._exchange(self._envelope_apdu(envelope))
            if response.sw != SW_BUSY:
                return self._finish(response)
            # The card is in a session this handset did not see through: let it finish, then try again.
            self._run(bytes([_CLA_CAT, _INS_STATUS, 0, 0x0C]))
        raise CardBusyError(f"the card answered 9300 to an envelope {ENVELOPE_RETRIES_MAX + 1} times")

    def _finish(self, response: ResponseApdu) -> bytes:
        """Run the session a response announces (91XX); the response data; CardStatusError for an error status."""
        if response.sw != SW_OK and response.sw1 != 0x91:
            raise CardStatusError(response.sw)
        self._loop(response.sw)
        return response.data

    def _run(self, capdu: bytes) -> bytes:
        return self._finish(self._exchange(capdu))

    def _loop(self, sw: int) -> None:
        """FETCH and answer while the card has proactive commands; then deliver the SMS that had to wait."""
        if sw >> 8 != 0x91:
            return
        outer = not self._in_session
        self._in_session = True
        try:
            for _ in range(PROACTIVE_COMMANDS_PER_SESSION_MAX):
                fetched = self._exchange(bytes([_CLA_CAT, _INS_FETCH, 0, 0, sw & 0xFF]))
                if fetched.sw != SW_OK:
                    raise CardStatusError(fetched.sw)
                answer = self._act(fetched.data)
                response = self._exchange(bytes([_CLA_CAT, _INS_TERMINAL_RESPONSE, 0, 0, len(answer)]) + answer)
                if response.sw != SW_OK and response.sw1 != 0x91:
                    raise CardStatusError(response.sw)
                sw = response.sw
                if sw >> 8 != 0x91:
                    break
            else:
                raise HandsetError(f"more than {PROACTIVE_COMMANDS_PER_SESSION_MAX} proactive commands in one session")
        finally:
            if outer:
                self._in_session = False
        if outer:
            waiting, self._deferred = self._deferred, []
            for tpdu, smsc in waiting:
                response_data = self.deliver_sms_pp(tpdu, smsc)
                if response_data is not None:
                    self.deferred_responses.append(response_data)

    # -- the terminal's side of each proactive command --

    def _act(self, data: bytes) -> bytes:
        try:
            command = parse_proactive_command(data)
        except CodecError:
            try:
                details = peek_command_details(data)
            except CodecError as exc:
                raise HandsetError("the card sent a proactive command without command details") from exc
            return TerminalResponse.answer(details, GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD).to_bytes()
        if any(c.comprehension_required for c in command.extra) and not isinstance(command, UnknownProactiveCommand):
            return TerminalResponse.answer(command.details, GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD).to_bytes()
        return self._answer(command).to_bytes()

    def _answer(self, command: ProactiveCommand) -> TerminalResponse:
        details = command.details
        if isinstance(command, SetUpMenu):
            self._menu = None if command.removes_menu else command
        elif isinstance(command, DisplayText):
            self._show(command.text.text or "")
        elif isinstance(command, GetInput | GetInkey | SelectItem):
            return self._ask(command)
        elif isinstance(command, SendShortMessage):
            self.sent.append(command.tpdu)
            if self._sms_out is not None:
                self._sms_out(command.tpdu)
        elif isinstance(command, ProvideLocalInformation):
            return self._local_information(details)
        elif isinstance(command, PollInterval):
            return TerminalResponse.answer(details, duration=command.duration)
        elif isinstance(command, SetUpEventList):
            self.events = command.events
        elif isinstance(command, UnknownProactiveCommand):
            return TerminalResponse.answer(details, GeneralResult.COMMAND_TYPE_NOT_UNDERSTOOD)
        # PLAY TONE, MORE TIME, POLLING OFF, REFRESH: nothing to show, done.
        return TerminalResponse.answer(details)

    def _show(self, text: str) -> None:
        self.screen.append(text)
        if self._on_display is not None:
            self._on_display(text)

    def _ask(self, command: GetInput | GetInkey | SelectItem) -> TerminalResponse:
        details = command.details
        if isinstance(command, SelectItem):
            chosen = self.user.select_item(command)
            if chosen is None:
                return TerminalResponse.answer(details, GeneralResult.PROACTIVE_SESSION_TERMINATED_BY_USER)
            return TerminalResponse.answer(details, item_identifier=chosen)
        ucs2: bool
        packed: bool
        if isinstance(command, GetInput):
            text = self.user.get_input(command)
            ucs2, packed = bool(command.qualifier & GetInputQualifier.UCS2), bool(command.qualifier & GetInputQualifier.PACKED)
        else:
            text = self.user.get_inkey(command)
            ucs2, packed = bool(command.qualifier & GetInkeyQualifier.UCS2), False
            if text is not None and command.qualifier & GetInkeyQualifier.YES_NO:
                return TerminalResponse.answer(details, text=TextString.yes_no(text.lower() in ("y", "yes", "1")))
        if text is None:
            return TerminalResponse.answer(details, GeneralResult.PROACTIVE_SESSION_TERMINATED_BY_USER)
        dcs = Dcs.UCS2 if ucs2 else Dcs.GSM7_PACKED if packed else Dcs.GSM_8BIT
        try:
            answer = TextString(text, dcs)
        except CodecError:
            answer = TextString(text, Dcs.UCS2)
        return TerminalResponse.answer(details, text=answer)

    def _local_information(self, details: CommandDetails) -> TerminalResponse:
        if details.qualifier == LocalInformationType.LANGUAGE_SETTING:
            return TerminalResponse.answer(details, language=self.language)
        if details.qualifier == LocalInformationType.DATE_TIME_AND_TIME_ZONE and self._clock is not None:
            stamp = Ctlv(Tag.DATE_TIME_AND_TIME_ZONE, encode_timestamp(self._clock()), False)
            return dataclasses.replace(TerminalResponse.answer(details), extra=(stamp,))
        return TerminalResponse.answer(details, GeneralResult.BEYOND_TERMINAL_CAPABILITIES)


def _with_le(capdu: bytes, le: int) -> bytes:
    """``capdu`` (short form) with its Le replaced by ``le`` (TS 102 221 §7.3.1.1.4: the 6CXX resend)."""
    if len(capdu) == 4:
        return capdu + bytes((le,))
    if len(capdu) == 5:
        return capdu[:4] + bytes((le,))
    lc = capdu[4]
    return capdu[: 5 + lc] + bytes((le,))
