"""A field technician's diagnosis of a reader and its card: a report to paste into a ticket.

Spec: PC/SC part 5 as pcsc-lite implements it (``$PCSCLITE_CSOCK_NAME``, else
``/run/pcscd/pcscd.comm``); ISO/IEC 7816-3 §8.2 (the ATR: TS, T0, the
interface bytes TA/TB/TC/TD whose TD low nibble names a protocol T, the K
historical bytes, TCK present unless only T=0 is offered, XOR of T0..TCK
zero); ETSI TS 102 221 §11.1.1 (SELECT MF), §13.2 (EF.ICCID), §11.1.9 and
§11.1.13 (retry counters asked with empty VERIFY / UNBLOCK PIN);
GlobalPlatform Card Specification v2.3 §11.3 (GET DATA CPLC and key
information, no authentication).

Theory of operation
-------------------
:func:`diagnose` walks the chain from the daemon to the card and records
what each link answered: pcscd reachable (and on which socket), the reader
list, card presence, the ATR parsed (:func:`parse_atr`), SELECT MF, the
ICCID, the retry counters, the ISD's CPLC and key versions. A failing link
is a ``problem`` in the report, and the walk stops where nothing further
can work. The connection is shared (not exclusive) and nothing is ever
presented or written: a diagnosis must not cost a PIN try. Every APDU is
kept in a short trace, masked by :mod:`simwallet.provisioning.trace`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from simwallet.applet.errors import CodecError
from simwallet.provisioning.cardread import GP_ISD_AID, KeyCounter, read_counters, read_gp_info
from simwallet.provisioning.personalize_card import CardIo, PersonalizationError, read_iccid_with
from simwallet.provisioning.personalize_gp import IsdChannel
from simwallet.provisioning.reader import Pcsc, ReaderError, ReaderInfo

# Where libpcsclite looks for pcscd (pcsc-lite's PCSCLITE_CSOCK_NAME default).
CSOCK_ENV: Final = "PCSCLITE_CSOCK_NAME"
DEFAULT_SOCKET: Final = "/run/pcscd/pcscd.comm"
# A ticket needs the first exchanges, not a whole session.
TRACE_LINES_MAX: Final = 64
# ISO/IEC 7816-3 §8.2: at most 33 bytes; TS is 3B (direct) or 3F (inverse convention).
ATR_LENGTH_MAX: Final = 33
_TS: Final = {0x3B: "direct", 0x3F: "inverse"}
# TS 102 221 §11.1.1: SELECT MF by FID, FCP returned.
SELECT_MF: Final = bytes.fromhex("00A40004023F0000")
# How long to wait for pcscd's socket to accept a connection.
SOCKET_TIMEOUT_S: Final = 1.0


class AtrError(CodecError):
    """An ATR that does not follow ISO/IEC 7816-3 §8.2."""


@dataclass(frozen=True)
class Atr:
    """An answer-to-reset, parsed: convention, protocols offered, historical bytes, TCK."""

    raw: bytes
    convention: str
    protocols: tuple[int, ...]
    historical: bytes
    tck: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "hex": self.raw.hex().upper(),
            "convention": self.convention,
            "protocols": [f"T={t}" for t in self.protocols],
            "historical_bytes": self.historical.hex().upper(),
            "tck": None if self.tck is None else f"{self.tck:02X}",
        }


def parse_atr(atr: bytes) -> Atr:
    """ISO/IEC 7816-3 §8.2: TS T0 {TAi TBi TCi TDi} T1..TK [TCK]; AtrError for anything else."""
    if not 2 <= len(atr) <= ATR_LENGTH_MAX or atr[0] not in _TS:
        raise AtrError(f"an ATR is 2..{ATR_LENGTH_MAX} bytes starting 3B or 3F, not {atr.hex().upper()}")
    pos, y, historical = 2, atr[1] >> 4, atr[1] & 0x0F
    protocols: list[int] = []
    while True:
        present = [bit for bit in range(4) if y & (1 << bit)]
        if pos + len(present) > len(atr):
            raise AtrError("the interface bytes run past the end of the ATR", len(atr))
        td = atr[pos + len(present) - 1] if y & 0x8 else None
        pos += len(present)
        if td is None:
            break
        if (td & 0x0F) not in protocols:
            protocols.append(td & 0x0F)
        y = td >> 4
    offered = protocols or [0]
    tck_present = offered != [0]
    end = pos + historical
    if len(atr) != end + (1 if tck_present else 0):
        raise AtrError(f"the ATR is {len(atr)} bytes, its structure says {end + (1 if tck_present else 0)}", min(end, len(atr)))
    tck = atr[end] if tck_present else None
    if tck_present:
        check = 0
        for byte in atr[1:]:
            check ^= byte
        if check:
            raise AtrError("TCK does not make T0..TCK XOR to zero", end)
    return Atr(bytes(atr), _TS[atr[0]], tuple(offered), bytes(atr[pos:end]), tck)


@dataclass
class Diagnosis:
    """What :func:`diagnose` found; ``problems`` lists what a technician should look at first."""

    socket: str
    pcscd_reachable: bool = False
    readers: list[ReaderInfo] = field(default_factory=list)
    reader: str | None = None
    card_present: bool = False
    atr: Atr | None = None
    select_mf_sw: int | None = None
    iccid: str | None = None
    counters: tuple[KeyCounter, ...] = ()
    cplc: dict[str, str] | None = None
    key_versions: tuple[int, ...] = ()
    trace: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pcscd": {"socket": self.socket, "reachable": self.pcscd_reachable},
            "readers": [r.to_json() for r in self.readers],
            "reader": self.reader,
            "card_present": self.card_present,
            "atr": None if self.atr is None else self.atr.to_json(),
            "select_mf": None if self.select_mf_sw is None else f"{self.select_mf_sw:04X}",
            "iccid": self.iccid,
            "counters": [c.to_json() for c in self.counters],
            "cplc": self.cplc,
            "key_versions": [f"{kvn:02X}" for kvn in self.key_versions],
            "trace": list(self.trace),
            "problems": list(self.problems),
        }

    def lines(self) -> list[str]:
        """The report as text lines, for a terminal or a ticket."""
        out = [f"pcscd socket      {self.socket} ({'reachable' if self.pcscd_reachable else 'NOT reachable'})"]
        for info in self.readers:
            atr = info.atr.hex().upper() if info.atr else "-"
            out.append(f"reader {info.index}          {info.name}: {'card' if info.card_present else 'no card'}, ATR {atr}")
        if self.reader is not None:
            out.append(f"diagnosed reader  {self.reader}")
        if self.atr is not None:
            protocols = ", ".join(f"T={t}" for t in self.atr.protocols)
            out.append(f"ATR               {self.atr.raw.hex().upper()} ({self.atr.convention}; {protocols})")
            out.append(f"historical bytes  {self.atr.historical.hex().upper() or '-'}")
        if self.select_mf_sw is not None:
            out.append(f"SELECT MF         {self.select_mf_sw:04X}")
        if self.iccid is not None:
            out.append(f"ICCID             {self.iccid}")
        for counter in self.counters:
            if not counter.present:
                continue
            tries = "verified or disabled" if counter.tries_left is None else f"{counter.tries_left} tries left"
            unblock = "" if counter.unblock_tries_left is None else f", unblock {counter.unblock_tries_left} tries left"
            out.append(f"{counter.name:<17} {tries}{unblock}")
        if self.cplc is not None:
            out.append(
                f"CPLC              IC fabricator {self.cplc.get('ic_fabricator')}, IC type {self.cplc.get('ic_type')}, "
                f"serial {self.cplc.get('ic_serial_number')}"
            )
        if self.key_versions:
            out.append(f"ISD key versions  {', '.join(f'{kvn:02X}' for kvn in self.key_versions)}")
        out += [f"problem           {problem}" for problem in self.problems]
        if self.trace:
            out.append("APDU trace (masked):")
            out += [f"  {line}" for line in self.trace]
        return out


def pcscd_socket() -> str:
    return os.environ.get(CSOCK_ENV) or DEFAULT_SOCKET


def _socket_accepts(path: str) -> bool:
    if not Path(path).exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def diagnose(reader: str | int | None = None, *, pcsc_factory: Callable[[], Pcsc] = Pcsc) -> Diagnosis:
    """Walk pcscd → reader → card and report; never raises for what it diagnoses (ReaderError becomes a problem)."""
    report = Diagnosis(socket=pcscd_socket())
    try:
        pcsc = pcsc_factory()
    except ReaderError as exc:
        report.problems.append(f"pcscd: {exc}" + ("" if _socket_accepts(report.socket) else f" (nothing listens on {report.socket})"))
        return report
    report.pcscd_reachable = True
    with pcsc:
        try:
            _diagnose_reader(pcsc, reader, report)
        except ReaderError as exc:
            report.problems.append(f"reader: {exc}")
    return report


def _diagnose_reader(pcsc: Pcsc, reader: str | int | None, report: Diagnosis) -> None:
    report.readers = pcsc.readers()
    if not report.readers:
        report.problems.append("pcscd lists no reader: is the reader plugged in (or vpcd configured)?")
        return
    if reader is None:
        chosen = next((r for r in report.readers if r.card_present), report.readers[0])
        name = chosen.name
    else:
        name = pcsc.resolve(reader)
    report.reader = name
    info = next(r for r in report.readers if r.name == name)
    report.card_present = info.card_present
    if not info.card_present or info.atr is None:
        report.problems.append(f"{name}: no card in the reader")
        return
    try:
        report.atr = parse_atr(info.atr)
    except AtrError as exc:
        report.problems.append(f"ATR: {exc}")

    def keep(command: str, response: str) -> None:
        if len(report.trace) < TRACE_LINES_MAX:
            report.trace.append(f"{command} -> {response}")

    if info.exclusive:
        report.problems.append(f"{name}: another application holds the card exclusively")
        return
    connection = pcsc.connect(name, exclusive=False, trace=keep)
    try:
        _diagnose_card(CardIo(connection, None, step="diagnose"), report)
    finally:
        connection.close()


def _diagnose_card(io: CardIo, report: Diagnosis) -> None:
    response = io.connection.transmit(SELECT_MF)
    report.select_mf_sw = response.sw
    if not response.is_success():
        report.problems.append(f"SELECT MF answered {response.sw:04X} ({response.meaning}): not a UICC, or a mute one")
        return
    try:
        report.iccid = read_iccid_with(io)
    except PersonalizationError as exc:
        report.problems.append(f"EF.ICCID: {exc.detail}" + (f" (SW {exc.sw:04X})" if exc.sw is not None else ""))
    io.iccid = report.iccid
    report.counters = read_counters(io)
    for counter in report.counters:
        if counter.present and counter.tries_left is not None and counter.tries_left < 2:
            report.problems.append(f"{counter.name} has {counter.tries_left} tries left: personalization will refuse to present it")
    notes: list[str] = []
    try:
        cplc, key_sets, _ = read_gp_info(io, IsdChannel(io, GP_ISD_AID, rng=os.urandom), notes)
    except PersonalizationError as exc:
        report.problems.append(f"ISD: {exc.detail}")
        return
    report.cplc = None if cplc is None else dict(cplc)
    report.key_versions = tuple(kvn for kvn, _ in key_sets)
    report.problems += notes
