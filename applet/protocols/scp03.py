"""GlobalPlatform Secure Channel Protocol '03' (SCP03), host and card side, sans-I/O.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2 (AES keys, S8 mode: 8-byte challenges, cryptograms and
MACs): INITIALIZE UPDATE and EXTERNAL AUTHENTICATE (Amendment D §7), and
PUT KEY with AES keys (GP CS v2.3 PUT KEY, Amendment D).

Theory of operation
-------------------
1. The host sends INITIALIZE UPDATE with an 8-byte host challenge. The card
   answers with its key diversification data, key information (KVN, SCP
   identifier ``03``, parameter ``i``), its card challenge, the card
   cryptogram and, when ``i`` announces pseudo-random challenges, its
   3-byte sequence counter.
2. Both sides derive S-ENC, S-MAC and S-RMAC from the static keys with the
   data derivation scheme (NIST SP 800-108 counter mode, PRF AES-CMAC),
   context = host challenge || card challenge. The card cryptogram and the
   host cryptogram are 64-bit outputs of the same scheme under S-MAC.
3. The host checks the card cryptogram and sends EXTERNAL AUTHENTICATE with
   the host cryptogram and the first C-MAC; the security level in P1 fixes
   the protection of every following command and response.
4. C-MAC: CMAC(S-MAC, chaining value || header with Lc+8 || data); the
   16-byte result is the next chaining value, its first 8 bytes are sent.
   C-DECRYPTION encrypts the data first (encrypt-then-MAC), so the MAC is
   always checked before any padding is looked at: no padding oracle.
   R-MAC: CMAC(S-RMAC, chaining value of the command || data || SW).
   The encryption counter counts every command of the session; the command
   ICV is AES(S-ENC, counter) and the response ICV AES(S-ENC, 80 || counter
   without its first byte).

Both objects are sans-I/O: they take and return APDU bytes and never read a
clock, a random source or a socket. Randomness comes from the caller (the
host challenge; the card challenge source). Failures of the peer raise
:class:`~simwallet.applet.errors.SecurityError` (never a bool) and end the
session; keys never appear in ``repr``, ``str`` or an exception message.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import AppletError, CardStatusError, CodecError, SecurityError
from simwallet.applet.protocols import _crypto

__all__ = [
    "CARD_TRANSITIONS",
    "HOST_TRANSITIONS",
    "CardEvent",
    "CardState",
    "ChallengeRng",
    "HostEvent",
    "HostState",
    "InitializeUpdateResponse",
    "KeyId",
    "KeyResolver",
    "Scp03Card",
    "Scp03Host",
    "ScpOption",
    "SecureChannelError",
    "SecurityLevel",
    "SessionStateError",
    "StaticKeys",
    "card_keys",
    "diversify_kdf3",
    "kcv",
    "open_host_session",
    "parse_put_key_data",
    "pseudo_random_card_challenge",
    "put_key_command",
    "put_key_data",
    "put_key_response",
    "verify_put_key_response",
]

# --- limits and constants ------------------------------------------------------

# Amendment D, "Card Challenge" / "Host Challenge" (S8 mode): 64-bit challenges.
CHALLENGE_LENGTH: Final = 8
# Amendment D, "Card/Host Authentication Cryptogram" (S8 mode): 64 bits.
CRYPTOGRAM_LENGTH: Final = 8
# Amendment D, "APDU Command C-MAC" and "APDU Response R-MAC" (S8 mode): the
# leftmost 8 bytes of the CMAC are sent; the chaining value keeps all 16.
MAC_LENGTH: Final = 8
# Amendment D, "Key Check Value" (also GP CS v2.3 PUT KEY): 3 bytes of AES(key, 01..01).
KCV_LENGTH: Final = 3
# Amendment D, INITIALIZE UPDATE response: key diversification data is 10 bytes.
KDD_LENGTH: Final = 10
# Amendment D, INITIALIZE UPDATE response: the sequence counter is 3 bytes, so
# a key set supports this many pseudo-random challenges; the card then refuses
# to open sessions rather than repeat a challenge.
SEQUENCE_COUNTER_LENGTH: Final = 3
SEQUENCE_COUNTER_MAX: Final = (1 << (8 * SEQUENCE_COUNTER_LENGTH)) - 1
# The response ICV replaces the counter's top byte with 80: beyond 2^120
# commands two ICVs could meet. No session gets near; the check is a fence.
ENCRYPTION_COUNTER_MAX: Final = (1 << 120) - 1
# ISO/IEC 7816-5: an application identifier is 5 to 16 bytes.
AID_LENGTH_MIN: Final = 5
AID_LENGTH_MAX: Final = 16
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

# ISO/IEC 7816-4 §5.1.3 and GP CS v2.3 (command status words): the words this module answers.
SW_OK: Final = 0x9000
SW_AUTHENTICATION_FAILED: Final = 0x6300  # GP: EXTERNAL AUTHENTICATE, host cryptogram or C-MAC wrong
SW_WRONG_LENGTH: Final = 0x6700
SW_SECURITY_STATUS_NOT_SATISFIED: Final = 0x6982
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_INCORRECT_P1P2: Final = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND: Final = 0x6A88
SW_CLA_NOT_SUPPORTED: Final = 0x6E00
SW_INVALID_KEY_CHECK_VALUE: Final = 0x9485  # GP: PUT KEY error conditions

# GP CS v2.3 / Amendment D instruction bytes.
INS_INITIALIZE_UPDATE: Final = 0x50
INS_EXTERNAL_AUTHENTICATE: Final = 0x82
INS_PUT_KEY: Final = 0xD8
# GP CS v2.3 "Class Byte Coding": GlobalPlatform commands, basic channel, no secure messaging.
CLA_GP: Final = 0x80
# Amendment D, "Secure Channel Protocol identifier".
SCP_IDENTIFIER: Final = 0x03
# GP CS v2.3 Table 11-16 (key type coding): 88 = AES.
KEY_TYPE_AES: Final = 0x88


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
    """Amendment D §5.1 Table 5-1, parameter ``i`` of SCP03 (the bits this module knows)."""

    PSEUDO_RANDOM_CHALLENGE = 0x10
    R_MAC = 0x20
    R_ENCRYPTION = 0x40


class KeyId(enum.IntEnum):
    """Key identifiers within an SCP03 key set (Amendment D: Key-ENC 1, Key-MAC 2, Key-DEK 3)."""

    ENC = 1
    MAC = 2
    DEK = 3


class _Derivation(enum.IntEnum):
    # Amendment D §4.1.5 "Data Derivation Scheme", Table 4-1: derivation constants.
    CARD_CRYPTOGRAM = 0x00
    HOST_CRYPTOGRAM = 0x01
    CARD_CHALLENGE = 0x02
    S_ENC = 0x04
    S_MAC = 0x06
    S_RMAC = 0x07


# --- errors ----------------------------------------------------------------------


class SecureChannelError(SecurityError):
    """A secure channel check failed; ``sw`` is the status word that goes with it.

    On the card side ``sw`` is what the card answers (``6982`` for a command
    whose C-MAC or encryption fails, ``6300`` for a rejected EXTERNAL
    AUTHENTICATE); on the host side it is the status word the card sent.
    """

    def __init__(self, message: str, sw: int = SW_SECURITY_STATUS_NOT_SATISFIED) -> None:
        super().__init__(message)
        self.message = message
        self.sw = sw

    def __str__(self) -> str:
        return f"{self.sw:04X}: {self.message}"


class SessionStateError(AppletError, RuntimeError):
    """A session method was called out of order (local misuse); the session is now unusable."""


class _Refused(Exception):
    """The card refuses a command with status word ``sw`` (caught inside this module)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


