"""The vpcd wire protocol, card side: sans-I/O framing and a small state machine.

Spec: vsmartcard (Frank Morgner), the virtual smart card reader driver
``vpcd`` — ``virtualsmartcard/src/vpcd/vpcd.c`` (``sendToVICC``,
``recvFromVICC``, ``vicc_transmit``) and ``vpcd.h`` (``VPCD_CTRL_*``,
``VPCDPORT``); the reference card is vsmartcard's ``vicc``
(``VirtualSmartcard.py``, class ``VirtualICC``). Debian 12 ships it as
``vsmartcard-vpcd`` 3.3 (driver ``libifdvpcd.so.0.8``).

Theory of operation
-------------------
vpcd lives inside pcscd as a reader driver. For each of its slots it listens
on a TCP port (``VPCDPORT`` + slot) and the virtual card connects to it as a
client. Every message in both directions is a frame::

    +----------------+---------------------+
    | length (2, BE) | payload (length)    |
    +----------------+---------------------+

Debian's vpcd writes the length and the payload with two ``send()`` calls,
so frames routinely arrive in pieces; one read may also hold several frames.
From vpcd to the card, a payload of exactly one byte is a control message
(``VPCD_CTRL_OFF`` 0, ``VPCD_CTRL_ON`` 1, ``VPCD_CTRL_RESET`` 2,
``VPCD_CTRL_ATR`` 4); anything longer is a C-APDU. The card answers
``VPCD_CTRL_ATR`` with its ATR and a C-APDU with the R-APDU; it answers
nothing else. vpcd never has more than one request outstanding (it holds
``io_lock`` from send to receive), so the card side is a two-state machine:
idle, or owing exactly one response.

vpcd reads a zero-length answer as "card removed" and drops the connection
(``vicc_transmit`` ejects on a result <= 0), so an empty response is refused
here; a card that wants to leave closes its socket instead.

:class:`VpcdConnection` does no I/O: feed it bytes with
:meth:`~VpcdConnection.receive_data` (``b""`` means end of stream), take
events with :meth:`~VpcdConnection.next_event`, and frame answers with
:meth:`~VpcdConnection.send_response`. A thin driver
(:mod:`simwallet.applet.card.link`) moves the bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final

from simwallet.applet.errors import CodecError, TruncatedError, VpcdStateError

# VpcdStateError is defined with the other error roots and re-exported here.
__all__ = [
    "APDU_LEN_MIN",
    "FRAME_LEN_MAX",
    "LENGTH_FIELD",
    "VPCD_CTRL_LEN",
    "VPCD_PORT",
    "VPCD_SLOTS",
    "Apdu",
    "ConnectionClosed",
    "ControlCode",
    "GetAtr",
    "PowerOff",
    "PowerOn",
    "Reset",
    "Send",
    "State",
    "VpcdConnection",
    "VpcdEvent",
    "VpcdRequest",
    "VpcdStateError",
    "frame",
    "transition",
]

# --- wire constants (vpcd.h) -------------------------------------------------

# vpcd.h: "#define VPCDPORT 35963" — the port of slot 0; slot n listens on VPCDPORT + n.
VPCD_PORT: Final = 35963
# Slots per vpcd reader in Debian's build: readers "Virtual PCD 00 00" and "Virtual PCD 00 01".
VPCD_SLOTS: Final = 2
# vpcd.c sendToVICC/recvFromVICC: "send size of message on 2 bytes", network byte order.
LENGTH_FIELD: Final = struct.Struct("!H")
# vpcd.h: "#define VPCD_CTRL_LEN 1" — a payload of this length is a control message.
VPCD_CTRL_LEN: Final = 1
# The 2-byte length field's ceiling; vpcd's sendToVICC refuses longer payloads too.
FRAME_LEN_MAX: Final = 0xFFFF
# vpcd.c: every payload longer than a control message is a C-APDU. Whether it is a
# well-formed one (ISO/IEC 7816-4 §5.1: at least CLA INS P1 P2) is for the card to
# judge and answer (SW 6700), not a reason to drop the reader connection.
APDU_LEN_MIN: Final = VPCD_CTRL_LEN + 1


class ControlCode(enum.IntEnum):
    """vpcd.h ``VPCD_CTRL_*``: the one-byte control messages from vpcd."""

    # "#define VPCD_CTRL_OFF 0" — IFDHPowerICC(IFD_POWER_DOWN).
    OFF = 0
    # "#define VPCD_CTRL_ON 1" — IFDHPowerICC(IFD_POWER_UP); vpcd asks for the ATR next.
    ON = 1
    # "#define VPCD_CTRL_RESET 2" — IFDHPowerICC(IFD_RESET); vpcd asks for the ATR next.
    RESET = 2
    # "#define VPCD_CTRL_ATR 4" — answered with the ATR; also pcscd's presence poll.
    ATR = 4


# --- events ----------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """One vpcd frame: the 2-byte big-endian length, then ``payload``."""
    if not payload:
        raise CodecError("a vpcd frame cannot be empty (vpcd reads length 0 as card removal)")
    if len(payload) > FRAME_LEN_MAX:
        raise CodecError(f"a vpcd payload is at most {FRAME_LEN_MAX} bytes, got {len(payload)}")
    return LENGTH_FIELD.pack(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class PowerOff:
    """``VPCD_CTRL_OFF``: the reader removed power. No answer."""

    def to_bytes(self) -> bytes:
        """The frame vpcd sends for this event."""
        return frame(bytes([ControlCode.OFF]))


@dataclass(frozen=True, slots=True)
class PowerOn:
    """``VPCD_CTRL_ON``: the reader applied power (cold reset). No answer."""

    def to_bytes(self) -> bytes:
        """The frame vpcd sends for this event."""
        return frame(bytes([ControlCode.ON]))


@dataclass(frozen=True, slots=True)
class Reset:
    """``VPCD_CTRL_RESET``: warm reset. No answer."""

    def to_bytes(self) -> bytes:
        """The frame vpcd sends for this event."""
        return frame(bytes([ControlCode.RESET]))


@dataclass(frozen=True, slots=True)
class GetAtr:
    """``VPCD_CTRL_ATR``: the card must answer with its ATR."""

    def to_bytes(self) -> bytes:
        """The frame vpcd sends for this event."""
        return frame(bytes([ControlCode.ATR]))


@dataclass(frozen=True, slots=True)
class Apdu:
    """A C-APDU; the card must answer with the R-APDU.

    ``data`` stays out of ``repr``: PINs and keys travel in APDUs.
    """

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.data) < APDU_LEN_MIN:
            raise CodecError(f"a C-APDU over vpcd has at least {APDU_LEN_MIN} bytes, got {len(self.data)}")
        if len(self.data) > FRAME_LEN_MAX:
            raise CodecError(f"a C-APDU over vpcd has at most {FRAME_LEN_MAX} bytes, got {len(self.data)}")

    def __repr__(self) -> str:
        return f"Apdu(<{len(self.data)} bytes>)"

    def to_bytes(self) -> bytes:
        """The frame vpcd sends for this event."""
        return frame(self.data)


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """vpcd closed the stream between frames (``receive_data(b"")``)."""


# What vpcd sends (each has to_bytes()), and everything next_event() can return.
VpcdRequest = PowerOff | PowerOn | Reset | GetAtr | Apdu
VpcdEvent = VpcdRequest | ConnectionClosed

_CONTROL_EVENTS: Final[dict[int, PowerOff | PowerOn | Reset | GetAtr]] = {
    ControlCode.OFF: PowerOff(),
    ControlCode.ON: PowerOn(),
    ControlCode.RESET: Reset(),
    ControlCode.ATR: GetAtr(),
}


# --- state machine -----------------------------------------------------------


class State(enum.Enum):
    """Where the card side of one vpcd connection stands."""

    # Waiting for vpcd's next frame.
    IDLE = "idle"
    # GetAtr or Apdu received: exactly one response is owed before anything else.
    RESPONSE_OWED = "response_owed"
    # vpcd closed the stream cleanly; nothing more happens on this connection.
    CLOSED = "closed"
    # vpcd sent junk; the connection is unusable and must be dropped.
    ERROR = "error"


class Send(enum.Enum):
    """The one thing the card side sends."""

    RESPONSE = "response"


# (state, what happened) -> next state. A pair not in the table is refused.
_TRANSITIONS: Final[dict[tuple[State, type[VpcdEvent] | Send], State]] = {
    (State.IDLE, PowerOff): State.IDLE,
    (State.IDLE, PowerOn): State.IDLE,
    (State.IDLE, Reset): State.IDLE,
    (State.IDLE, GetAtr): State.RESPONSE_OWED,
    (State.IDLE, Apdu): State.RESPONSE_OWED,
    (State.IDLE, ConnectionClosed): State.CLOSED,
    (State.RESPONSE_OWED, Send.RESPONSE): State.IDLE,
}


def transition(state: State, happened: type[VpcdEvent] | Send) -> State:
    """The state after ``happened`` in ``state``; :class:`VpcdStateError` if the pair is not allowed."""
    try:
        return _TRANSITIONS[state, happened]
    except KeyError:
        what = happened.value if isinstance(happened, Send) else happened.__name__
        raise VpcdStateError(f"{what} is not allowed in state {state.value}") from None


class VpcdConnection:
    """The card side of one vpcd TCP connection, without I/O.

    ``frame_len_max`` lowers the accepted payload length below
    :data:`FRAME_LEN_MAX` (a card that takes short APDUs only may pass 261,
    ISO/IEC 7816-4 §5.1: 4 header + 1 Lc + 255 data + 1 Le);
    a longer frame from vpcd raises :class:`CodecError`.
    """

    def __init__(self, *, frame_len_max: int = FRAME_LEN_MAX) -> None:
        if not APDU_LEN_MIN <= frame_len_max <= FRAME_LEN_MAX:
            raise ValueError(f"frame_len_max must be in {APDU_LEN_MIN}..{FRAME_LEN_MAX}, got {frame_len_max}")
        self._frame_len_max = frame_len_max
        self._buffer = bytearray()
        self._eof = False
        self._state = State.IDLE

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def frame_len_max(self) -> int:
        """The longest payload accepted from vpcd."""
        return self._frame_len_max

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the socket; ``b""`` marks the end of the stream."""
        if self._eof:
            raise VpcdStateError("data received after the end of the stream")
        if self._state is State.ERROR:
            raise VpcdStateError("the connection failed earlier; drop it")
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> VpcdEvent | None:
        """The next complete event, or ``None`` until more data arrives.

        Raises :class:`CodecError` on junk (the connection then stays in
        :attr:`State.ERROR`) and :class:`VpcdStateError` while a response is
        still owed.
        """
        if self._state is State.RESPONSE_OWED:
            raise VpcdStateError("answer the previous GetAtr or Apdu before reading the next event")
        if self._state is State.ERROR:
            raise VpcdStateError("the connection failed earlier; drop it")
        if self._state is State.CLOSED:
            return None
        try:
            event = self._parse_frame()
        except CodecError:
            self._state = State.ERROR
            raise
        if event is not None:
            self._state = transition(self._state, type(event))
        return event

    def send_response(self, payload: bytes) -> bytes:
        """Frame the answer to the pending GetAtr (the ATR) or Apdu (the R-APDU).

        :class:`VpcdStateError` if nothing is pending; :class:`CodecError` if
        ``payload`` is empty or longer than :data:`FRAME_LEN_MAX` (the answer
        is then still owed).
        """
        next_state = transition(self._state, Send.RESPONSE)
        data = frame(payload)
        self._state = next_state
        return data

    def _parse_frame(self) -> VpcdEvent | None:
        buffer = self._buffer
        if len(buffer) < LENGTH_FIELD.size:
            return self._at_end_of_buffer()
        (length,) = LENGTH_FIELD.unpack_from(buffer)
        if length == 0:
            raise CodecError("vpcd sent an empty frame")
        if length > self._frame_len_max:
            raise CodecError(f"vpcd frame of {length} bytes exceeds the limit of {self._frame_len_max}")
        end = LENGTH_FIELD.size + length
        if len(buffer) < end:
            return self._at_end_of_buffer()
        payload = bytes(buffer[LENGTH_FIELD.size : end])
        del buffer[:end]
        if length == VPCD_CTRL_LEN:
            code = payload[0]
            control = _CONTROL_EVENTS.get(code)
            if control is None:
                raise CodecError(f"unknown vpcd control code 0x{code:02X}")
            return control
        return Apdu(payload)

    def _at_end_of_buffer(self) -> ConnectionClosed | None:
        # Called when the buffer holds no complete frame.
        if not self._eof:
            return None
        if self._buffer:
            raise TruncatedError(f"vpcd closed the stream inside a frame ({len(self._buffer)} bytes pending)")
        return ConnectionClosed()
