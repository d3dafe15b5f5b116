"""Proactive commands: ETSI TS 102 223 §6.6 (structures), §9.2 (tag D0); TS 101 220 §7.1.1 (CR flag); TS 31.111 §6.6.

Theory of operation. A proactive command is the BER-TLV object ``D0`` holding
COMPREHENSION-TLV data objects: Command details, Device identities (source
UICC), then the objects of the command in the order of its §6.6 table. Each
command the wallet needs is a frozen dataclass: build it, ``to_bytes()`` it,
and :func:`parse_proactive_command` gives the same object back. A command type
this module does not know parses into :class:`UnknownProactiveCommand` with its
data objects kept verbatim.

Every command carries ``number``, ``qualifier`` (the raw byte; the ``…Qualifier``
flag enumerations name its bits), ``destination`` (``None`` = the device the
spec names for the command) and ``extra``: data objects the parser did not
recognise, written back after the known ones (so a handset can answer
"command data not understood" when one of them has the CR flag set).

CR flags. The builder sets the CR flag on the objects the handset must
understand and clears it on the optional ones the conformance examples send
without it (Items next action indicator, Item identifier, Default text); the
parser accepts either flag on every object. Byte-exact reproduction therefore
holds for encodings that follow this choice, and ``parse(build(x)) == x``
holds for every command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.cat_command_base import (
    PROACTIVE_COMMAND_BYTES_MAX,
    PROACTIVE_COMMAND_TAG,
    ProactiveCommandBase,
    alpha_value,
    flag,
    obj,
    opt,
    take_alpha,
    take_duration,
    take_icon,
    take_raw,
    value_of,
)
from simwallet.applet.protocols.cat_enums import CommandType, DeviceIdentity, GetInputQualifier, Tag, Tone, known
from simwallet.applet.protocols.cat_menus import SelectItem, SetUpMenu
from simwallet.applet.protocols.cat_tlv import (
    Address,
    CommandDetails,
    CtlvReader,
    DeviceIdentities,
    Duration,
    FileList,
    IconIdentifier,
    ResponseLength,
    TextString,
    encode_bytes_list,
    known_events,
)
from simwallet.applet.protocols.tlv import Ctlv, Tlv, encode_ctlvs, parse_ctlvs


# TS 102 223 §6.6.1: DISPLAY TEXT — text string, icon identifier, immediate response, duration, text attribute.
@dataclass(frozen=True, kw_only=True)
class DisplayText(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.DISPLAY_TEXT
    DEFAULT_DESTINATION: ClassVar[int] = DeviceIdentity.DISPLAY

    text: TextString
    icon: IconIdentifier | None = None
    immediate_response: bool = False
    duration: Duration | None = None
    text_attribute: bytes | None = None

    def _body(self) -> list[Ctlv]:
        return [
            obj(Tag.TEXT_STRING, self.text.to_value()),
            *opt(Tag.ICON_IDENTIFIER, value_of(self.icon)),
            *flag(Tag.IMMEDIATE_RESPONSE, self.immediate_response),
            *opt(Tag.DURATION, value_of(self.duration)),
            *opt(Tag.TEXT_ATTRIBUTE, self.text_attribute),
        ]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {
            "text": TextString.from_value(r.require(Tag.TEXT_STRING).value),
            "icon": take_icon(r),
            "immediate_response": r.take(Tag.IMMEDIATE_RESPONSE) is not None,
            "duration": take_duration(r),
            "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
        }


# TS 102 223 §6.6.2: GET INKEY — text string, icon identifier, duration, text attribute.
@dataclass(frozen=True, kw_only=True)
class GetInkey(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.GET_INKEY

    text: TextString
    icon: IconIdentifier | None = None
    duration: Duration | None = None
    text_attribute: bytes | None = None

    def _body(self) -> list[Ctlv]:
        return [
            obj(Tag.TEXT_STRING, self.text.to_value()),
            *opt(Tag.ICON_IDENTIFIER, value_of(self.icon)),
            *opt(Tag.DURATION, value_of(self.duration)),
            *opt(Tag.TEXT_ATTRIBUTE, self.text_attribute),
        ]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {
            "text": TextString.from_value(r.require(Tag.TEXT_STRING).value),
            "icon": take_icon(r),
            "duration": take_duration(r),
            "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
        }


# TS 102 223 §6.6.3: GET INPUT — text string, response length, default text, icon identifier, text attribute, duration.
@dataclass(frozen=True, kw_only=True)
class GetInput(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.GET_INPUT

    text: TextString
    response_length: ResponseLength
    default_text: TextString | None = None
    icon: IconIdentifier | None = None
    text_attribute: bytes | None = None
    duration: Duration | None = None

    @property
    def hidden(self) -> bool:
        """Qualifier b3: the user input shall not be revealed (a PIN)."""
        return bool(self.qualifier & GetInputQualifier.HIDDEN)

    def _body(self) -> list[Ctlv]:
        return [
            obj(Tag.TEXT_STRING, self.text.to_value()),
            obj(Tag.RESPONSE_LENGTH, self.response_length.to_value()),
            *opt(Tag.DEFAULT_TEXT, value_of(self.default_text), cr=False),
            *opt(Tag.ICON_IDENTIFIER, value_of(self.icon)),
            *opt(Tag.TEXT_ATTRIBUTE, self.text_attribute),
            *opt(Tag.DURATION, value_of(self.duration)),
        ]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        default = r.take(Tag.DEFAULT_TEXT)
        return {
            "text": TextString.from_value(r.require(Tag.TEXT_STRING).value),
            "response_length": ResponseLength.from_value(r.require(Tag.RESPONSE_LENGTH).value),
            "default_text": None if default is None else TextString.from_value(default.value),
            "icon": take_icon(r),
            "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
            "duration": take_duration(r),
        }


# TS 102 223 §6.6.5: PLAY TONE — alpha identifier, tone, duration, icon identifier, text attribute.
@dataclass(frozen=True, kw_only=True)
class PlayTone(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.PLAY_TONE
    DEFAULT_DESTINATION: ClassVar[int] = DeviceIdentity.EARPIECE

    alpha: str | None = None
    tone: int | None = None
    duration: Duration | None = None
    icon: IconIdentifier | None = None
    text_attribute: bytes | None = None

    def _body(self) -> list[Ctlv]:
        return [
            *opt(Tag.ALPHA_IDENTIFIER, alpha_value(self.alpha)),
            *opt(Tag.TONE, None if self.tone is None else encode_bytes_list((self.tone,), "tone")),
            *opt(Tag.DURATION, value_of(self.duration)),
            *opt(Tag.ICON_IDENTIFIER, value_of(self.icon)),
            *opt(Tag.TEXT_ATTRIBUTE, self.text_attribute),
        ]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        tone = take_raw(r, Tag.TONE)
        if tone is not None and len(tone) != 1:
            raise CodecError(f"Tone needs 1 byte, got {len(tone)}")
        return {
            "alpha": take_alpha(r),
            "tone": None if tone is None else known(Tone, tone[0]),
            "duration": take_duration(r),
            "icon": take_icon(r),
            "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
        }


# TS 102 223 §6.6.9, TS 31.111 §6.6.9: SEND SHORT MESSAGE — alpha identifier, address (the SMSC),
# SMS TPDU (an SMS-SUBMIT, kept as bytes here), icon identifier, text attribute.
@dataclass(frozen=True, kw_only=True)
class SendShortMessage(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.SEND_SHORT_MESSAGE
    DEFAULT_DESTINATION: ClassVar[int] = DeviceIdentity.NETWORK

    tpdu: bytes
    alpha: str | None = None
    address: Address | None = None
    icon: IconIdentifier | None = None
    text_attribute: bytes | None = None

    def _body(self) -> list[Ctlv]:
        return [
            *opt(Tag.ALPHA_IDENTIFIER, alpha_value(self.alpha)),
            *opt(Tag.ADDRESS, value_of(self.address)),
            obj(Tag.SMS_TPDU, self.tpdu),
            *opt(Tag.ICON_IDENTIFIER, value_of(self.icon)),
            *opt(Tag.TEXT_ATTRIBUTE, self.text_attribute),
        ]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        address = r.take(Tag.ADDRESS)
        return {
            "alpha": take_alpha(r),
            "address": None if address is None else Address.from_value(address.value),
            "tpdu": r.require(Tag.SMS_TPDU).value,
            "icon": take_icon(r),
            "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
        }


# TS 102 223 §6.6.13: REFRESH — file list (qualifier 01, 02), AID; the qualifier is a RefreshMode.
@dataclass(frozen=True, kw_only=True)
class Refresh(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.REFRESH

    files: FileList | None = None
    aid: bytes | None = None

    def _body(self) -> list[Ctlv]:
        files = None if self.files is None else self.files.to_value()
        return [*opt(Tag.FILE_LIST, files), *opt(Tag.AID, self.aid)]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        files = r.take(Tag.FILE_LIST)
        return {"files": None if files is None else FileList.from_value(files.value), "aid": take_raw(r, Tag.AID)}


# TS 102 223 §6.6.4: MORE TIME — command details and device identities only.
@dataclass(frozen=True, kw_only=True)
class MoreTime(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.MORE_TIME


# TS 102 223 §6.6.6: POLL INTERVAL — duration.
@dataclass(frozen=True, kw_only=True)
class PollInterval(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.POLL_INTERVAL

    duration: Duration

    def _body(self) -> list[Ctlv]:
        return [obj(Tag.DURATION, self.duration.to_value())]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {"duration": Duration.from_value(r.require(Tag.DURATION).value)}


# TS 102 223 §6.6.14: POLLING OFF — command details and device identities only.
@dataclass(frozen=True, kw_only=True)
class PollingOff(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.POLLING_OFF


# TS 102 223 §6.6.16: SET UP EVENT LIST — event list (empty: remove the current list).
@dataclass(frozen=True, kw_only=True)
class SetUpEventList(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.SET_UP_EVENT_LIST

    events: tuple[int, ...]

    def _body(self) -> list[Ctlv]:
        return [obj(Tag.EVENT_LIST, encode_bytes_list(self.events, "event"))]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {"events": known_events(r.require(Tag.EVENT_LIST).value)}


# TS 102 223 §6.6.15: PROVIDE LOCAL INFORMATION — the qualifier (a LocalInformationType) says what.
@dataclass(frozen=True, kw_only=True)
class ProvideLocalInformation(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.PROVIDE_LOCAL_INFORMATION


# TS 102 223 §6.6: a command type this module does not model; its objects after the device identities, verbatim.
@dataclass(frozen=True, kw_only=True)
class UnknownProactiveCommand:
    type: int
    objects: tuple[Ctlv, ...] = ()
    number: int = 1
    qualifier: int = 0
    destination: int = DeviceIdentity.TERMINAL
    source: int = DeviceIdentity.UICC

    def __post_init__(self) -> None:
        self.to_bytes()

    @property
    def command_type(self) -> int:
        return self.type

    @property
    def details(self) -> CommandDetails:
        return CommandDetails(self.number, self.type, self.qualifier)

    @property
    def devices(self) -> DeviceIdentities:
        return DeviceIdentities(self.source, self.destination)

    @property
    def extra(self) -> tuple[Ctlv, ...]:
        return self.objects

    def to_bytes(self) -> bytes:
        head = [obj(Tag.COMMAND_DETAILS, self.details.to_value()), obj(Tag.DEVICE_IDENTITIES, self.devices.to_value())]
        data = Tlv(PROACTIVE_COMMAND_TAG, encode_ctlvs([*head, *self.objects])).to_bytes()
        if len(data) > PROACTIVE_COMMAND_BYTES_MAX:
            raise CodecError(f"proactive command of {len(data)} bytes exceeds {PROACTIVE_COMMAND_BYTES_MAX}")
        return data


ProactiveCommand = (
    DisplayText
    | GetInkey
    | GetInput
    | PlayTone
    | SetUpMenu
    | SelectItem
    | SendShortMessage
    | Refresh
    | MoreTime
    | PollInterval
    | PollingOff
    | SetUpEventList
    | ProvideLocalInformation
    | UnknownProactiveCommand
)

_COMMANDS: dict[int, type[ProactiveCommandBase]] = {
    cls.TYPE: cls
    for cls in (
        DisplayText,
        GetInkey,
        GetInput,
        PlayTone,
        SetUpMenu,
        SelectItem,
        SendShortMessage,
        Refresh,
        MoreTime,
        PollInterval,
        PollingOff,
        SetUpEventList,
        ProvideLocalInformation,
    )
}


def _split(data: bytes) -> tuple[CommandDetails, DeviceIdentities, CtlvReader]:
    if len(data) > PROACTIVE_COMMAND_BYTES_MAX:
        raise CodecError(f"proactive command of {len(data)} bytes exceeds {PROACTIVE_COMMAND_BYTES_MAX}")
    tlv = Tlv.from_bytes(data)
    if tlv.tag != PROACTIVE_COMMAND_TAG:
        raise CodecError(f"BER-TLV tag {tlv.tag:02X} is not a proactive command (D0)", 0)
    r = CtlvReader(parse_ctlvs(tlv.value))
    details = CommandDetails.from_value(r.require(Tag.COMMAND_DETAILS).value)
    devices = DeviceIdentities.from_value(r.require(Tag.DEVICE_IDENTITIES).value)
    return details, devices, r


def peek_command_details(data: bytes) -> CommandDetails:
    """Only the Command details of a proactive command: what a handset echoes when the rest does not parse."""
    return _split(data)[0]


def parse_proactive_command(data: bytes) -> ProactiveCommand:
    """The command in ``data`` (a whole ``D0`` object, as FETCH returns it); CodecError if malformed."""
    details, devices, r = _split(data)
    cls = _COMMANDS.get(details.type)
    if cls is None or devices.source != DeviceIdentity.UICC:
        return UnknownProactiveCommand(
            type=details.type,
            objects=r.rest(),
            number=details.number,
            qualifier=details.qualifier,
            destination=devices.destination,
            source=devices.source,
        )
    body = cls._parse_body(r)
    destination = None if devices.destination == cls.DEFAULT_DESTINATION else devices.destination
    command = cls(number=details.number, qualifier=details.qualifier, destination=destination, extra=r.rest(), **body)
    return cast(ProactiveCommand, command)
