"""SCP03 card side: the security domain's end of a session, a sans-I/O state machine.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2: §6.2.2.1 pseudo-random card challenge, §7.1
INITIALIZE UPDATE, §7.2 EXTERNAL AUTHENTICATE, "APDU Command C-MAC",
"C-DECRYPTION", "APDU Response R-MAC", "R-ENCRYPTION"; status words from
ISO/IEC 7816-4 §5.1.3 and GP CS v2.3.

The session is a table, :data:`CARD_TRANSITIONS`. A remote command out of
order is answered with a status word and closes the session; a local call
out of order raises :class:`~simwallet.applet.errors.SessionStateError`.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping

from simwallet.applet.errors import CodecError, SecureChannelError, SessionStateError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.scp03.channel import (
    MAC_LENGTH,
    PLAIN_RESPONSE_MAX_ENC,
    PLAIN_RESPONSE_MAX_MAC,
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
    _Channel,
    _check_security_level,
    _Command,
    _is_processed,
    _pad16,
    _secure_messaging_bit,
    _split_sw,
    _sw_bytes,
)
from simwallet.applet.protocols.scp03.handshake import INS_EXTERNAL_AUTHENTICATE, INS_INITIALIZE_UPDATE, InitializeUpdateResponse
from simwallet.applet.protocols.scp03.keys import (
    CHALLENGE_LENGTH,
    CRYPTOGRAM_LENGTH,
    KDD_LENGTH,
    SEQUENCE_COUNTER_MAX,
    StaticKeys,
    _check_aid,
    _Derivation,
    _SessionKeys,
    pseudo_random_card_challenge,
)


class _Refused(Exception):
    """The card refuses a command with status word ``sw`` (caught inside this module)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


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
