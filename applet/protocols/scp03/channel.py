"""SCP03 secure messaging shared by host and card: C-MAC, R-MAC, ICVs, padding, short APDUs.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2: "APDU Command C-MAC", "C-DECRYPTION", "APDU Response
R-MAC", "R-ENCRYPTION", "MAC chaining value", the security levels of
EXTERNAL AUTHENTICATE and §5.1 parameter ``i``; ISO/IEC 7816-4 §5.1 (short
command APDUs) and §5.4.1 with GP CS v2.3 "Class Byte Coding" (the secure
messaging indication of the class byte).

Package-internal helpers (underscore names) are shared by
:mod:`.host`, :mod:`.card` and :mod:`.putkey`; the public names are
re-exported by :mod:`simwallet.applet.protocols.scp03`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError, SecureChannelError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.scp03.keys import _SessionKeys

# Amendment D, "APDU Command C-MAC" and "APDU Response R-MAC" (S8 mode): the
# leftmost 8 bytes of the CMAC are sent; the chaining value keeps all 16.
MAC_LENGTH: Final = 8
# The response ICV replaces the counter's top byte with 80: beyond 2^120
# commands two ICVs could meet. No session gets near; the check is a fence.
ENCRYPTION_COUNTER_MAX: Final = (1 << 120) - 1
# ISO/IEC 7816-4 §5.1 short APDUs only (SIMs over T=0, ETSI TS 102 221): the
# command data field holds at most 255 bytes, the response data at most 256.
# Extended lengths are refused rather than half-supported.
SHORT_LC_MAX: Final = 255
SHORT_RESPONSE_DATA_MAX: Final = 256
# The wrapped command must still fit a short Lc: 247 plain bytes with C-MAC
# only; with C-DECRYPTION the padded data (a multiple of 16) plus the MAC must
# fit, so 239 plain bytes.
PLAIN_DATA_MAX_MAC: Final = SHORT_LC_MAX - MAC_LENGTH
PLAIN_DATA_MAX_ENC: Final = (SHORT_LC_MAX - MAC_LENGTH) // 16 * 16 - 1
# The same for responses: 248 plain bytes with R-MAC, 239 with R-ENCRYPTION.
PLAIN_RESPONSE_MAX_MAC: Final = SHORT_RESPONSE_DATA_MAX - MAC_LENGTH
PLAIN_RESPONSE_MAX_ENC: Final = (SHORT_RESPONSE_DATA_MAX - MAC_LENGTH) // 16 * 16 - 1

# ISO/IEC 7816-4 §5.1.3 and GP CS v2.3 (command status words): the words the SCP03 host and card use.
SW_OK: Final = 0x9000
SW_AUTHENTICATION_FAILED: Final = 0x6300  # GP: EXTERNAL AUTHENTICATE, host cryptogram or C-MAC wrong
SW_WRONG_LENGTH: Final = 0x6700
SW_SECURITY_STATUS_NOT_SATISFIED: Final = 0x6982
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_INCORRECT_P1P2: Final = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND: Final = 0x6A88
SW_CLA_NOT_SUPPORTED: Final = 0x6E00
# GP CS v2.3 "Class Byte Coding": GlobalPlatform commands, basic channel, no secure messaging.
CLA_GP: Final = 0x80


class SecurityLevel(enum.IntFlag):
    """EXTERNAL AUTHENTICATE P1 (Amendment D, "EXTERNAL AUTHENTICATE Command": security level)."""

    C_MAC = 0x01
    C_DECRYPTION = 0x02
    R_MAC = 0x10
    R_ENCRYPTION = 0x20


# Amendment D, security levels: C-DECRYPTION needs C-MAC, R-ENCRYPTION needs
# R-MAC and C-DECRYPTION. Level 00 (no secure messaging after authentication)
# is refused here: a channel that protects nothing is not worth opening.
ALLOWED_SECURITY_LEVELS: Final = frozenset({0x01, 0x03, 0x11, 0x13, 0x33})


class ScpOption(enum.IntFlag):
    """Amendment D §5.1 Table 5-1, parameter ``i`` of SCP03 (the bits this package knows)."""

    PSEUDO_RANDOM_CHALLENGE = 0x10
    R_MAC = 0x20
    R_ENCRYPTION = 0x40


# --- short APDUs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Command:
    # ISO/IEC 7816-4 §5.1, short form: CLA INS P1 P2 [Lc data] [Le]; the four
    # cases are told apart by length.
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: bytes  # b"" (absent) or one byte (00 means 256)

    @classmethod
    def from_bytes(cls, capdu: bytes) -> _Command:
        if len(capdu) < 4:
            raise CodecError(f"C-APDU must have a 4-byte header, got {len(capdu)} bytes")
        cla, ins, p1, p2 = capdu[:4]
        body = capdu[4:]
        if len(body) <= 1:  # case 1, case 2
            return cls(cla, ins, p1, p2, b"", body)
        lc = body[0]
        if lc == 0:
            raise CodecError("extended-length C-APDUs are not supported", offset=4)
        if len(body) == 1 + lc:  # case 3
            return cls(cla, ins, p1, p2, body[1:], b"")
        if len(body) == 2 + lc:  # case 4
            return cls(cla, ins, p1, p2, body[1:-1], body[-1:])
        raise CodecError(f"Lc {lc} does not match the {len(body) - 1} bytes that follow", offset=4)

    def to_bytes(self) -> bytes:
        if len(self.data) > SHORT_LC_MAX:
            raise CodecError(f"command data of {len(self.data)} bytes does not fit a short APDU")
        lc = bytes([len(self.data)]) if self.data else b""
        return bytes([self.cla, self.ins, self.p1, self.p2]) + lc + self.data + self.le

    def header(self, lc: int) -> bytes:
        return bytes([self.cla, self.ins, self.p1, self.p2, lc])


def _secure_messaging_bit(cla: int) -> int | None:
    """The class byte's secure messaging indication bit, or None if the class has none.

    ISO/IEC 7816-4 §5.4.1, and GP CS v2.3 "Class Byte Coding" for its proprietary classes:
    ``x00x xxxx`` (channels 0..3) flags secure messaging in b3 (``04``),
    ``x1xx xxxx`` (channels 4..19) in b6 (``20``). ``x01x xxxx`` classes (RFU,
    or proprietary like GSM's ``A0``) and ``FF`` have no such bit.
    """
    if cla == 0xFF or cla & 0x60 == 0x20:
        return None
    return 0x20 if cla & 0x40 else 0x04


def _split_sw(rapdu: bytes) -> tuple[bytes, int]:
    if len(rapdu) < 2:
        raise CodecError(f"R-APDU must end in a 2-byte status word, got {len(rapdu)} bytes")
    if len(rapdu) - 2 > SHORT_RESPONSE_DATA_MAX:
        raise CodecError(f"response data of {len(rapdu) - 2} bytes exceeds a short response")
    return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")


def _is_processed(sw: int) -> bool:
    # Amendment D, "APDU Response R-MAC": only 9000 and the warnings 62xx/63xx
    # carry protected data; after any other status word only the status word
    # is returned, without R-MAC.
    return sw == SW_OK or sw >> 8 in (0x62, 0x63)


def _sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _pad16(data: bytes) -> bytes:
    return _crypto.pad_iso9797_m2(data, _crypto.AES_BLOCK_SIZE)


def _check_security_level(level: int, i_param: int) -> SecurityLevel:
    if level not in ALLOWED_SECURITY_LEVELS:
        raise CodecError(f"security level {level:#04x} is not one of 01, 03, 11, 13, 33")
    security = SecurityLevel(level)
    if SecurityLevel.R_MAC in security and not i_param & ScpOption.R_MAC:
        raise CodecError(f"the card (i={i_param:02X}) does not support R-MAC")
    if SecurityLevel.R_ENCRYPTION in security and not i_param & ScpOption.R_ENCRYPTION:
        raise CodecError(f"the card (i={i_param:02X}) does not support R-ENCRYPTION")
    return security


class _Channel:
    """The keys, MAC chaining value and encryption counter of one open session (both sides)."""

    __slots__ = ("chain", "counter", "keys", "level")

    def __init__(self, keys: _SessionKeys, level: SecurityLevel, chain: bytes) -> None:
        self.keys = keys
        self.level = level
        self.chain = chain
        self.counter = 0

    def __repr__(self) -> str:
        return f"_Channel(level={int(self.level):#04x}, counter={self.counter})"

    def next_counter(self) -> None:
        # Amendment D, "C-DECRYPTION": the encryption counter is incremented
        # for every command of the session, even one without data.
        if self.counter >= ENCRYPTION_COUNTER_MAX:
            raise SecureChannelError("encryption counter exhausted")
        self.counter += 1

    def command_icv(self) -> bytes:
        return _crypto.aes_ecb_block(self.keys.s_enc, self.counter.to_bytes(16, "big"))

    def response_icv(self) -> bytes:
        # Amendment D, "R-ENCRYPTION": the counter block with its first byte set to 80.
        return _crypto.aes_ecb_block(self.keys.s_enc, b"\x80" + self.counter.to_bytes(15, "big"))

    def c_mac(self, header: bytes, data: bytes) -> bytes:
        """Advance the chaining value over a command and return its C-MAC."""
        self.chain = _crypto.aes_cmac(self.keys.s_mac, self.chain + header + data)
        return self.chain[:MAC_LENGTH]

    def r_mac(self, data: bytes, sw: int) -> bytes:
        return _crypto.aes_cmac_truncated(self.keys.s_rmac, self.chain + data + _sw_bytes(sw), MAC_LENGTH)
