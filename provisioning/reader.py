"""The PC/SC edge of provisioning: readers, card presence, and one APDU exchange at a time.

Spec: PC/SC Workgroup specification part 5 (``SCardEstablishContext``,
``SCardGetStatusChange``, ``SCardConnect``, ``SCardTransmit``,
``SCardDisconnect``) as pcsc-lite implements it, through pyscard's thin
``smartcard.scard`` layer; ISO/IEC 7816-4 §5.1.3 and ETSI TS 102 221 §7.3.1.1
for the two status words a T=0 card uses to steer the exchange (61XX: XX
bytes wait for GET RESPONSE; 6CXX: send the command again with Le = XX).

Theory of operation
-------------------
:class:`Pcsc` holds one PC/SC context (pcsc-lite contexts are per thread of
use: give each reader worker its own). :meth:`Pcsc.readers` lists readers with
card presence and ATR; :meth:`Pcsc.connect` opens a :class:`CardConnection`,
exclusive by default so that no other application talks to the card while it
is personalized. :meth:`CardConnection.transmit` sends one command APDU and
returns the final :class:`~simwallet.applet.protocols.apdu.ResponseApdu`,
following 61XX with GET RESPONSE and 6CXX with a resend, as a T=0 reader
driver does not do for us.

PC/SC failures become :class:`ReaderError` subclasses naming the reader; a
card that left the reader mid-exchange is :class:`CardRemovedError`, which
batch workers treat as "wait for the card to come back". Nothing here logs
APDU data: the optional ``trace`` callback receives each exchange after
:func:`simwallet.provisioning.trace.mask_command` has masked what is secret.

pyscard releases the GIL inside ``SCardTransmit``, so one thread per reader
runs the readers in parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from smartcard.scard import (  # type: ignore[import-untyped]
    SCARD_E_NO_READERS_AVAILABLE,
    SCARD_E_NO_SMARTCARD,
    SCARD_E_NOT_TRANSACTED,
    SCARD_E_READER_UNAVAILABLE,
    SCARD_E_SHARING_VIOLATION,
    SCARD_E_TIMEOUT,
    SCARD_E_UNKNOWN_READER,
    SCARD_LEAVE_CARD,
    SCARD_PCI_T0,
    SCARD_PCI_T1,
    SCARD_PROTOCOL_T0,
    SCARD_PROTOCOL_T1,
    SCARD_RESET_CARD,
    SCARD_S_SUCCESS,
    SCARD_SCOPE_USER,
    SCARD_SHARE_EXCLUSIVE,
    SCARD_SHARE_SHARED,
    SCARD_STATE_EXCLUSIVE,
    SCARD_STATE_INUSE,
    SCARD_STATE_PRESENT,
    SCARD_STATE_UNAWARE,
    SCARD_UNPOWER_CARD,
    SCARD_W_REMOVED_CARD,
    SCARD_W_RESET_CARD,
    SCARD_W_UNPOWERED_CARD,
    SCARD_W_UNRESPONSIVE_CARD,
    SCardConnect,
    SCardDisconnect,
    SCardEstablishContext,
    SCardGetErrorMessage,
    SCardGetStatusChange,
    SCardListReaders,
    SCardReleaseContext,
    SCardTransmit,
)

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.trace import mask_command, mask_response

# ISO/IEC 7816-4 §7.1.2 / TS 102 221 §10.1.2: GET RESPONSE.
INS_GET_RESPONSE: Final = 0xC0
# A card answering 61XX forever would loop us; real cards chain at most a few (256 bytes each).
GET_RESPONSE_CHAIN_MAX: Final = 64
# pcsc-lite's SCardGetStatusChange takes milliseconds; presence is polled by pcscd every ~0.4 s.
STATUS_TIMEOUT_MS_MAX: Final = 60_000
# SCardConnect attempts when pcscd could not power the card up (a card just unpowered by another application).
CONNECT_ATTEMPTS_MAX: Final = 3
CONNECT_RETRY_PAUSE_S: Final = 0.05
# A card that answers with more than this many bytes in one response is broken.
RESPONSE_LENGTH_MAX: Final = 65538

# What the trace callback receives: (masked C-APDU, masked R-APDU), both as hex for a technician.
Trace = Callable[[str, str], None]

# SCARD_E_NOT_TRANSACTED: vpcd lost the card before pcscd's next presence poll noticed; the same thing to a batch.
_GONE: Final = frozenset({SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD, SCARD_W_UNPOWERED_CARD, SCARD_W_RESET_CARD, SCARD_E_NOT_TRANSACTED})
_POWER_UP_FAILED: Final = frozenset({SCARD_W_UNPOWERED_CARD, SCARD_W_UNRESPONSIVE_CARD})
_READER_GONE: Final = frozenset({SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER})


def _hresult_text(hresult: int) -> str:
    return f"{SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"


class ReaderError(ProvisioningError):
    """A PC/SC call failed; ``reader`` names the reader and ``hresult`` is pcsc-lite's code (0 when not from PC/SC)."""

    def __init__(self, message: str, *, reader: str | None = None, hresult: int = 0) -> None:
        prefix = f"{reader}: " if reader else ""
        super().__init__(prefix + message)
        self.reader = reader
        self.hresult = hresult


