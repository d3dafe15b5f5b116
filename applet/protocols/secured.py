"""Secured packets of ETSI TS 102 225 in the SMS-PP form of 3GPP TS 31.115: the recipe API.

Spec: ETSI TS 102 225 §5.1 (command packet, its security: ciphering with KIc,
RC/CC/DS with KID, the counter and its checks), §5.2 (response packet, the
Proof of Receipt, and its Response Status Codes); 3GPP TS 31.115 §4.2 (the
command packet in a short message, UDH ``02 70 00``) and §4.3 (the response
packet, UDH ``02 71 00``).

Theory of operation
-------------------
Sending a command (``wrap_command``): the secured data gets PCNTR zero octets
of padding so that CNTR ‖ PCNTR ‖ RC/CC/DS ‖ data ‖ padding fills whole
cipher blocks (none without ciphering). The RC/CC is computed over CPL ‖ CHL ‖
SPI ‖ KIc ‖ KID ‖ TAR ‖ CNTR ‖ PCNTR ‖ data ‖ padding (the UDH is not
covered); then CNTR onwards is ciphered in CBC mode with a zero ICV.

Receiving it (``unwrap_command``), in this order: the framing (UDH, CPL, CHL)
and the header codings must decode (else :class:`CodecError`); the TAR must
name a key set (09); SPI must meet the application's minimum security level
(0A); the RC/CC/DS length must be the one SPI and the key set imply (01); the
ciphered part must be whole blocks (05); after deciphering, the RC/CC must
verify (01, compared with :func:`hmac.compare_digest`); only then are PCNTR
(05), the KIc/KID key references and the counter (02, 03, 04) looked at. Any
change to an octet the checksum covers is therefore reported as 01 and no
plaintext is returned. The counter check takes the last accepted counter and
the result carries the new one: the caller stores it (card image, gateway
database); this module keeps no state.

The PoR (``wrap_response``/``unwrap_response``) is secured as SPI octet 2
asks: its RC/CC covers the UDH ``02 71 00`` ‖ RPL ‖ RHL ‖ TAR ‖ CNTR ‖ PCNTR ‖
status ‖ data ‖ padding (TS 31.115 §4.3 includes the UDH, whether or not it is
sent), and CNTR onwards is ciphered if SPI says so. A receiving entity that
cannot secure its PoR (TAR unknown, no key) may answer with the status alone,
unsecured; :func:`unwrap_response` accepts that form only for an error status
and marks it ``verified=False``.

Every failed check raises an :class:`OtaSecurityError` subclass whose
``status`` is the Response Status Code; nothing returns a bool, and no
message holds a key or an expected checksum.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols._ota_crypto import padding_count
from simwallet.applet.protocols.secured_fields import (
    COUNTER_LENGTH,
    COUNTER_MAX,
    NO_MINIMUM,
    CcAlgorithm,
    ChecksumError,
    ChecksumType,
    CipherAlgorithm,
    CipheringError,
    CounterBlockedError,
    CounterHighError,
    CounterLowError,
    CounterMode,
    InsufficientSecurityError,
    Kic,
    Kid,
    KidCc,
    KidOpaque,
    KidRc,
    MinimumSecurityLevel,
    OtaSecurityError,
    PorMode,
    PorTransport,
    RcAlgorithm,
    ResponseStatus,
    Spi,
    Tar,
    TarUnknownError,
    UnidentifiedSecurityError,
    check_counter_value,
    encode_counter,
    kid_from_bytes,
    response_status,
)
from simwallet.applet.protocols.secured_keys import KeySet, compute_checksum, decipher, encipher
from simwallet.applet.protocols.secured_packets import (
    COMMAND_UDH,
    RESPONSE_UDH,
    SMS_USER_DATA_MAX_OCTETS,
    CommandBody,
    CommandFrame,
    CompactRemoteResponse,
    ResponseBody,
    ResponseFrame,
)

__all__ = [
    "COMMAND_UDH",
    "COUNTER_MAX",
    "NO_MINIMUM",
    "RESPONSE_UDH",
    "SMS_USER_DATA_MAX_OCTETS",
    "CcAlgorithm",
    "ChecksumError",
    "ChecksumType",
    "CipherAlgorithm",
    "CipheringError",
    "CommandBody",
    "CommandFrame",
    "CommandPacket",
    "CompactRemoteResponse",
    "CounterBlockedError",
    "CounterHighError",
    "CounterLowError",
    "CounterMode",
    "InsufficientSecurityError",
    "KeyLookup",
    "KeySet",
    "Kic",
    "Kid",
    "KidCc",
    "KidOpaque",
    "KidRc",
    "MinimumSecurityLevel",
    "OtaSecurityError",
    "PorMode",
    "PorTransport",
    "RcAlgorithm",
    "ResponseBody",
    "ResponseFrame",
    "ResponsePacket",
    "ResponseStatus",
    "Spi",
    "Tar",
    "TarUnknownError",
    "UnidentifiedSecurityError",
    "check_counter",
    "kid_from_bytes",
    "unwrap_command",
    "unwrap_response",
    "wrap_command",
    "wrap_response",
]

# The key set lookup of the receiving entity: TAR, KIc and KID of the packet
# (unauthenticated) to the key set, or None when no application has that TAR.
# It may raise an OtaSecurityError subclass itself (an unknown key version).
KeyLookup: TypeAlias = Callable[[Tar, Kic, Kid], KeySet | None]
MinimumLookup: TypeAlias = MinimumSecurityLevel | Callable[[Tar], MinimumSecurityLevel]

# TS 102 225 §5.1.1 / §5.2: the body opens with CNTR and PCNTR (and the status in a PoR).
_COMMAND_FIXED: Final = COUNTER_LENGTH + 1
_RESPONSE_FIXED: Final = COUNTER_LENGTH + 2


@dataclass(frozen=True)
class CommandPacket:
    """A verified, deciphered command packet: its header fields, the secured data, the counter to store."""

    spi: Spi
    kic: Kic
    kid: Kid
    tar: Tar
    counter: int
    # The secured data (the command script) without its padding.
    data: bytes
    # The last accepted counter after this packet: store it for the next check.
    last_counter: int
    with_udh: bool = True


@dataclass(frozen=True)
class ResponsePacket:
    """A PoR after its checks: status, counter and additional response data (without padding).

    ``verified`` is False only for a status-only error PoR that came without
    the RC/CC or ciphering the command's SPI asked for; such a PoR proves
    nothing about who sent it.
    """

    tar: Tar
    counter: int
    status: ResponseStatus
    data: bytes
    verified: bool = True
    with_udh: bool = True

    def compact_response(self) -> CompactRemoteResponse:
        """The additional data read as a TS 102 226 compact remote response."""
        return CompactRemoteResponse.from_bytes(self.data)


def _tar(tar: Tar | bytes) -> Tar:
    return tar if isinstance(tar, Tar) else Tar(tar)


def _checksum_length(keyset: KeySet, checksum: ChecksumType) -> int:
    length = keyset.checksum_length(checksum)
    if length is None:
        raise CodecError("digital signatures (RC/CC/DS = 11) are not supported")
    return length


def check_counter(mode: CounterMode, received: int, last_counter: int) -> int:
    """Apply SPI's counter mode to a received CNTR; return the new last accepted counter.

    No counter and "counter available, no check" leave ``last_counter`` as it
    is. "Higher" and "one higher" refuse everything once ``last_counter`` is
    2^40 - 1 (04), a counter not above it (02) and, for "one higher", a
    counter more than one above it (03).
    """
    check_counter_value(received)
    check_counter_value(last_counter)
    if mode in (CounterMode.NO_COUNTER, CounterMode.NO_CHECK):
        return last_counter
    if last_counter == COUNTER_MAX:
        raise CounterBlockedError("the counter has reached 2^40 - 1", counter=received)
    if received <= last_counter:
        raise CounterLowError("CNTR is not higher than the last accepted counter", counter=received)
    if mode is CounterMode.ONE_HIGHER and received != last_counter + 1:
        raise CounterHighError("CNTR is more than one higher than the last accepted counter", counter=received)
    return received


# --- command packets ---------------------------------------------------------------------------


def wrap_command(data: bytes, keyset: KeySet, *, spi: Spi, tar: Tar | bytes, counter: int, with_udh: bool = True) -> bytes:
    """Secure ``data`` (a command script) as SPI asks and frame it; with the UDH it is one SMS's user data."""
    if not isinstance(data, bytes):
        raise CodecError(f"secured data must be bytes, not {type(data).__name__}")
    n = _checksum_length(keyset, spi.checksum)
    pcntr = padding_count(_COMMAND_FIXED + n + len(data), keyset.block_size) if spi.ciphering else 0
    padded = data + bytes(pcntr)
    fixed = encode_counter(counter) + bytes((pcntr,))
    # Built with a blank checksum first: the frame checks the limits and knows CPL and CHL.
    frame = CommandFrame(spi, keyset.kic_ref, keyset.kid_ref(spi.checksum), _tar(tar), n, fixed + bytes(n) + padded, with_udh)
    checksum = compute_checksum(keyset, spi.checksum, frame.clear_header() + fixed + padded)
    body = fixed + checksum + padded
    return replace(frame, body=encipher(keyset, body) if spi.ciphering else body).to_bytes()


