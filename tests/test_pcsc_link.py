"""End to end with the real stack: pyscard → private pcscd → vpcd → VpcdLink → a test card.

The fixtures live here (tests/conftest.py belongs to the database tests). The
private pcscd runs on a free pair of ports, so these tests neither collide
with a system pcscd nor with each other under pytest-xdist.

libpcsclite binds a process to one socket path on its first PC/SC call (see
:mod:`simwallet.provisioning.pcscd`), so the socket lives in a session-wide
``run_dir`` and every pcscd this session starts for in-process clients reuses
it. A second module that needs pcscd should move ``pcsc_run_dir`` and
``pcscd`` into conftest.py rather than start its own.

The last tests run the link against a scripted vpcd (a plain TCP server in the
test) for what pcscd cannot be made to do on purpose: junk on the wire.

No timing is asserted: waits are bounded, and the throughput figures live in
``scripts/bench/apdu.py``.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pcsc_helpers import PRESENCE_WAIT_S, check, connect, reader_state, transmit, wait_for_card, wait_until
from smartcard.scard import (  # type: ignore[import-untyped]
    SCARD_LEAVE_CARD,
    SCARD_PROTOCOL_T0,
    SCARD_RESET_CARD,
    SCARD_STATE_PRESENT,
    SCARD_UNPOWER_CARD,
    SCardDisconnect,
    SCardStatus,
)

from simwallet.applet.card.link import SW_NO_PRECISE_DIAGNOSIS, VpcdLink, port_for_reader
from simwallet.applet.protocols.vpcd import VPCD_PORT, Apdu, GetAtr, PowerOn
from simwallet.provisioning.pcscd import PortInUseError, PrivatePcscd, free_port_pair

SELECT_MF = bytes.fromhex("00A40004023F00")
SW_OK = b"\x90\x00"
ECHO_SW = b"\x90\x00"
READER_0 = "Virtual PCD 00 00"
READER_1 = "Virtual PCD 00 01"


def with_tck(body: bytes) -> bytes:
    """An ATR with its check byte TCK (ISO/IEC 7816-3 §8.2.5: T0 … TCK XOR to zero)."""
    return body + bytes([functools.reduce(lambda a, b: a ^ b, body[1:], 0)])


# A UICC-like ATR: T=0 and T=15 indicated (TS 102 221 §6.3), 15 historical bytes.
ATR_A = with_tck(bytes.fromhex("3B9F96801FC78031E073FE211B633A204F83009000"))
ATR_B = with_tck(bytes.fromhex("3B9F96801FC78031E073FE211B633A204F83019000"))


class EchoCard:
    """A tiny card: SELECT MF answers 9000, anything else is echoed followed by 9000."""

    def __init__(self, atr: bytes = ATR_A) -> None:
        self._atr = atr
        self.events: list[str] = []
        self.fail_next_apdu = False

    def atr(self) -> bytes:
        self.events.append("atr")
        return self._atr

    def power_on(self) -> None:
        self.events.append("power_on")

    def power_off(self) -> None:
        self.events.append("power_off")

    def reset(self) -> None:
        self.events.append("reset")

    def apdu(self, capdu: bytes) -> bytes:
        self.events.append("apdu")
        if self.fail_next_apdu:
            self.fail_next_apdu = False
            raise RuntimeError("card bug")
        if capdu == SELECT_MF:
            return SW_OK
        return capdu + ECHO_SW

    def control_events(self) -> list[str]:
        """Events other than the ATR requests pcscd's presence polling sends every 0.4 s."""
        return [event for event in self.events if event != "atr"]


@pytest.fixture
def link_factory(pcscd: PrivatePcscd, context: int) -> Iterator[Callable[..., VpcdLink]]:
    """Start links to the private pcscd's readers; afterwards stop them and wait until pcscd sees the readers empty."""
    links: list[VpcdLink] = []
    readers: set[int] = set()

    def start(card: EchoCard, reader: int = 0, **options: Any) -> VpcdLink:
        link = VpcdLink(card, port=port_for_reader(reader, base_port=pcscd.base_port), **options)
        link.start()
        links.append(link)
        readers.add(reader)
        return link

    yield start
    for link in links:
        link.stop()
    for reader in readers:
        wait_for_card(context, pcscd.reader_names[reader], present=False)


# --- end to end ----------------------------------------------------------------------------


def test_atr_vectors_are_valid() -> None:
    for atr in (ATR_A, ATR_B):
        assert functools.reduce(lambda a, b: a ^ b, atr[1:], 0) == 0
        assert len(atr) == 22


def test_vpcd_readers_are_listed(pcscd: PrivatePcscd) -> None:
    from smartcard.System import readers  # type: ignore[import-untyped]

    names = [str(reader) for reader in readers()]
    assert READER_0 in names and READER_1 in names
    assert pcscd.reader_names == (READER_0, READER_1)


