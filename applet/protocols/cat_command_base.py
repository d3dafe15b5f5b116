"""The common part of every proactive command: ETSI TS 102 223 §6.6 (Command details, Device identities), §9.2 (tag D0).

:class:`ProactiveCommandBase` holds what every command has and writes the
``D0`` object; the helpers here build and read the optional data objects the
command tables share (alpha identifier, icon identifier, duration …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.cat_enums import DeviceIdentity, Tag
from simwallet.applet.protocols.cat_tlv import (
    Address,
    CommandDetails,
    CtlvReader,
    DeviceIdentities,
    Duration,
    IconIdentifier,
    ItemIconIdentifierList,
    TextString,
)
from simwallet.applet.protocols.tlv import Ctlv, Tlv, encode_ctlvs

# TS 101 220 §7.2 Table 7.17: BER-TLV tag of a proactive command.
PROACTIVE_COMMAND_TAG = 0xD0
# TS 102 221 §7.4.2.2: FETCH fetches at most 256 bytes (91XX, XX = 00 meaning 256).
PROACTIVE_COMMAND_BYTES_MAX = 256


def obj(tag: Tag, value: bytes, cr: bool = True) -> Ctlv:
    return Ctlv(tag, value, cr)


def opt(tag: Tag, value: bytes | None, cr: bool = True) -> list[Ctlv]:
    return [] if value is None else [Ctlv(tag, value, cr)]


def flag(tag: Tag, present: bool, cr: bool = True) -> list[Ctlv]:
    return [Ctlv(tag, b"", cr)] if present else []


def alpha_value(text: str | None) -> bytes | None:
    return None if text is None else encode_alpha(text)


def take_alpha(r: CtlvReader) -> str | None:
    c = r.take(Tag.ALPHA_IDENTIFIER)
    return None if c is None else decode_alpha(c.value)


def take_icon(r: CtlvReader) -> IconIdentifier | None:
    c = r.take(Tag.ICON_IDENTIFIER)
    return None if c is None else IconIdentifier.from_value(c.value)


def take_duration(r: CtlvReader) -> Duration | None:
    c = r.take(Tag.DURATION)
    return None if c is None else Duration.from_value(c.value)


def take_raw(r: CtlvReader, tag: Tag) -> bytes | None:
    c = r.take(tag)
    return None if c is None else c.value


def value_of(obj: IconIdentifier | Duration | ItemIconIdentifierList | TextString | Address | None) -> bytes | None:
    return None if obj is None else obj.to_value()


@dataclass(frozen=True, kw_only=True)
class ProactiveCommandBase:
    """What every proactive command has: Command details, Device identities and unrecognised objects."""

    TYPE: ClassVar[int]
    DEFAULT_DESTINATION: ClassVar[int] = DeviceIdentity.TERMINAL

    number: int = 1
    qualifier: int = 0
    destination: int | None = None
    extra: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        # One spelling per command: the spec's own destination is always None, however it was given.
        if self.destination == self.DEFAULT_DESTINATION:
            object.__setattr__(self, "destination", None)
        # Validates every field: an object that exists can be put on the wire.
        self.to_bytes()

    @property
    def command_type(self) -> int:
        return self.TYPE

    @property
    def details(self) -> CommandDetails:
        return CommandDetails(self.number, self.TYPE, self.qualifier)

    @property
    def devices(self) -> DeviceIdentities:
        dest = self.DEFAULT_DESTINATION if self.destination is None else self.destination
        return DeviceIdentities(DeviceIdentity.UICC, dest)

    def _body(self) -> list[Ctlv]:
        return []

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {}

    def to_bytes(self) -> bytes:
        head = [obj(Tag.COMMAND_DETAILS, self.details.to_value()), obj(Tag.DEVICE_IDENTITIES, self.devices.to_value())]
        data = Tlv(PROACTIVE_COMMAND_TAG, encode_ctlvs([*head, *self._body(), *self.extra])).to_bytes()
        if len(data) > PROACTIVE_COMMAND_BYTES_MAX:
            raise CodecError(f"proactive command of {len(data)} bytes exceeds {PROACTIVE_COMMAND_BYTES_MAX}")
        return data
