"""GlobalPlatform Card Specification v2.3: life cycle states, privileges and the command framing every GP codec shares.

Spec: GP CS v2.3 §5 (life cycle models: card §5.1, Executable Load File §5.2,
application and Security Domain §5.3; coding in §11.1.1), §6.6 and §11.1.2
(privileges), §11.1.3 (class byte), §11.1.4 (AIDs).

The command codecs (:mod:`.gp_install`, :mod:`.gp_store`, :mod:`.gp_status`,
:mod:`.gp_data`) build plain C-APDUs in class ``80``; the host wraps them with
:meth:`~simwallet.applet.protocols.scp03.Scp03Host.wrap`, which sets the
secure messaging bit. They parse any class with b8 set (``80``..``FF``
except ``FF``), so the card side can parse the command the secure channel
unwrapped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.apdu import LE_MAX_SHORT, CommandApdu

# GP CS v2.3 §11.1.3 "Class Byte Coding": GlobalPlatform commands, basic channel, no secure messaging.
CLA_GP: Final = 0x80
# ISO/IEC 7816-5 and GP CS v2.3 §11.1.4: an AID is 5 to 16 bytes.
AID_LENGTH_MIN: Final = 5
AID_LENGTH_MAX: Final = 16
# GP CS v2.3 §11.1.2: privileges are coded on three bytes (one byte in GP 2.1.1 and earlier).
PRIVILEGES_LENGTH: Final = 3
# ISO/IEC 7816-4 §5.1, short APDUs only (SIMs over T=0): the command data field holds at most 255 bytes.
COMMAND_DATA_MAX: Final = 255


class GpIns(enum.IntEnum):
    """GP CS v2.3 §11.1.2 Table 11-3: instruction bytes of the commands these codecs know."""

    DELETE = 0xE4
    GET_DATA = 0xCA
    GET_STATUS = 0xF2
    INSTALL = 0xE6
    LOAD = 0xE8
    PUT_KEY = 0xD8
    SET_STATUS = 0xF0
    STORE_DATA = 0xE2
    INITIALIZE_UPDATE = 0x50
    EXTERNAL_AUTHENTICATE = 0x82


class CardLifeCycle(enum.IntEnum):
    """GP CS v2.3 §5.1 and §11.1.1 Table 11-4: the card life cycle (the ISD's life cycle)."""

    OP_READY = 0x01
    INITIALIZED = 0x07
    SECURED = 0x0F
    CARD_LOCKED = 0x7F
    TERMINATED = 0xFF


# GP CS v2.3 §5.1.1: the card moves forward only, except between SECURED and
# CARD_LOCKED; every state but TERMINATED may go to TERMINATED.
CARD_LIFE_CYCLE_TRANSITIONS: Final[Mapping[CardLifeCycle, frozenset[CardLifeCycle]]] = MappingProxyType(
    {
        CardLifeCycle.OP_READY: frozenset({CardLifeCycle.INITIALIZED, CardLifeCycle.SECURED, CardLifeCycle.TERMINATED}),
        CardLifeCycle.INITIALIZED: frozenset({CardLifeCycle.SECURED, CardLifeCycle.TERMINATED}),
        CardLifeCycle.SECURED: frozenset({CardLifeCycle.CARD_LOCKED, CardLifeCycle.TERMINATED}),
        CardLifeCycle.CARD_LOCKED: frozenset({CardLifeCycle.SECURED, CardLifeCycle.TERMINATED}),
        CardLifeCycle.TERMINATED: frozenset(),
    }
)


class LoadFileLifeCycle(enum.IntEnum):
    """GP CS v2.3 §5.2 and §11.1.1 Table 11-5: an Executable Load File has one state."""

    LOADED = 0x01


class ApplicationLifeCycle(enum.IntEnum):
    """GP CS v2.3 §5.3 and §11.1.1 Tables 11-6/11-7: the named application and Security Domain states.

    Application-specific states are ``0xxxx111`` (b4..b7 free); LOCKED is
    :data:`LOCKED_BIT` over the state the application had, so unlocking
    restores it. PERSONALIZED is the Security Domain's.
    """

    INSTALLED = 0x03
    SELECTABLE = 0x07
    PERSONALIZED = 0x0F


# GP CS v2.3 §11.1.1 Tables 11-6/11-7: LOCKED is "1xxxxx11", b8 over the previous state.
LOCKED_BIT: Final = 0x80
_SELECTABLE_BITS: Final = 0x07


def check_application_life_cycle(state: int) -> int:
    """``state`` if it is a valid application life cycle byte (locked or not); :class:`CodecError` otherwise."""
    if not 0 <= state <= 0xFF:
        raise CodecError(f"application life cycle state {state} is not a byte")
    unlocked = state & ~LOCKED_BIT
    if unlocked != ApplicationLifeCycle.INSTALLED and unlocked & _SELECTABLE_BITS != _SELECTABLE_BITS:
        raise CodecError(f"{state:02X} is not an application life cycle state (03, 0xxxx111, or either with b8 locked)")
    return state


def is_locked(state: int) -> bool:
    """GP CS v2.3 Table 11-6: b8 set means LOCKED."""
    return bool(state & LOCKED_BIT)


def is_selectable(state: int) -> bool:
    """SELECTABLE, PERSONALIZED or an application-specific state, and not LOCKED (GP CS v2.3 §5.3.1)."""
    return not is_locked(state) and state & _SELECTABLE_BITS == _SELECTABLE_BITS


class Privilege(enum.IntFlag):
    """GP CS v2.3 §6.6.1 Table 6-1 and §11.1.2 Table 11-8: privileges, byte 1 in the high bits."""

    # byte 1
    SECURITY_DOMAIN = 0x800000
    DAP_VERIFICATION = 0x400000
    DELEGATED_MANAGEMENT = 0x200000
    CARD_LOCK = 0x100000
    CARD_TERMINATE = 0x080000
    CARD_RESET = 0x040000
    CVM_MANAGEMENT = 0x020000
    MANDATED_DAP_VERIFICATION = 0x010000
    # byte 2
    TRUSTED_PATH = 0x008000
    AUTHORIZED_MANAGEMENT = 0x004000
    TOKEN_VERIFICATION = 0x002000
    GLOBAL_DELETE = 0x001000
    GLOBAL_LOCK = 0x000800
    GLOBAL_REGISTRY = 0x000400
    FINAL_APPLICATION = 0x000200
    GLOBAL_SERVICE = 0x000100
    # byte 3 (b4..b1 RFU)
    RECEIPT_GENERATION = 0x000080
    CIPHERED_LOAD_FILE_DATA_BLOCK = 0x000040
    CONTACTLESS_ACTIVATION = 0x000020
    CONTACTLESS_SELF_ACTIVATION = 0x000010


# GP CS v2.3 Table 11-8: byte 3 b4..b1 are RFU.
_ALL_PRIVILEGES: Final = 0xFFFFF0


def parse_privileges(data: bytes) -> Privilege:
    """Three bytes (GP 2.2+) or one byte (GP 2.1.1: bytes 2 and 3 zero); RFU bits are refused."""
    if len(data) == 1:
        data = data + bytes(PRIVILEGES_LENGTH - 1)
    if len(data) != PRIVILEGES_LENGTH:
        raise CodecError(f"privileges are 1 or 3 bytes, not {len(data)}")
    value = int.from_bytes(data, "big")
    if value & ~_ALL_PRIVILEGES:
        raise CodecError(f"privileges {data.hex().upper()} set RFU bits (byte 3, b4..b1)", offset=2)
    return Privilege(value)


def encode_privileges(privileges: Privilege) -> bytes:
    """Always the three-byte form (GP CS v2.3 §11.1.2)."""
    if privileges & ~_ALL_PRIVILEGES or privileges < 0:
        raise CodecError(f"privileges {int(privileges):#x} set RFU bits")
    return int(privileges).to_bytes(PRIVILEGES_LENGTH, "big")


def check_aid(aid: bytes, what: str = "AID") -> bytes:
    """``aid`` if it is 5..16 bytes (ISO/IEC 7816-5); :class:`CodecError` otherwise."""
    if not isinstance(aid, bytes):
        raise TypeError(f"{what} must be bytes, not {type(aid).__name__}")
    if not AID_LENGTH_MIN <= len(aid) <= AID_LENGTH_MAX:
        raise CodecError(f"{what} must be {AID_LENGTH_MIN}..{AID_LENGTH_MAX} bytes, not {len(aid)}")
    return aid


def check_byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise CodecError(f"{what} {value} is not a byte")
    return value


# --- length-prefixed fields (INSTALL, DELETE data fields) ------------------------------------


def encode_ber_length(length: int) -> bytes:
    """GP CS v2.3 §11.5.2.3: the lengths of install parameters and tokens are BER (ITU-T X.690 §8.1.3), shortest form."""
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise CodecError(f"length {length} exceeds two bytes")


class FieldReader:
    """Reads the length-prefixed fields of a GP data field front to back; every failure is a :class:`CodecError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, count: int, what: str) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise TruncatedError(f"{what} needs {count} bytes, {len(self.data) - self.offset} left", len(self.data))
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def short_field(self, what: str) -> bytes:
        """One length byte (00..FF), then the value."""
        length = self._take(1, f"length of {what}")[0]
        return self._take(length, what)

    def ber_field(self, what: str) -> bytes:
        """A BER length (``00``..``7F``, ``81 xx``, ``82 xxxx``), then the value; non-shortest forms are refused."""
        start = self.offset
        first = self._take(1, f"length of {what}")[0]
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82):
            length = int.from_bytes(self._take(first - 0x80, f"length of {what}"), "big")
            if encode_ber_length(length) != self.data[start : self.offset]:
                raise CodecError(f"length of {what} is not in its shortest form", start)
        else:
            raise CodecError(f"length byte {first:02X} of {what} is not 00..7F, 81 or 82", start)
        return self._take(length, what)

    def end(self, what: str) -> None:
        if self.offset != len(self.data):
            raise CodecError(f"{len(self.data) - self.offset} bytes after the {what}", self.offset)


# --- command framing ------------------------------------------------------------------------------


def parse_gp_command(capdu: bytes, ins: GpIns) -> CommandApdu:
    """A short GP command with INS ``ins`` and a class with b8 set; :class:`CodecError` otherwise."""
    command = CommandApdu.from_bytes(capdu)
    if command.ins != ins:
        raise CodecError(f"INS {command.ins:02X} is not {ins.name} ({int(ins):02X})", 1)
    if not command.cla & 0x80 or command.cla == 0xFF:
        raise CodecError(f"class {command.cla:02X} is not a GlobalPlatform class (b8 set)", 0)
    if command.extended:
        raise CodecError("extended-length APDUs are not supported (short APDUs only)", 4)
    return command


def build_gp_command(ins: GpIns, p1: int, p2: int, data: bytes = b"", *, le: bool = True, cla: int = CLA_GP) -> bytes:
    """A short GP C-APDU; ``le`` adds Le = 00 (case 2/4: response data expected)."""
    if len(data) > COMMAND_DATA_MAX:
        raise CodecError(f"command data of {len(data)} bytes exceeds {COMMAND_DATA_MAX}")
    return CommandApdu(cla, ins, p1, p2, data, LE_MAX_SHORT if le else None).to_bytes()