def test_card_present_while_linked(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    card = EchoCard()
    assert not reader_state(context, READER_0)[0] & SCARD_STATE_PRESENT
    link = link_factory(card)
    wait_for_card(context, READER_0)
    wait_until(lambda: "power_on" in card.events, "pcscd to power the card on")
    link.stop()
    wait_for_card(context, READER_0, present=False)
    assert card.control_events()[-1] == "power_off"  # leaving the reader powers the card off


def test_atr_through_pyscard(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    link_factory(EchoCard(ATR_A))
    assert wait_for_card(context, READER_0) == ATR_A
    handle, _ = connect(context, READER_0)
    try:
        hresult, reader, _state, _protocol, atr = SCardStatus(handle)
        check(hresult, "SCardStatus")
        assert reader == READER_0
        assert bytes(atr) == ATR_A
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)


def test_apdu_round_trip(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    traced: list[tuple[bytes, bytes]] = []
    link_factory(EchoCard(), apdu_trace=lambda capdu, rapdu: traced.append((capdu, rapdu)))
    wait_for_card(context, READER_0)
    handle, protocol = connect(context, READER_0)
    try:
        assert protocol == SCARD_PROTOCOL_T0  # the ATR offers T=0 only (TD1 = 80)
        assert transmit(handle, SELECT_MF) == SW_OK
        read_binary = bytes.fromhex("00B0000010")
        assert transmit(handle, read_binary) == read_binary + ECHO_SW
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)
    assert traced == [(SELECT_MF, SW_OK), (read_binary, read_binary + ECHO_SW)]


def test_two_cards_in_two_readers(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    card_a, card_b = EchoCard(ATR_A), EchoCard(ATR_B)
    link_factory(card_a, reader=0)
    link_factory(card_b, reader=1)
    assert wait_for_card(context, READER_0) == ATR_A
    assert wait_for_card(context, READER_1) == ATR_B
    handle_a, _ = connect(context, READER_0)
    handle_b, _ = connect(context, READER_1)
    try:
        assert transmit(handle_a, b"\x00\xca\x00\x01\x00") == b"\x00\xca\x00\x01\x00" + ECHO_SW
        assert transmit(handle_b, b"\x00\xca\x00\x02\x00") == b"\x00\xca\x00\x02\x00" + ECHO_SW
    finally:
        SCardDisconnect(handle_a, SCARD_LEAVE_CARD)
        SCardDisconnect(handle_b, SCARD_LEAVE_CARD)
    assert card_a.control_events().count("apdu") == 1
    assert card_b.control_events().count("apdu") == 1


def test_card_comes_back_after_the_link_restarts(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    card = EchoCard()
    first = link_factory(card)
    wait_for_card(context, READER_0)
    first.stop()
    wait_for_card(context, READER_0, present=False)
    card.events.clear()
    link_factory(card)  # a link starts once; a new one takes the same card back in
    wait_for_card(context, READER_0)
    wait_until(lambda: "power_on" in card.events, "pcscd to power the returning card on")
    handle, _ = connect(context, READER_0)
    try:
        assert transmit(handle, SELECT_MF) == SW_OK
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)


def test_reset_and_unpower_dispositions_reach_the_card(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    card = EchoCard()
    link_factory(card)
    wait_for_card(context, READER_0)
    wait_until(lambda: "power_on" in card.events, "pcscd to power the card on")

    handle, _ = connect(context, READER_0)
    card.events.clear()
    check(SCardDisconnect(handle, SCARD_RESET_CARD), "SCardDisconnect(SCARD_RESET_CARD)")
    assert card.control_events() == ["reset"]

    handle, _ = connect(context, READER_0)
    card.events.clear()
    check(SCardDisconnect(handle, SCARD_UNPOWER_CARD), "SCardDisconnect(SCARD_UNPOWER_CARD)")
    # vpcd sends power-off without waiting for an answer, so SCardDisconnect may return first.
    wait_until(lambda: card.control_events() == ["power_off"], "the card to see the power-off")

    # The next connection powers the card up again: IFD_POWER_UP, then the ATR, which vpcd waits for.
    handle, _ = connect(context, READER_0)
    try:
        assert card.control_events() == ["power_off", "power_on"]
        assert transmit(handle, SELECT_MF) == SW_OK
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)


def test_card_fault_answers_6f00_and_the_reader_stays_usable(context: int, link_factory: Callable[..., VpcdLink]) -> None:
    card = EchoCard()
    link = link_factory(card)
    wait_for_card(context, READER_0)
    handle, _ = connect(context, READER_0)
    try:
        card.fail_next_apdu = True
        assert transmit(handle, SELECT_MF) == SW_NO_PRECISE_DIAGNOSIS
        assert transmit(handle, SELECT_MF) == SW_OK
    finally:
        SCardDisconnect(handle, SCARD_LEAVE_CARD)
    assert link.sessions == 1


def test_link_follows_a_pcscd_restart(tmp_path: Path) -> None:
    # Its own daemon and run_dir: in-process PC/SC stays with the module's pcscd; the card tells the story.
    base_port = free_port_pair()
    card = EchoCard()
    link = VpcdLink(card, port=base_port)
    link.start()  # before pcscd exists: the link retries with back-off
    try:
        with PrivatePcscd(base_port=base_port, run_dir=tmp_path / "a"):
            wait_until(lambda: "power_on" in card.events, "the first pcscd to power the card on")
        wait_until(lambda: card.control_events()[-1] == "power_off", "the card to lose power with pcscd")
        card.events.clear()
        with PrivatePcscd(base_port=base_port, run_dir=tmp_path / "b"):
            wait_until(lambda: "power_on" in card.events, "the second pcscd to power the card on")
            assert link.sessions >= 2
    finally:
        link.stop()


def test_taken_port_is_refused_naming_the_holder() -> None:
    base_port = free_port_pair()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("0.0.0.0", base_port + 1))
        squatter.listen()
        daemon = PrivatePcscd(base_port=base_port)
        with pytest.raises(PortInUseError) as caught:
            daemon.start()
    assert caught.value.port == base_port + 1
    assert caught.value.pids == (os.getpid(),)
    assert f"pid {os.getpid()}" in str(caught.value)


def test_port_for_reader() -> None:
    assert port_for_reader(0) == VPCD_PORT == 35963
    assert port_for_reader(1) == 35964
    assert port_for_reader(1, base_port=40000) == 40001
    with pytest.raises(ValueError, match=r"0\.\.1"):
        port_for_reader(2)


# --- the link against a scripted vpcd --------------------------------------------------------


class ScriptedVpcd:
    """A TCP server standing in for vpcd: accepts one card at a time and exchanges raw frames."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(PRESENCE_WAIT_S)
        self.port: int = self.server.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(PRESENCE_WAIT_S)
        return conn

    @staticmethod
    def request(conn: socket.socket, frame: bytes) -> bytes:
        conn.sendall(frame)
        (length,) = struct.unpack("!H", _recv_exactly(conn, 2))
        return _recv_exactly(conn, length)

    def close(self) -> None:
        self.server.close()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the card closed the connection")
        data += chunk
    return data


@pytest.fixture
def scripted_vpcd() -> Iterator[ScriptedVpcd]:
    vpcd = ScriptedVpcd()
    yield vpcd
    vpcd.close()


def test_link_drops_junk_and_reconnects(scripted_vpcd: ScriptedVpcd) -> None:
    card = EchoCard()
    with VpcdLink(card, port=scripted_vpcd.port) as link:
        first = scripted_vpcd.accept()
        first.sendall(PowerOn().to_bytes())
        assert ScriptedVpcd.request(first, GetAtr().to_bytes()) == ATR_A
        first.sendall(b"\x00\x01\x07")  # no such control code
        assert first.recv(1) == b""  # the link hung up
        first.close()
        second = scripted_vpcd.accept()
        assert ScriptedVpcd.request(second, Apdu(SELECT_MF).to_bytes()) == SW_OK
        assert link.sessions == 2
        second.close()
    assert card.control_events() == ["power_on", "power_off", "apdu"]


def test_link_answers_frames_split_and_batched(scripted_vpcd: ScriptedVpcd) -> None:
    card = EchoCard()
    with VpcdLink(card, port=scripted_vpcd.port):
        conn = scripted_vpcd.accept()
        data = Apdu(SELECT_MF).to_bytes()
        for byte in data:  # one byte per segment
            conn.sendall(bytes([byte]))
            time.sleep(0.001)
        assert _recv_exactly(conn, 4) == b"\x00\x02" + SW_OK
        conn.sendall(PowerOn().to_bytes() + GetAtr().to_bytes())  # two frames in one segment
        assert _recv_exactly(conn, 2 + len(ATR_A)) == struct.pack("!H", len(ATR_A)) + ATR_A
        conn.close()
    assert card.control_events() == ["apdu", "power_on", "power_off"]


def test_link_stop_wakes_a_blocked_thread(scripted_vpcd: ScriptedVpcd) -> None:
    link = VpcdLink(EchoCard(), port=scripted_vpcd.port)
    link.start()
    conn = scripted_vpcd.accept()
    assert link.wait_connected(PRESENCE_WAIT_S)
    stopper = threading.Thread(target=link.stop)
    stopper.start()
    stopper.join(PRESENCE_WAIT_S)
    assert not stopper.is_alive()
    assert not link.connected
    assert conn.recv(1) == b""
    conn.close()
