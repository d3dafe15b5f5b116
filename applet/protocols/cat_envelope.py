"""ENVELOPE commands to the card: ETSI TS 102 223 §7 (structures), TS 101 220 §7.2 Table 7.17 (tags), TS 31.111 §7.1.1.

Theory of operation. An ENVELOPE's data field is one BER-TLV object whose tag
says what it carries and whose value is a list of COMPREHENSION-TLV objects:

* ``D1`` SMS-PP DOWNLOAD (TS 31.111 §7.1.1.2): Device identities network →
  UICC, Address (the SMSC, optional), SMS TPDU (an SMS-DELIVER, raw bytes here);
* ``D3`` MENU SELECTION (§7.3): Device identities keypad → UICC, Item
  identifier, Help request (optional, no value);
* ``D6`` EVENT DOWNLOAD (§7.5): Event list (exactly one event), Device
  identities, then the event's objects — the Language for language selection
  (§7.5.8); user activity (§7.5.5) and idle screen available (§7.5.6) carry
  none. Objects of other events stay in ``extra``.

Any other tag parses into :class:`UnknownEnvelope`. CR flags: set on all but
Language, as in the conformance examples; the parser accepts either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.cat_enums import DeviceIdentity, EventType, Tag, known
from simwallet.applet.protocols.cat_tlv import Address, CtlvReader, DeviceIdentities, Language, encode_bytes_list, known_events
from simwallet.applet.protocols.tlv import Ctlv, Tlv, encode_ctlvs, parse_ctlvs

# TS 102 221 §11.2.4: the data of ENVELOPE is one short APDU's Lc.
ENVELOPE_BYTES_MAX = 255


# TS 101 220 §7.2 Table 7.17: BER-TLV tags of the envelopes.
class EnvelopeTag(IntEnum):
    SMS_PP_DOWNLOAD = 0xD1
    CELL_BROADCAST_DOWNLOAD = 0xD2
    MENU_SELECTION = 0xD3
    CALL_CONTROL = 0xD4
    MO_SHORT_MESSAGE_CONTROL = 0xD5
    EVENT_DOWNLOAD = 0xD6
    TIMER_EXPIRATION = 0xD7


def _wrap(tag: int, objects: list[Ctlv]) -> bytes:
    data = Tlv(tag, encode_ctlvs(objects)).to_bytes()
    if len(data) > ENVELOPE_BYTES_MAX:
        raise CodecError(f"envelope of {len(data)} bytes exceeds {ENVELOPE_BYTES_MAX}")
    return data


def _devices(source: int) -> Ctlv:
    return Ctlv(Tag.DEVICE_IDENTITIES, DeviceIdentities(source, DeviceIdentity.UICC).to_value(), True)


def _read_source(r: CtlvReader) -> int:
    devices = DeviceIdentities.from_value(r.require(Tag.DEVICE_IDENTITIES).value)
    if devices.destination != DeviceIdentity.UICC:
        raise CodecError(f"envelope addressed to device {devices.destination:02X}, not the UICC (81)")
    return devices.source


# TS 102 223 §7.3: MENU SELECTION — device identities (keypad → UICC), item identifier, help request.
@dataclass(frozen=True)
class MenuSelection:
    item_identifier: int
    help_request: bool = False
    source: int = DeviceIdentity.KEYPAD
    extra: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        objects = [_devices(self.source), Ctlv(Tag.ITEM_IDENTIFIER, encode_bytes_list((self.item_identifier,), "item identifier"), True)]
        if self.help_request:
            objects.append(Ctlv(Tag.HELP_REQUEST, b"", True))
        return _wrap(EnvelopeTag.MENU_SELECTION, [*objects, *self.extra])

    @classmethod
    def _parse(cls, r: CtlvReader) -> MenuSelection:
        source = _read_source(r)
        item = r.require(Tag.ITEM_IDENTIFIER).value
        if len(item) != 1:
            raise CodecError(f"Item identifier needs 1 byte, got {len(item)}")
        help_request = r.take(Tag.HELP_REQUEST)
        if help_request is not None and help_request.value:
            raise CodecError("Help request carries no value")
        return cls(item[0], help_request is not None, source, r.rest())


# TS 31.111 §7.1.1.2: SMS-PP DOWNLOAD — device identities (network → UICC), address (SMSC), SMS TPDU (SMS-DELIVER).
@dataclass(frozen=True)
class SmsPpDownload:
    tpdu: bytes
    address: Address | None = None
    source: int = DeviceIdentity.NETWORK
    extra: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        objects = [_devices(self.source)]
        if self.address is not None:
            objects.append(Ctlv(Tag.ADDRESS, self.address.to_value(), True))
        objects.append(Ctlv(Tag.SMS_TPDU, self.tpdu, True))
        return _wrap(EnvelopeTag.SMS_PP_DOWNLOAD, [*objects, *self.extra])

    @classmethod
    def _parse(cls, r: CtlvReader) -> SmsPpDownload:
        source = _read_source(r)
        address = r.take(Tag.ADDRESS)
        tpdu = r.require(Tag.SMS_TPDU).value
        return cls(tpdu, None if address is None else Address.from_value(address.value), source, r.rest())


# TS 102 223 §7.5: EVENT DOWNLOAD — event list (one event), device identities, the event's objects.
@dataclass(frozen=True)
class EventDownload:
    event: int
    source: int = DeviceIdentity.TERMINAL
    language: str | None = None
    extra: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        self.to_bytes()

    # TS 102 223 §7.5.5: user activity, terminal → UICC.
    @classmethod
    def user_activity(cls) -> EventDownload:
        return cls(EventType.USER_ACTIVITY)

    # TS 102 223 §7.5.6: idle screen available, display → UICC.
    @classmethod
    def idle_screen_available(cls) -> EventDownload:
        return cls(EventType.IDLE_SCREEN_AVAILABLE, DeviceIdentity.DISPLAY)

    # TS 102 223 §7.5.8: language selection, terminal → UICC, with the new language.
    @classmethod
    def language_selection(cls, language: str) -> EventDownload:
        return cls(EventType.LANGUAGE_SELECTION, language=language)

    def to_bytes(self) -> bytes:
        objects = [Ctlv(Tag.EVENT_LIST, encode_bytes_list((self.event,), "event"), True), _devices(self.source)]
        if self.language is not None:
            objects.append(Ctlv(Tag.LANGUAGE, Language(self.language).to_value(), False))
        return _wrap(EnvelopeTag.EVENT_DOWNLOAD, [*objects, *self.extra])

    @classmethod
    def _parse(cls, r: CtlvReader) -> EventDownload:
        events = known_events(r.require(Tag.EVENT_LIST).value)
        if len(events) != 1:
            raise CodecError(f"an event download carries exactly one event, not {len(events)}")
        source = _read_source(r)
        language = r.take(Tag.LANGUAGE)
        code = None if language is None else Language.from_value(language.value).code
        return cls(events[0], source, code, r.rest())


# TS 101 220 §7.2 Table 7.17: an envelope this module does not model, its objects kept verbatim.
@dataclass(frozen=True)
class UnknownEnvelope:
    tag: int
    objects: tuple[Ctlv, ...] = ()

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        return _wrap(self.tag, list(self.objects))


Envelope = MenuSelection | SmsPpDownload | EventDownload | UnknownEnvelope


def parse_envelope(data: bytes) -> Envelope:
    """The ENVELOPE in ``data`` (the APDU's data field: one BER-TLV object); CodecError if malformed."""
    if len(data) > ENVELOPE_BYTES_MAX:
        raise CodecError(f"envelope of {len(data)} bytes exceeds {ENVELOPE_BYTES_MAX}")
    tlv = Tlv.from_bytes(data)
    objects = parse_ctlvs(tlv.value)
    tag = known(EnvelopeTag, tlv.tag)
    r = CtlvReader(objects)
    if tag == EnvelopeTag.MENU_SELECTION:
        return MenuSelection._parse(r)
    if tag == EnvelopeTag.SMS_PP_DOWNLOAD:
        return SmsPpDownload._parse(r)
    if tag == EnvelopeTag.EVENT_DOWNLOAD:
        return EventDownload._parse(r)
    return UnknownEnvelope(tag, tuple(objects))
