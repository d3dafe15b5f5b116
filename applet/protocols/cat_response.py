"""TERMINAL RESPONSE: ETSI TS 102 223 §6.8 (structure), §8.12 (result), TS 102 221 §11.2.3 (the APDU).

Theory of operation. The handset answers every fetched proactive command with
a TERMINAL RESPONSE whose data field is a plain list of COMPREHENSION-TLV
objects (no BER-TLV wrapper): the Command details echoed from the command,
Device identities (terminal → UICC), the Result, then the objects the command
asks for — Duration (POLL INTERVAL), Text string (GET INKEY, GET INPUT), Item
identifier (SELECT ITEM), Language (PROVIDE LOCAL INFORMATION, language
setting). Other local information (IMEI, date and time …) travels in ``extra``
as raw data objects.

CR flags: set on Command details, Device identities, Result, Duration, Text
string and Item identifier; clear on Language, as in the conformance examples.
The parser accepts either flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.cat_enums import DeviceIdentity, GeneralResult, Tag
from simwallet.applet.protocols.cat_tlv import (
    CommandDetails,
    CtlvReader,
    DeviceIdentities,
    Duration,
    Language,
    Result,
    TextString,
    encode_bytes_list,
)
from simwallet.applet.protocols.tlv import Ctlv, encode_ctlvs, parse_ctlvs

# TS 102 221 §11.2.3: the data of TERMINAL RESPONSE is one short APDU's Lc.
TERMINAL_RESPONSE_BYTES_MAX = 255


# TS 102 223 §6.8: command details, device identities, result, duration, text string, item identifier, language.
@dataclass(frozen=True)
class TerminalResponse:
    """The answer to one proactive command; ``command`` is that command's Command details, echoed."""

    command: CommandDetails
    result: Result
    duration: Duration | None = None
    text: TextString | None = None
    item_identifier: int | None = None
    language: str | None = None
    source: int = DeviceIdentity.TERMINAL
    destination: int = DeviceIdentity.UICC
    extra: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        self.to_bytes()

    @classmethod
    def answer(
        cls,
        command: CommandDetails,
        general: int = GeneralResult.PERFORMED_SUCCESSFULLY,
        additional: bytes = b"",
        *,
        duration: Duration | None = None,
        text: TextString | None = None,
        item_identifier: int | None = None,
        language: str | None = None,
    ) -> TerminalResponse:
        """The usual response to ``command`` (pass a command's ``details``), terminal → UICC."""
        return cls(command, Result(general, additional), duration, text, item_identifier, language)

    @classmethod
    def from_bytes(cls, data: bytes) -> TerminalResponse:
        return parse_terminal_response(data)

    @property
    def devices(self) -> DeviceIdentities:
        return DeviceIdentities(self.source, self.destination)

    def to_bytes(self) -> bytes:
        objects = [
            Ctlv(Tag.COMMAND_DETAILS, self.command.to_value(), True),
            Ctlv(Tag.DEVICE_IDENTITIES, self.devices.to_value(), True),
            Ctlv(Tag.RESULT, self.result.to_value(), True),
        ]
        if self.duration is not None:
            objects.append(Ctlv(Tag.DURATION, self.duration.to_value(), True))
        if self.text is not None:
            objects.append(Ctlv(Tag.TEXT_STRING, self.text.to_value(), True))
        if self.item_identifier is not None:
            objects.append(Ctlv(Tag.ITEM_IDENTIFIER, encode_bytes_list((self.item_identifier,), "item identifier"), True))
        if self.language is not None:
            objects.append(Ctlv(Tag.LANGUAGE, Language(self.language).to_value(), False))
        data = encode_ctlvs([*objects, *self.extra])
        if len(data) > TERMINAL_RESPONSE_BYTES_MAX:
            raise CodecError(f"terminal response of {len(data)} bytes exceeds {TERMINAL_RESPONSE_BYTES_MAX}")
        return data


def parse_terminal_response(data: bytes) -> TerminalResponse:
    """The TERMINAL RESPONSE in ``data`` (the APDU's data field); CodecError if malformed."""
    if len(data) > TERMINAL_RESPONSE_BYTES_MAX:
        raise CodecError(f"terminal response of {len(data)} bytes exceeds {TERMINAL_RESPONSE_BYTES_MAX}")
    r = CtlvReader(parse_ctlvs(data))
    command = CommandDetails.from_value(r.require(Tag.COMMAND_DETAILS).value)
    devices = DeviceIdentities.from_value(r.require(Tag.DEVICE_IDENTITIES).value)
    result = Result.from_value(r.require(Tag.RESULT).value)
    duration = r.take(Tag.DURATION)
    text = r.take(Tag.TEXT_STRING)
    item = r.take(Tag.ITEM_IDENTIFIER)
    if item is not None and len(item.value) != 1:
        raise CodecError(f"Item identifier needs 1 byte, got {len(item.value)}")
    language = r.take(Tag.LANGUAGE)
    return TerminalResponse(
        command=command,
        result=result,
        duration=None if duration is None else Duration.from_value(duration.value),
        text=None if text is None else TextString.from_value(text.value),
        item_identifier=None if item is None else item.value[0],
        language=None if language is None else Language.from_value(language.value).code,
        source=devices.source,
        destination=devices.destination,
        extra=r.rest(),
    )
