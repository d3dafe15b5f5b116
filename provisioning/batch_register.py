"""A batch worker's cards that have left the reader and wait to be registered, committed together.

Spec: none beyond :meth:`~simwallet.gateway.cards.CardRegistry.register_many`
(one transaction for the group, all or nothing) and the journal's contract
(:mod:`simwallet.provisioning.journal`).

Theory of operation
-------------------
Registering a card costs a database transaction with its commit (on SQLite
with ``synchronous=FULL``, an fsync), a little longer than the card's own
steps take on the wire. A batch worker therefore hands each card whose on-card
steps are journaled to a :class:`RegistrationGroup` and lets the card go; the
group is registered in one transaction when it holds :data:`GROUP_SIZE_MAX`
cards, when its oldest card has waited :data:`GROUP_WAIT_S`, and whenever the
worker would otherwise wait (its reader empty, a card left in a reader
without a feeder, the end of the run).

Nothing is lost by the wait: the journal has every on-card step of a card in
the group, so a batch killed before the group's commit finds those cards with
``register`` not done, and the next run registers them without the card
(registration is idempotent). A refusal of one card (its MSISDN on another
card, say) keeps none of the group; :func:`register_group` then registers the
cards one at a time, so the others go through and the refused one gets its
own error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from simwallet.gateway.cards import REGISTER_MANY_MAX, CardRegistration, CardRegistry, RegistrationResult

# Cards registered in one transaction at most.
GROUP_SIZE_MAX: Final = 32
assert GROUP_SIZE_MAX <= REGISTER_MANY_MAX
# The longest a finished card waits for its group's commit while cards keep coming.
GROUP_WAIT_S: Final = 1.0
# With cards waiting, a worker looks for the next card this long before it registers them first.
GROUP_IDLE_S: Final = 0.02


@dataclass(frozen=True)
class PendingCard:
    """A card whose on-card steps are done and journaled: what is left is its registration."""

    iccid: str
    registration: CardRegistration
    since: float  # the group's clock when the card joined


class RegistrationGroup:
    """One worker's pending cards for ``registry`` (used by that worker's thread only)."""

    def __init__(
        self,
        registry: CardRegistry,
        *,
        size_max: int = GROUP_SIZE_MAX,
        wait_s: float = GROUP_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= size_max <= REGISTER_MANY_MAX:
            raise ValueError(f"a registration group holds 1 to {REGISTER_MANY_MAX} cards, not {size_max}")
        if wait_s < 0:
            raise ValueError("wait_s must not be negative")
        self.registry = registry
        self._size_max = size_max
        self._wait_s = wait_s
        self._clock = clock
        self._cards: list[PendingCard] = []

    def __len__(self) -> int:
        return len(self._cards)

    def add(self, iccid: str, registration: CardRegistration) -> None:
        if len(self._cards) >= self._size_max:
            raise ValueError("the registration group is full: register it first")
        self._cards.append(PendingCard(iccid, registration, self._clock()))

    @property
    def due(self) -> bool:
        """Full, or its oldest card has waited long enough."""
        return len(self._cards) >= self._size_max or (bool(self._cards) and self._clock() - self._cards[0].since >= self._wait_s)

    def register(self) -> list[tuple[PendingCard, RegistrationResult | Exception]]:
        """Register the pending cards (:func:`register_group`) and empty the group: each card with its result or error."""
        cards, self._cards = self._cards, []
        return list(zip(cards, register_group(self.registry, [card.registration for card in cards]), strict=True))


def register_group(registry: CardRegistry, registrations: Sequence[CardRegistration]) -> list[RegistrationResult | Exception]:
    """Register ``registrations`` in one transaction; after any error, each alone. One result or error per card, in order."""
    if not registrations:
        return []
    try:
        return list(registry.register_many(registrations))
    except Exception as exc:
        if len(registrations) == 1:
            return [exc]
    outcomes: list[RegistrationResult | Exception] = []
    for registration in registrations:
        try:
            outcomes.append(registry.register(registration))
        except Exception as exc:  # one card's refusal (or a database error) is that card's: the others go on
            outcomes.append(exc)
    return outcomes


__all__ = ["GROUP_IDLE_S", "GROUP_SIZE_MAX", "GROUP_WAIT_S", "PendingCard", "RegistrationGroup", "register_group"]
