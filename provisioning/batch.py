"""Batch personalization: the cards of a CSV on several readers at once, one worker thread per reader, resumable through the journal.

Spec: PC/SC Workgroup specification part 5 as pcsc-lite implements it
(``SCardGetStatusChange`` for card presence, ``SCardConnect`` with
``SCARD_SHARE_EXCLUSIVE``, ``SCardDisconnect`` with ``SCARD_UNPOWER_CARD`` to
end a card's turn in a feeder); ETSI TS 102 221 §13.2 (EF.ICCID tells cards
apart); the step contract of :mod:`simwallet.provisioning.personalize` and
the journal of :mod:`simwallet.provisioning.journal`.

Theory of operation
-------------------
The input has passed pre-flight (:mod:`simwallet.provisioning.batch_csv`)
before a worker starts. Each reader gets a thread with its own PC/SC context
(pcsc-lite contexts are per thread of use; pyscard releases the GIL in
``SCardTransmit``, so readers run in parallel). A worker loops:

1. wait for a card (in slices of :data:`POLL_S`, so a stop is seen soon);
2. connect exclusively and read the card's ICCID;
3. decide: a card not in the CSV is reported *unexpected*; a card the journal
   says is finished, or that failed earlier in this run, is *skipped*; the card
   the worker has just dealt with, still in a reader without a feeder, is left
   alone until it is taken out; anything else is personalized with
   ``Personalizer.personalize(connection, job, journal, identified=iccid,
   defer_registration=True)``, which skips the steps the journal already has
   (and, told the ICCID just read, does not read it a second time) and stops
   after the card's own steps;
4. disconnect with ``unpower``: a feeder puts the next card in. The card's
   registration joins the worker's
   :class:`~simwallet.provisioning.batch_register.RegistrationGroup`, which is
   registered in one transaction when it is due or whenever the worker would
   wait; then each card is journaled ``register`` done and ``finished`` (one
   flush for the group) and reported *personalized*.

Cards a killed run left with every on-card step journaled but no
registration are registered at the start of the next run, without the card
(their result has no reader). A registration the backend refuses fails that
card alone (``failed`` at ``register``); a later run tries it again, again
without the card.

A :class:`~simwallet.provisioning.reader.ReaderError` during personalization
(the card was pulled, or stopped answering) is journaled as ``failed`` at the
step that was running and the card stays *pending*: when it comes back, in
any reader, it is finished from its last good step. A
:class:`~simwallet.provisioning.personalize.PersonalizationError` (or a refusal
by the backend) journals ``failed`` and sets the card aside for this run; the
batch goes on with the others, and a later run tries it again.

The batch ends when every card is finished or failed, when no reader has seen
a new card for ``idle_timeout_s`` while no worker was busy, or on
:meth:`Batch.stop`. Progress goes to an ``on_event`` callback
(:class:`BatchEvent`); the library never prints. Results carry ICCIDs, step
names, counts and error texts built without secrets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

from simwallet.applet.errors import AppletError
from simwallet.gateway.errors import GatewayError
from simwallet.provisioning.batch_csv import BatchCard, BatchInput
from simwallet.provisioning.batch_register import GROUP_IDLE_S, PendingCard, RegistrationGroup
from simwallet.provisioning.batch_report import (
    BatchEvent,
    BatchReport,
    CardRecord,
    CardResult,
    CardStatus,
    EventKind,
    error_text,
    write_results,
)
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.journal import CardProgress
from simwallet.provisioning.reader import CardConnection, NoCardError, Pcsc, ReaderBusyError, ReaderError, Trace

if TYPE_CHECKING:
    from simwallet.gateway.cards import CardRegistration, CardRegistry, RegistrationResult
    from simwallet.provisioning.personalize import CardJob, CardOutcome, StepJournal

logger = logging.getLogger(__name__)

# A worker waits for cards in slices this long, so that a stop or the idle timeout is seen within it.
POLL_S: Final = 0.2
# After a PC/SC error that is not about the card (pcscd restarting, a reader busy), wait this long before trying again.
RETRY_S: Final = 0.1
# Default of --idle-timeout: a feeder loads the next card within seconds, an operator within half a minute.
IDLE_TIMEOUT_S: Final = 30.0
# Readers one batch drives; one thread each.
READERS_MAX: Final = 64
# The journal's step name for what precedes the first step (connecting, reading the ICCID).
STEP_CARD: Final = "card"
# The step that needs no card: a batch registers its cards in groups after they have left the reader.
STEP_REGISTER: Final = "register"
# The reader of events about a card registered without it (left by a killed run).
NO_READER: Final = ""
# What a worker remembers as the last card when it could not read one (never an ICCID: those are digits).
UNREADABLE: Final = "unreadable"


class PersonalizerLike(Protocol):
    """What the batch needs of :class:`~simwallet.provisioning.personalize.Personalizer`."""

    STEPS: ClassVar[tuple[str, ...]]
    registry: CardRegistry | None

    def personalize(
        self,
        connection: CardConnection,
        job: CardJob,
        journal: StepJournal | None = None,
        *,
        identified: str | None = None,
        defer_registration: bool = False,
    ) -> CardOutcome: ...

    def registration(self, job: CardJob, iccid: str, *, personalized_at: int) -> CardRegistration: ...


class _ObservedJournal:
    """The batch's journal as the personalizer sees it: every ``done`` also becomes a progress event."""

    def __init__(self, journal: StepJournal, on_done: Callable[[str, str], None]) -> None:
        self._journal = journal
        self._on_done = on_done
        self.failure_recorded = False  # the personalizer journaled its own failure (the batch then adds none)

    def progress(self, iccid: str) -> CardProgress:
        return self._journal.progress(iccid)

    def record(self, iccid: str, step: str, event: str = "done", *, error: str | None = None) -> None:
        self._journal.record(iccid, step, event, error=error)
        if event == "done":
            self._on_done(iccid, step)
        elif event == "failed":
            self.failure_recorded = True

    def finish(self, *iccids: str) -> None:
        self._journal.finish(*iccids)