def unwrap_command(packet: bytes, keys: KeyLookup, *, last_counter: int, minimum_security: MinimumLookup = NO_MINIMUM) -> CommandPacket:
    """Check and decipher a command packet (with or without its UDH); see the module docstring for the order.

    Raises :class:`CodecError` for bytes that are no command packet, and an
    :class:`OtaSecurityError` subclass (``status`` = the PoR's Response Status
    Code, ``tar``/``spi``/``counter`` for building that PoR) for every failed
    check.
    """
    check_counter_value(last_counter)
    frame = CommandFrame.from_bytes(packet)
    spi = frame.spi
    try:
        keyset = keys(frame.tar, frame.kic, frame.kid)
        if keyset is None:
            raise TarUnknownError("no key set for this TAR")
        level = minimum_security(frame.tar) if callable(minimum_security) else minimum_security
        level.require(spi)
        body = _open_command(frame, keyset)
        parsed = CommandBody.from_bytes(body, frame.checksum_length)
        try:
            data = _strip_padding(spi.ciphering, keyset, parsed.padding_count, parsed.secured_data)
            _check_key_references(frame, keyset)
            new_counter = check_counter(spi.counter, parsed.counter, last_counter)
        except OtaSecurityError as exc:
            exc.counter = parsed.counter
            raise
    except OtaSecurityError as exc:
        exc.tar, exc.spi = exc.tar or frame.tar, exc.spi or spi
        raise
    return CommandPacket(spi, frame.kic, frame.kid, frame.tar, parsed.counter, data, new_counter, frame.with_udh)


