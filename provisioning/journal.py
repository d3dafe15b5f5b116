"""The batch journal: an append-only, fsync'd record of each card's progress, so a killed batch resumes.

Spec: none beyond POSIX ``write``/``fsync``/``flock``; the record layout is ours
(JSON Lines, one object per line, ``"v": 1``).

Theory of operation
-------------------
Every step of personalizing a card ends with a record ``{"iccid", "step",
"event": "done"}`` written *after* the card (or the database) confirmed the
step and *before* the next step starts. A batch that is run again reads the
journal and, for each card, skips the steps already done. So a SIGKILL at any
instant leaves one of two situations per step:

* the record is in the file: the step happened, and is skipped;
* the record is not: the step may or may not have happened, and is run
  again — so every step must be safe to repeat (the personalization steps
  check the card's state first, or write the same bytes again, and
  registration is idempotent in the database).

A killed process loses nothing it has written (the page cache keeps it), so
step records are written without a flush. Records that conclude a card —
``finished`` and ``failed`` — and the header are flushed with ``fdatasync``
before the call returns: after a power cut the journal may have lost step
records of cards in progress (those steps run again, which they may), but
never the end of a card. That is one flush per card instead of one per step,
and one per group of cards when a batch finishes several at once
(:meth:`Journal.finish` takes them all).

A kill in the middle of a ``write`` can leave a torn last line; it is
recognised (no trailing newline, or not JSON, on the last line only),
reported through :attr:`Journal.torn_tail`, and cut off before appending. A
malformed line anywhere else is corruption and refuses to open.

The first record is a header naming the batch's input digest (SHA-256 of the
CSV and profile), so a journal is never resumed with different input. An
exclusive ``flock`` keeps a second batch process from writing the same
journal; threads of one batch share one :class:`Journal` (it locks).

Secrets never enter the journal: it records ICCIDs, step names, status words
and error texts that were built without secrets.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from simwallet.provisioning.errors import ProvisioningError

JOURNAL_VERSION: Final = 1
# One record is a short JSON object; a longer line is not ours.
RECORD_LENGTH_MAX: Final = 4096
# Events a step record can carry.
EVENTS: Final = frozenset({"begin", "done", "failed"})


class JournalError(ProvisioningError):
    """The journal cannot be used: corrupt, locked by another batch, or written for other input."""


@dataclass(frozen=True)
class CardProgress:
    """What the journal knows about one card."""

    iccid: str
    steps_done: frozenset[str] = frozenset()
    finished: bool = False
    attempts: int = 0
    last_error: str | None = None

    def done(self, step: str) -> bool:
        return step in self.steps_done


@dataclass
class _Accumulator:
    steps_done: set[str] = field(default_factory=set)
    finished: bool = False
    attempts: int = 0
    last_error: str | None = None


def _wall_clock() -> float:
    return time.time()


class Journal:
    """One batch's journal file; use :meth:`open`."""

    def __init__(self, path: Path, fd: int, digest: str, cards: dict[str, _Accumulator], torn_tail: bool,
                 clock: Callable[[], float], fsync: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self.digest = digest
        self._cards = cards
        self.torn_tail = torn_tail
        self._clock = clock
        self._fsync = fsync
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, digest: str, *, clock: Callable[[], float] = _wall_clock, fsync: bool = True) -> Journal:
        """Open (or create) the journal at ``path`` for input ``digest``; take its lock."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(f"{path}: another batch is using this journal") from None
            data = b""
            while chunk := os.read(fd, 1 << 20):
                data += chunk
            cards, header_digest, good_length = _replay(path, data)
            torn = good_length != len(data)
            if torn:
                os.ftruncate(fd, good_length)
            if header_digest is not None and header_digest != digest:
                raise JournalError(
                    f"{path}: this journal belongs to a batch with other input (CSV or profile changed); "
                    "use a new journal or the original input"
                )
            journal = cls(path, fd, digest, cards, torn, clock, fsync)
            if header_digest is None:
                journal._append({"v": JOURNAL_VERSION, "kind": "header", "digest": digest, "ts": clock()})
            return journal
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # closing releases the flock
                self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append(self, record: Mapping[str, Any], *, durable: bool = True) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if len(line) > RECORD_LENGTH_MAX:
            raise JournalError(f"journal record of {len(line)} bytes exceeds {RECORD_LENGTH_MAX}")
        if self._fd is None:
            raise JournalError(f"{self.path}: the journal is closed")
        os.write(self._fd, line)
        if durable and self._fsync:
            os.fdatasync(self._fd)

    def record(self, iccid: str, step: str, event: str = "done", *, error: str | None = None) -> None:
        """Append one record; flush it to disk first when it concludes the card (``finished``, ``failed``)."""
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event!r}")
        with self._lock:
            self._write(iccid, step, event, error=error, durable=event == "failed" or step == "finished")

    def finish(self, *iccids: str) -> None:
        """These cards are complete, every step done and verified: their ``finished`` records, with one flush for all."""
        with self._lock:
            for n, iccid in enumerate(iccids):
                self._write(iccid, "finished", "done", durable=n == len(iccids) - 1)

    def _write(self, iccid: str, step: str, event: str, *, error: str | None = None, durable: bool) -> None:
        # Under the lock: the record in the file, then in the cards' progress.
        record: dict[str, Any] = {"v": JOURNAL_VERSION, "iccid": iccid, "step": step, "event": event, "ts": self._clock()}
        if error is not None:
            record["error"] = error
        self._append(record, durable=durable)
        _apply(self._cards.setdefault(iccid, _Accumulator()), record)

    def progress(self, iccid: str) -> CardProgress:
        with self._lock:
            acc = self._cards.get(iccid)
            if acc is None:
                return CardProgress(iccid)
            return CardProgress(iccid, frozenset(acc.steps_done), acc.finished, acc.attempts, acc.last_error)

    def finished(self) -> set[str]:
        with self._lock:
            return {iccid for iccid, acc in self._cards.items() if acc.finished}

    def known(self) -> Iterable[str]:
        with self._lock:
            return list(self._cards)


def _apply(acc: _Accumulator, record: Mapping[str, Any]) -> None:
    step, event = record["step"], record["event"]
    if event == "begin" and step == "card":
        acc.attempts += 1
    elif event == "done":
        acc.steps_done.add(step)
        if step == "finished":
            acc.finished = True
    elif event == "failed":
        acc.last_error = record.get("error")


def _replay(path: Path, data: bytes) -> tuple[dict[str, _Accumulator], str | None, int]:
    """Rebuild per-card progress; return it, the header's digest and the length of the intact prefix."""
    cards: dict[str, _Accumulator] = {}
    digest: str | None = None
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        if last and raw == b"":
            break
        try:
            if last:
                raise ValueError("no newline at the end")
            record = json.loads(raw)
            if not isinstance(record, dict) or record.get("v") != JOURNAL_VERSION:
                raise ValueError("not a version-1 record")
            if record.get("kind") == "header":
                digest = str(record["digest"])
            else:
                if not isinstance(record.get("iccid"), str) or record.get("event") not in EVENTS:
                    raise ValueError("missing iccid or event")
                _apply(cards.setdefault(record["iccid"], _Accumulator()), record)
        except (ValueError, KeyError) as exc:
            if last:
                return cards, digest, offset  # a torn tail: cut here
            raise JournalError(f"{path}:{number}: corrupt journal record ({exc})") from None
        offset += len(raw) + 1
    return cards, digest, offset
