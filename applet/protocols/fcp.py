"""File control parameters: the FCP template (tag 62) of ETSI TS 102 221 §11.1.1.3, returned by SELECT.

Theory of operation. :class:`Fcp` holds the data objects that §11.1.1.3
lists for an MF, DF or ADF and for an EF as typed fields and writes them in
the clause's order: 82, 83, 84, A5, 8A, 8B/8C/AB, C6, 80, 81, 88. Parsing accepts
them in any order (cards differ) but refuses duplicates; objects the tables do
not name are kept in ``extra`` and written last, so nothing a card sends is
lost. The mandatory objects are enforced: file descriptor, life cycle status
and security attributes for every file; file identifier and file size for an
EF; the PIN status template for a DF. The file identifier of an ADF is
optional (ADFs are selected by AID).

Sub-structures with their own codecs: :class:`FileDescriptor` (82,
§11.1.1.4.3), :class:`ArrReference` (8B, §11.1.1.4.7.3) and
:class:`PinStatusTemplate` (C6, §9.5.2). The compact (8C) and expanded (AB)
security attributes and the proprietary information (A5) stay raw bytes; parse
A5 with :func:`simwallet.applet.protocols.tlv.parse_tlvs` when needed.

File sizes (80, 81) are two or more bytes (§11.1.1.4.1/2); longer encodings
with leading zeros are accepted and re-encoded in the shortest form of at
least two bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.tlv import Tlv, parse_tlvs

FCP_TAG = 0x62
# TS 102 221 §11.1.1.4.3: the data coding byte of a UICC is always '21'.
DATA_CODING_BYTE = 0x21
# ISO/IEC 7816-4 §5.3.1.3: a DF name (AID) has at most 16 bytes.
DF_NAME_LENGTH_MAX = 16
# TS 102 221 §11.1.1.4.1: file size in two or more bytes; four bytes (4 GiB)
# exceed any UICC, so longer is a corrupt FCP.
FILE_SIZE_BYTES_MIN = 2
FILE_SIZE_BYTES_MAX = 4
# ISO/IEC 7816-4 §5.3.1.2: SFI 1..30 ('00' is the current EF, '1F' is RFU).
SFI_MIN = 1
SFI_MAX = 30

# TS 102 221 §11.1.1.4.9: life cycle status integer.
LCSI_NO_INFORMATION = 0x00
LCSI_CREATION = 0x01
LCSI_INITIALISATION = 0x03
LCSI_OPERATIONAL_DEACTIVATED = 0x04
LCSI_OPERATIONAL_ACTIVATED = 0x05
LCSI_TERMINATED = 0x0C


class FileStructure(enum.Enum):
    """TS 102 221 §11.1.1.4.3: the kind of file, from the file descriptor byte."""

    DF = "df"  # MF, DF or ADF
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear_fixed"
    CYCLIC = "cyclic"
    BER_TLV = "ber_tlv"


class NoSfi(enum.Enum):
    """Tag 88 present and empty: the EF has no short file identifier (§11.1.1.4.8)."""

    NO_SFI = "no_sfi"


NO_SFI = NoSfi.NO_SFI

_SHAREABLE_BIT = 0x40
_INTERNAL_EF_BIT = 0x08
_DF_BITS = 0x38
_BER_TLV_BITS = 0x39
_EF_STRUCTURE_BITS = MappingProxyType({FileStructure.TRANSPARENT: 0x01, FileStructure.LINEAR_FIXED: 0x02, FileStructure.CYCLIC: 0x06})
_EF_STRUCTURES = MappingProxyType({bits: structure for structure, bits in _EF_STRUCTURE_BITS.items()})
_RECORD_STRUCTURES = frozenset({FileStructure.LINEAR_FIXED, FileStructure.CYCLIC})
_DESCRIPTOR_LENGTH = 2
_RECORD_DESCRIPTOR_LENGTH = 5


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise CodecError(f"{name} {value} outside {low}..{high}")


# TS 102 221 §11.1.1.4.3: file descriptor byte, data coding byte, then for
# record EFs the record length (2 bytes) and the number of records (1 byte).
@dataclass(frozen=True)
class FileDescriptor:
    structure: FileStructure
    shareable: bool = True
    internal: bool = False
    record_length: int | None = None
    record_count: int | None = None
    data_coding: int = DATA_CODING_BYTE

    def __post_init__(self) -> None:
        if self.internal and self.structure not in _EF_STRUCTURE_BITS:
            raise CodecError(f"a {self.structure.value} file cannot be an internal EF")
        records = self.structure in _RECORD_STRUCTURES
        if records != (self.record_length is not None) or records != (self.record_count is not None):
            raise CodecError("record length and count go with linear fixed and cyclic EFs only")
        if self.record_length is not None and self.record_count is not None:
            _check_range("record length", self.record_length, 0, 0xFFFF)
            _check_range("number of records", self.record_count, 0, 0xFF)
        _check_range("data coding byte", self.data_coding, 0, 0xFF)

    @property
    def descriptor_byte(self) -> int:
        shareable = _SHAREABLE_BIT if self.shareable else 0
        if self.structure is FileStructure.DF:
            return shareable | _DF_BITS
        if self.structure is FileStructure.BER_TLV:
            return shareable | _BER_TLV_BITS
        internal = _INTERNAL_EF_BIT if self.internal else 0
        return shareable | internal | _EF_STRUCTURE_BITS[self.structure]

    def to_bytes(self) -> bytes:
        """The value of tag 82."""
        out = bytes([self.descriptor_byte, self.data_coding])
        if self.record_length is not None and self.record_count is not None:
            out += self.record_length.to_bytes(2, "big") + bytes([self.record_count])
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> FileDescriptor:
        """Parse the value of tag 82."""
        if len(data) not in (_DESCRIPTOR_LENGTH, _RECORD_DESCRIPTOR_LENGTH):
            raise CodecError(f"file descriptor of {len(data)} bytes (2 or 5)")
        byte = data[0]
        if byte & 0x80:
            raise CodecError(f"file descriptor byte {byte:02X} has b8 set", 0)
        shareable, low = bool(byte & _SHAREABLE_BIT), byte & 0x3F
        internal = False
        if low == _DF_BITS:
            structure = FileStructure.DF
        elif low == _BER_TLV_BITS:
            structure = FileStructure.BER_TLV
        else:
            if low & ~_INTERNAL_EF_BIT not in _EF_STRUCTURES:
                raise CodecError(f"file descriptor byte {byte:02X} is RFU", 0)
            structure, internal = _EF_STRUCTURES[low & ~_INTERNAL_EF_BIT], bool(low & _INTERNAL_EF_BIT)
        records = structure in _RECORD_STRUCTURES
        if records != (len(data) == _RECORD_DESCRIPTOR_LENGTH):
            raise CodecError(f"file descriptor of {len(data)} bytes for a {structure.value} file")
        if not records:
            return cls(structure, shareable, internal, data_coding=data[1])
        return cls(structure, shareable, internal, int.from_bytes(data[2:4], "big"), data[4], data[1])


# TS 102 221 §11.1.1.4.7.3: security attributes referenced to expanded format
# (tag 8B): EF ARR file ID, then one record number, or pairs of SEID and record number.
@dataclass(frozen=True)
class ArrReference:
    fid: int
    record: int | None = None
    se_records: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        _check_range("EF ARR file ID", self.fid, 0, 0xFFFF)
        if (self.record is None) == (not self.se_records):
            raise CodecError("an ARR reference has either one record number or (SEID, record) pairs")
        for value in (self.record or 0, *(v for pair in self.se_records for v in pair)):
            _check_range("ARR SEID or record number", value, 0, 0xFF)

    def to_bytes(self) -> bytes:
        """The value of tag 8B."""
        tail = bytes([self.record]) if self.record is not None else bytes(v for pair in self.se_records for v in pair)
        return self.fid.to_bytes(2, "big") + tail

    @classmethod
    def from_bytes(cls, data: bytes) -> ArrReference:
        fid = int.from_bytes(data[:2], "big")
        if len(data) == 3:
            return cls(fid, data[2])
        if len(data) < 4 or len(data) % 2:
            raise CodecError(f"ARR reference of {len(data)} bytes (3, or 2 + 2n)")
        return cls(fid, se_records=tuple((data[i], data[i + 1]) for i in range(2, len(data), 2)))


# ISO/IEC 7816-4 §5.4.3.1, TS 102 221 §11.1.1.4.7.1: compact format (tag 8C), kept raw.
@dataclass(frozen=True)
class CompactSecurity:
    raw: bytes


# ISO/IEC 7816-4 §5.4.3.2, TS 102 221 §11.1.1.4.7.2: expanded format (tag AB), kept raw.
@dataclass(frozen=True)
class ExpandedSecurity:
    raw: bytes


SecurityAttributes = ArrReference | CompactSecurity | ExpandedSecurity
# TS 102 221 §11.1.1.4.7: the three ways to give security attributes; an FCP has one.
_SECURITY_TAGS = (0x8B, 0x8C, 0xAB)


def _security_tlv(security: SecurityAttributes) -> Tlv:
    if isinstance(security, ArrReference):
        return Tlv(0x8B, security.to_bytes())
    return Tlv(0x8C if isinstance(security, CompactSecurity) else 0xAB, security.raw)


_PS_DO_TAG = 0x90
_USAGE_QUALIFIER_TAG = 0x95
_KEY_REFERENCE_TAG = 0x83


# TS 102 221 §9.5.2: one key reference DO (83) of the PIN status template, its
# enabled bit in PS_DO, and the usage qualifier DO (95) that may precede it.
@dataclass(frozen=True)
class PinStatus:
    key_reference: int
    enabled: bool
    usage_qualifier: int | None = None

    def __post_init__(self) -> None:
        _check_range("key reference", self.key_reference, 0, 0xFF)
        if self.usage_qualifier is not None:
            _check_range("usage qualifier", self.usage_qualifier, 0, 0xFF)


# TS 102 221 §9.5.2: PIN status template DO (C6) = PS_DO (90, one bit per key
# reference, b8 of the first byte for the first one), then [95] 83 per PIN.
@dataclass(frozen=True)
class PinStatusTemplate:
    pins: tuple[PinStatus, ...]

    def to_bytes(self) -> bytes:
        """The value of tag C6."""
        ps_do = bytearray(max(1, (len(self.pins) + 7) // 8))
        out = []
        for i, pin in enumerate(self.pins):
            if pin.enabled:
                ps_do[i // 8] |= 0x80 >> (i % 8)
            if pin.usage_qualifier is not None:
                out.append(Tlv(_USAGE_QUALIFIER_TAG, bytes([pin.usage_qualifier])))
            out.append(Tlv(_KEY_REFERENCE_TAG, bytes([pin.key_reference])))
        return b"".join(t.to_bytes() for t in [Tlv(_PS_DO_TAG, bytes(ps_do)), *out])

    @classmethod
    def from_bytes(cls, data: bytes) -> PinStatusTemplate:
        tlvs = parse_tlvs(data)
        if not tlvs or tlvs[0].tag != _PS_DO_TAG or not tlvs[0].value:
            raise CodecError("PIN status template must start with a PS_DO (90)")
        refs: list[tuple[int, int | None]] = []
        qualifier: int | None = None
        for tlv in tlvs[1:]:
            if tlv.tag not in (_USAGE_QUALIFIER_TAG, _KEY_REFERENCE_TAG) or len(tlv.value) != 1:
                raise CodecError(f"PIN status template: unexpected {tlv.tag:02X} of {len(tlv.value)} bytes")
            if tlv.tag == _KEY_REFERENCE_TAG:
                refs.append((tlv.value[0], qualifier))
                qualifier = None
            elif qualifier is not None:
                raise CodecError("PIN status template: two usage qualifiers in a row")
            else:
                qualifier = tlv.value[0]
        if qualifier is not None:
            raise CodecError("PIN status template: usage qualifier without a key reference")
        ps_do = int.from_bytes(tlvs[0].value, "big")
        width = len(tlvs[0].value) * 8
        if len(tlvs[0].value) != max(1, (len(refs) + 7) // 8) or ps_do & ((1 << (width - len(refs))) - 1):
            raise CodecError(f"PS_DO of {len(tlvs[0].value)} bytes does not match {len(refs)} key references")
        return cls(tuple(PinStatus(ref, bool(ps_do >> (width - 1 - i) & 1), q) for i, (ref, q) in enumerate(refs)))


_KNOWN_TAGS = frozenset({0x82, 0x83, 0x84, 0xA5, 0x8A, *_SECURITY_TAGS, 0xC6, 0x80, 0x81, 0x88})
ArrSpec = tuple[int, int] | SecurityAttributes


def _size_bytes(size: int) -> bytes:
    return size.to_bytes(max(FILE_SIZE_BYTES_MIN, (size.bit_length() + 7) // 8), "big")


def _size(tlv: Tlv) -> int:
    if not FILE_SIZE_BYTES_MIN <= len(tlv.value) <= FILE_SIZE_BYTES_MAX:
        raise CodecError(f"file size {tlv.tag:02X} of {len(tlv.value)} bytes")
    return int.from_bytes(tlv.value, "big")


def _one_byte(tlv: Tlv, name: str) -> int:
    if len(tlv.value) != 1:
        raise CodecError(f"{name} ({tlv.tag:02X}) of {len(tlv.value)} bytes")
    return tlv.value[0]


# TS 102 221 §11.1.1.3: the FCP template, tag 62, for an MF, DF, ADF or EF.
@dataclass(frozen=True, kw_only=True)
class Fcp:
    descriptor: FileDescriptor  # 82
    fid: int | None = None  # 83
    df_name: bytes | None = None  # 84
    proprietary: bytes | None = None  # A5 content
    lcsi: int = LCSI_OPERATIONAL_ACTIVATED  # 8A
    security: SecurityAttributes  # 8B / 8C / AB
    pin_status: PinStatusTemplate | None = None  # C6
    file_size: int | None = None  # 80
    total_file_size: int | None = None  # 81
    sfi: int | NoSfi | None = None  # 88; None: absent, the SFI is the FID's low five bits
    extra: tuple[Tlv, ...] = field(default=())

    def __post_init__(self) -> None:
        df = self.is_df
        if self.fid is not None:
            _check_range("file identifier", self.fid, 0, 0xFFFF)
        elif not df:
            raise CodecError("an EF needs a file identifier (83)")
        if self.df_name is not None and (not df or not 1 <= len(self.df_name) <= DF_NAME_LENGTH_MAX):
            raise CodecError(f"DF name (84) must be 1..{DF_NAME_LENGTH_MAX} bytes and belong to a DF")
        _check_range("life cycle status integer", self.lcsi, 0, 0xFF)
        if df != (self.pin_status is not None):
            raise CodecError("a DF needs a PIN status template (C6), an EF has none")
        if df != (self.file_size is None):
            raise CodecError("an EF needs a file size (80), a DF has none")
        for size in (self.file_size, self.total_file_size):
            if size is not None:
                _check_range("file size", size, 0, (1 << (8 * FILE_SIZE_BYTES_MAX)) - 1)
        if isinstance(self.sfi, int):
            _check_range("SFI", self.sfi, SFI_MIN, SFI_MAX)
        if df and self.sfi is not None:
            raise CodecError("a DF has no short file identifier (88)")
        if any(t.tag in _KNOWN_TAGS for t in self.extra):
            raise CodecError("extra objects must not repeat the FCP's own tags")

    @property
    def is_df(self) -> bool:
        return self.descriptor.structure is FileStructure.DF

    @property
    def structure(self) -> FileStructure:
        return self.descriptor.structure

    @property
    def effective_sfi(self) -> int | None:
        """The SFI the EF answers to (§11.1.1.4.8), or None."""
        if self.is_df or self.sfi is NO_SFI:
            return None
        if isinstance(self.sfi, int):
            return self.sfi
        implied = (self.fid or 0) & 0x1F
        return implied if SFI_MIN <= implied <= SFI_MAX else None

    def to_tlvs(self) -> list[Tlv]:
        """The objects inside tag 62, in the order of §11.1.1.3."""
        out = [Tlv(0x82, self.descriptor.to_bytes())]
        if self.fid is not None:
            out.append(Tlv(0x83, self.fid.to_bytes(2, "big")))
        if self.df_name is not None:
            out.append(Tlv(0x84, self.df_name))
        if self.proprietary is not None:
            out.append(Tlv(0xA5, self.proprietary))
        out += [Tlv(0x8A, bytes([self.lcsi])), _security_tlv(self.security)]
        if self.pin_status is not None:
            out.append(Tlv(0xC6, self.pin_status.to_bytes()))
        if self.file_size is not None:
            out.append(Tlv(0x80, _size_bytes(self.file_size)))
        if self.total_file_size is not None:
            out.append(Tlv(0x81, _size_bytes(self.total_file_size)))
        if self.sfi is NO_SFI:
            out.append(Tlv(0x88, b""))
        elif isinstance(self.sfi, int):
            out.append(Tlv(0x88, bytes([self.sfi << 3])))
        return out + list(self.extra)

    def to_bytes(self) -> bytes:
        return Tlv.nest(FCP_TAG, self.to_tlvs()).to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Fcp:
        """Parse a whole FCP template (62 L …), as in a SELECT response's data."""
        outer = Tlv.from_bytes(data)
        if outer.tag != FCP_TAG:
            raise CodecError(f"FCP template tag must be 62, not {outer.tag:02X}", 0)
        known: dict[int, Tlv] = {}
        extra: list[Tlv] = []
        for tlv in outer.children():
            if tlv.tag not in _KNOWN_TAGS:
                extra.append(tlv)
            elif tlv.tag in known:
                raise CodecError(f"FCP has tag {tlv.tag:02X} twice")
            else:
                known[tlv.tag] = tlv
        security = [known[t] for t in _SECURITY_TAGS if t in known]
        if 0x82 not in known or 0x8A not in known or len(security) != 1:
            raise CodecError("FCP needs a file descriptor (82), a LCSI (8A) and one security attribute")
        fid = known.get(0x83)
        if fid is not None and len(fid.value) != 2:
            raise CodecError(f"file identifier (83) of {len(fid.value)} bytes")
        return cls(
            descriptor=FileDescriptor.from_bytes(known[0x82].value),
            fid=None if fid is None else int.from_bytes(fid.value, "big"),
            df_name=known[0x84].value if 0x84 in known else None,
            proprietary=known[0xA5].value if 0xA5 in known else None,
            lcsi=_one_byte(known[0x8A], "life cycle status integer"),
            security=_parse_security(security[0]),
            pin_status=PinStatusTemplate.from_bytes(known[0xC6].value) if 0xC6 in known else None,
            file_size=_size(known[0x80]) if 0x80 in known else None,
            total_file_size=_size(known[0x81]) if 0x81 in known else None,
            sfi=_parse_sfi(known[0x88]) if 0x88 in known else None,
            extra=tuple(extra),
        )

    @classmethod
    def df(
        cls, fid: int | None, *, pin_status: PinStatusTemplate, arr: ArrSpec, aid: bytes | None = None,
        lcsi: int = LCSI_OPERATIONAL_ACTIVATED, proprietary: bytes | None = None, total_file_size: int | None = None,
    ) -> Fcp:
        """A shareable MF, DF or ADF; ``fid`` may be None for an ADF, which is selected by ``aid``."""
        return cls(
            descriptor=FileDescriptor(FileStructure.DF), fid=fid, df_name=aid, proprietary=proprietary, lcsi=lcsi,
            security=_security(arr), pin_status=pin_status, total_file_size=total_file_size,
        )

    @classmethod
    def transparent_ef(
        cls, fid: int, size: int, *, arr: ArrSpec, sfi: int | NoSfi | None = None, lcsi: int = LCSI_OPERATIONAL_ACTIVATED,
    ) -> Fcp:
        """A shareable working EF; ``dataclasses.replace`` sets the rarer fields (A5, internal EF)."""
        descriptor = FileDescriptor(FileStructure.TRANSPARENT)
        return cls(descriptor=descriptor, fid=fid, lcsi=lcsi, security=_security(arr), file_size=size, sfi=sfi)

    @classmethod
    def linear_fixed_ef(
        cls, fid: int, record_length: int, records: int, *, arr: ArrSpec, sfi: int | NoSfi | None = None,
        lcsi: int = LCSI_OPERATIONAL_ACTIVATED,
    ) -> Fcp:
        """A shareable linear fixed working EF of ``record_length * records`` bytes."""
        descriptor = FileDescriptor(FileStructure.LINEAR_FIXED, record_length=record_length, record_count=records)
        return cls(descriptor=descriptor, fid=fid, lcsi=lcsi, security=_security(arr), file_size=record_length * records, sfi=sfi)

    @classmethod
    def cyclic_ef(
        cls, fid: int, record_length: int, records: int, *, arr: ArrSpec, sfi: int | NoSfi | None = None,
        lcsi: int = LCSI_OPERATIONAL_ACTIVATED,
    ) -> Fcp:
        """A shareable cyclic working EF of ``record_length * records`` bytes."""
        descriptor = FileDescriptor(FileStructure.CYCLIC, record_length=record_length, record_count=records)
        return cls(descriptor=descriptor, fid=fid, lcsi=lcsi, security=_security(arr), file_size=record_length * records, sfi=sfi)


def _security(arr: ArrSpec) -> SecurityAttributes:
    if isinstance(arr, tuple):
        return ArrReference(arr[0], arr[1])
    return arr


def _parse_security(tlv: Tlv) -> SecurityAttributes:
    if tlv.tag == 0x8B:
        return ArrReference.from_bytes(tlv.value)
    return CompactSecurity(tlv.value) if tlv.tag == 0x8C else ExpandedSecurity(tlv.value)


def _parse_sfi(tlv: Tlv) -> int | NoSfi:
    # TS 102 221 §11.1.1.4.8: empty means no SFI; else the SFI is in b8..b4.
    if not tlv.value:
        return NO_SFI
    byte = _one_byte(tlv, "short file identifier")
    if byte & 0x07:
        raise CodecError(f"SFI byte {byte:02X} must have b3..b1 clear")
    return byte >> 3
