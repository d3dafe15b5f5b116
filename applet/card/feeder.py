"""A card feeder: a stack of virtual cards that take turns in one reader, as in a personalization machine's hopper.

Spec: the :class:`~simwallet.applet.card.link.Card` contract of the vpcd link;
PC/SC's ``SCARD_UNPOWER_CARD`` disposition (PC/SC part 5, ``SCardDisconnect``),
which pcscd turns into a vpcd power-off.

Theory of operation
-------------------
Batch personalization machines feed cards one after another into the same
contacts. :class:`Feeder` plays that part for virtual cards: it is itself a
:class:`Card` that forwards to the card currently in the contacts. When the
host unpowers a card that has been worked on (at least one APDU since it was
powered on), the feeder takes that card out and puts the next one from the
hopper in, so the next power-on answers with the next card's ATR and files.
The host tells cards apart by their ICCID, as a real batch does, and ends a
card's turn with ``SCardDisconnect(…, SCARD_UNPOWER_CARD)``.

A card that was only looked at (presence polling, an ATR request, a power
cycle without commands) stays: pcscd powers cards on and off by itself. A
lost connection to vpcd (pcscd restarted, the feeder unplugged) is not a turn
either: the link calls :meth:`Feeder.removed`, and the same card comes back
when the link does.

When the hopper is empty after the last card leaves, :attr:`Feeder.empty`
turns true and the feeder's ``on_empty`` callback runs (the emulator stops
the link then, so the reader reports no card). Everything runs on the link's
thread; ``on_change`` lets an observer count cards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from simwallet.applet.card.link import SW_NO_PRECISE_DIAGNOSIS, Card

# What an empty feeder answers: ISO/IEC 7816-4 §5.6 "no precise diagnosis", as the link does for a faulty card.
SW_NO_CARD: Final = SW_NO_PRECISE_DIAGNOSIS
# An ATR for the empty contacts; the emulator removes the card from the reader before pcscd would ask.
_EMPTY_ATR: Final = bytes.fromhex("3B00")


class Feeder:
    """Cards from ``cards`` in turn; the next one comes when the host unpowers a card it has used."""

    def __init__(
        self,
        cards: Iterable[Card],
        *,
        on_change: Callable[[Card | None], None] | None = None,
        on_empty: Callable[[], None] | None = None,
    ) -> None:
        self._hopper: deque[Card] = deque(cards)
        self._current: Card | None = self._hopper.popleft() if self._hopper else None
        self._used = False
        self._on_change = on_change
        self._on_empty = on_empty
        self.fed = 1 if self._current is not None else 0

    @property
    def current(self) -> Card | None:
        return self._current

    @property
    def empty(self) -> bool:
        return self._current is None

    @property
    def remaining(self) -> int:
        """Cards still in the hopper (not counting the one in the contacts)."""
        return len(self._hopper)

    def atr(self) -> bytes:
        return self._current.atr() if self._current is not None else _EMPTY_ATR

    def power_on(self) -> None:
        self._used = False
        if self._current is not None:
            self._current.power_on()

    def reset(self) -> None:
        self._used = False
        if self._current is not None:
            self._current.reset()

    def power_off(self) -> None:
        if self._current is None:
            return
        self._current.power_off()
        if not self._used:
            return
        self._used = False
        self._current = self._hopper.popleft() if self._hopper else None
        if self._current is not None:
            self.fed += 1
        if self._on_change is not None:
            self._on_change(self._current)
        if self._current is None and self._on_empty is not None:
            self._on_empty()

    def removed(self) -> None:
        """The link to the reader ended (pcscd stopped, the feeder taken away): the card loses power but stays next."""
        self._used = False
        if self._current is not None:
            self._current.power_off()

    def apdu(self, capdu: bytes) -> bytes:
        if self._current is None:
            return SW_NO_CARD
        self._used = True
        return self._current.apdu(capdu)