def _open_command(frame: CommandFrame, keyset: KeySet) -> bytes:
    """Decipher the body if SPI says so and verify its RC/CC; return the plain body."""
    spi = frame.spi
    n = keyset.checksum_length(spi.checksum)
    if n is None:
        raise ChecksumError("digital signatures are not supported")
    if frame.checksum_length != n:
        raise ChecksumError(f"RC/CC/DS of {frame.checksum_length} octets where SPI and the key set imply {n}")
    body = frame.body
    if spi.ciphering:
        if len(body) % keyset.block_size:
            raise CipheringError(f"ciphered part of {len(body)} octets is not whole {keyset.block_size}-octet blocks")
        body = decipher(keyset, body)
    fixed = _COMMAND_FIXED + n
    expected = compute_checksum(keyset, spi.checksum, frame.clear_header() + body[:_COMMAND_FIXED] + body[fixed:])
    if not hmac.compare_digest(body[_COMMAND_FIXED:fixed], expected):
        raise ChecksumError(f"{spi.checksum.name} does not verify")
    return body


def _strip_padding(ciphered: bool, keyset: KeySet, pcntr: int, secured: bytes) -> bytes:
    """Remove the PCNTR padding octets, which only ciphering adds and never a whole block of."""
    limit = keyset.block_size - 1 if ciphered else 0
    if pcntr > limit or pcntr > len(secured):
        raise CipheringError(f"PCNTR {pcntr} does not fit the ciphering (at most {limit} and the data length)")
    return secured[: len(secured) - pcntr]


def _check_key_references(frame: CommandFrame, keyset: KeySet) -> None:
    """KIc and KID must name the key set's algorithms (or leave them implicit) and its key version."""
    kic = frame.kic
    if frame.spi.ciphering and (kic.key_index != keyset.kvn or kic.algorithm not in (CipherAlgorithm.IMPLICIT, keyset.kic_algorithm)):
        raise CipheringError("KIc does not name the key set's ciphering key")
    kid = frame.kid
    if isinstance(kid, KidCc) and (kid.key_index != keyset.kvn or kid.algorithm not in (CcAlgorithm.IMPLICIT, keyset.kid_algorithm)):
        raise ChecksumError("KID does not name the key set's checksum key")
    if isinstance(kid, KidRc) and kid.algorithm not in (RcAlgorithm.IMPLICIT, keyset.rc_algorithm):
        raise ChecksumError("KID does not name the key set's redundancy check")


# --- response packets (PoR) ------------------------------------------------------------------------


def _por_secured(spi: Spi) -> bool:
    return spi.por_checksum is not ChecksumType.NONE or spi.por_ciphered


def wrap_response(
    data: bytes,
    keyset: KeySet | None,
    *,
    spi: Spi,
    tar: Tar | bytes,
    counter: int,
    status: ResponseStatus = ResponseStatus.POR_OK,
    with_udh: bool = True,
) -> bytes:
    """Build the PoR for a command with this SPI, TAR and CNTR, secured as SPI octet 2 asks.

    Without a key set only an unsecured PoR can be built: either SPI asks for
    no PoR security, or it is the status-only form of an error (no data).
    """
    if not isinstance(data, bytes):
        raise CodecError(f"additional response data must be bytes, not {type(data).__name__}")
    status = response_status(status)
    tar = _tar(tar)
    if keyset is None:
        if _por_secured(spi) and (status is ResponseStatus.POR_OK or data):
            raise CodecError("this PoR must be secured as SPI asks, which needs the key set")
        body = encode_counter(counter) + bytes((0, status)) + data
        return ResponseFrame(tar, 0, body, with_udh).to_bytes()
    n = _checksum_length(keyset, spi.por_checksum)
    pcntr = padding_count(_RESPONSE_FIXED + n + len(data), keyset.block_size) if spi.por_ciphered else 0
    padded = data + bytes(pcntr)
    fixed = encode_counter(counter) + bytes((pcntr, status))
    frame = ResponseFrame(tar, n, fixed + bytes(n) + padded, with_udh)
    checksum = compute_checksum(keyset, spi.por_checksum, frame.clear_header() + fixed + padded)
    body = fixed + checksum + padded
    return replace(frame, body=encipher(keyset, body) if spi.por_ciphered else body).to_bytes()


