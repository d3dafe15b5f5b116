"""The results of a batch: each card's record while it runs, its status and counts, the progress events, the report and its file.

Spec: none beyond RFC 4180 (the CSV results file) and RFC 8259 (JSON); the
fields are this project's. A result names a card by ICCID and says what
happened to it (status, steps run and skipped, APDU exchanges, seconds, the
error text); nothing in it is secret (error texts are built without PINs,
keys or ADM codes).
"""

from __future__ import annotations

import csv
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from simwallet.applet.errors import AppletError
from simwallet.gateway.errors import GatewayError
from simwallet.provisioning.errors import ProvisioningError

# An error text in a result is cut to this many characters (the journal bounds its records too).
ERROR_TEXT_MAX: Final = 500


class CardStatus(enum.StrEnum):
    """Where a card of the batch stands at the end (or the current state, during the run)."""

    PERSONALIZED = "personalized"  # finished in this run
    ALREADY_DONE = "already_done"  # finished by an earlier run (the journal says so)
    FAILED = "failed"  # a step failed; set aside for this run
    INTERRUPTED = "interrupted"  # left a reader mid-way and did not come back before the end
    PENDING = "pending"  # not seen in any reader
    UNEXPECTED = "unexpected"  # a card that is not in the CSV


class EventKind(enum.StrEnum):
    WAITING = "waiting"  # the reader waits for a card
    STARTED = "started"  # personalization of ``iccid`` starts (``steps``: the steps the journal has not yet)
    STEP = "step"  # ``step`` of ``iccid`` is done
    FINISHED = "finished"  # ``result`` is final for this card (personalized, skipped, failed)
    SKIPPED = "skipped"  # a finished (or failed) card was taken out again
    UNEXPECTED = "unexpected"  # a card not in the CSV was taken out
    INTERRUPTED = "interrupted"  # the card left mid-way (``message``); it is finished when it comes back
    READER_ERROR = "reader_error"  # a PC/SC problem not tied to a card (``message``)
    STOPPED = "stopped"  # the worker ended


@dataclass(frozen=True)
class CardResult:
    """One card's line in the results: no secret, only ICCID, reader, status, steps, counts and the error text."""

    iccid: str
    row: int | None
    reader: str | None
    status: CardStatus
    steps_run: tuple[str, ...] = ()
    steps_skipped: tuple[str, ...] = ()
    apdus: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "iccid",
        "row",
        "reader",
        "status",
        "steps_run",
        "steps_skipped",
        "apdus",
        "seconds",
        "attempts",
        "error",
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "iccid": self.iccid,
            "row": self.row,
            "reader": self.reader,
            "status": self.status.value,
            "steps_run": list(self.steps_run),
            "steps_skipped": list(self.steps_skipped),
            "apdus": self.apdus,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass
class CardRecord:
    """The batch's running record of one card (under the batch's lock), which becomes its result."""

    iccid: str
    row: int | None
    status: CardStatus
    reader: str | None = None
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: tuple[str, ...] = ()
    apdus: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    registering: bool = False  # off the reader, in a worker's registration group

    def result(self) -> CardResult:
        return CardResult(
            self.iccid,
            self.row,
            self.reader,
            self.status,
            tuple(self.steps_run),
            self.steps_skipped,
            self.apdus,
            self.seconds,
            self.attempts,
            self.error,
        )


def error_text(exc: BaseException) -> str:
    """An exception as a result shows it: our own errors' texts (built without secrets), anything else by its type."""
    known = isinstance(exc, (ProvisioningError, AppletError, GatewayError))
    text = str(exc) if known else f"{type(exc).__name__} (see the log)"
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"



@dataclass(frozen=True)
class BatchEvent:
    kind: EventKind
    reader: str
    iccid: str | None = None
    step: str | None = None
    steps: tuple[str, ...] = ()
    result: CardResult | None = None
    message: str | None = None


@dataclass(frozen=True)
class BatchReport:
    """The end of a run: every card's result (CSV order, then unexpected cards), why it ended, how long it took."""

    results: tuple[CardResult, ...]
    ended: str  # "complete", "idle", "stopped"
    seconds: float

    def count(self, status: CardStatus) -> int:
        return sum(1 for result in self.results if result.status is status)

    @property
    def complete(self) -> bool:
        """Every card of the CSV is personalized (now or before)."""
        return all(
            r.status in (CardStatus.PERSONALIZED, CardStatus.ALREADY_DONE) for r in self.results if r.status is not CardStatus.UNEXPECTED
        )

    def to_json(self) -> dict[str, Any]:
        counts = {status.value: self.count(status) for status in CardStatus}
        return {"ended": self.ended, "seconds": round(self.seconds, 3), "counts": counts, "cards": [r.to_json() for r in self.results]}


def write_results(target: Path, report: BatchReport) -> None:
    """The results as JSON (a ``.json`` path) or CSV (anything else): one line per card, no secret; written whole, then renamed."""
    temporary = target.with_name(target.name + ".tmp")
    if target.suffix.lower() == ".json":
        temporary.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        with temporary.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(CardResult.FIELDS)
            for result in report.results:
                doc = result.to_json()
                doc["steps_run"] = " ".join(result.steps_run)
                doc["steps_skipped"] = " ".join(result.steps_skipped)
                writer.writerow(["" if doc[name] is None else doc[name] for name in CardResult.FIELDS])
    os.replace(temporary, target)


__all__ = ["BatchEvent", "BatchReport", "CardResult", "CardStatus", "EventKind", "write_results"]
