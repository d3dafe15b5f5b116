"""The SMS Data Coding Scheme, TP-DCS (3GPP TS 23.038 §4; TS 23.040 §9.2.3.10).

Theory of operation. :class:`DataCoding` keeps the DCS octet as it is on the
wire (so every one of the 256 values round-trips) and reads it by coding group
(bits 7..4):

=========  ==============================================================
``00xx``   general data coding: bit 5 compressed, bit 4 "class meaningful",
           bits 3..2 alphabet, bits 1..0 message class
``01xx``   the same, and the message is marked for automatic deletion
``1000``   reserved coding groups (to ``1011``)
``1100``   message waiting indication, discard message (GSM 7-bit)
``1101``   message waiting indication, store message (GSM 7-bit)
``1110``   message waiting indication, store message (UCS2)
``1111``   data coding / message class: bit 2 8-bit data, bits 1..0 class
=========  ==============================================================

so ``F6`` is 8-bit data of class 2 ((U)SIM specific), the DCS of SMS-PP data
download (TS 31.111 §7.1.1). §4 says a receiver assumes the GSM 7-bit default
alphabet for every reserved coding (reserved groups and alphabet ``11``), and
so does :attr:`DataCoding.alphabet`.

User data of a compressed message (TS 23.042) is octets whatever the
alphabet: :attr:`DataCoding.counts_septets` is true only for uncompressed
GSM 7-bit, the one case where TP-UDL counts septets (TS 23.040 §9.2.3.16).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from simwallet.applet.errors import CodecError

DCS_MAX = 0xFF
_GROUP_SHIFT = 4
_CLASS_MASK = 0x03
_ALPHABET_SHIFT = 2
_ALPHABET_MASK = 0x03
# §4, general data coding group bits.
_COMPRESSED_BIT = 0x20
_CLASS_MEANINGFUL_BIT = 0x10
# §4, message waiting indication groups: bit 3 indication sense.
_MWI_ACTIVE_BIT = 0x08
_MWI_TYPE_MASK = 0x03
# §4, data coding / message class group: bit 2 message coding.
_CLASS_GROUP_8BIT = 0x04


class Alphabet(Enum):
    """The character set of the user data."""

    GSM7 = "gsm7"
    EIGHT_BIT = "8bit"
    UCS2 = "ucs2"


class CodingGroup(Enum):
    """§4 coding groups."""

    GENERAL = "general"
    AUTOMATIC_DELETION = "automatic deletion"
    RESERVED = "reserved"
    MWI_DISCARD = "message waiting, discard"
    MWI_STORE_GSM7 = "message waiting, store (GSM 7-bit)"
    MWI_STORE_UCS2 = "message waiting, store (UCS2)"
    DATA_CODING_CLASS = "data coding / message class"


class MessageClass(IntEnum):
    """§4 message classes."""

    # Class 0: displayed at once, not stored ("flash SMS").
    CLASS_0 = 0
    # Class 1: ME specific.
    CLASS_1 = 1
    # Class 2: (U)SIM specific; with PID 7F the SIM data download.
    CLASS_2 = 2
    # Class 3: TE specific.
    CLASS_3 = 3


class IndicationType(IntEnum):
    """§4 message waiting indication types (bits 1..0)."""

    VOICEMAIL = 0
    FAX = 1
    EMAIL = 2
    OTHER = 3


_GENERAL_ALPHABETS = (Alphabet.GSM7, Alphabet.EIGHT_BIT, Alphabet.UCS2, Alphabet.GSM7)
_ALPHABET_BITS = {Alphabet.GSM7: 0, Alphabet.EIGHT_BIT: 1, Alphabet.UCS2: 2}
_GROUPS = {
    0x0: CodingGroup.GENERAL,
    0x1: CodingGroup.GENERAL,
    0x2: CodingGroup.GENERAL,
    0x3: CodingGroup.GENERAL,
    0x4: CodingGroup.AUTOMATIC_DELETION,
    0x5: CodingGroup.AUTOMATIC_DELETION,
    0x6: CodingGroup.AUTOMATIC_DELETION,
    0x7: CodingGroup.AUTOMATIC_DELETION,
    0xC: CodingGroup.MWI_DISCARD,
    0xD: CodingGroup.MWI_STORE_GSM7,
    0xE: CodingGroup.MWI_STORE_UCS2,
    0xF: CodingGroup.DATA_CODING_CLASS,
}
_MWI_GROUPS = (CodingGroup.MWI_DISCARD, CodingGroup.MWI_STORE_GSM7, CodingGroup.MWI_STORE_UCS2)


@dataclass(frozen=True)
class DataCoding:
    """One TP-DCS octet and what it says."""

    # TS 23.040 §9.2.3.10 / TS 23.038 §4: the octet.
    value: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.value <= DCS_MAX:
            raise CodecError(f"data coding scheme {self.value} outside 0..255")

    @classmethod
    def build(
        cls,
        alphabet: Alphabet,
        message_class: int | None = None,
        *,
        class_group: bool = False,
        compressed: bool = False,
        automatic_deletion: bool = False,
    ) -> DataCoding:
        """The DCS for ``alphabet`` and ``message_class``.

        General data coding group by default (``00``, ``04``, ``08``, ``12``,
        ``16`` …); ``class_group=True`` picks the data coding / message class
        group (``F0``..``F7``, GSM 7-bit or 8-bit only, class mandatory), so
        ``build(Alphabet.EIGHT_BIT, 2, class_group=True)`` is ``F6``.
        """
        if message_class is not None and not 0 <= message_class <= _CLASS_MASK:
            raise CodecError(f"message class {message_class} outside 0..3")
        if class_group:
            if alphabet is Alphabet.UCS2 or message_class is None or compressed or automatic_deletion:
                raise CodecError("the data coding / message class group holds GSM 7-bit or 8-bit data with a class, uncompressed")
            return cls(0xF0 | (_CLASS_GROUP_8BIT if alphabet is Alphabet.EIGHT_BIT else 0) | message_class)
        value = _ALPHABET_BITS[alphabet] << _ALPHABET_SHIFT
        if message_class is not None:
            value |= _CLASS_MEANINGFUL_BIT | message_class
        if compressed:
            value |= _COMPRESSED_BIT
        if automatic_deletion:
            value |= 0x40
        return cls(value)

    @classmethod
    def message_waiting(cls, active: bool, indication: IndicationType, *, store: bool = True, ucs2: bool = False) -> DataCoding:
        """A message waiting indication group DCS (§4, groups ``1100``..``1110``)."""
        if ucs2 and not store:
            raise CodecError("the UCS2 message waiting group always stores the message")
        group = 0xE if ucs2 else 0xD if store else 0xC
        return cls(group << _GROUP_SHIFT | (_MWI_ACTIVE_BIT if active else 0) | indication)

    @property
    def group(self) -> CodingGroup:
        return _GROUPS.get(self.value >> _GROUP_SHIFT, CodingGroup.RESERVED)

    @property
    def _general(self) -> bool:
        return self.group in (CodingGroup.GENERAL, CodingGroup.AUTOMATIC_DELETION)

    @property
    def alphabet(self) -> Alphabet:
        """The alphabet; every reserved coding reads as GSM 7-bit (§4)."""
        group = self.group
        if self._general:
            return _GENERAL_ALPHABETS[self.value >> _ALPHABET_SHIFT & _ALPHABET_MASK]
        if group is CodingGroup.MWI_STORE_UCS2:
            return Alphabet.UCS2
        if group is CodingGroup.DATA_CODING_CLASS and self.value & _CLASS_GROUP_8BIT:
            return Alphabet.EIGHT_BIT
        return Alphabet.GSM7

    @property
    def compressed(self) -> bool:
        """User data compressed per TS 23.042 (general groups only)."""
        return self._general and bool(self.value & _COMPRESSED_BIT)

    @property
    def automatic_deletion(self) -> bool:
        """Message marked for automatic deletion (group ``01xx``)."""
        return self.group is CodingGroup.AUTOMATIC_DELETION

    @property
    def message_class(self) -> int | None:
        """0..3, or None when the DCS gives no class."""
        if self.group is CodingGroup.DATA_CODING_CLASS or (self._general and self.value & _CLASS_MEANINGFUL_BIT):
            return MessageClass(self.value & _CLASS_MASK)
        return None

    @property
    def counts_septets(self) -> bool:
        """TP-UDL counts septets (uncompressed GSM 7-bit) rather than octets (TS 23.040 §9.2.3.16)."""
        return self.alphabet is Alphabet.GSM7 and not self.compressed

    @property
    def message_waiting_active(self) -> bool | None:
        """For a message waiting group: True to set the indication, False to clear it; None otherwise."""
        if self.group in _MWI_GROUPS:
            return bool(self.value & _MWI_ACTIVE_BIT)
        return None

    @property
    def indication_type(self) -> IndicationType | None:
        """For a message waiting group: what is waiting; None otherwise."""
        if self.group in _MWI_GROUPS:
            return IndicationType(self.value & _MWI_TYPE_MASK)
        return None


#: The default DCS: GSM 7-bit, no class.
DCS_GSM7 = DataCoding(0x00)
#: 8-bit data, no class.
DCS_8BIT = DataCoding(0x04)
#: UCS2, no class.
DCS_UCS2 = DataCoding(0x08)
#: 8-bit data, class 2: SMS-PP (U)SIM data download (TS 31.111 §7.1.1, with TP-PID 7F).
DCS_SIM_DATA_DOWNLOAD = DataCoding(0xF6)
