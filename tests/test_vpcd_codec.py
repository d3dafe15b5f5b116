"""The vpcd framing and card-side state machine (:mod:`simwallet.applet.protocols.vpcd`).

Every frame is checked both ways with one helper (parse whole, one byte at a
time and with trailing data; build with ``to_bytes``), all 256 control codes
are walked, every (state, event) pair of the transition table is tried, and
hypothesis feeds random event streams in random chunks and pure junk, of
which only :class:`CodecError` may escape.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.vpcd import (
    FRAME_LEN_MAX,
    Apdu,
    ConnectionClosed,
    ControlCode,
    GetAtr,
    PowerOff,
    PowerOn,
    Reset,
    Send,
    State,
    VpcdConnection,
    VpcdEvent,
    VpcdRequest,
    VpcdStateError,
    frame,
    transition,
)

SELECT_MF = bytes.fromhex("00A40004023F00")
SW_OK = b"\x90\x00"
OWES_RESPONSE = (GetAtr, Apdu)


def feed(conn: VpcdConnection, data: bytes) -> list[VpcdEvent]:
    """Feed ``data`` and collect events, answering each GetAtr/Apdu with 9000."""
    conn.receive_data(data)
    events: list[VpcdEvent] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
        if isinstance(event, OWES_RESPONSE):
            conn.send_response(SW_OK)
        if isinstance(event, ConnectionClosed):
            break
    return events


def parse_all(data: bytes, chunk: int | None = None) -> list[VpcdEvent]:
    conn = VpcdConnection()
    step = chunk or max(len(data), 1)
    events: list[VpcdEvent] = []
    for start in range(0, len(data), step):
        events += feed(conn, data[start : start + step])
    return events


def assert_codec(event: VpcdRequest, data: bytes) -> None:
    """``data`` parses to ``event`` (whole, byte at a time, with trailing data) and ``event`` builds ``data``."""
    assert event.to_bytes() == data
    assert parse_all(data) == [event]
    assert parse_all(data, chunk=1) == [event]
    # Trailing data: the first half of another frame stays buffered, nothing more is reported.
    conn = VpcdConnection()
    assert feed(conn, data + SELECT_MF[:3]) == [event]
    assert conn.state is State.IDLE


VECTORS = [
    pytest.param(PowerOff(), b"\x00\x01\x00", id="power-off"),
    pytest.param(PowerOn(), b"\x00\x01\x01", id="power-on"),
    pytest.param(Reset(), b"\x00\x01\x02", id="reset"),
    pytest.param(GetAtr(), b"\x00\x01\x04", id="get-atr"),
    pytest.param(Apdu(SELECT_MF), b"\x00\x07" + SELECT_MF, id="select-mf"),
    pytest.param(Apdu(b"\x00\xa4"), b"\x00\x02\x00\xa4", id="two-byte-apdu"),  # pcscd forwards these; the card answers 6700
    pytest.param(Apdu(bytes(FRAME_LEN_MAX)), b"\xff\xff" + bytes(FRAME_LEN_MAX), id="longest-apdu"),
]


@pytest.mark.parametrize(("event", "data"), VECTORS)
def test_frame_both_ways(event: VpcdRequest, data: bytes) -> None:
    assert_codec(event, data)


@pytest.mark.parametrize("code", range(256), ids=lambda code: f"0x{code:02X}")
def test_every_control_code(code: int) -> None:
    data = bytes([0, 1, code])
    known: dict[int, VpcdRequest] = {
        ControlCode.OFF: PowerOff(),
        ControlCode.ON: PowerOn(),
        ControlCode.RESET: Reset(),
        ControlCode.ATR: GetAtr(),
    }
    if code in known:
        assert_codec(known[code], data)
    else:
        conn = VpcdConnection()
        conn.receive_data(data)
        with pytest.raises(CodecError, match=f"0x{code:02X}"):
            conn.next_event()
        assert conn.state is State.ERROR
        with pytest.raises(VpcdStateError):
            conn.next_event()


def test_response_framing() -> None:
    conn = VpcdConnection()
    conn.receive_data(GetAtr().to_bytes())
    assert conn.next_event() == GetAtr()
    owing: State = conn.state
    assert owing is State.RESPONSE_OWED
    atr = bytes.fromhex("3B9F96801FC78031E073FE211B633A204F8300900092")
    assert conn.send_response(atr) == struct.pack("!H", len(atr)) + atr
    assert conn.state is State.IDLE
    conn.receive_data(Apdu(SELECT_MF).to_bytes())
    assert conn.next_event() == Apdu(SELECT_MF)
    assert conn.send_response(SW_OK) == b"\x00\x02\x90\x00"


def test_many_frames_in_one_read() -> None:
    stream: list[VpcdRequest] = [PowerOn(), GetAtr(), Apdu(SELECT_MF), Reset(), GetAtr(), Apdu(b"\x80\xca\x9f\x7f\x00"), PowerOff()]
    data = b"".join(event.to_bytes() for event in stream)
    assert parse_all(data) == stream
    assert parse_all(data, chunk=1) == stream
    assert parse_all(data, chunk=5) == stream


def test_partial_frame_waits_for_more() -> None:
    conn = VpcdConnection()
    data = Apdu(SELECT_MF).to_bytes()
    for byte in data[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is None
    conn.receive_data(data[-1:])
    assert conn.next_event() == Apdu(SELECT_MF)


def test_end_of_stream() -> None:
    conn = VpcdConnection()
    assert feed(conn, PowerOn().to_bytes()) == [PowerOn()]
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.state is State.CLOSED
    assert conn.next_event() is None
    with pytest.raises(VpcdStateError):
        conn.receive_data(b"\x00")


def test_end_of_stream_inside_a_frame() -> None:
    conn = VpcdConnection()
    conn.receive_data(Apdu(SELECT_MF).to_bytes()[:4])
    assert conn.next_event() is None
    conn.receive_data(b"")
    with pytest.raises(TruncatedError, match="inside a frame"):
        conn.next_event()


def test_empty_frame_is_junk() -> None:
    conn = VpcdConnection()
    conn.receive_data(b"\x00\x00")
    with pytest.raises(CodecError, match="empty"):
        conn.next_event()


def test_frame_len_max() -> None:
    short_only = VpcdConnection(frame_len_max=261)  # ISO/IEC 7816-4 short APDUs
    longest = Apdu(bytes(261))
    assert feed(short_only, longest.to_bytes()) == [longest]
    short_only.receive_data(struct.pack("!H", 262))  # the length alone is enough to refuse
    with pytest.raises(CodecError, match="262 bytes exceeds the limit of 261"):
        short_only.next_event()
    with pytest.raises(ValueError, match="frame_len_max"):
        VpcdConnection(frame_len_max=FRAME_LEN_MAX + 1)


def test_response_misuse() -> None:
    conn = VpcdConnection()
    with pytest.raises(VpcdStateError):
        conn.send_response(SW_OK)  # nothing asked
    conn.receive_data(Apdu(SELECT_MF).to_bytes() + GetAtr().to_bytes())
    assert conn.next_event() == Apdu(SELECT_MF)
    with pytest.raises(VpcdStateError):
        conn.next_event()  # the R-APDU is still owed
    with pytest.raises(CodecError, match="empty"):
        conn.send_response(b"")
    with pytest.raises(CodecError, match="at most"):
        conn.send_response(bytes(FRAME_LEN_MAX + 1))
    assert conn.state is State.RESPONSE_OWED  # a refused answer is still owed
    conn.send_response(SW_OK)
    assert conn.next_event() == GetAtr()


def test_apdu_value_checks_and_repr() -> None:
    with pytest.raises(CodecError):
        Apdu(b"\x00")
    with pytest.raises(CodecError):
        Apdu(bytes(FRAME_LEN_MAX + 1))
    secret = Apdu(bytes.fromhex("0020000108313233343536FFFF"))  # VERIFY PIN
    assert repr(secret) == "Apdu(<13 bytes>)"
    assert "3132" not in repr(secret) and "123456" not in repr(secret)
    with pytest.raises(CodecError):
        frame(b"")


HAPPENINGS: list[type[VpcdEvent] | Send] = [PowerOff, PowerOn, Reset, GetAtr, Apdu, ConnectionClosed, Send.RESPONSE]
ALLOWED = {
    (State.IDLE, PowerOff): State.IDLE,
    (State.IDLE, PowerOn): State.IDLE,
    (State.IDLE, Reset): State.IDLE,
    (State.IDLE, GetAtr): State.RESPONSE_OWED,
    (State.IDLE, Apdu): State.RESPONSE_OWED,
    (State.IDLE, ConnectionClosed): State.CLOSED,
    (State.RESPONSE_OWED, Send.RESPONSE): State.IDLE,
}


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("happened", HAPPENINGS, ids=lambda h: h.value if isinstance(h, Send) else h.__name__)
def test_every_transition(state: State, happened: type[VpcdEvent] | Send) -> None:
    expected = ALLOWED.get((state, happened))
    if expected is None:
        with pytest.raises(VpcdStateError):
            transition(state, happened)
    else:
        assert transition(state, happened) is expected


# --- hypothesis ----------------------------------------------------------------------

apdu_data = st.binary(min_size=2, max_size=300)
events = st.one_of(
    st.sampled_from([PowerOff(), PowerOn(), Reset(), GetAtr()]),
    apdu_data.map(Apdu),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [piece for piece in pieces if piece]


@given(stream=st.lists(events, max_size=30), cuts=st.lists(st.integers(min_value=0), max_size=20), responses=st.data())
def test_random_streams_in_random_chunks(stream: list[VpcdRequest], cuts: list[int], responses: st.DataObject) -> None:
    data = b"".join(event.to_bytes() for event in stream)
    conn = VpcdConnection()
    seen: list[VpcdEvent] = []
    for piece in chunked(data, cuts):
        conn.receive_data(piece)
        while (event := conn.next_event()) is not None:
            seen.append(event)
            if isinstance(event, OWES_RESPONSE):
                answer = responses.draw(st.binary(min_size=1, max_size=300))
                assert conn.send_response(answer) == struct.pack("!H", len(answer)) + answer
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert seen == stream


@given(junk=st.binary(max_size=600), cuts=st.lists(st.integers(min_value=0), max_size=20), limit=st.integers(2, FRAME_LEN_MAX))
def test_junk_raises_only_codec_error(junk: bytes, cuts: list[int], limit: int) -> None:
    conn = VpcdConnection(frame_len_max=limit)
    try:
        for piece in [*chunked(junk, cuts), b""]:
            feed(conn, piece)
    except CodecError:
        assert conn.state is State.ERROR
