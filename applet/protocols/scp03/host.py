"""SCP03 host side: the off-card entity's end of a session, a sans-I/O state machine.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2: §7.1 INITIALIZE UPDATE, §7.2 EXTERNAL AUTHENTICATE,
"APDU Command C-MAC", "C-DECRYPTION", "APDU Response R-MAC", "R-ENCRYPTION".

The session is a table, :data:`HOST_TRANSITIONS`; a call out of order raises
:class:`~simwallet.applet.errors.SessionStateError` and ends the session.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping

from simwallet.applet.errors import CardStatusError, CodecError, SecureChannelError, SessionStateError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.scp03.channel import (
    CLA_GP,
    MAC_LENGTH,
    PLAIN_DATA_MAX_ENC,
    PLAIN_DATA_MAX_MAC,
    SW_AUTHENTICATION_FAILED,
    SW_OK,
    SecurityLevel,
    _Channel,
    _check_security_level,
    _Command,
    _is_processed,
    _pad16,
    _secure_messaging_bit,
    _split_sw,
    _sw_bytes,
)
from simwallet.applet.protocols.scp03.handshake import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_INITIALIZE_UPDATE,
    InitializeUpdateResponse,
    KeyResolver,
)
from simwallet.applet.protocols.scp03.keys import CHALLENGE_LENGTH, CRYPTOGRAM_LENGTH, StaticKeys, _Derivation, _SessionKeys


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
