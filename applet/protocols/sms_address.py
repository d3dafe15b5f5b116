"""SMS addresses: TP-layer (3GPP TS 23.040 §9.1.2.5) and RP-layer / CAT (TS 24.011 §8.2.5.1–2, ETSI TS 102 223 §8.1).

Theory of operation. An :class:`Address` is a type of number (TON), a
numbering plan (NPI) and the ``number``: a digit string for every TON but
alphanumeric, where it is the text. It has three wire forms:

* TP form (:meth:`Address.to_bytes`, :func:`parse_address`): Address-Length
  counts the *useful semi-octets* of the value, then Type-of-Address, then the
  value. Used by TP-OA, TP-DA and TP-RA.
* RP form (:meth:`Address.to_rp_bytes`, :func:`parse_rp_address`): the length
  octet counts the *octets* that follow (Type-of-Address included); length 0
  means no address. Used by the SMSC address of TS 24.011 and of AT PDU mode.
* TOA-value form (:meth:`Address.to_toa_value`, :func:`parse_toa_value`): the
  same without the length, as in the CAT Address data object, whose length
  comes from its COMPREHENSION-TLV.

Digits are semi-octets, first digit in the low nibble, ``F`` filling an odd
count (§9.1.2.3); the semi-octets 1010..1110 are ``* # a b c`` (TS 24.008
§10.5.4.7). An alphanumeric value (TON 101) is GSM 7-bit packed text
(TS 23.038 §6.1.2.1.1) of at most :data:`ALPHANUMERIC_SEPTETS_MAX` septets.

Decisions, each where the spec leaves room:

* Bit 8 of Type-of-Address is 1 (§9.1.2.5); an octet with it clear is refused.
* A BCD value with a filler other than ``F`` in the last high nibble is
  accepted (networks send ``0`` there) and rewritten with ``F``; a filler
  nibble in the middle of the digits is refused.
* For alphanumeric addresses the useful semi-octets are ceil(7 × septets / 4)
  when encoding. When parsing, any length is accepted and floor(4 × length / 7)
  septets are read, so values whose length counts whole octets (common in the
  field) decode too but are re-encoded with the exact count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gsm7 import decode_gsm7, encode_gsm7, pack_septets, packed_length, unpack_septets

# §9.1.2.5: the Address-Value field is at most 10 octets.
ADDRESS_VALUE_OCTETS_MAX = 10
# Two BCD digits per octet.
ADDRESS_DIGITS_MAX = 2 * ADDRESS_VALUE_OCTETS_MAX
# 10 octets hold 80 bits, room for eleven 7-bit characters.
ALPHANUMERIC_SEPTETS_MAX = 11
# TS 24.011 §8.2.5.1: an RP address is Type-of-Address and up to 10 value octets.
RP_ADDRESS_OCTETS_MAX = 1 + ADDRESS_VALUE_OCTETS_MAX

# §9.1.2.5: Type-of-Address bit 8 is always 1.
_TOA_EXTENSION_BIT = 0x80
_FILLER = 0x0F
# §9.1.2.3 / TS 24.008 §10.5.4.7: the semi-octet values and their digits.
_DIGITS = "0123456789*#abc"
_DIGIT_VALUE = {char: value for value, char in enumerate(_DIGITS)}


class Ton(IntEnum):
    """Type of number, Type-of-Address bits 7..5 (§9.1.2.5)."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED = 7


class Npi(IntEnum):
    """Numbering plan identification, Type-of-Address bits 4..1 (§9.1.2.5); other values are reserved."""

    UNKNOWN = 0
    ISDN = 1
    DATA = 3
    TELEX = 4
    SC_SPECIFIC_1 = 5
    SC_SPECIFIC_2 = 6
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    RESERVED = 15