# --- key check value, data derivation, diversification -------------------------------------

# Amendment D, "Key Check Value": AES-encrypt a block of 16 bytes '01' and keep
# the leftmost 3 bytes.
_KCV_BLOCK: Final = b"\x01" * _crypto.AES_BLOCK_SIZE


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) not in _crypto.AES_KEY_SIZES:
        length = len(key) if isinstance(key, bytes) else type(key).__name__
        raise CodecError(f"{what} must be an AES key of 16, 24 or 32 bytes, not {length}")


def kcv(key: bytes) -> bytes:
    """The 3-byte key check value of an AES key: AES-ECB(key, ``01``×16)[:3]."""
    _check_key(key, "key")
    return _crypto.aes_ecb_block(key, _KCV_BLOCK)[:KCV_LENGTH]


# Amendment D §4.1.5 "Data Derivation Scheme" (NIST SP 800-108 KDF in counter
# mode, PRF = AES-CMAC), derivation data for iteration i:
#   label: 11 bytes 00 || derivation constant (1) | separator 00 |
#   L: output length in bits (2, big-endian) | i (1) | context
_LABEL_PREFIX: Final = bytes(11)
_DERIVATION_SEPARATOR: Final = b"\x00"


def _derive(key: bytes, constant: _Derivation, context: bytes, length_bits: int) -> bytes:
    # L is a multiple of 64 in every use (64 for challenges and cryptograms,
    # 128..256 for session keys); one counter byte covers 255 blocks.
    if length_bits % 64 or not 64 <= length_bits <= 256:
        raise ValueError(f"derived length must be 64..256 bits in steps of 64, not {length_bits}")
    fixed = _LABEL_PREFIX + bytes([constant]) + _DERIVATION_SEPARATOR + length_bits.to_bytes(2, "big")
    blocks = -(-length_bits // 128)
    output = b"".join(_crypto.aes_cmac(key, fixed + bytes([i]) + context) for i in range(1, blocks + 1))
    return output[: length_bits // 8]


def pseudo_random_card_challenge(key_enc: bytes, sequence_counter: int, aid: bytes) -> bytes:
    """Amendment D §6.2.2.1: the pseudo-random card challenge.

    Derived from the static Key-ENC with constant ``02``, L = 64, context =
    sequence counter (3 bytes) || AID of the invoking application.
    """
    _check_key(key_enc, "Key-ENC")
    _check_aid(aid)
    if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
        raise CodecError(f"sequence counter must be 0..{SEQUENCE_COUNTER_MAX:#x}, not {sequence_counter}")
    context = sequence_counter.to_bytes(SEQUENCE_COUNTER_LENGTH, "big") + aid
    return _derive(key_enc, _Derivation.CARD_CHALLENGE, context, 8 * CHALLENGE_LENGTH)


def _check_aid(aid: bytes) -> None:
    if not AID_LENGTH_MIN <= len(aid) <= AID_LENGTH_MAX:
        raise CodecError(f"AID must be {AID_LENGTH_MIN}..{AID_LENGTH_MAX} bytes, not {len(aid)}")


# GlobalPlatformPro "KDF3" key diversification, template
#   "$_ 0x00 0x00 0x00 $k 0x00 $0 $1 $2 $3 $4 $5 $6 $7 $8 $9"
# read as NIST SP 800-108 counter mode with PRF AES-CMAC under the master key:
#   i (1, the "$_" slot) | 00 00 00 | key id $k (1) | 00 | KDD $0..$9 (10)
# one 16-byte block per i = 1, 2 until the key length is reached. (It is not
# the session-key layout above: no label, no L.) Proved by the GPPro KCVs and
# the external AES-256 vector in tests/vectors/globalplatform.json.
_KDF3_PAD: Final = bytes(3)


def diversify_kdf3(master: bytes, kdd: bytes, key_id: int) -> bytes:
    """A card key diversified from ``master`` and the 10-byte KDD (GPPro "KDF3").

    ``key_id`` is :class:`KeyId` (ENC 1, MAC 2, DEK 3); the result has the
    master key's length.
    """
    _check_key(master, "master key")
    if len(kdd) != KDD_LENGTH:
        raise CodecError(f"key diversification data must be {KDD_LENGTH} bytes, not {len(kdd)}")
    if key_id not in set(KeyId):
        raise CodecError(f"key identifier must be 1 (ENC), 2 (MAC) or 3 (DEK), not {key_id}")
    blocks = -(-len(master) // _crypto.AES_BLOCK_SIZE)
    fixed = _KDF3_PAD + bytes([key_id]) + b"\x00" + kdd
    output = b"".join(_crypto.aes_cmac(master, bytes([i]) + fixed) for i in range(1, blocks + 1))
    return output[: len(master)]


# --- key sets ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class StaticKeys:
    """An SCP03 key set: Key-ENC, Key-MAC, Key-DEK and their key version number.

    ``repr``/``str`` show the KVN and the key check values only. Equality is
    identity (``eq=False``): compare key sets by KCV, never with ``==`` on
    key bytes.
    """

    enc: bytes
    mac: bytes
    dek: bytes
    # GP CS v2.3 "Key Version Number": 01..7F for issuer key sets, FF for the initial
    # key set; 00 is "any key set" in INITIALIZE UPDATE, so not a KVN.
    kvn: int

    def __post_init__(self) -> None:
        for name in ("enc", "mac", "dek"):
            _check_key(getattr(self, name), f"Key-{name.upper()}")
        if not 0x01 <= self.kvn <= 0xFF:
            raise CodecError(f"key version number must be 01..FF, not {self.kvn:#04x}")

    @property
    def kcvs(self) -> tuple[bytes, bytes, bytes]:
        """Key check values of ENC, MAC and DEK."""
        return kcv(self.enc), kcv(self.mac), kcv(self.dek)

    def __repr__(self) -> str:
        enc, mac, dek = (value.hex().upper() for value in self.kcvs)
        return f"StaticKeys(kvn={self.kvn:#04x}, aes={8 * len(self.enc)}, kcv_enc={enc}, kcv_mac={mac}, kcv_dek={dek})"

    __str__ = __repr__


def card_keys(master_keys: StaticKeys, iccid_kdd: bytes, kvn: int) -> StaticKeys:
    """The card's key set: each master key diversified with KDF3 over the KDD.

    simwallet uses the 10 bytes of EF.ICCID as the KDD, so the backend can
    derive any card's keys from the master key version and the ICCID.
    """
    return StaticKeys(
        enc=diversify_kdf3(master_keys.enc, iccid_kdd, KeyId.ENC),
        mac=diversify_kdf3(master_keys.mac, iccid_kdd, KeyId.MAC),
        dek=diversify_kdf3(master_keys.dek, iccid_kdd, KeyId.DEK),
        kvn=kvn,
    )


@dataclass(frozen=True, eq=False, repr=False)
class _SessionKeys:
    # Amendment D §6.2.1 "AES Session Keys": S-ENC from Key-ENC (04), S-MAC
    # (06) and S-RMAC (07) from Key-MAC, L = static key length, context =
    # host challenge || card challenge.
    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes

    @classmethod
    def derive(cls, keys: StaticKeys, context: bytes) -> _SessionKeys:
        return cls(
            s_enc=_derive(keys.enc, _Derivation.S_ENC, context, 8 * len(keys.enc)),
            s_mac=_derive(keys.mac, _Derivation.S_MAC, context, 8 * len(keys.mac)),
            s_rmac=_derive(keys.mac, _Derivation.S_RMAC, context, 8 * len(keys.mac)),
        )

    def cryptogram(self, constant: _Derivation, context: bytes) -> bytes:
        # Amendment D §6.2.2.2 / §6.2.2.3: card (00) and host (01) cryptograms
        # under S-MAC, L = 64.
        return _derive(self.s_mac, constant, context, 8 * CRYPTOGRAM_LENGTH)

    def __repr__(self) -> str:
        return "_SessionKeys(<secret>)"


# --- INITIALIZE UPDATE response ------------------------------------------------------------


@dataclass(frozen=True)
class InitializeUpdateResponse:
    """The data field of the INITIALIZE UPDATE response (without the status word).

    Amendment D §7.1 (INITIALIZE UPDATE response data, S8 mode):
    key diversification data (10) | key information: KVN (1), SCP identifier
    ``03`` (1), parameter i (1) | card challenge (8) | card cryptogram (8) |
    sequence counter (3, only when i announces pseudo-random challenges).
    """

    key_diversification_data: bytes
    key_version: int
    i_param: int
    card_challenge: bytes
    card_cryptogram: bytes
    sequence_counter: int | None = None
    scp_identifier: int = SCP_IDENTIFIER

    # The two lengths the data field can have: without and with the sequence counter.
    _LENGTH_RANDOM = KDD_LENGTH + 3 + CHALLENGE_LENGTH + CRYPTOGRAM_LENGTH
    _LENGTH_PSEUDO_RANDOM = _LENGTH_RANDOM + SEQUENCE_COUNTER_LENGTH

    def __post_init__(self) -> None:
        if len(self.key_diversification_data) != KDD_LENGTH:
            raise CodecError(f"key diversification data must be {KDD_LENGTH} bytes")
        for name, value in (("key version", self.key_version), ("i", self.i_param), ("SCP identifier", self.scp_identifier)):
            if not 0 <= value <= 0xFF:
                raise CodecError(f"{name} must be one byte, not {value}")
        if len(self.card_challenge) != CHALLENGE_LENGTH or len(self.card_cryptogram) != CRYPTOGRAM_LENGTH:
            raise CodecError(f"card challenge and cryptogram must be {CHALLENGE_LENGTH} bytes each")
        pseudo_random = bool(self.i_param & ScpOption.PSEUDO_RANDOM_CHALLENGE)
        if pseudo_random != (self.sequence_counter is not None):
            raise CodecError("the sequence counter is present exactly when i announces pseudo-random challenges")
        if self.sequence_counter is not None and not 0 <= self.sequence_counter <= SEQUENCE_COUNTER_MAX:
            raise CodecError(f"sequence counter must fit {SEQUENCE_COUNTER_LENGTH} bytes")

    @classmethod
    def from_bytes(cls, data: bytes) -> InitializeUpdateResponse:
        """Parse the response data field; :class:`CodecError` if it is not SCP03 S8 mode."""
        if len(data) not in (cls._LENGTH_RANDOM, cls._LENGTH_PSEUDO_RANDOM):
            # S16 mode (16-byte challenge and cryptogram) ends up here too.
            raise CodecError(
                f"INITIALIZE UPDATE response must be {cls._LENGTH_RANDOM} or {cls._LENGTH_PSEUDO_RANDOM} bytes "
                f"(SCP03 S8 mode), not {len(data)}"
            )
        kvn, scp, i_param = data[KDD_LENGTH : KDD_LENGTH + 3]
        if scp != SCP_IDENTIFIER:
            raise CodecError(f"card answered for SCP{scp:02X}, not SCP03", offset=KDD_LENGTH + 1)
        offset = KDD_LENGTH + 3
        challenge = data[offset : offset + CHALLENGE_LENGTH]
        offset += CHALLENGE_LENGTH
        cryptogram = data[offset : offset + CRYPTOGRAM_LENGTH]
        offset += CRYPTOGRAM_LENGTH
        counter = int.from_bytes(data[offset:], "big") if len(data) > offset else None
        if bool(i_param & ScpOption.PSEUDO_RANDOM_CHALLENGE) != (counter is not None):
            raise CodecError("sequence counter present exactly when i announces pseudo-random challenges", offset=KDD_LENGTH + 2)
        return cls(
            key_diversification_data=data[:KDD_LENGTH],
            key_version=kvn,
            i_param=i_param,
            card_challenge=challenge,
            card_cryptogram=cryptogram,
            sequence_counter=counter,
            scp_identifier=scp,
        )

    def to_bytes(self) -> bytes:
        counter = b"" if self.sequence_counter is None else self.sequence_counter.to_bytes(SEQUENCE_COUNTER_LENGTH, "big")
        return (
            self.key_diversification_data
            + bytes([self.key_version, self.scp_identifier, self.i_param])
            + self.card_challenge
            + self.card_cryptogram
            + counter
        )


# Given the parsed INITIALIZE UPDATE response (its KDD above all), return the
# card's static keys: how a host diversifies per card without knowing the
# card's identity beforehand.
KeyResolver = Callable[[InitializeUpdateResponse], StaticKeys]


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


# --- host side --------------------------------------------------------------------------------


class HostState(enum.Enum):
    IDLE = "idle"
    AWAITING_IU_RESPONSE = "awaiting INITIALIZE UPDATE response"
    CARD_AUTHENTICATED = "card authenticated"
    AWAITING_EA_RESPONSE = "awaiting EXTERNAL AUTHENTICATE response"
    OPEN = "open"
    AWAITING_RESPONSE = "awaiting response"
    CLOSED = "closed"
    ERROR = "error"


class HostEvent(enum.Enum):
    INITIALIZE_UPDATE = "initialize_update"
    INITIALIZE_UPDATE_RESPONSE = "receive_initialize_update"
    EXTERNAL_AUTHENTICATE = "external_authenticate"
    EXTERNAL_AUTHENTICATE_RESPONSE = "receive_external_authenticate"
    WRAP = "wrap"
    UNWRAP = "unwrap"


# (state, event) -> next state when the step succeeds. A failed step moves to
# ERROR; a pair not listed raises SessionStateError and moves to ERROR.
# (AWAITING_RESPONSE, WRAP) is allowed: a prepared script wraps commands whose
# responses it never sees (the pySim vectors do so); the response to the
# earlier command can then no longer be unwrapped.
HOST_TRANSITIONS: Mapping[tuple[HostState, HostEvent], HostState] = {
    (HostState.IDLE, HostEvent.INITIALIZE_UPDATE): HostState.AWAITING_IU_RESPONSE,
    (HostState.AWAITING_IU_RESPONSE, HostEvent.INITIALIZE_UPDATE_RESPONSE): HostState.CARD_AUTHENTICATED,
    (HostState.CARD_AUTHENTICATED, HostEvent.EXTERNAL_AUTHENTICATE): HostState.AWAITING_EA_RESPONSE,
    (HostState.AWAITING_EA_RESPONSE, HostEvent.EXTERNAL_AUTHENTICATE_RESPONSE): HostState.OPEN,
    (HostState.OPEN, HostEvent.WRAP): HostState.AWAITING_RESPONSE,
    (HostState.AWAITING_RESPONSE, HostEvent.WRAP): HostState.AWAITING_RESPONSE,
    (HostState.AWAITING_RESPONSE, HostEvent.UNWRAP): HostState.OPEN,
}


class Scp03Host:
    """The off-card entity's end of an SCP03 session (sans-I/O).

    ``keys`` is the card's static key set, or a :data:`KeyResolver` that picks
    it from the INITIALIZE UPDATE response (for keys diversified by KDD).
    Every ``receive_…``/``unwrap`` takes the whole R-APDU, status word
    included. Any failure of the card's answer raises and leaves the session
    in ``ERROR`` with its session keys dropped.
    """

    def __init__(self, keys: StaticKeys | KeyResolver) -> None:
        self._keys = keys if isinstance(keys, StaticKeys) else None
        self._resolver = None if isinstance(keys, StaticKeys) else keys
        self._state = HostState.IDLE
        self._host_challenge = b""
        self._kvn_requested = 0
        self._card: InitializeUpdateResponse | None = None
        self._session: _SessionKeys | None = None
        self._channel: _Channel | None = None

    # -- introspection (no secrets) --

    @property
    def state(self) -> HostState:
        return self._state

    @property
    def card_info(self) -> InitializeUpdateResponse | None:
        """The card's INITIALIZE UPDATE response once its cryptogram verified (KDD, KVN, i, counter)."""
        return self._card

    @property
    def security_level(self) -> SecurityLevel | None:
        return None if self._channel is None else self._channel.level

    def __repr__(self) -> str:
        kvn = "?" if self._keys is None else f"{self._keys.kvn:#04x}"
        level = "-" if self._channel is None else f"{int(self._channel.level):#04x}"
        counter = "-" if self._channel is None else str(self._channel.counter)
        return f"Scp03Host(state={self._state.name}, kvn={kvn}, security_level={level}, counter={counter})"

    __str__ = __repr__

    # -- state table --

    def _step(self, event: HostEvent) -> HostState:
        next_state = HOST_TRANSITIONS.get((self._state, event))
        if next_state is None:
            previous = self._state
            self._fail()
            raise SessionStateError(f"{event.value}() is not allowed in state {previous.name}")
        return next_state

    def _fail(self) -> None:
        self._state = HostState.ERROR
        self._session = None
        self._channel = None

    def close(self) -> None:
        """End the session on this side and forget its session keys."""
        self._state = HostState.CLOSED
        self._session = None
        self._channel = None

    # -- INITIALIZE UPDATE --

    def initialize_update(self, host_challenge: bytes, kvn: int = 0) -> bytes:
        """The INITIALIZE UPDATE C-APDU ``80 50 kvn 00 08 <host challenge> 00``.

        ``kvn`` 0 lets the card pick its default key set; otherwise it must be
        the KVN of the static keys. The challenge must come from a CSPRNG.
        """
        if len(host_challenge) != CHALLENGE_LENGTH:
            raise CodecError(f"host challenge must be {CHALLENGE_LENGTH} bytes, not {len(host_challenge)}")
        if not 0 <= kvn <= 0xFF:
            raise CodecError(f"key version number must be one byte, not {kvn}")
        if kvn and self._keys is not None and kvn != self._keys.kvn:
            raise CodecError(f"asked for key set {kvn:#04x} but hold key set {self._keys.kvn:#04x}")
        next_state = self._step(HostEvent.INITIALIZE_UPDATE)
        self._host_challenge = host_challenge
        self._kvn_requested = kvn
        self._state = next_state
        # Amendment D §7.1: INITIALIZE UPDATE, CLA 80, P1 = KVN, P2 = 00, Lc = 08, Le = 00.
        return bytes([CLA_GP, INS_INITIALIZE_UPDATE, kvn, 0x00, CHALLENGE_LENGTH]) + host_challenge + b"\x00"

    def receive_initialize_update(self, response: bytes) -> InitializeUpdateResponse:
        """Check the card's answer to INITIALIZE UPDATE and verify its cryptogram.

        Raises :class:`CardStatusError` for a status word other than 9000,
        :class:`CodecError` for a malformed answer and :class:`SecurityError`
        when the card cryptogram (or key version) is wrong.
        """
        next_state = self._step(HostEvent.INITIALIZE_UPDATE_RESPONSE)
        try:
            data, sw = _split_sw(response)
            if sw != SW_OK:
                raise CardStatusError(sw, "INITIALIZE UPDATE refused")
            card = InitializeUpdateResponse.from_bytes(data)
            keys = self._resolver(card) if self._resolver is not None else self._keys
            if keys is None:  # pragma: no cover - __init__ sets one of the two
                raise SessionStateError("no static keys")
            if self._kvn_requested and card.key_version != self._kvn_requested:
                raise SecureChannelError(f"card answered with key set {card.key_version:#04x}", sw)
            if card.key_version != keys.kvn:
                raise SecureChannelError(f"card uses key set {card.key_version:#04x}, host holds {keys.kvn:#04x}", sw)
            context = self._host_challenge + card.card_challenge
            session = _SessionKeys.derive(keys, context)
            expected = session.cryptogram(_Derivation.CARD_CRYPTOGRAM, context)
            if not hmac.compare_digest(expected, card.card_cryptogram):
                raise SecureChannelError("card cryptogram does not verify", sw)
        except Exception:  # the key resolver's errors too: the session is over either way
            self._fail()
            raise
        self._keys = keys
        self._card = card
        self._session = session
        self._state = next_state
        return card

    # -- EXTERNAL AUTHENTICATE --

    def external_authenticate(self, security_level: int) -> bytes:
        """The EXTERNAL AUTHENTICATE C-APDU ``84 82 SL 00 10 <host cryptogram> <C-MAC>``."""
        next_state = self._step(HostEvent.EXTERNAL_AUTHENTICATE)
        if self._session is None or self._card is None:  # pragma: no cover - guaranteed by the table
            raise SessionStateError("no verified INITIALIZE UPDATE response")
        level = _check_security_level(security_level, self._card.i_param)
        context = self._host_challenge + self._card.card_challenge
        host_cryptogram = self._session.cryptogram(_Derivation.HOST_CRYPTOGRAM, context)
        # Amendment D, "MAC chaining value": 16 zero bytes before EXTERNAL AUTHENTICATE.
        channel = _Channel(self._session, level, bytes(_crypto.AES_BLOCK_SIZE))
        # Amendment D §7.2: EXTERNAL AUTHENTICATE, CLA 84, P1 = security level, P2 = 00.
        header = bytes([CLA_GP | 0x04, INS_EXTERNAL_AUTHENTICATE, security_level, 0x00, CRYPTOGRAM_LENGTH + MAC_LENGTH])
        mac = channel.c_mac(header, host_cryptogram)
        self._channel = channel
        self._state = next_state
        return header + host_cryptogram + mac

    def receive_external_authenticate(self, response: bytes) -> None:
        """Accept 9000; 6300 raises :class:`SecureChannelError`, other words :class:`CardStatusError`."""
        next_state = self._step(HostEvent.EXTERNAL_AUTHENTICATE_RESPONSE)
        try:
            data, sw = _split_sw(response)
            if sw == SW_AUTHENTICATION_FAILED:
                raise SecureChannelError("card rejected the host cryptogram", sw)
            if sw != SW_OK:
                raise CardStatusError(sw, "EXTERNAL AUTHENTICATE refused")
            if data:
                raise CodecError("EXTERNAL AUTHENTICATE response carries unexpected data")
        except Exception:
            self._fail()
            raise
        self._session = None  # the channel holds the keys from here on
        self._state = next_state

    # -- secure messaging --

    def wrap(self, capdu: bytes) -> bytes:
        """Protect a plain C-APDU at the session's security level.

        Sets the class byte's secure messaging bit, encrypts the data with
        S-ENC when C-DECRYPTION is on, appends the C-MAC and keeps Le.
        """
        command = _Command.from_bytes(capdu)
        sm_bit = _secure_messaging_bit(command.cla)
        if sm_bit is None:
            raise CodecError(f"class byte {command.cla:02X} has no secure messaging indication", offset=0)
        if command.cla & sm_bit:
            raise CodecError("command already carries the secure messaging indication", offset=0)
        next_state = self._step(HostEvent.WRAP)
        channel = self._channel
        if channel is None:  # pragma: no cover - guaranteed by the table
            raise SessionStateError("no open channel")
        encrypting = SecurityLevel.C_DECRYPTION in channel.level
        limit = PLAIN_DATA_MAX_ENC if encrypting else PLAIN_DATA_MAX_MAC
        if len(command.data) > limit:
            raise CodecError(f"command data of {len(command.data)} bytes exceeds {limit} at this security level")
        channel.next_counter()
        data = command.data
        if encrypting and data:
            data = _crypto.aes_cbc_encrypt(channel.keys.s_enc, channel.command_icv(), _pad16(data))
        cla = command.cla | sm_bit
        header = bytes([cla, command.ins, command.p1, command.p2, len(data) + MAC_LENGTH])
        mac = channel.c_mac(header, data)
        self._state = next_state
        return header + data + mac + command.le

    def unwrap(self, rapdu: bytes) -> bytes:
        """Verify and strip the R-MAC, decrypt R-ENCRYPTION; return the plain R-APDU.

        Expects the final R-APDU of the last wrapped command (the transport
        has already resolved 61xx/6Cxx). An R-MAC that does not verify raises
        :class:`SecureChannelError` and ends the session.
        """
        next_state = self._step(HostEvent.UNWRAP)
        channel = self._channel
        if channel is None:  # pragma: no cover - guaranteed by the table
            raise SessionStateError("no open channel")
        try:
            data, sw = _split_sw(rapdu)
            if SecurityLevel.R_MAC in channel.level:
                data = self._verify_response(channel, data, sw)
        except Exception:
            self._fail()
            raise
        self._state = next_state
        return data + _sw_bytes(sw)

    @staticmethod
    def _verify_response(channel: _Channel, data: bytes, sw: int) -> bytes:
        if not _is_processed(sw):
            if data:
                raise SecureChannelError("error status word with response data", sw)
            return data
        if len(data) < MAC_LENGTH:
            raise SecureChannelError("response too short to carry an R-MAC", sw)
        body, mac = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
        if not hmac.compare_digest(channel.r_mac(body, sw), mac):
            raise SecureChannelError("R-MAC does not verify", sw)
        if SecurityLevel.R_ENCRYPTION in channel.level and body:
            # Reached only with a verified R-MAC, so these checks are no padding oracle.
            if len(body) % _crypto.AES_BLOCK_SIZE:
                raise SecureChannelError("encrypted response data is not whole blocks", sw)
            plain = _crypto.aes_cbc_decrypt(channel.keys.s_enc, channel.response_icv(), body)
            try:
                body = _crypto.unpad_iso9797_m2(plain, _crypto.AES_BLOCK_SIZE)
            except _crypto.PaddingError as exc:
                raise SecureChannelError("encrypted response data is malformed", sw) from exc
        return body


def open_host_session(keys: StaticKeys | KeyResolver, *, rng: Callable[[int], bytes], kvn: int = 0) -> tuple[Scp03Host, bytes]:
    """A new host session and its INITIALIZE UPDATE, with the challenge from ``rng``.

    Pass ``secrets.token_bytes`` as ``rng`` in production; tests pass a
    deterministic source.
    """
    host = Scp03Host(keys)
    return host, host.initialize_update(rng(CHALLENGE_LENGTH), kvn)


# --- card side ----------------------------------------------------------------------------------


class CardState(enum.Enum):
    IDLE = "idle"  # no session: the card's closed state
    INITIALIZED = "initialized"  # INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE expected
    OPEN = "open"
    RESPONDING = "responding"  # a secured command was unwrapped, its response is due


class CardEvent(enum.Enum):
    INITIALIZE_UPDATE = "process_initialize_update"
    EXTERNAL_AUTHENTICATE = "process_external_authenticate"
    PLAIN_COMMAND = "unwrap_command (no secure messaging)"
    SECURE_COMMAND = "unwrap_command (secure messaging)"
    RESPONSE = "wrap_response"


# (state, event) -> next state when the step succeeds. Every failure, and any
# pair not listed, closes the session (IDLE): a remote command out of order is
# answered 6985 (EXTERNAL AUTHENTICATE) or 6982 (commands), a local call out
# of order raises SessionStateError.
CARD_TRANSITIONS: Mapping[tuple[CardState, CardEvent], CardState] = {
    # Amendment D §7.1: INITIALIZE UPDATE aborts any session and starts a new one.
    **{(state, CardEvent.INITIALIZE_UPDATE): CardState.INITIALIZED for state in CardState},
    (CardState.INITIALIZED, CardEvent.EXTERNAL_AUTHENTICATE): CardState.OPEN,
    # Outside a session plain commands pass through; one arriving between
    # INITIALIZE UPDATE and EXTERNAL AUTHENTICATE abandons the initiation.
    (CardState.IDLE, CardEvent.PLAIN_COMMAND): CardState.IDLE,
    (CardState.INITIALIZED, CardEvent.PLAIN_COMMAND): CardState.IDLE,
    (CardState.IDLE, CardEvent.RESPONSE): CardState.IDLE,
    (CardState.OPEN, CardEvent.SECURE_COMMAND): CardState.RESPONDING,
    # The applet may fail without a response; the next command still verifies.
    (CardState.RESPONDING, CardEvent.SECURE_COMMAND): CardState.RESPONDING,
    (CardState.RESPONDING, CardEvent.RESPONSE): CardState.OPEN,
}

# Called with a byte count like ``secrets.token_bytes``; returns that many
# random bytes for the card challenge.
ChallengeRng = Callable[[int], bytes]


class Scp03Card:
    """The security domain's end of SCP03, for the virtual UICC (sans-I/O).

    One object per key set, living as long as the card: it holds the static
    keys, the key diversification data, the AID used for pseudo-random
    challenges and the sequence counter (read :attr:`sequence_counter` to
    persist it). ``i_param`` announces pseudo-random challenges, R-MAC and
    R-ENCRYPTION (default ``70``: all three). With pseudo-random challenges
    the card derives its challenge per Amendment D §6.2.2.1 unless
    ``challenge_rng`` is given (tests use it to replay a known challenge);
    with random challenges it must be given.

    The sequence counter goes up with every INITIALIZE UPDATE answered, so a
    card challenge is never reused, even when authentication then fails.
    """

    def __init__(
        self,
        keys: StaticKeys,
        *,
        kdd: bytes,
        aid: bytes,
        i_param: int = ScpOption.PSEUDO_RANDOM_CHALLENGE | ScpOption.R_MAC | ScpOption.R_ENCRYPTION,
        sequence_counter: int = 0,
        challenge_rng: ChallengeRng | None = None,
    ) -> None:
        if len(kdd) != KDD_LENGTH:
            raise CodecError(f"key diversification data must be {KDD_LENGTH} bytes, not {len(kdd)}")
        _check_aid(aid)
        known = ScpOption.PSEUDO_RANDOM_CHALLENGE | ScpOption.R_MAC | ScpOption.R_ENCRYPTION
        if not 0 <= i_param <= 0xFF or i_param & ~known:
            raise CodecError(f"parameter i {i_param:#04x} has bits this card does not implement")
        if i_param & ScpOption.R_ENCRYPTION and not i_param & ScpOption.R_MAC:
            raise CodecError("R-ENCRYPTION support needs R-MAC support")
        if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX + 1:
            raise CodecError(f"sequence counter must be 0..{SEQUENCE_COUNTER_MAX + 1}, not {sequence_counter}")
        if challenge_rng is None and not i_param & ScpOption.PSEUDO_RANDOM_CHALLENGE:
            raise CodecError("random card challenges need a challenge_rng")
        self._keys = keys
        self._kdd = kdd
        self._aid = aid
        self._i_param = int(i_param)
        self._sequence_counter = sequence_counter
        self._challenge_rng = challenge_rng
        self._state = CardState.IDLE
        self._context = b""
        self._session: _SessionKeys | None = None
        self._channel: _Channel | None = None

    @property
    def state(self) -> CardState:
        return self._state

    @property
    def sequence_counter(self) -> int:
        """The value the next INITIALIZE UPDATE response will carry."""
        return self._sequence_counter

    @property
    def security_level(self) -> SecurityLevel | None:
        return None if self._channel is None else self._channel.level

    def __repr__(self) -> str:
        level = "-" if self._channel is None else f"{int(self._channel.level):#04x}"
        return (
            f"Scp03Card(state={self._state.name}, kvn={self._keys.kvn:#04x}, i={self._i_param:#04x}, "
            f"sequence_counter={self._sequence_counter}, security_level={level})"
        )

    __str__ = __repr__

    def _close(self) -> None:
        self._state = CardState.IDLE
        self._session = None
        self._channel = None
        self._context = b""

    def _allowed(self, event: CardEvent) -> CardState | None:
        return CARD_TRANSITIONS.get((self._state, event))

    def _reject(self, sw: int) -> bytes:
        self._close()
        return _sw_bytes(sw)

    def _parse_gp_command(self, capdu: bytes, ins: int, method: str, *, secured: bool) -> _Command:
        # GP CS v2.3 "Class Byte Coding": INITIALIZE UPDATE comes in a GP class without
        # secure messaging, EXTERNAL AUTHENTICATE with it.
        try:
            command = _Command.from_bytes(capdu)
        except CodecError as exc:
            raise _Refused(SW_WRONG_LENGTH) from exc
        if command.ins != ins:
            self._close()
            raise SessionStateError(f"INS {command.ins:02X} routed to {method}")
        sm_bit = _secure_messaging_bit(command.cla)
        if not command.cla & 0x80 or sm_bit is None or bool(command.cla & sm_bit) != secured:
            raise _Refused(SW_SECURITY_STATUS_NOT_SATISFIED if secured else SW_CLA_NOT_SUPPORTED)
        if command.p2 != 0:
            raise _Refused(SW_INCORRECT_P1P2)
        return command

    # -- INITIALIZE UPDATE --

    def process_initialize_update(self, capdu: bytes) -> bytes:
        """Answer INITIALIZE UPDATE (R-APDU bytes, status word included).

        Refusals: 6700 wrong length, 6E00 wrong class, 6A86 P2 not 00, 6A88
        unknown key version, 6985 sequence counter exhausted.
        """
        next_state = self._allowed(CardEvent.INITIALIZE_UPDATE)
        try:
            command = self._parse_gp_command(capdu, INS_INITIALIZE_UPDATE, "process_initialize_update", secured=False)
            if next_state is None:  # pragma: no cover - every state accepts INITIALIZE UPDATE
                raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
            if len(command.data) != CHALLENGE_LENGTH:
                raise _Refused(SW_WRONG_LENGTH)
            if command.p1 not in (0, self._keys.kvn):
                raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)
            if self._sequence_counter > SEQUENCE_COUNTER_MAX:
                raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        except _Refused as refusal:
            return self._reject(refusal.sw)
        counter = self._sequence_counter
        if self._challenge_rng is not None:
            card_challenge = self._challenge_rng(CHALLENGE_LENGTH)
            if len(card_challenge) != CHALLENGE_LENGTH:
                self._close()
                raise CodecError(f"challenge_rng returned {len(card_challenge)} bytes, not {CHALLENGE_LENGTH}")
        else:
            card_challenge = pseudo_random_card_challenge(self._keys.enc, counter, self._aid)
        self._sequence_counter = counter + 1
        context = command.data + card_challenge
        session = _SessionKeys.derive(self._keys, context)
        response = InitializeUpdateResponse(
            key_diversification_data=self._kdd,
            key_version=self._keys.kvn,
            i_param=self._i_param,
            card_challenge=card_challenge,
            card_cryptogram=session.cryptogram(_Derivation.CARD_CRYPTOGRAM, context),
            sequence_counter=counter if self._i_param & ScpOption.PSEUDO_RANDOM_CHALLENGE else None,
        )
        self._close()
        self._context = context
        self._session = session
        self._state = next_state
        return response.to_bytes() + _sw_bytes(SW_OK)

    # -- EXTERNAL AUTHENTICATE --

    def process_external_authenticate(self, capdu: bytes) -> bytes:
        """Verify the host cryptogram and C-MAC; ``9000`` opens the session.

        Refusals close the session: 6300 host cryptogram or C-MAC wrong, 6700
        wrong length, 6982 no secure messaging class, 6985 no INITIALIZE UPDATE
        before, 6A86 security level not supported or P2 not 00.
        """
        next_state = self._allowed(CardEvent.EXTERNAL_AUTHENTICATE)
        session = self._session
        try:
            command = self._parse_gp_command(capdu, INS_EXTERNAL_AUTHENTICATE, "process_external_authenticate", secured=True)
            if next_state is None or session is None:
                raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
            if len(command.data) != CRYPTOGRAM_LENGTH + MAC_LENGTH:
                raise _Refused(SW_WRONG_LENGTH)
            try:
                level = _check_security_level(command.p1, self._i_param)
            except CodecError as exc:
                raise _Refused(SW_INCORRECT_P1P2) from exc
        except _Refused as refusal:
            return self._reject(refusal.sw)
        channel = _Channel(session, level, bytes(_crypto.AES_BLOCK_SIZE))
        cryptogram, mac = command.data[:CRYPTOGRAM_LENGTH], command.data[CRYPTOGRAM_LENGTH:]
        expected_mac = channel.c_mac(command.header(len(command.data)), cryptogram)
        expected_cryptogram = session.cryptogram(_Derivation.HOST_CRYPTOGRAM, self._context)
        # Both comparisons always run: the answer does not tell which one failed.
        mac_ok = hmac.compare_digest(expected_mac, mac)
        cryptogram_ok = hmac.compare_digest(expected_cryptogram, cryptogram)
        if not (mac_ok and cryptogram_ok):
            return self._reject(SW_AUTHENTICATION_FAILED)
        self._session = None
        self._context = b""
        self._channel = channel
        self._state = next_state
        return _sw_bytes(SW_OK)

    # -- secure messaging --

    def unwrap_command(self, capdu: bytes) -> bytes:
        """Verify and strip secure messaging; return the plain C-APDU for the applet.

        Outside a session a command without secure messaging passes through
        unchanged. Any failure closes the session and raises
        :class:`SecureChannelError` whose ``sw`` (6982) the card answers.
        """
        try:
            command = _Command.from_bytes(capdu)
        except CodecError as exc:
            if self._state in (CardState.IDLE, CardState.INITIALIZED):
                # Not ours to judge outside a session: the applet answers it.
                self._close()
                return capdu
            self._close()
            raise SecureChannelError("malformed command in a secure channel session") from exc
        sm_bit = _secure_messaging_bit(command.cla)
        secured = sm_bit is not None and bool(command.cla & sm_bit)
        event = CardEvent.SECURE_COMMAND if secured else CardEvent.PLAIN_COMMAND
        next_state = self._allowed(event)
        channel = self._channel
        if next_state is None:
            self._close()
            raise SecureChannelError("no secure channel is open" if secured else "secure messaging expected")
        if sm_bit is None or not secured or channel is None:
            self._state = next_state
            if next_state is CardState.IDLE:
                self._close()
            return capdu
        try:
            plain = self._unwrap(channel, command, sm_bit)
        except SecureChannelError:
            self._close()
            raise
        self._state = next_state
        return plain

    @staticmethod
    def _unwrap(channel: _Channel, command: _Command, sm_bit: int) -> bytes:
        if len(command.data) < MAC_LENGTH:
            raise SecureChannelError("command too short to carry a C-MAC")
        data, mac = command.data[:-MAC_LENGTH], command.data[-MAC_LENGTH:]
        # The chaining value moves only when the MAC verifies; a failure closes the session anyway.
        previous = channel.chain
        if not hmac.compare_digest(channel.c_mac(command.header(len(command.data)), data), mac):
            channel.chain = previous
            raise SecureChannelError("C-MAC does not verify")
        channel.next_counter()
        if SecurityLevel.C_DECRYPTION in channel.level and data:
            if len(data) % _crypto.AES_BLOCK_SIZE:
                raise SecureChannelError("encrypted command data is not whole blocks")
            try:
                data = _crypto.unpad_iso9797_m2(
                    _crypto.aes_cbc_decrypt(channel.keys.s_enc, channel.command_icv(), data), _crypto.AES_BLOCK_SIZE
                )
            except _crypto.PaddingError as exc:
                raise SecureChannelError("encrypted command data is malformed") from exc
        return _Command(command.cla & ~sm_bit, command.ins, command.p1, command.p2, data, command.le).to_bytes()

    def wrap_response(self, rapdu: bytes) -> bytes:
        """Protect the applet's R-APDU to the last unwrapped command (R-MAC, R-ENCRYPTION).

        Outside a session the response passes through unchanged. After an
        error status word only the status word is returned (Amendment D).
        """
        next_state = self._allowed(CardEvent.RESPONSE)
        if next_state is None:
            previous = self._state
            self._close()
            raise SessionStateError(f"wrap_response() is not allowed in state {previous.name}")
        channel = self._channel
        if channel is None or SecurityLevel.R_MAC not in channel.level:
            self._state = next_state
            return rapdu
        data, sw = _split_sw(rapdu)
        if not _is_processed(sw):
            self._state = next_state
            return _sw_bytes(sw)
        encrypting = SecurityLevel.R_ENCRYPTION in channel.level
        limit = PLAIN_RESPONSE_MAX_ENC if encrypting else PLAIN_RESPONSE_MAX_MAC
        if len(data) > limit:
            raise CodecError(f"response data of {len(data)} bytes exceeds {limit} at this security level")
        if encrypting and data:
            data = _crypto.aes_cbc_encrypt(channel.keys.s_enc, channel.response_icv(), _pad16(data))
        mac = channel.r_mac(data, sw)
        self._state = next_state
        return data + mac + _sw_bytes(sw)


# --- PUT KEY ------------------------------------------------------------------------------------

# GP CS v2.3 PUT KEY "Key Data Field" with Amendment D (AES keys), one block per key:
#   key type 88 (1) | length of what follows up to the KCV length (1) |
#   key length (1) | key encrypted with the static Key-DEK, AES-CBC, ICV zero,
#   padded to whole blocks (a 24-byte key takes 32) | KCV length 03 (1) | KCV (3)
# preceded by the new key version number; ENC, MAC, DEK in that order.
_ZERO_ICV: Final = bytes(_crypto.AES_BLOCK_SIZE)


def _encrypt_key(dek: bytes, key: bytes) -> bytes:
    padded = key if len(key) % _crypto.AES_BLOCK_SIZE == 0 else _pad16(key)
    return _crypto.aes_cbc_encrypt(dek, _ZERO_ICV, padded)


def put_key_data(new_keys: StaticKeys, dek: bytes) -> bytes:
    """The PUT KEY data field loading ``new_keys``, each key encrypted under the static ``dek``."""
    _check_key(dek, "Key-DEK")
    out = bytearray([new_keys.kvn])
    for key in (new_keys.enc, new_keys.mac, new_keys.dek):
        encrypted = _encrypt_key(dek, key)
        out += bytes([KEY_TYPE_AES, 1 + len(encrypted), len(key)]) + encrypted + bytes([KCV_LENGTH]) + kcv(key)
    return bytes(out)


def put_key_command(new_keys: StaticKeys, dek: bytes, *, replace_kvn: int = 0) -> bytes:
    """The plain PUT KEY C-APDU (GP CS v2.3 PUT KEY): P1 = KVN replaced (00 adds a key set), P2 = 81.

    Wrap it with :meth:`Scp03Host.wrap` before sending.
    """
    if not 0 <= replace_kvn <= 0x7F:
        raise CodecError(f"replaced key version must be 00..7F, not {replace_kvn:#04x}")
    # P2 b8 = 1: several keys follow; b7..b1 = 1: the first key identifier.
    return _Command(CLA_GP, INS_PUT_KEY, replace_kvn, 0x81, put_key_data(new_keys, dek), b"\x00").to_bytes()


def parse_put_key_data(data: bytes, dek: bytes) -> StaticKeys:
    """Card side: decrypt a PUT KEY data field of three AES keys and verify each KCV.

    :class:`CodecError` for a malformed field, :class:`SecureChannelError`
    (``sw`` 9485, "invalid key check value") when a key check value does not
    match its decrypted key, which is also what a wrong DEK produces.
    """
    _check_key(dek, "Key-DEK")
    if not data:
        raise CodecError("PUT KEY data is empty")
    kvn, offset, keys = data[0], 1, []
    for index in range(3):
        if len(data) < offset + 3:
            raise CodecError(f"key {index + 1} is truncated", offset=offset)
        key_type, block_length, key_length = data[offset : offset + 3]
        if key_type != KEY_TYPE_AES:
            raise CodecError(f"key type {key_type:02X} is not AES (88)", offset=offset)
        encrypted = data[offset + 3 : offset + 2 + block_length]
        if (
            key_length not in _crypto.AES_KEY_SIZES
            or len(encrypted) != block_length - 1
            or not encrypted
            or len(encrypted) % _crypto.AES_BLOCK_SIZE
            or key_length > len(encrypted)
        ):
            raise CodecError(f"key {index + 1} has inconsistent lengths", offset=offset + 1)
        offset += 2 + block_length
        if data[offset : offset + 1] != bytes([KCV_LENGTH]) or len(data) < offset + 1 + KCV_LENGTH:
            raise CodecError(f"key {index + 1} lacks its 3-byte KCV", offset=offset)
        check_value = data[offset + 1 : offset + 1 + KCV_LENGTH]
        offset += 1 + KCV_LENGTH
        # The key length byte is authoritative; padding of a 24-byte key is not interpreted.
        key = _crypto.aes_cbc_decrypt(dek, _ZERO_ICV, encrypted)[:key_length]
        if not hmac.compare_digest(kcv(key), check_value):
            raise SecureChannelError(f"KCV of key {index + 1} does not match", SW_INVALID_KEY_CHECK_VALUE)
        keys.append(key)
    if offset != len(data):
        raise CodecError("trailing bytes after the third key", offset=offset)
    return StaticKeys(enc=keys[0], mac=keys[1], dek=keys[2], kvn=kvn)


def put_key_response(keys: StaticKeys) -> bytes:
    """Card side: the PUT KEY response data (GP CS v2.3 PUT KEY response): KVN then each key's KCV."""
    return bytes([keys.kvn]) + b"".join(keys.kcvs)


def verify_put_key_response(response_data: bytes, new_keys: StaticKeys) -> None:
    """Host side: check the card confirmed exactly ``new_keys``; :class:`SecureChannelError` otherwise."""
    if not hmac.compare_digest(response_data, put_key_response(new_keys)):
        raise SecureChannelError("PUT KEY response does not confirm the key set sent", SW_OK)
