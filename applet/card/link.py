"""The thin driver that puts a virtual card into a vpcd reader slot.

Spec: vsmartcard's vpcd protocol (framing and state machine in
:mod:`simwallet.applet.protocols.vpcd`); ``IFDHPowerICC`` and
``IFDHICCPresence`` in vsmartcard's ``ifd-vpcd.c`` for when vpcd sends what.

Theory of operation
-------------------
vpcd, inside pcscd, listens on ``VPCD_PORT + slot`` (35963 and 35964 with
Debian's ``/etc/reader.conf.d/vpcd``) and the card connects to it as a TCP
client. A :class:`VpcdLink` owns one such connection and one thread:

1. connect to ``(host, port)``; while pcscd is not up (connection refused) or
   after it went away, retry with an exponential back-off from
   :data:`RECONNECT_INTERVAL_MIN_S` up to :data:`RECONNECT_INTERVAL_S`;
2. read frames, turn them into events with
   :class:`~simwallet.applet.protocols.vpcd.VpcdConnection`, call the card,
   write the answers;
3. when the connection ends — pcscd stopped, the link stopped, junk on the
   wire — treat it as the card leaving the reader: power the card off (so no
   security state survives a removal) and go back to 1 unless stopping.

vpcd accepts a waiting card only when pcscd polls the slot for presence
(about every 0.4 s, each poll a ``GetAtr`` the card answers), so a card shows
up in PC/SC within a poll period of connecting, and disappears at the next
poll after its socket closes. A second card connecting to an occupied slot
sits in vpcd's accept queue until the first one leaves.

Socket tuning: Debian's vpcd (3.3) writes a frame with two ``send()`` calls,
the 2-byte length and then the payload, on a socket without ``TCP_NODELAY``.
Nagle's algorithm holds the payload until the card has ACKed the length, and
a card with default sockets delays that ACK (~40 ms): 21 APDU/s. The link
re-arms ``TCP_QUICKACK`` after every ``recv`` (Linux leaves quick-ACK mode
again by itself), so the length is ACKed at once; that is the option that
matters. It also sets ``TCP_NODELAY``, so that no write of the card's ever
waits on an ACK either. Measured on a 2-core machine: plain 21 APDU/s,
``TCP_NODELAY`` alone 21, ``TCP_QUICKACK`` alone or both 6,000 to 12,000
(run-to-run noise). ``tune_socket=False`` turns both off for comparison
(``scripts/bench/apdu.py``).

The card object is called only from the link's thread. APDU payloads are
never logged; pass ``apdu_trace`` to see them, masking what must stay secret
(PINs, keys) before it reaches a log.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

# CardFault is defined with the other error roots and still importable from here.
from simwallet.applet.errors import CardFault, CodecError
from simwallet.applet.lifecycle import Service
from simwallet.applet.protocols.vpcd import (
    FRAME_LEN_MAX,
    VPCD_PORT,
    VPCD_SLOTS,
    Apdu,
    ConnectionClosed,
    GetAtr,
    PowerOff,
    PowerOn,
    Reset,
    VpcdConnection,
    VpcdEvent,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# vpcd listens on all interfaces, but the card process and pcscd share a machine.
HOST_DEFAULT: Final = "127.0.0.1"
# First retry after a refused connection: pcscd usually finishes starting within this.
RECONNECT_INTERVAL_MIN_S: Final = 0.05
# Back-off ceiling: a card reappears within about a second of pcscd (re)starting.
RECONNECT_INTERVAL_S: Final = 1.0
# Loopback connects or is refused at once; this bounds a remote vpcd host and stop().
CONNECT_TIMEOUT_S: Final = 2.0
# stop() waits this long for the thread; the card's own handlers are the only thing that can block it.
STOP_TIMEOUT_S: Final = 5.0
# One recv can hold a maximal frame (length field + FRAME_LEN_MAX).
RECV_SIZE: Final = FRAME_LEN_MAX + 2
# ISO/IEC 7816-3 §8.2: an ATR is TS plus at most 32 bytes; pcscd's MAX_ATR_SIZE is 33.
ATR_LEN_MAX: Final = 33
# ISO/IEC 7816-3 §8.2: TS and T0 at least.
ATR_LEN_MIN: Final = 2
# ISO/IEC 7816-4 §5.6: SW1 SW2 at least.
RAPDU_LEN_MIN: Final = 2
# ISO/IEC 7816-4 §5.6, SW 6F00 "no precise diagnosis": the answer when the card object fails.
SW_NO_PRECISE_DIAGNOSIS: Final = b"\x6f\x00"

# Called after every exchange with (C-APDU, R-APDU).
ApduTrace = Callable[[bytes, bytes], None]


class Card(Protocol):
    """What a :class:`VpcdLink` needs from a virtual card."""

    def atr(self) -> bytes:
        """The Answer To Reset (2 to 33 bytes)."""
        ...

    def power_on(self) -> None:
        """Cold reset: contacts powered."""
        ...

    def power_off(self) -> None:
        """Contacts unpowered; also called when the card leaves the reader."""
        ...

    def reset(self) -> None:
        """Warm reset."""
        ...

    def apdu(self, capdu: bytes) -> bytes:
        """Process one C-APDU and return the R-APDU (data and SW1 SW2)."""
        ...


def port_for_reader(index: int, *, base_port: int = VPCD_PORT, slots: int = VPCD_SLOTS) -> int:
    """The TCP port of vpcd slot ``index`` (``Virtual PCD 00 0<index>``): ``base_port + index``."""
    if not 0 <= index < slots:
        raise ValueError(f"vpcd reader index must be in 0..{slots - 1}, got {index}")
    return base_port + index


class VpcdLink(Service):
    """One card in one vpcd slot, served by a thread: ``start()``, then ``stop()``.

    Also a context manager. A link is started once.
    """

    def __init__(
        self,
        card: Card,
        *,
        port: int = VPCD_PORT,
        host: str = HOST_DEFAULT,
        tune_socket: bool = True,
        frame_len_max: int = FRAME_LEN_MAX,
        reconnect_interval_min_s: float = RECONNECT_INTERVAL_MIN_S,
        reconnect_interval_s: float = RECONNECT_INTERVAL_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        apdu_trace: ApduTrace | None = None,
    ) -> None:
        if not 0 < reconnect_interval_min_s <= reconnect_interval_s:
            raise ValueError("need 0 < reconnect_interval_min_s <= reconnect_interval_s")
        self._card = card
        self._address = (host, port)
        self._tune = tune_socket
        self._frame_len_max = frame_len_max
        self._backoff_min_s = reconnect_interval_min_s
        self._backoff_max_s = reconnect_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._trace = apdu_trace
        self._name = f"vpcd {host}:{port}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._sessions = 0
        self._powered = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; it connects (and reconnects) on its own."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name}: a VpcdLink can be started only once")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Close the connection (the card leaves the reader) and join the thread. Safe to call again."""
        self._stopping.set()
        with self._lock:
            if self._sock is not None:
                # shutdown() wakes a recv() blocked in the link thread; close() alone would not.
                # Not connected yet: the thread sees _stopping once connect() returns.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                raise RuntimeError(f"{self._name}: the link thread did not stop within {timeout_s} s")

    # -- observation -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        """True while a TCP connection to vpcd is open (vpcd may not have accepted it yet)."""
        return self._connected.is_set()

    @property
    def sessions(self) -> int:
        """How many connections to vpcd have been opened so far."""
        return self._sessions

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until a TCP connection to vpcd is open; False on timeout."""
        return self._connected.wait(timeout_s)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        backoff_s = self._backoff_min_s
        while not self._stopping.is_set():
            sock = self._connect()
            if sock is None:
                self._stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
                continue
            backoff_s = self._backoff_min_s
            self._sessions += 1
            self._connected.set()
            logger.debug("%s: connected (session %d)", self._name, self._sessions)
            try:
                self._serve(sock)
            finally:
                self._connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
                self._card_leaves()
            if not self._stopping.is_set():
                # pcscd restarting: give it a moment rather than spinning on refusals.
                self._stopping.wait(backoff_s)
        logger.debug("%s: stopped", self._name)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return None
            self._sock = sock
        try:
            sock.settimeout(self._connect_timeout_s)
            sock.connect(self._address)
            sock.settimeout(None)
            if self._tune:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._quickack(sock)
        except OSError as exc:
            logger.debug("%s: connect failed: %s", self._name, exc.strerror or exc)
            with self._lock:
                self._sock = None
            sock.close()
            return None
        if self._stopping.is_set():
            with self._lock:
                self._sock = None
            sock.close()
            return None
        return sock

    def _quickack(self, sock: socket.socket) -> None:
        # TCP_QUICKACK exists on Linux only; elsewhere NODELAY alone has to do.
        if hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def _serve(self, sock: socket.socket) -> None:
        conn = VpcdConnection(frame_len_max=self._frame_len_max)
        while True:
            try:
                data = sock.recv(RECV_SIZE)
                if self._tune:
                    self._quickack(sock)
            except OSError as exc:
                logger.debug("%s: connection lost: %s", self._name, exc.strerror or exc)
                return
            conn.receive_data(data)
            try:
                while (event := conn.next_event()) is not None:
                    if isinstance(event, ConnectionClosed):
                        logger.debug("%s: vpcd closed the connection", self._name)
                        return
                    answer = self._dispatch(event)
                    if answer is not None:
                        sock.sendall(conn.send_response(answer))
            except CodecError as exc:
                # The message names lengths and codes only, never payload bytes.
                logger.warning("%s: dropping the connection: %s", self._name, exc)
                return
            except CardFault as exc:
                logger.error("%s: dropping the connection: %s", self._name, exc)
                return
            except OSError as exc:
                logger.debug("%s: connection lost while answering: %s", self._name, exc.strerror or exc)
                return

    def _dispatch(self, event: VpcdEvent) -> bytes | None:
        """Call the card for ``event``; return the answer owed to vpcd, if any."""
        if isinstance(event, Apdu):
            return self._exchange(event.data)
        if isinstance(event, GetAtr):
            atr = self._call_card("atr", self._card.atr)
            if not isinstance(atr, bytes) or not ATR_LEN_MIN <= len(atr) <= ATR_LEN_MAX:
                raise CardFault(f"card.atr() must return {ATR_LEN_MIN} to {ATR_LEN_MAX} bytes")
            return atr
        if isinstance(event, PowerOn):
            logger.debug("%s: power on", self._name)
            self._call_card("power_on", self._card.power_on)
            self._powered = True
        elif isinstance(event, Reset):
            logger.debug("%s: reset", self._name)
            self._call_card("reset", self._card.reset)
            self._powered = True
        elif isinstance(event, PowerOff):
            logger.debug("%s: power off", self._name)
            self._call_card("power_off", self._card.power_off)
            self._powered = False
        return None

    def _exchange(self, capdu: bytes) -> bytes:
        try:
            rapdu = self._card.apdu(capdu)
        except Exception as exc:
            # A card bug answers like a real card's internal error; the reader stays usable.
            logger.error("%s: card.apdu() raised %s; answering 6F00", self._name, type(exc).__name__)
            logger.debug("%s: card.apdu() traceback", self._name, exc_info=True)
            rapdu = SW_NO_PRECISE_DIAGNOSIS
        if not isinstance(rapdu, bytes) or not RAPDU_LEN_MIN <= len(rapdu) <= FRAME_LEN_MAX:
            logger.error("%s: card.apdu() returned no valid R-APDU; answering 6F00", self._name)
            rapdu = SW_NO_PRECISE_DIAGNOSIS
        logger.debug("%s: APDU %d bytes -> %d bytes", self._name, len(capdu), len(rapdu))
        if self._trace is not None:
            try:
                self._trace(capdu, rapdu)
            except Exception as exc:
                logger.error("%s: apdu_trace raised %s; ignored", self._name, type(exc).__name__)
        return rapdu

    def _call_card(self, what: str, handler: Callable[[], _T]) -> _T:
        try:
            return handler()
        except Exception as exc:
            logger.debug("%s: card.%s() traceback", self._name, what, exc_info=True)
            raise CardFault(f"card.{what}() raised {type(exc).__name__}") from exc

    def _card_leaves(self) -> None:
        # A card pulled from a reader loses power: its volatile security state must not survive.
        if not self._powered:
            return
        self._powered = False
        # A card holder that tells removal from a power-off (a feeder keeps its card) gets removed() instead.
        removed = getattr(self._card, "removed", None)
        try:
            removed() if callable(removed) else self._card.power_off()
        except Exception as exc:
            logger.error("%s: card removal (power off) raised %s", self._name, type(exc).__name__)