class Batch:
    """One batch run over ``cards`` on ``readers``; :meth:`run` blocks until it ends and returns the report.

    ``personalizer`` builds one personalizer per worker (called on the
    worker's thread). ``pcsc`` opens a PC/SC context (one per worker). The
    journal must be the batch's, opened with ``cards.digest``.
    """

    def __init__(
        self,
        cards: BatchInput,
        journal: StepJournal,
        personalizer: Callable[[], PersonalizerLike],
        readers: Sequence[str],
        *,
        clerk: str,
        channel: str = "batch",
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        on_event: Callable[[BatchEvent], None] | None = None,
        trace: Trace | None = None,
        pcsc: Callable[[], Pcsc] = Pcsc,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = POLL_S,
    ) -> None:
        if not 1 <= len(readers) <= READERS_MAX:
            raise ValueError(f"a batch drives 1 to {READERS_MAX} readers, not {len(readers)}")
        if len(set(readers)) != len(readers):
            raise ValueError("a reader is named twice")
        if idle_timeout_s <= 0 or poll_s <= 0:
            raise ValueError("idle_timeout_s and poll_s must be positive")
        self._by_iccid: Mapping[str, BatchCard] = cards.by_iccid()
        self._journal = journal
        self._personalizer = personalizer
        self._readers = tuple(readers)
        self._clerk = clerk
        self._channel = channel
        self._idle_timeout_s = idle_timeout_s
        self._on_event = on_event
        self._trace = trace
        self._pcsc = pcsc
        self._clock = clock
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended: str | None = None
        self._busy = 0
        self._last_activity = clock()
        self._cards: dict[str, CardRecord] = {}
        for card in cards.cards:
            progress = journal.progress(card.iccid)
            status = CardStatus.ALREADY_DONE if progress.finished else CardStatus.PENDING
            self._cards[card.iccid] = CardRecord(card.iccid, card.row, status, attempts=progress.attempts)
        self._unexpected: dict[str, CardRecord] = {}
        self._groups: dict[str, RegistrationGroup] = {}  # each worker's, by reader

    # -- running --------------------------------------------------------------------------------------

    def run(self) -> BatchReport:
        """Start one worker per reader, wait for the end, return the report. Ctrl-C stops the workers after their current card."""
        started = self._clock()
        self._last_activity = started
        self._register_leftovers()
        threads = [threading.Thread(target=self._work, args=(reader,), name=f"batch {reader}", daemon=True) for reader in self._readers]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(self._poll_s)
        except KeyboardInterrupt:
            self.stop()
            for thread in threads:
                thread.join()
            raise
        return self.report(self._clock() - started)

    def stop(self) -> None:
        """End the run: workers finish the card they are on, then return (any thread)."""
        self._end("stopped")

    def report(self, seconds: float = 0.0) -> BatchReport:
        with self._lock:
            cards = [c.result() for c in self._cards.values()]
            unexpected = [c.result() for c in self._unexpected.values()]
            ended = self._ended or "stopped"
        final = [
            CardResult(
                r.iccid, r.row, r.reader, CardStatus.INTERRUPTED, r.steps_run, r.steps_skipped, r.apdus, r.seconds, r.attempts, r.error
            )
            if r.status is CardStatus.PENDING and r.reader is not None
            else r
            for r in cards
        ]
        return BatchReport(tuple(final + unexpected), ended, seconds)

    # -- shared state -------------------------------------------------------------------------------------

    def _emit(self, event: BatchEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("batch progress callback failed; ignored")

    def _end(self, why: str) -> None:
        with self._lock:
            if self._ended is None:
                self._ended = why
        self._stop.set()

    def _check_end(self) -> bool:
        """True when the run is over: stopped, every card settled, or idle for too long."""
        if self._stop.is_set():
            return True
        with self._lock:
            settled = all(c.status in (CardStatus.PERSONALIZED, CardStatus.ALREADY_DONE, CardStatus.FAILED) for c in self._cards.values())
            idle = self._busy == 0 and self._clock() - self._last_activity >= self._idle_timeout_s
        if settled:
            self._end("complete")
        elif idle:
            self._end("idle")
        return self._stop.is_set()

    def _touch(self) -> None:
        with self._lock:
            self._last_activity = self._clock()

    # -- one reader -------------------------------------------------------------------------------------------

    def _work(self, reader: str) -> None:
        try:
            with self._pcsc() as pcsc:
                personalizer = self._personalizer()
                if personalizer.registry is not None:
                    self._groups[reader] = RegistrationGroup(personalizer.registry)
                try:
                    self._loop(reader, pcsc, personalizer)
                finally:
                    self._register_group(reader)  # the cards that have left this reader are registered before it stops
        except ReaderError as exc:
            self._emit(BatchEvent(EventKind.READER_ERROR, reader, message=error_text(exc)))
        except Exception:
            logger.exception("batch worker for %s failed", reader)
            self._emit(BatchEvent(EventKind.READER_ERROR, reader, message="internal error (see the log)"))
        finally:
            self._emit(BatchEvent(EventKind.STOPPED, reader))

    def _loop(self, reader: str, pcsc: Pcsc, personalizer: PersonalizerLike) -> None:
        handled: str | None = None  # the ICCID this worker dealt with last (a reader without a feeder keeps it)
        waiting = False
        group = self._groups.get(reader)
        while not self._check_end():
            pending = group is not None and len(group) > 0
            try:
                pcsc.wait_for_card(reader, GROUP_IDLE_S if pending else self._poll_s)
            except NoCardError:
                if pending:  # nothing to do until a card comes: register those that are done first
                    self._register_group(reader)
                    continue
                if not waiting:
                    self._emit(BatchEvent(EventKind.WAITING, reader))
                    waiting = True
                continue
            except ReaderError as exc:
                self._emit(BatchEvent(EventKind.READER_ERROR, reader, message=error_text(exc)))
                self._stop.wait(self._poll_s)
                continue
            waiting = False
            try:
                connection = pcsc.connect(reader, exclusive=True, trace=self._trace)
            except NoCardError:
                continue
            except ReaderBusyError as exc:
                self._emit(BatchEvent(EventKind.READER_ERROR, reader, message=error_text(exc)))
                self._stop.wait(self._poll_s)
                continue
            except ReaderError:
                # The card left between presence and connect, or the feeder's reader is being emptied.
                self._stop.wait(RETRY_S)
                continue
            handled = self._handle(reader, pcsc, connection, personalizer, handled)
            if group is not None and group.due:
                self._register_group(reader)

    def _handle(
        self, reader: str, pcsc: Pcsc, connection: CardConnection, personalizer: PersonalizerLike, handled: str | None
    ) -> str | None:
        from simwallet.provisioning.personalize import read_iccid

        disposition = "unpower"
        try:
            try:
                iccid = read_iccid(connection)
            except ReaderError:
                return handled
            except (ProvisioningError, AppletError) as exc:
                # Not a UICC we can read (or an emptied feeder's contacts): tell once, unpower it, look again after a pause.
                if handled != UNREADABLE:
                    self._emit(BatchEvent(EventKind.READER_ERROR, reader, message=f"cannot read the card's ICCID: {error_text(exc)}"))
                self._stop.wait(self._poll_s)
                return UNREADABLE
            if iccid == handled:
                disposition = "leave"
                return handled
            return self._dispatch(reader, connection, personalizer, iccid)
        finally:
            connection.close(disposition=disposition)
            if disposition == "leave":
                self._wait_removed(reader, pcsc)

    def _wait_removed(self, reader: str, pcsc: Pcsc) -> None:
        self._register_group(reader)  # a clerk may take a while: the cards done so far are registered first
        while not self._check_end():
            try:
                pcsc.wait_for_card(reader, self._poll_s, present=False)
                return
            except NoCardError:
                continue

    def _dispatch(self, reader: str, connection: CardConnection, personalizer: PersonalizerLike, iccid: str) -> str | None:
        card = self._by_iccid.get(iccid)
        if card is None:
            with self._lock:
                record = self._unexpected.setdefault(
                    iccid, CardRecord(iccid, None, CardStatus.UNEXPECTED, reader, error="not in the batch's CSV")
                )
                result = record.result()
            self._emit(BatchEvent(EventKind.UNEXPECTED, reader, iccid, result=result))
            return iccid
        self._touch()
        with self._lock:
            state = self._cards[iccid]
            settled = state.registering or state.status in (CardStatus.ALREADY_DONE, CardStatus.PERSONALIZED, CardStatus.FAILED)
            if not settled:
                self._busy += 1
                state.reader = reader
        if settled:
            self._emit(BatchEvent(EventKind.SKIPPED, reader, iccid, result=state.result()))
            return iccid
        try:
            return self._personalize(reader, connection, personalizer, card, state)
        finally:
            with self._lock:
                self._busy -= 1
                self._last_activity = self._clock()

    def _personalize(
        self, reader: str, connection: CardConnection, personalizer: PersonalizerLike, card: BatchCard, state: CardRecord
    ) -> str | None:
        iccid = card.iccid
        done = self._journal.progress(iccid).steps_done
        self._emit(BatchEvent(EventKind.STARTED, reader, iccid, steps=tuple(s for s in personalizer.STEPS if s not in done)))
        job = self._job(card)
        journal = _ObservedJournal(self._journal, lambda i, step: self._emit(BatchEvent(EventKind.STEP, reader, i, step=step)))
        started = self._clock()
        error: BaseException | None = None
        outcome = None
        try:
            # _handle has read the ICCID (no second read); registration waits for the group, the card goes now.
            outcome = personalizer.personalize(connection, job, journal, identified=iccid, defer_registration=True)
        except Exception as exc:  # a failed card must not end the batch: it is journaled, reported and set aside
            if not isinstance(exc, (ProvisioningError, AppletError, GatewayError)):
                logger.exception("personalizing %s failed", iccid)
            error = exc
        seconds = self._clock() - started
        apdus = connection.exchanges  # the connection is this card's: reading its ICCID included
        attempts = self._journal.progress(iccid).attempts  # every run's, from the journal's "begin" records
        with self._lock:
            state.attempts = attempts
            state.apdus += apdus
            state.seconds += seconds
            if outcome is not None:
                state.registering = True
                state.steps_run += [s for s in outcome.steps_run if s not in state.steps_run]
                state.steps_skipped = outcome.steps_skipped  # by the last attempt: done before it, in this run or an earlier one
                state.error = None
        if outcome is not None:
            group = self._groups.get(reader)
            if outcome.registration is None or group is None:  # nothing to register: no registry, or registered before
                self._complete(reader, [iccid], registered=False)
            else:
                group.add(iccid, outcome.registration)
            return iccid
        assert error is not None
        text = error_text(error)
        step = getattr(error, "step", None) or self._current_step(personalizer, iccid)
        if not journal.failure_recorded:
            self._record_failure(iccid, step, text)
        with self._lock:
            state.error = text
            state.steps_run += [s for s in self._journal.progress(iccid).steps_done if s in personalizer.STEPS and s not in state.steps_run]
            if not isinstance(error, ReaderError):
                state.status = CardStatus.FAILED
        if isinstance(error, ReaderError):
            # The card may come back (a pull, a feeder jam): it is finished from its last good step then.
            self._emit(BatchEvent(EventKind.INTERRUPTED, reader, iccid, step=step, message=text))
            return None
        self._emit(BatchEvent(EventKind.FINISHED, reader, iccid, step=step, result=state.result()))
        return iccid

    # -- registration, off the reader -------------------------------------------------------------------

    def _register_leftovers(self) -> None:
        """Cards an earlier run left with every on-card step journaled: registered now, without the card, and finished."""
        touched = [c for c in self._cards.values() if c.status is CardStatus.PENDING and c.attempts > 0]
        if not touched:
            return
        personalizer = self._personalizer()
        on_card = [step for step in personalizer.STEPS if step != STEP_REGISTER]
        group = None if personalizer.registry is None else RegistrationGroup(personalizer.registry)
        complete: list[str] = []
        for state in touched:
            progress = self._journal.progress(state.iccid)
            if not all(progress.done(step) for step in on_card):
                continue
            with self._lock:
                state.steps_skipped = tuple(step for step in personalizer.STEPS if progress.done(step))
                state.registering = True
            if group is None or progress.done(STEP_REGISTER):
                complete.append(state.iccid)
                continue
            job = self._job(self._by_iccid[state.iccid])
            try:
                group.add(state.iccid, personalizer.registration(job, state.iccid, personalized_at=time.time_ns() // 1000))
            except (ProvisioningError, GatewayError) as exc:
                self._fail_registration(NO_READER, state.iccid, exc)
            if group.due:
                self._registered(NO_READER, group.register())
        if group is not None and len(group) > 0:
            self._registered(NO_READER, group.register())
        self._complete(NO_READER, complete, registered=False)

    def _register_group(self, reader: str) -> None:
        group = self._groups.get(reader)
        if group is not None and len(group) > 0:
            self._registered(reader, group.register())

    def _registered(self, reader: str, outcomes: Sequence[tuple[PendingCard, RegistrationResult | Exception]]) -> None:
        """Journal a registered group: ``register`` done for each card, then all ``finished`` with one flush."""
        done: list[str] = []
        for card, outcome in outcomes:
            error = outcome if isinstance(outcome, Exception) else None
            if error is None:
                try:
                    self._journal.record(card.iccid, STEP_REGISTER, "done")
                except ProvisioningError as exc:
                    error = exc
            if error is not None:
                self._fail_registration(reader, card.iccid, error)
                continue
            self._emit(BatchEvent(EventKind.STEP, reader, card.iccid, step=STEP_REGISTER))
            done.append(card.iccid)
        self._complete(reader, done, registered=True)

    def _complete(self, reader: str, iccids: Sequence[str], *, registered: bool) -> None:
        """The cards are done: journal them ``finished`` (one flush) and report them personalized."""
        if not iccids:
            return
        try:
            self._journal.finish(*iccids)
        except ProvisioningError as exc:
            for iccid in iccids:
                self._fail_registration(reader, iccid, exc)
            return
        for iccid in iccids:
            with self._lock:
                state = self._cards[iccid]
                state.status, state.registering, state.error = CardStatus.PERSONALIZED, False, None
                if registered and STEP_REGISTER not in state.steps_run:
                    state.steps_run.append(STEP_REGISTER)
                result = state.result()
            self._emit(BatchEvent(EventKind.FINISHED, reader, iccid, result=result))

    def _fail_registration(self, reader: str, iccid: str, error: Exception) -> None:
        """A card whose on-card steps are done could not be registered (or journaled): failed, for a later run."""
        from simwallet.provisioning.personalize_card import PersonalizationError

        if isinstance(error, GatewayError):
            error = PersonalizationError.from_backend(iccid, STEP_REGISTER, error)
        elif not isinstance(error, ProvisioningError):
            logger.error("registering %s failed", iccid, exc_info=error)
        text = error_text(error)
        self._record_failure(iccid, STEP_REGISTER, text)
        with self._lock:
            state = self._cards[iccid]
            state.status, state.registering, state.error = CardStatus.FAILED, False, text
            result = state.result()
        self._emit(BatchEvent(EventKind.FINISHED, reader, iccid, step=STEP_REGISTER, result=result))

    def _job(self, card: BatchCard) -> CardJob:
        from simwallet.provisioning.personalize import CardJob

        return CardJob(values=card.values, personalization=card.personalization, channel=self._channel, clerk=self._clerk, row=card.row)

    def _current_step(self, personalizer: PersonalizerLike, iccid: str) -> str:
        done = self._journal.progress(iccid).steps_done
        return next((step for step in personalizer.STEPS if step not in done), STEP_CARD)

    def _record_failure(self, iccid: str, step: str, text: str) -> None:
        try:
            self._journal.record(iccid, step, "failed", error=text)
        except ProvisioningError:
            logger.exception("cannot journal the failure of %s", iccid)


__all__ = [
    "Batch",
    "BatchEvent",
    "BatchReport",
    "CardResult",
    "CardStatus",
    "EventKind",
    "PersonalizerLike",
    "write_results",
]
