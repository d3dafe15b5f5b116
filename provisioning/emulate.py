"""Virtual cards in vpcd readers, a stack of them per reader, for batch personalization without a card feeder.

Spec: vsmartcard's vpcd (one TCP port per reader slot, :mod:`simwallet.applet.card.link`);
PC/SC part 5 ``SCardDisconnect(…, SCARD_UNPOWER_CARD)``, which ends a card's
turn (:mod:`simwallet.applet.card.feeder`); GlobalPlatform Card Specification
2.3 §7 and ETSI TS 102 221 §9 for what the card maker puts on a blank card
(:mod:`simwallet.provisioning.factory`).

Theory of operation
-------------------
:func:`make_cards` plays the card maker: each ICCID becomes a blank card of
the card type (:func:`~simwallet.provisioning.factory.manufacture_card`, keys
and secrets from the key store) or, when the state directory already holds
its image, the card as it was left (:func:`~simwallet.provisioning.factory.load_card`):
an emulator restarted on the same state directory brings back half-personalized
cards as they were. :class:`Emulator` splits the cards over the readers round
robin, gives each reader a :class:`~simwallet.applet.card.feeder.Feeder` in a
:class:`~simwallet.applet.card.link.VpcdLink` on port ``base_port + i``, and
takes a reader's link down when its feeder is empty (the reader then reports
no card). It is a :class:`~simwallet.applet.lifecycle.Service`:
``start()``/``stop()`` or a ``with`` block, in-process (tests) or in a child
process (``simwallet card emulate``, the benchmark: a card process per reader
keeps the cards off the batch's GIL).

Readers: Debian's vpcd (``/etc/reader.conf.d/vpcd``) gives two slots,
``Virtual PCD 00 00`` and ``Virtual PCD 00 01`` on ports 35963 and 35964
(:class:`~simwallet.provisioning.pcscd.PrivatePcscd` gives the same two on a
base port of its own). More readers need another vpcd entry in reader.conf
whose ``DEVICENAME`` is ``/dev/null:<base + 2>`` (two more slots, named
``Virtual PCD 01 00`` and ``01 01``); the emulator connects reader ``i`` to
``base_port + i`` either way.

:meth:`Emulator.pull` and :meth:`Emulator.reinsert` take the card in a
reader out mid-way and put it back (a new link, the pulled card first, then
the rest of that reader's stack), as an operator does with a card that got
stuck. Per-card statistics (:class:`CardStats`: APDUs, seconds spent inside
the card, the state-changing commands the card accepted) let tests and the
benchmark see the card's side of a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from simwallet.applet.card.feeder import Feeder
from simwallet.applet.card.link import Card, VpcdLink
from simwallet.applet.lifecycle import Service
from simwallet.applet.protocols.apdu import Ins
from simwallet.applet.protocols.efs import luhn_check_digit
from simwallet.applet.protocols.vpcd import VPCD_PORT
from simwallet.provisioning.errors import ProvisioningError, ProvisioningStateError
from simwallet.provisioning.values import check_iccid

if TYPE_CHECKING:
    from simwallet.applet.card.image import CardStore
    from simwallet.gateway.keystore import KeyStore

logger = logging.getLogger(__name__)

# One reader per vpcd slot; 16 is far more than one machine's USB hub of real readers.
READERS_MAX: Final = 16
# Cards one emulator manufactures: a production batch, not the whole SIM population.
CARDS_MAX: Final = 100_000
# Commands that change a card when it accepts them (TS 102 221 §10.1.2; GP CS 2.3 §11: INSTALL E6, SET STATUS F0, DELETE E4).
WRITE_INS: Final = frozenset(
    {
        Ins.UPDATE_BINARY,
        Ins.UPDATE_RECORD,
        Ins.CHANGE,
        Ins.DISABLE,
        Ins.ENABLE,
        Ins.UNBLOCK,
        Ins.PUT_KEY,
        Ins.STORE_DATA,
        0xE6,
        0xF0,
        0xE4,
        Ins.ACTIVATE_FILE,
        Ins.DEACTIVATE_FILE,
    }
)
# ISO/IEC 7816-4 §5.6: 9000, 61XX (more data), 91XX (TS 102 221: 9000 with a proactive command waiting) are success.
_SW1_SUCCESS: Final = frozenset({0x90, 0x61, 0x91})
# stop() waits at most this long for each link.
LINK_STOP_TIMEOUT_S: Final = 5.0
# A pulled card stays out at least this long: pcscd polls presence every 0.4 s, and a card that is back
# before a poll has seen the slot empty is never reported removed (pcscd then keeps the reader in the
# state its failed exchange left, and no application sees the card again).
REINSERT_DELAY_S: Final = 1.0


class EmulatorError(ProvisioningError):
    """The emulator cannot be set up: a bad ICCID range, too many readers, a card image of another type."""


@dataclass
class CardStats:
    """What one card saw: APDUs, seconds inside ``apdu()``, power-ons, and the state-changing commands it accepted, by INS."""

    iccid: str
    reader: int
    apdus: int = 0
    card_seconds: float = 0.0
    power_ons: int = 0
    writes: dict[int, int] = field(default_factory=dict)

    @property
    def write_count(self) -> int:
        return sum(self.writes.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "iccid": self.iccid,
            "reader": self.reader,
            "apdus": self.apdus,
            "card_seconds": round(self.card_seconds, 6),
            "power_ons": self.power_ons,
            "writes": {f"{ins:02X}": count for ins, count in sorted(self.writes.items())},
        }


class CountingCard:
    """A card wrapper that keeps :class:`CardStats`; everything else passes through (the link's thread only)."""

    def __init__(self, card: Card, iccid: str, reader: int, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.card = card
        self.stats = CardStats(iccid, reader)
        self._clock = clock

    def __repr__(self) -> str:
        return f"CountingCard({self.stats.iccid!r})"

    def atr(self) -> bytes:
        return self.card.atr()

    def power_on(self) -> None:
        self.stats.power_ons += 1
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def reset(self) -> None:
        self.card.reset()

    def apdu(self, capdu: bytes) -> bytes:
        started = self._clock()
        rapdu = self.card.apdu(capdu)
        self.stats.card_seconds += self._clock() - started
        self.stats.apdus += 1
        if len(capdu) >= 2 and capdu[1] in WRITE_INS and len(rapdu) >= 2 and rapdu[-2] in _SW1_SUCCESS:
            self.stats.writes[capdu[1]] = self.stats.writes.get(capdu[1], 0) + 1
        return rapdu


def iccid_range(start: str, count: int) -> list[str]:
    """``count`` ICCIDs from ``start`` (complete, with its Luhn digit): the body counts up, each with its own Luhn digit."""
    try:
        first = check_iccid(start)
    except ValueError as exc:
        raise EmulatorError(f"--iccid-start {start}: {exc}") from None
    if not 1 <= count <= CARDS_MAX:
        raise EmulatorError(f"the count must be 1 to {CARDS_MAX}, not {count}")
    body = first[:-1]
    iccids = [(b := str(int(body) + n).zfill(len(body))) + str(luhn_check_digit(b)) for n in range(count)]
    try:
        check_iccid(iccids[-1])
    except ValueError as exc:
        raise EmulatorError(f"{count} ICCIDs from {start} run past the range: {exc}") from None
    return iccids


def make_cards(card_type: Mapping[str, Any], iccids: Iterable[str], keystore: KeyStore | None, store: CardStore | None) -> list[Any]:
    """The virtual cards: each loaded from ``store`` when its image is there, else manufactured (needs ``keystore``)."""
    from simwallet.provisioning.factory import card_type as build_card_type
    from simwallet.provisioning.factory import load_card, manufacture_card

    kind = build_card_type(card_type)
    cards = []
    for iccid in iccids:
        if store is not None and store.exists(iccid):
            cards.append(load_card(kind, iccid, store))
        elif keystore is None:
            raise EmulatorError(f"card {iccid} is not in the state directory and no key store was given to manufacture it")
        else:
            cards.append(manufacture_card(kind, iccid, keystore, store))
    return cards


def split_round_robin(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt over ``parts`` stacks like cards: item i to stack i mod parts."""
    return [list(items[i::parts]) for i in range(parts)]


@dataclass
class _Reader:
    index: int
    port: int
    cards: list[CountingCard]
    position: int = 0  # index in ``cards`` of the card in the contacts (len(cards): empty)
    link: VpcdLink | None = None
    feeder: Feeder | None = None
    pulled: bool = False
    pulled_link: VpcdLink | None = None  # the link a pull stopped, joined by reinsert() (a pull may come from its own thread)
    pulled_at: float = 0.0


class Emulator(Service):
    """Cards in vpcd readers, each reader a feeder: ``with Emulator(cards, readers=2, base_port=p): …``.

    ``cards`` are card objects with an ``iccid`` attribute (:class:`~simwallet.applet.card.uicc.Uicc`).
    ``on_empty`` runs (on a link thread) once every reader's stack is used up.
    """

    def __init__(
        self,
        cards: Sequence[Any],
        *,
        readers: int = 1,
        base_port: int = VPCD_PORT,
        host: str = "127.0.0.1",
        on_empty: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        reinsert_delay_s: float = REINSERT_DELAY_S,
    ) -> None:
        if not 1 <= readers <= READERS_MAX:
            raise EmulatorError(f"readers must be 1 to {READERS_MAX}, not {readers}")
        if not 1 <= base_port <= 0xFFFF - readers + 1:
            raise EmulatorError(f"base port {base_port} leaves no room for {readers} readers")
        self._host = host
        self._on_empty = on_empty
        self._clock = clock
        self._sleep = sleep
        self._reinsert_delay_s = reinsert_delay_s
        self._lock = threading.Lock()
        self._empty = threading.Event()
        stacks = split_round_robin(list(cards), readers)
        self._readers = [
            _Reader(i, base_port + i, [CountingCard(card, str(card.iccid), i, clock=clock) for card in stack])
            for i, stack in enumerate(stacks)
        ]

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Put each reader's first card into its reader (the links connect on their own threads)."""
        if self._started:
            raise ProvisioningStateError("an Emulator is started only once")
        self._started = True
        for reader in self._readers:
            self._insert(reader)
        self._check_empty()

    def stop(self) -> None:
        """Take every card out (the links stop). Safe to call again."""
        for reader in self._readers:
            with self._lock:
                link, reader.link = reader.link, None
            if link is not None:
                link.stop(LINK_STOP_TIMEOUT_S)

    # -- observation ----------------------------------------------------------------------------------

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until every reader that holds cards has its link connected to vpcd; False on timeout."""
        deadline = time.monotonic() + timeout_s
        for reader in self._readers:
            link = reader.link
            if link is not None and not link.wait_connected(max(deadline - time.monotonic(), 0.0)):
                return False
        return True

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(reader.port for reader in self._readers)

    @property
    def empty(self) -> bool:
        """True once every reader's stack is used up."""
        return self._empty.is_set()

    def wait_empty(self, timeout_s: float | None = None) -> bool:
        return self._empty.wait(timeout_s)

    def remaining(self, reader: int) -> int:
        """Cards of ``reader`` not yet used up, the one in the contacts included."""
        state = self._readers[reader]
        with self._lock:
            return len(state.cards) - state.position

    def current_iccid(self, reader: int) -> str | None:
        state = self._readers[reader]
        with self._lock:
            return state.cards[state.position].stats.iccid if state.position < len(state.cards) else None

    def stats(self) -> list[CardStats]:
        """Every card's statistics, reader by reader in stack order (a snapshot: counters of live cards keep moving)."""
        return [card.stats for reader in self._readers for card in reader.cards]

    def stats_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.stats()]

    # -- an operator's hands --------------------------------------------------------------------------

    def pull(self, reader: int) -> str | None:
        """Take the card in ``reader`` out now, mid-way or not; return its ICCID. May be called from a card's own APDU handler."""
        state = self._readers[reader]
        with self._lock:
            if state.pulled or state.link is None:
                raise ProvisioningStateError(f"reader {reader} holds no card to pull")
            state.pulled = True
            link, state.link = state.link, None
            state.pulled_link = link
            state.pulled_at = self._clock()
            iccid = state.cards[state.position].stats.iccid if state.position < len(state.cards) else None
        # The link's own thread may be the caller: stop() then only signals it, and the thread ends after this APDU.
        link.stop(LINK_STOP_TIMEOUT_S)
        return iccid

    def reinsert(self, reader: int) -> None:
        """Put the pulled card back into ``reader`` (a new link), then the rest of its stack, :data:`REINSERT_DELAY_S` after the pull."""
        state = self._readers[reader]
        with self._lock:
            if not state.pulled:
                raise ProvisioningStateError(f"no card was pulled from reader {reader}")
            old, state.pulled_link = state.pulled_link, None
            back_at = state.pulled_at + self._reinsert_delay_s
        if old is not None:
            # Its thread must be done taking the card out (the feeder's power-off) before the card goes back in.
            old.stop(LINK_STOP_TIMEOUT_S)
        wait_s = back_at - self._clock()
        if wait_s > 0:
            self._sleep(wait_s)
        with self._lock:
            state.pulled = False
        self._insert(state)

    # -- the links ------------------------------------------------------------------------------------------

    def _insert(self, reader: _Reader) -> None:
        with self._lock:
            stack = reader.cards[reader.position :]
            if not stack:
                return
            start = reader.position
            feeder = Feeder(stack, on_change=lambda card: self._moved(reader, start, card), on_empty=lambda: self._reader_empty(reader))
            link = VpcdLink(feeder, port=reader.port, host=self._host)
            reader.feeder, reader.link = feeder, link
        link.start()

    def _moved(self, reader: _Reader, start: int, card: object) -> None:
        # The feeder took a card out after the host unpowered it; ``card`` is the next one (None: the stack is done).
        with self._lock:
            if reader.pulled:
                return  # the feeder's removal of a pulled card is not a turn: the card comes back with reinsert()
            reader.position = len(reader.cards) if card is None else start + _index_of(reader.cards[start:], card)
        logger.debug("reader %d: %d of %d cards used", reader.index, reader.position, len(reader.cards))

    def _reader_empty(self, reader: _Reader) -> None:
        with self._lock:
            if reader.pulled:
                return
            link, reader.link = reader.link, None
        if link is not None:
            link.stop(LINK_STOP_TIMEOUT_S)  # on its own thread: signals it; the reader reports no card at pcscd's next poll
        self._check_empty()

    def _check_empty(self) -> None:
        with self._lock:
            done = all(reader.position >= len(reader.cards) for reader in self._readers)
        if done and not self._empty.is_set():
            self._empty.set()
            if self._on_empty is not None:
                self._on_empty()


def _index_of(cards: Sequence[CountingCard], card: object) -> int:
    for index, candidate in enumerate(cards):
        if candidate is card:
            return index
    raise ProvisioningStateError("the feeder moved to a card that is not in its stack")


def write_stats(path: Path, emulator: Emulator) -> None:
    """The per-card statistics as one JSON document (written whole, then renamed into place)."""
    import json
    import os

    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"cards": emulator.stats_json()}, indent=1))
    os.replace(temporary, path)


__all__ = [
    "CardStats",
    "CountingCard",
    "Emulator",
    "EmulatorError",
    "iccid_range",
    "make_cards",
    "split_round_robin",
    "write_stats",
]