def unwrap_response(packet: bytes, keyset: KeySet | None, *, spi: Spi, tar: Tar | bytes, counter: int) -> ResponsePacket:
    """Check a PoR against the command it answers (its SPI, TAR and CNTR) and decipher it.

    Raises :class:`CodecError` for bytes that are no response packet, and an
    :class:`OtaSecurityError` subclass when the PoR fails a check: another TAR
    (06), RC/CC (01), ciphering or padding (05), a CNTR other than the
    command's (02 below it, 03 above it). A PoR that *reports* an error is
    returned, not raised: look at ``status``.
    """
    tar = _tar(tar)
    frame = ResponseFrame.from_bytes(packet)
    if frame.tar != tar:
        raise UnidentifiedSecurityError("the PoR names another TAR than the command", tar=frame.tar, spi=spi)
    status_only = _status_only(frame, spi)
    if status_only is not None:
        return status_only
    if keyset is None and _por_secured(spi):
        raise CodecError("a PoR secured as SPI asks needs the key set to check it")
    try:
        parsed = _open_response(frame, keyset, spi)
        if parsed.counter < counter:
            raise CounterLowError("the PoR's CNTR is below the command's", counter=parsed.counter)
        if parsed.counter > counter:
            raise CounterHighError("the PoR's CNTR is above the command's", counter=parsed.counter)
    except OtaSecurityError as exc:
        exc.tar, exc.spi = frame.tar, spi
        raise
    data = parsed.secured_data[: len(parsed.secured_data) - parsed.padding_count]
    return ResponsePacket(tar, parsed.counter, parsed.status, data, verified=True, with_udh=frame.with_udh)


def _status_only(frame: ResponseFrame, spi: Spi) -> ResponsePacket | None:
    """The unsecured status-only form of an error PoR, where SPI asked for a secured PoR; else None.

    Seven octets after TAR (CNTR, PCNTR 00, status) are never whole cipher
    blocks, so such a body cannot be a ciphered PoR; an OK status in this form
    is not accepted (the caller's checks then refuse it).
    """
    body = frame.body
    if not _por_secured(spi) or frame.checksum_length or len(body) != _RESPONSE_FIXED or body[COUNTER_LENGTH]:
        return None
    plain = ResponseBody.from_bytes(body, 0)
    if plain.status is ResponseStatus.POR_OK:
        return None
    return ResponsePacket(frame.tar, plain.counter, plain.status, b"", verified=False, with_udh=frame.with_udh)


def _open_response(frame: ResponseFrame, keyset: KeySet | None, spi: Spi) -> ResponseBody:
    """Decipher a PoR body if SPI octet 2 says so, verify its RC/CC and its PCNTR; return its fields.

    ``keyset`` is None only when SPI asks for no PoR security (checked by the caller).
    """
    n = 0 if keyset is None else keyset.checksum_length(spi.por_checksum)
    if n is None:
        raise ChecksumError("digital signatures are not supported")
    if frame.checksum_length != n:
        raise ChecksumError(f"RC/CC/DS of {frame.checksum_length} octets where SPI and the key set imply {n}")
    body = frame.body
    if keyset is not None:
        if spi.por_ciphered:
            if len(body) % keyset.block_size:
                raise CipheringError(f"ciphered part of {len(body)} octets is not whole {keyset.block_size}-octet blocks")
            body = decipher(keyset, body)
        fixed = _RESPONSE_FIXED + n
        expected = compute_checksum(keyset, spi.por_checksum, frame.clear_header() + body[:_RESPONSE_FIXED] + body[fixed:])
        if not hmac.compare_digest(body[_RESPONSE_FIXED:fixed], expected):
            raise ChecksumError(f"PoR {spi.por_checksum.name} does not verify")
    parsed = ResponseBody.from_bytes(body, n)
    limit = keyset.block_size - 1 if keyset is not None and spi.por_ciphered else 0
    if parsed.padding_count > min(limit, len(parsed.secured_data)):
        raise CipheringError(f"PCNTR {parsed.padding_count} does not fit the ciphering")
    return parsed