class CardRemovedError(ReaderError):
    """The card left the reader (or was reset by another application) during the exchange."""


class NoCardError(ReaderError):
    """The reader holds no card."""


class ReaderBusyError(ReaderError):
    """Another application holds the card exclusively."""


class UnresponsiveCardError(ReaderError):
    """The card does not answer: no ATR, or it stopped answering."""


def _raise_for(hresult: int, what: str, reader: str | None) -> None:
    if hresult == SCARD_S_SUCCESS:
        return
    text = f"{what}: {_hresult_text(hresult)}"
    if hresult in _GONE:
        raise CardRemovedError(text, reader=reader, hresult=hresult)
    if hresult == SCARD_E_SHARING_VIOLATION:
        raise ReaderBusyError(text, reader=reader, hresult=hresult)
    if hresult == SCARD_W_UNRESPONSIVE_CARD:
        raise UnresponsiveCardError(text, reader=reader, hresult=hresult)
    raise ReaderError(text, reader=reader, hresult=hresult)


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """One reader as PC/SC reports it."""

    index: int
    name: str
    card_present: bool
    in_use: bool
    exclusive: bool
    atr: bytes | None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "card_present": self.card_present,
            "in_use": self.in_use,
            "exclusive": self.exclusive,
            "atr": self.atr.hex().upper() if self.atr else None,
        }


