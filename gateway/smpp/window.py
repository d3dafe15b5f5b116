"""Sequence numbers, the window of outstanding requests, and the back-off for resends (SMPP 3.4 §3.2).

Theory of operation. A session numbers its requests 1, 2 … 0x7FFFFFFF and
then 1 again (§3.2: sequence_number runs from 0x00000001 to 0x7FFFFFFF); a number still waiting for its
response is skipped, so a wrap never pairs a response with the wrong request.
Each request sent is kept with its deadline until its response, its timeout or
the end of the session hands it back. Message requests (submit_sm, deliver_sm,
data_sm) take a slot of the window (SMPP's asynchronous operation: many requests in
flight, answered in any order, at most ``size_max`` of them); bind, unbind and enquire_link take none, so a keep-alive goes
out even when the window is full, but at most :data:`CONTROL_REQUESTS_MAX` of
them wait at once.

No clock is read here: every method that needs the time takes ``now``
(seconds, from the caller's monotonic clock), and :func:`backoff_s` takes its
randomness from the caller.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from simwallet.gateway.smpp.errors import CommandStatus, FieldError, WindowFull
from simwallet.gateway.smpp.pdu import SEQUENCE_NUMBER_MAX, Pdu

# §3.2: the lowest sequence_number.
SEQUENCE_NUMBER_MIN = 1
# Requests outside the window (bind, unbind, enquire_link) that may wait at once: one of each and some slack.
CONTROL_REQUESTS_MAX = 4
# The largest window: a bigger one only hides a peer that has stopped answering.
WINDOW_SIZE_MAX = 10_000
# The deadline heap is rebuilt from the requests still waiting when it holds this many
# answered ones beyond twice their number: bounded memory, O(1) amortised per request.
HEAP_SLACK = 64


class RandomSource(Protocol):
    """What :func:`backoff_s` needs of its randomness (``random.Random`` fits)."""

    def random(self) -> float: ...


def backoff_s(attempt: int, rng: RandomSource, *, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Seconds to wait before resend number ``attempt`` (0 for the first) of a throttled request.

    Exponential with a cap and "equal jitter": half of min(cap, base × 2^attempt)
    is fixed, the other half drawn from ``rng``. The fixed half guarantees the
    throttled peer some relief on every attempt; the random half keeps many
    senders from retrying in step.
    """
    if attempt < 0 or not 0 < base_s <= cap_s:
        raise FieldError(CommandStatus.ESME_RSYSERR, f"attempt {attempt}, base {base_s} s, cap {cap_s} s", field="backoff")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 64))
    return ceiling / 2 + rng.random() * ceiling / 2


@dataclass(frozen=True, slots=True)
class Outstanding:
    """A request sent and not yet answered."""

    request: Pdu
    # When it was sent and when its response is due (the caller's monotonic seconds).
    sent_at: float
    deadline: float
    # Whether it takes a slot of the window.
    windowed: bool


class RequestWindow:
    """The requests of one session that await their response, keyed by sequence_number."""

    def __init__(self, size_max: int, *, first_sequence_number: int = SEQUENCE_NUMBER_MIN) -> None:
        if not 1 <= size_max <= WINDOW_SIZE_MAX:
            raise FieldError(CommandStatus.ESME_RSYSERR, f"{size_max} outside 1..{WINDOW_SIZE_MAX}", field="window_size_max")
        if not SEQUENCE_NUMBER_MIN <= first_sequence_number <= SEQUENCE_NUMBER_MAX:
            raise FieldError(
                CommandStatus.ESME_RSYSERR,
                f"{first_sequence_number} outside {SEQUENCE_NUMBER_MIN}..{SEQUENCE_NUMBER_MAX}",
                field="first_sequence_number",
            )
        self.size_max = size_max
        self._next = first_sequence_number
        # Insertion order is send order.
        self._entries: dict[int, Outstanding] = {}
        self._windowed = 0
        # (deadline, sequence_number) of every request added; answered ones leave lazily (earliest_deadline).
        self._deadlines: list[tuple[float, int]] = []
        # Requests waiting, by command_id (is a keep-alive out?).
        self._commands: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def windowed(self) -> int:
        """Slots taken."""
        return self._windowed

    def has_room(self, *, windowed: bool) -> bool:
        if windowed:
            return self._windowed < self.size_max
        return len(self._entries) - self._windowed < CONTROL_REQUESTS_MAX

    def allocate(self, *, windowed: bool) -> int:
        """The next free sequence number; raises :class:`WindowFull` when no request of this kind may be added."""
        if not self.has_room(windowed=windowed):
            what = f"all {self.size_max} window slots" if windowed else f"{CONTROL_REQUESTS_MAX} control requests"
            raise WindowFull(CommandStatus.ESME_RTHROTTLED, f"{what} await responses; wait for one", field="window")
        number = self._next
        while number in self._entries:
            number = _following(number)
        self._next = _following(number)
        return number

    def add(self, request: Pdu, now: float, timeout_s: float, *, windowed: bool) -> None:
        """Keep ``request`` (its number from :meth:`allocate`) until its response or ``now + timeout_s``."""
        if request.sequence_number in self._entries:
            raise FieldError(CommandStatus.ESME_RSYSERR, f"{request.sequence_number} already awaits a response", field="sequence_number")
        entry = Outstanding(request, now, now + timeout_s, windowed)
        self._entries[request.sequence_number] = entry
        self._windowed += windowed
        self._commands[request.command_id] += 1
        if len(self._deadlines) > 2 * len(self._entries) + HEAP_SLACK:
            self._deadlines = [(e.deadline, n) for n, e in self._entries.items()]
            heapq.heapify(self._deadlines)
        else:
            heapq.heappush(self._deadlines, (entry.deadline, request.sequence_number))

    def get(self, sequence_number: int) -> Outstanding | None:
        return self._entries.get(sequence_number)

    def pop(self, sequence_number: int) -> Outstanding | None:
        entry = self._entries.pop(sequence_number, None)
        if entry is not None:
            self._windowed -= entry.windowed
            self._commands[entry.request.command_id] -= 1
        return entry

    def awaiting(self, command_id: int) -> bool:
        """Whether a request of this command_id waits for its response."""
        return self._commands[command_id] > 0

    def expired(self, now: float) -> list[Outstanding]:
        """Remove and return, in send order, the requests whose deadline is ``now`` or earlier."""
        earliest = self.earliest_deadline()  # the pump asks on every pass: no scan unless one is overdue
        if earliest is None or earliest > now:
            return []
        late = [entry for entry in self._entries.values() if entry.deadline <= now]
        for entry in late:
            self.pop(entry.request.sequence_number)
        return late

    def earliest_deadline(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, number = heap[0]
            entry = self._entries.get(number)
            if entry is not None and entry.deadline == deadline:
                return deadline
            heapq.heappop(heap)  # answered (or its number reused since)
        return None

    def requests(self) -> tuple[Pdu, ...]:
        """Every request awaiting a response, in send order."""
        return tuple(entry.request for entry in self._entries.values())

    def drain(self) -> tuple[Pdu, ...]:
        """Remove and return every request awaiting a response, in send order."""
        requests = self.requests()
        self._entries.clear()
        self._windowed = 0
        self._deadlines.clear()
        self._commands.clear()
        return requests


def _following(number: int) -> int:
    return SEQUENCE_NUMBER_MIN if number >= SEQUENCE_NUMBER_MAX else number + 1
