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

Modules
-------
* :mod:`.keys` — key check values, the data derivation scheme, KDF3
  diversification, :class:`StaticKeys`, session keys, pseudo-random challenges.
* :mod:`.channel` — the channel both sides share (C-MAC and R-MAC chaining,
  ICVs, padding), security levels, short APDU parsing.
* :mod:`.handshake` — INITIALIZE UPDATE / EXTERNAL AUTHENTICATE constants
  and :class:`InitializeUpdateResponse`.
* :mod:`.host` — :class:`Scp03Host` and its state table.
* :mod:`.card` — :class:`Scp03Card` and its state table.
* :mod:`.putkey` — PUT KEY data, command and response, both sides.

Import from this package (``from simwallet.applet.protocols.scp03 import
Scp03Host``); the errors :class:`SecureChannelError` and
:class:`SessionStateError` live in :mod:`simwallet.applet.errors` and are
re-exported here.
"""

from __future__ import annotations

from simwallet.applet.errors import SecureChannelError, SessionStateError
from simwallet.applet.protocols.scp03.card import (
    CARD_TRANSITIONS,
    CardEvent,
    CardState,
    ChallengeRng,
    Scp03Card,
)
from simwallet.applet.protocols.scp03.channel import (
    ALLOWED_SECURITY_LEVELS,
    CLA_GP,
    ENCRYPTION_COUNTER_MAX,
    MAC_LENGTH,
    PLAIN_DATA_MAX_ENC,
    PLAIN_DATA_MAX_MAC,
    PLAIN_RESPONSE_MAX_ENC,
    PLAIN_RESPONSE_MAX_MAC,
    SHORT_LC_MAX,
    SHORT_RESPONSE_DATA_MAX,
    SW_AUTHENTICATION_FAILED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_INCORRECT_P1P2,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WRONG_LENGTH,
    ScpOption,
    SecurityLevel,
)
from simwallet.applet.protocols.scp03.handshake import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_INITIALIZE_UPDATE,
    SCP_IDENTIFIER,
    InitializeUpdateResponse,
    KeyResolver,
)
from simwallet.applet.protocols.scp03.host import (
    HOST_TRANSITIONS,
    HostEvent,
    HostState,
    Scp03Host,
    open_host_session,
)
from simwallet.applet.protocols.scp03.keys import (
    AID_LENGTH_MAX,
    AID_LENGTH_MIN,
    CHALLENGE_LENGTH,
    CRYPTOGRAM_LENGTH,
    KCV_LENGTH,
    KDD_LENGTH,
    SEQUENCE_COUNTER_LENGTH,
    SEQUENCE_COUNTER_MAX,
    KeyId,
    StaticKeys,
    card_keys,
    diversify_kdf3,
    kcv,
    pseudo_random_card_challenge,
)
from simwallet.applet.protocols.scp03.putkey import (
    INS_PUT_KEY,
    KEY_TYPE_AES,
    SW_INVALID_KEY_CHECK_VALUE,
    parse_put_key_data,
    put_key_command,
    put_key_data,
    put_key_response,
    verify_put_key_response,
)

__all__ = [
    "AID_LENGTH_MAX",
    "AID_LENGTH_MIN",
    "ALLOWED_SECURITY_LEVELS",
    "CARD_TRANSITIONS",
    "CHALLENGE_LENGTH",
    "CLA_GP",
    "CRYPTOGRAM_LENGTH",
    "ENCRYPTION_COUNTER_MAX",
    "HOST_TRANSITIONS",
    "INS_EXTERNAL_AUTHENTICATE",
    "INS_INITIALIZE_UPDATE",
    "INS_PUT_KEY",
    "KCV_LENGTH",
    "KDD_LENGTH",
    "KEY_TYPE_AES",
    "MAC_LENGTH",
    "PLAIN_DATA_MAX_ENC",
    "PLAIN_DATA_MAX_MAC",
    "PLAIN_RESPONSE_MAX_ENC",
    "PLAIN_RESPONSE_MAX_MAC",
    "SCP_IDENTIFIER",
    "SEQUENCE_COUNTER_LENGTH",
    "SEQUENCE_COUNTER_MAX",
    "SHORT_LC_MAX",
    "SHORT_RESPONSE_DATA_MAX",
    "SW_AUTHENTICATION_FAILED",
    "SW_CLA_NOT_SUPPORTED",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_INCORRECT_P1P2",
    "SW_INVALID_KEY_CHECK_VALUE",
    "SW_OK",
    "SW_REFERENCED_DATA_NOT_FOUND",
    "SW_SECURITY_STATUS_NOT_SATISFIED",
    "SW_WRONG_LENGTH",
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