class Pcsc:
    """One PC/SC context: ``with Pcsc() as pcsc: pcsc.readers()``."""

    def __init__(self) -> None:
        hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
        if hresult != SCARD_S_SUCCESS:
            raise ReaderError(f"cannot reach pcscd: {_hresult_text(hresult)} (is pcscd running?)", hresult=hresult)
        self._context: int | None = context

    def __enter__(self) -> Pcsc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._context is not None:
            SCardReleaseContext(self._context)
            self._context = None

    @property
    def context(self) -> int:
        if self._context is None:
            raise ReaderError("the PC/SC context is closed")
        return self._context

    def reader_names(self) -> list[str]:
        hresult, names = SCardListReaders(self.context, [])
        if hresult == SCARD_E_NO_READERS_AVAILABLE:
            return []
        _raise_for(hresult, "SCardListReaders", None)
        return list(names)

    def resolve(self, reader: str | int) -> str:
        """A reader by index in the listing, by exact name, or by a unique name substring."""
        names = self.reader_names()
        if isinstance(reader, int) or reader.isdigit():
            index = int(reader)
            if not 0 <= index < len(names):
                raise ReaderError(f"no reader with index {index} ({len(names)} readers)")
            return names[index]
        if reader in names:
            return reader
        matches = [name for name in names if reader in name]
        if len(matches) != 1:
            raise ReaderError(f"{reader!r} matches {len(matches)} readers: {', '.join(names) or 'none attached'}")
        return matches[0]

    def state(self, name: str, timeout_ms: int = 0) -> tuple[int, bytes]:
        """The reader's event state and ATR now (``timeout_ms`` 0), or after its next change."""
        timeout_ms = min(timeout_ms, STATUS_TIMEOUT_MS_MAX)
        hresult, states = SCardGetStatusChange(self.context, timeout_ms, [(name, SCARD_STATE_UNAWARE)])
        if hresult == SCARD_E_TIMEOUT:  # pcsc-lite answers an unchanged zero-timeout query with "timeout"
            hresult, states = SCardGetStatusChange(self.context, 1, [(name, SCARD_STATE_UNAWARE)])
        if hresult in _READER_GONE:
            raise ReaderError(f"SCardGetStatusChange: {_hresult_text(hresult)}", reader=name, hresult=hresult)
        _raise_for(hresult, "SCardGetStatusChange", name)
        _, event_state, atr = states[0]
        return event_state, bytes(atr)

    def readers(self) -> list[ReaderInfo]:
        infos = []
        for index, name in enumerate(self.reader_names()):
            event_state, atr = self.state(name)
            present = bool(event_state & SCARD_STATE_PRESENT)
            infos.append(ReaderInfo(
                index=index,
                name=name,
                card_present=present,
                in_use=bool(event_state & SCARD_STATE_INUSE),
                exclusive=bool(event_state & SCARD_STATE_EXCLUSIVE),
                atr=atr if present and atr else None,
            ))
        return infos

    def wait_for_card(self, name: str, timeout_s: float, *, present: bool = True) -> bytes:
        """Block until ``name`` reports a card (or none, with ``present=False``); return the ATR. ``NoCardError`` on timeout."""
        known = SCARD_STATE_UNAWARE
        remaining_ms = int(timeout_s * 1000)
        while True:
            wait_ms = min(remaining_ms, STATUS_TIMEOUT_MS_MAX)
            hresult, states = SCardGetStatusChange(self.context, wait_ms, [(name, known)])
            if hresult == SCARD_E_TIMEOUT:
                remaining_ms -= wait_ms
                if remaining_ms <= 0:
                    raise NoCardError(f"no card {'inserted' if present else 'removed'} within {timeout_s:g} s", reader=name)
                continue
            _raise_for(hresult, "SCardGetStatusChange", name)
            _, event_state, atr = states[0]
            if bool(event_state & SCARD_STATE_PRESENT) == present:
                return bytes(atr)
            known = event_state & ~0xFFFF0000  # acknowledge this state, wait for the next change

    def connect(self, name: str, *, exclusive: bool = True, trace: Trace | None = None) -> CardConnection:
        share = SCARD_SHARE_EXCLUSIVE if exclusive else SCARD_SHARE_SHARED
        for _ in range(CONNECT_ATTEMPTS_MAX - 1):
            hresult, handle, protocol = SCardConnect(self.context, name, share, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
            if hresult not in _POWER_UP_FAILED:
                break
            # pcscd powers the card up on connect; right after another application unpowered it, that can fail once.
            time.sleep(CONNECT_RETRY_PAUSE_S)
        else:
            hresult, handle, protocol = SCardConnect(self.context, name, share, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
        if hresult == SCARD_E_NO_SMARTCARD:
            raise NoCardError("no card in the reader", reader=name, hresult=hresult)
        _raise_for(hresult, "SCardConnect", name)
        return CardConnection(name, handle, protocol, trace)


class CardConnection:
    """An open connection to the card in one reader; ``transmit`` one APDU at a time."""

    def __init__(self, reader: str, handle: int, protocol: int, trace: Trace | None) -> None:
        self.reader = reader
        self._handle: int | None = handle
        self._pci = SCARD_PCI_T1 if protocol == SCARD_PROTOCOL_T1 else SCARD_PCI_T0
        self._trace = trace
        # Exchanges on the wire, GET RESPONSE and resends included (the benchmark counts them).
        self.exchanges = 0

    def __enter__(self) -> CardConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raw(self, capdu: bytes) -> bytes:
        if self._handle is None:
            raise ReaderError("the card connection is closed", reader=self.reader)
        hresult, response = SCardTransmit(self._handle, self._pci, list(capdu))
        _raise_for(hresult, "SCardTransmit", self.reader)
        rapdu = bytes(response)
        self.exchanges += 1
        if self._trace is not None:
            self._trace(mask_command(capdu), mask_response(capdu, rapdu))
        if not 2 <= len(rapdu) <= RESPONSE_LENGTH_MAX:
            raise UnresponsiveCardError(f"the card answered {len(rapdu)} bytes, not an R-APDU", reader=self.reader)
        return rapdu

    def transmit(self, command: CommandApdu | bytes) -> ResponseApdu:
        """Send one command; follow 61XX and 6CXX; return the final response (any status word)."""
        capdu = command.to_bytes() if isinstance(command, CommandApdu) else command
        rapdu = self._raw(capdu)
        if rapdu[-2] == 0x6C and len(rapdu) == 2:
            # TS 102 221 §7.3.1.1.4: wrong Le; the card says how many bytes it has.
            rapdu = self._raw(capdu[:4] + _le_body(capdu, rapdu[-1]))
        data = bytearray()
        for _ in range(GET_RESPONSE_CHAIN_MAX):
            if rapdu[-2] != 0x61:
                break
            data += rapdu[:-2]
            get_response = bytes([capdu[0] & 0x03, INS_GET_RESPONSE, 0, 0, rapdu[-1]])
            rapdu = self._raw(get_response)
        else:
            raise UnresponsiveCardError(f"more than {GET_RESPONSE_CHAIN_MAX} GET RESPONSE in a row", reader=self.reader)
        data += rapdu[:-2]
        try:
            return ResponseApdu(bytes(data), (rapdu[-2] << 8) | rapdu[-1])
        except CodecError as exc:
            raise UnresponsiveCardError(f"malformed response: {exc}", reader=self.reader) from exc

    def close(self, *, disposition: str = "leave") -> None:
        """Disconnect: ``leave`` the card powered, ``reset`` it, or ``unpower`` it (a feeder moves on)."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        code = {"leave": SCARD_LEAVE_CARD, "reset": SCARD_RESET_CARD, "unpower": SCARD_UNPOWER_CARD}[disposition]
        with contextlib.suppress(Exception):
            SCardDisconnect(handle, code)


def _le_body(capdu: bytes, le: int) -> bytes:
    """The C-APDU body with its Le replaced by ``le`` (short form; 00 means 256), for the 6CXX resend."""
    command = dataclasses.replace(CommandApdu.from_bytes(capdu), le=le or 256, extended=False)
    return command.to_bytes()[4:]


@contextlib.contextmanager
def connected(pcsc: Pcsc, reader: str, **options: Any) -> Iterator[CardConnection]:
    connection = pcsc.connect(reader, **options)
    try:
        yield connection
    finally:
        connection.close()
