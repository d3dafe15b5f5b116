"""GlobalPlatform GET DATA objects and the Security Domain's SELECT response.

Spec: GP Card Specification v2.3 §11.3 (GET DATA: P1-P2 is the tag,
§11.3.3.1 the objects: IIN ``42``, CIN ``45``, Card Data ``66``, Key
Information Template ``E0``, Sequence Counter ``C1``, Key Diversification
Data ``CF``), §11.3.3.1.1 / Table 11-28 (Key Information Data ``C0``, basic
format: key identifier, KVN, then key type and key length pairs), Annex H.2
(Card Recognition Data: OIDs under 1.2.840.114283), Appendix H / GP 2.1.1
§9.3 "CPLC" (Card Production Life Cycle data, tag ``9F7F``, 42 bytes),
§11.9.3.1 Table 11-73 (Security Domain FCI: ``6F`` > ``84``, ``A5`` >
``73``, ``9F65``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gp_common import GpIns, build_gp_command, check_aid, check_byte, parse_gp_command
from simwallet.applet.protocols.tlv import Tlv, find

# GP CS v2.3 Table 11-16 (key type coding): 88 = AES.
KEY_TYPE_AES: Final = 0x88
# GP CS v2.3 §11.3.3.1.1: the extended format starts its key type with FF.
_KEY_TYPE_EXTENDED: Final = 0xFF
# More components than an SCP03 key needs (one) would be a key type this card does not keep.
KEY_COMPONENTS_MAX: Final = 4
# A security domain with more keys than this is not one simwallet builds (8 key sets of three).
KEY_INFORMATION_MAX: Final = 24
# GP CS v2.3 §11.9.3.1: "Maximum length of data field in command message", short APDUs.
COMMAND_DATA_FIELD_MAX: Final = 255


class DataTag(enum.IntEnum):
    """GET DATA P1-P2 (GP CS v2.3 §11.3.3.1 Table 11-26, and CPLC)."""

    IIN = 0x0042
    CIN = 0x0045
    CARD_DATA = 0x0066
    KEY_INFORMATION = 0x00E0
    SEQUENCE_COUNTER = 0x00C1
    KEY_DIVERSIFICATION_DATA = 0x00CF
    CPLC = 0x9F7F


def get_data_command(tag: int, *, cla: int = 0x80) -> bytes:
    """The GET DATA C-APDU for ``tag`` (P1-P2 = tag, Le = 00)."""
    if not 0 <= tag <= 0xFFFF:
        raise CodecError(f"GET DATA tag {tag:#x} is not two bytes")
    return build_gp_command(GpIns.GET_DATA, tag >> 8, tag & 0xFF, cla=cla)


def parse_get_data_command(capdu: bytes) -> int:
    """The tag a GET DATA C-APDU asks for (GP class; ISO class 00 too, as GP CS v2.3 §11.3.1 allows)."""
    if capdu[:1] == b"\x00" and len(capdu) > 1:
        capdu = b"\x80" + capdu[1:]
    command = parse_gp_command(capdu, GpIns.GET_DATA)
    if command.data:
        raise CodecError("GET DATA carries no data field")
    return command.p1 << 8 | command.p2


# --- CPLC ------------------------------------------------------------------------------------------

CPLC_LENGTH: Final = 42


# GP CS v2.3 Appendix H (GP 2.1.1 §9.3, Visa GP "Card Production Life Cycle"): 18 fields
# of fixed width in this order; dates are YDDD BCD (year digit, day of the year).
@dataclass(frozen=True)
class Cplc:
    ic_fabricator: bytes = bytes(2)
    ic_type: bytes = bytes(2)
    operating_system_id: bytes = bytes(2)
    operating_system_release_date: bytes = bytes(2)
    operating_system_release_level: bytes = bytes(2)
    ic_fabrication_date: bytes = bytes(2)
    ic_serial_number: bytes = bytes(4)
    ic_batch_identifier: bytes = bytes(2)
    ic_module_fabricator: bytes = bytes(2)
    ic_module_packaging_date: bytes = bytes(2)
    icc_manufacturer: bytes = bytes(2)
    ic_embedding_date: bytes = bytes(2)
    ic_pre_personalizer: bytes = bytes(2)
    ic_pre_personalization_date: bytes = bytes(2)
    ic_pre_personalization_equipment_id: bytes = bytes(4)
    ic_personalizer: bytes = bytes(2)
    ic_personalization_date: bytes = bytes(2)
    ic_personalization_equipment_id: bytes = bytes(4)

    def __post_init__(self) -> None:
        for field, width in CPLC_FIELDS.items():
            value = getattr(self, field)
            if not isinstance(value, bytes) or len(value) != width:
                raise CodecError(f"CPLC field {field} must be {width} bytes")

    def to_bytes(self) -> bytes:
        return b"".join(getattr(self, field) for field in CPLC_FIELDS)

    @classmethod
    def from_bytes(cls, data: bytes) -> Cplc:
        """The 42-byte value (without tag and length)."""
        if len(data) != CPLC_LENGTH:
            raise CodecError(f"CPLC data is {CPLC_LENGTH} bytes, not {len(data)}")
        values: dict[str, bytes] = {}
        offset = 0
        for field, width in CPLC_FIELDS.items():
            values[field] = bytes(data[offset : offset + width])
            offset += width
        return cls(**values)

    def to_tlv(self) -> Tlv:
        return Tlv(DataTag.CPLC, self.to_bytes())


# Field name -> width in bytes, in wire order (the dataclass's own order).
CPLC_FIELDS: Final[Mapping[str, int]] = MappingProxyType(
    {field.name: len(field.default) for field in fields(Cplc) if isinstance(field.default, bytes)}
)


def parse_cplc(data: bytes) -> Cplc:
    """The GET DATA 9F7F response data: ``9F7F 2A`` and the 42 bytes."""
    tlv = Tlv.from_bytes(data)
    if tlv.tag != DataTag.CPLC:
        raise CodecError(f"CPLC is tag 9F7F, not {tlv.tag:X}")
    return Cplc.from_bytes(tlv.value)


def build_cplc(cplc: Cplc) -> bytes:
    return cplc.to_tlv().to_bytes()


# --- Key Information Template -------------------------------------------------------------------

TAG_KEY_INFORMATION_DATA: Final = 0xC0


# GP CS v2.3 §11.3.3.1.1 Table 11-28, basic format:
#   key identifier (1) | key version number (1) | (key type (1) | key length (1)) × n
@dataclass(frozen=True)
class KeyInformation:
    key_id: int
    kvn: int
    components: tuple[tuple[int, int], ...] = ((KEY_TYPE_AES, 16),)

    def __post_init__(self) -> None:
        check_byte(self.key_id, "key identifier")
        check_byte(self.kvn, "key version number")
        if not 1 <= len(self.components) <= KEY_COMPONENTS_MAX:
            raise CodecError(f"a key has 1..{KEY_COMPONENTS_MAX} components")
        for key_type, length in self.components:
            check_byte(key_type, "key type")
            check_byte(length, "key length")
            if key_type == _KEY_TYPE_EXTENDED:
                raise CodecError("key type FF belongs to the extended format, not modelled")

    def to_tlv(self) -> Tlv:
        value = bytes([self.key_id, self.kvn]) + b"".join(bytes(pair) for pair in self.components)
        return Tlv(TAG_KEY_INFORMATION_DATA, value)

    @classmethod
    def from_tlv(cls, tlv: Tlv) -> KeyInformation:
        value = tlv.value
        if tlv.tag != TAG_KEY_INFORMATION_DATA:
            raise CodecError(f"key information data is tag C0, not {tlv.tag:02X}")
        if len(value) < 4 or len(value) % 2:
            raise CodecError(f"basic key information data is 2 + 2n bytes, not {len(value)}")
        pairs = tuple((value[i], value[i + 1]) for i in range(2, len(value), 2))
        return cls(value[0], value[1], pairs)


def build_key_information(keys: tuple[KeyInformation, ...]) -> bytes:
    """The Key Information Template (``E0``) holding one ``C0`` per key."""
    if len(keys) > KEY_INFORMATION_MAX:
        raise CodecError(f"more than {KEY_INFORMATION_MAX} keys")
    return Tlv.nest(DataTag.KEY_INFORMATION, [key.to_tlv() for key in keys]).to_bytes()


def parse_key_information(data: bytes) -> tuple[KeyInformation, ...]:
    """The GET DATA 00E0 response data: ``E0`` with ``C0`` objects (basic format)."""
    tlv = Tlv.from_bytes(data)
    if tlv.tag != DataTag.KEY_INFORMATION:
        raise CodecError(f"key information template is tag E0, not {tlv.tag:02X}")
    keys = tuple(KeyInformation.from_tlv(child) for child in tlv.children())
    if len(keys) > KEY_INFORMATION_MAX:
        raise CodecError(f"more than {KEY_INFORMATION_MAX} keys")
    return keys


# --- Card Recognition Data ----------------------------------------------------------------------

# GP CS v2.3 Annex H.2: {globalPlatform 1} = 1.2.840.114283.1 and its siblings.
_GP_OID: Final = bytes.fromhex("2A864886FC6B")
OID_CARD_RECOGNITION_DATA: Final = _GP_OID + b"\x01"
_OID_CARD_MANAGEMENT: Final = _GP_OID + b"\x02"  # followed by the version digits
OID_CARD_IDENTIFICATION_SCHEME: Final = _GP_OID + b"\x03"
_OID_SECURE_CHANNEL: Final = _GP_OID + b"\x04"  # followed by SCP identifier and i
TAG_OID: Final = 0x06
TAG_CARD_MANAGEMENT: Final = 0x60
TAG_CARD_IDENTIFICATION: Final = 0x63
TAG_SECURE_CHANNEL: Final = 0x64
TAG_CARD_CONFIGURATION: Final = 0x65
TAG_CARD_CHIP: Final = 0x66
TAG_RECOGNITION: Final = 0x73
# A version like 2.3.1 has three digits; four leaves room for a fix level.
VERSION_DIGITS_MAX: Final = 4


def _oid_in(tlv: Tlv | None, prefix: bytes, what: str) -> bytes:
    if tlv is None:
        raise CodecError(f"card recognition data lacks the {what}")
    oid = find(tlv.children(), TAG_OID)
    if oid is None or not oid.value.startswith(prefix):
        raise CodecError(f"{what} is not an OID under {prefix.hex().upper()}")
    return oid.value[len(prefix) :]


@dataclass(frozen=True)
class CardRecognitionData:
    """Card Recognition Data / Security Domain Management Data (GP CS v2.3 Annex H.2, the ``73`` template).

    ``gp_version`` is the card management version (2, 3, 0 for GP 2.3);
    ``scp`` and ``scp_i`` the ISD's secure channel protocol and its ``i``.
    ``configuration`` and ``chip`` (tags 65, 66) are kept raw.
    """

    gp_version: tuple[int, ...] = (2, 3, 0)
    scp: int = 0x03
    scp_i: int = 0x70
    configuration: bytes | None = None
    chip: bytes | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.gp_version) <= VERSION_DIGITS_MAX:
            raise CodecError(f"GP version has 1..{VERSION_DIGITS_MAX} digits")
        for digit in self.gp_version:
            if not 0 <= digit <= 0x7F:
                raise CodecError("a GP version digit is one OID arc below 128")
        check_byte(self.scp, "SCP identifier")
        check_byte(self.scp_i, "SCP parameter i")

    def template(self) -> Tlv:
        """The ``73`` template."""

        def wrapped(tag: int, oid: bytes) -> Tlv:
            return Tlv.nest(tag, [Tlv(TAG_OID, oid)])

        objects = [
            Tlv(TAG_OID, OID_CARD_RECOGNITION_DATA),
            wrapped(TAG_CARD_MANAGEMENT, _OID_CARD_MANAGEMENT + bytes(self.gp_version)),
            wrapped(TAG_CARD_IDENTIFICATION, OID_CARD_IDENTIFICATION_SCHEME),
            wrapped(TAG_SECURE_CHANNEL, _OID_SECURE_CHANNEL + bytes([self.scp, self.scp_i])),
        ]
        if self.configuration is not None:
            objects.append(Tlv(TAG_CARD_CONFIGURATION, self.configuration))
        if self.chip is not None:
            objects.append(Tlv(TAG_CARD_CHIP, self.chip))
        return Tlv.nest(TAG_RECOGNITION, objects)

    def to_bytes(self) -> bytes:
        """The GET DATA 0066 response: ``66`` (Card Data) holding the ``73`` template."""
        return Tlv.nest(DataTag.CARD_DATA, [self.template()]).to_bytes()

    @classmethod
    def from_template(cls, template: Tlv) -> CardRecognitionData:
        if template.tag != TAG_RECOGNITION:
            raise CodecError(f"card recognition data is template 73, not {template.tag:02X}")
        children = template.children()
        oid = find(children, TAG_OID)
        if oid is not None and oid.value != OID_CARD_RECOGNITION_DATA:
            raise CodecError("the 73 template's OID is not {globalPlatform 1}")
        version = _oid_in(find(children, TAG_CARD_MANAGEMENT), _OID_CARD_MANAGEMENT, "card management type and version")
        scp = _oid_in(find(children, TAG_SECURE_CHANNEL), _OID_SECURE_CHANNEL, "secure channel protocol")
        if len(scp) != 2:
            raise CodecError("secure channel OID must end in the SCP identifier and i")
        configuration, chip = find(children, TAG_CARD_CONFIGURATION), find(children, TAG_CARD_CHIP)
        return cls(
            gp_version=tuple(version),
            scp=scp[0],
            scp_i=scp[1],
            configuration=None if configuration is None else configuration.value,
            chip=None if chip is None else chip.value,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CardRecognitionData:
        card_data = Tlv.from_bytes(data)
        if card_data.tag != DataTag.CARD_DATA:
            raise CodecError(f"card data is tag 66, not {card_data.tag:02X}")
        templates = card_data.children()
        if len(templates) != 1:
            raise CodecError("card data holds exactly one 73 template")
        return cls.from_template(templates[0])


# --- Security Domain FCI ---------------------------------------------------------------------------

TAG_FCI: Final = 0x6F
TAG_DF_NAME: Final = 0x84
TAG_PROPRIETARY: Final = 0xA5
TAG_MAX_COMMAND_DATA: Final = 0x9F65


@dataclass(frozen=True)
class SecurityDomainFci:
    """The SELECT response of a Security Domain (GP CS v2.3 §11.9.3.1 Table 11-73)."""

    aid: bytes
    management_data: CardRecognitionData
    max_command_data: int = COMMAND_DATA_FIELD_MAX

    def __post_init__(self) -> None:
        check_aid(self.aid, "security domain AID")
        check_byte(self.max_command_data, "maximum command data length")

    def to_bytes(self) -> bytes:
        proprietary = Tlv.nest(
            TAG_PROPRIETARY, [self.management_data.template(), Tlv(TAG_MAX_COMMAND_DATA, bytes([self.max_command_data]))]
        )
        return Tlv.nest(TAG_FCI, [Tlv(TAG_DF_NAME, self.aid), proprietary]).to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecurityDomainFci:
        fci = Tlv.from_bytes(data)
        if fci.tag != TAG_FCI:
            raise CodecError(f"FCI is template 6F, not {fci.tag:02X}")
        children = fci.children()
        name, proprietary = find(children, TAG_DF_NAME), find(children, TAG_PROPRIETARY)
        if name is None or proprietary is None:
            raise CodecError("security domain FCI needs 84 and A5")
        inner = proprietary.children()
        template, limit = find(inner, TAG_RECOGNITION), find(inner, TAG_MAX_COMMAND_DATA)
        if template is None or limit is None or len(limit.value) != 1:
            raise CodecError("security domain FCI proprietary data needs 73 and a one-byte 9F65")
        return cls(name.value, CardRecognitionData.from_template(template), limit.value[0])


def data_object(tag: DataTag, value: bytes) -> bytes:
    """A GET DATA response for a primitive object (IIN, CIN, sequence counter, KDD): tag, length, value."""
    return Tlv(tag, value).to_bytes()


def parse_data_object(tag: DataTag, data: bytes) -> bytes:
    """The value of a primitive GET DATA response, checking its tag."""
    tlv = Tlv.from_bytes(data)
    if tlv.tag != tag:
        raise CodecError(f"GET DATA answered tag {tlv.tag:X}, not {int(tag):X}")
    return tlv.value
