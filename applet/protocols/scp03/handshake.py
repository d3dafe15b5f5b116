"""SCP03 session initiation: INITIALIZE UPDATE and EXTERNAL AUTHENTICATE, and the INITIALIZE UPDATE response.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2, §7.1 INITIALIZE UPDATE (command and response data,
S8 mode) and §7.2 EXTERNAL AUTHENTICATE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.scp03.channel import ScpOption
from simwallet.applet.protocols.scp03.keys import (
    CHALLENGE_LENGTH,
    CRYPTOGRAM_LENGTH,
    KDD_LENGTH,
    SEQUENCE_COUNTER_LENGTH,
    SEQUENCE_COUNTER_MAX,
    StaticKeys,
)

# GP CS v2.3 / Amendment D instruction bytes.
INS_INITIALIZE_UPDATE: Final = 0x50
INS_EXTERNAL_AUTHENTICATE: Final = 0x82
# Amendment D, "Secure Channel Protocol identifier".
SCP_IDENTIFIER: Final = 0x03


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