def _named(enum: type[IntEnum], value: int) -> int:
    try:
        return enum(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Address:
    """A TON/NPI and a number (digits ``0-9 * # a b c``) or, for TON alphanumeric, GSM 7-bit text."""

    # §9.1.2.5 Type-of-Address bits 7..5 (0..7).
    ton: int
    # §9.1.2.5 Type-of-Address bits 4..1 (0..15).
    npi: int
    # §9.1.2.5 Address-Value: digits, or text when ton is ALPHANUMERIC.
    number: str

    def __post_init__(self) -> None:
        if not 0 <= self.ton <= 7:
            raise CodecError(f"TON {self.ton} outside 0..7")
        if not 0 <= self.npi <= 15:
            raise CodecError(f"NPI {self.npi} outside 0..15")
        if self.is_alphanumeric:
            septets = len(encode_gsm7(self.number))
            if septets > ALPHANUMERIC_SEPTETS_MAX:
                raise CodecError(f"alphanumeric address of {septets} septets exceeds {ALPHANUMERIC_SEPTETS_MAX}")
        else:
            if len(self.number) > ADDRESS_DIGITS_MAX:
                raise CodecError(f"address of {len(self.number)} digits exceeds {ADDRESS_DIGITS_MAX}")
            for index, char in enumerate(self.number):
                if char not in _DIGIT_VALUE:
                    raise CodecError(f"address digit {char!r} at index {index} is not one of {_DIGITS!r}")

    @classmethod
    def international(cls, number: str) -> Address:
        """An E.164 number in international format; a leading ``+`` is dropped."""
        return cls(Ton.INTERNATIONAL, Npi.ISDN, number.removeprefix("+"))

    @classmethod
    def alphanumeric(cls, text: str) -> Address:
        """A sender name such as ``"Wallet"`` (TON 101, NPI unknown)."""
        return cls(Ton.ALPHANUMERIC, Npi.UNKNOWN, text)

    @property
    def is_alphanumeric(self) -> bool:
        return self.ton == Ton.ALPHANUMERIC

    @property
    def type_of_address(self) -> int:
        """The Type-of-Address octet."""
        return _TOA_EXTENSION_BIT | self.ton << 4 | self.npi

    def __str__(self) -> str:
        if self.ton == Ton.INTERNATIONAL and self.number:
            return "+" + self.number
        return self.number

    def _value(self) -> tuple[int, bytes]:
        """(useful semi-octets, Address-Value octets)."""
        if self.is_alphanumeric:
            septets = encode_gsm7(self.number)
            return (7 * len(septets) + 3) // 4, pack_septets(septets)
        return len(self.number), _bcd(self.number)

    def to_bytes(self) -> bytes:
        """TP form (§9.1.2.5): Address-Length in useful semi-octets, Type-of-Address, Address-Value."""
        semi_octets, value = self._value()
        return bytes([semi_octets, self.type_of_address]) + value

    def to_toa_value(self) -> bytes:
        """Type-of-Address and the BCD value, as in the CAT Address data object (TS 102 223 §8.1)."""
        if self.is_alphanumeric:
            raise CodecError("an alphanumeric address has no octet-length form")
        return bytes([self.type_of_address]) + _bcd(self.number)

    def to_rp_bytes(self) -> bytes:
        """RP form (TS 24.011 §8.2.5.1): a length octet counting the octets that follow, then TOA and value."""
        body = self.to_toa_value()
        return bytes([len(body)]) + body


def _bcd(digits: str) -> bytes:
    nibbles = [_DIGIT_VALUE[char] for char in digits]
    if len(nibbles) % 2:
        nibbles.append(_FILLER)
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def _digits(value: bytes, count: int, offset: int) -> str:
    """``count`` semi-octet digits of ``value``; ``offset`` is where ``value`` starts in the caller's buffer."""
    out: list[str] = []
    for index in range(count):
        nibble = value[index // 2] >> (4 * (index % 2)) & 0x0F
        if nibble == _FILLER:
            raise CodecError("filler semi-octet F inside an address", offset + index // 2)
        out.append(_DIGITS[nibble])
    return "".join(out)


def _split_toa(toa: int, offset: int) -> tuple[int, int]:
    if not toa & _TOA_EXTENSION_BIT:
        raise CodecError(f"Type-of-Address {toa:#04x} has bit 8 clear", offset)
    return _named(Ton, toa >> 4 & 0x07), _named(Npi, toa & 0x0F)


def parse_address(data: bytes, offset: int = 0) -> tuple[Address, int]:
    """The TP-form address at ``offset`` and the offset after it."""
    if len(data) < offset + 2:
        raise TruncatedError("address needs a length and a Type-of-Address octet", len(data))
    semi_octets = data[offset]
    ton, npi = _split_toa(data[offset + 1], offset + 1)
    octets = (semi_octets + 1) // 2
    if octets > ADDRESS_VALUE_OCTETS_MAX:
        raise CodecError(f"address of {semi_octets} semi-octets exceeds {ADDRESS_VALUE_OCTETS_MAX} octets", offset)
    start = offset + 2
    end = start + octets
    if len(data) < end:
        raise TruncatedError(f"address value needs {octets} octets", len(data))
    value = data[start:end]
    if ton == Ton.ALPHANUMERIC:
        count = 4 * semi_octets // 7
        septets = unpack_septets(value[: packed_length(count)], count)
        return Address(ton, npi, decode_gsm7(septets)), end
    return Address(ton, npi, _digits(value, semi_octets, start)), end


def parse_toa_value(data: bytes, offset: int = 0) -> Address:
    """An address from Type-of-Address and BCD value octets (all of ``data`` after ``offset``)."""
    if len(data) <= offset:
        raise TruncatedError("address needs a Type-of-Address octet", len(data))
    ton, npi = _split_toa(data[offset], offset)
    value = data[offset + 1 :]
    if len(value) > ADDRESS_VALUE_OCTETS_MAX:
        raise CodecError(f"address value of {len(value)} octets exceeds {ADDRESS_VALUE_OCTETS_MAX}", offset + 1)
    if ton == Ton.ALPHANUMERIC:
        raise CodecError("alphanumeric address in an octet-length field", offset)
    count = 2 * len(value)
    if value and value[-1] >> 4 == _FILLER:
        count -= 1
    return Address(ton, npi, _digits(value, count, offset + 1))


def parse_rp_address(data: bytes, offset: int = 0) -> tuple[Address | None, int]:
    """The RP-form address at ``offset`` (None for length 0) and the offset after it."""
    if len(data) <= offset:
        raise TruncatedError("RP address needs a length octet", len(data))
    length = data[offset]
    if length == 0:
        return None, offset + 1
    if length > RP_ADDRESS_OCTETS_MAX:
        raise CodecError(f"RP address of {length} octets exceeds {RP_ADDRESS_OCTETS_MAX}", offset)
    end = offset + 1 + length
    if len(data) < end:
        raise TruncatedError(f"RP address needs {length} octets", len(data))
    return parse_toa_value(data[:end], offset + 1), end
