"""The persistent card image: one JSON file per card (its EEPROM), and the directory that keeps them.

Spec: the image is this project's own format (``format`` 1); its parts follow
ETSI TS 102 221: the content and life cycle (§11.1.1.4.9) of every EF, the PIN
digests and retry counters (§9.5), and the state of each application selected
by AID (TS 102 221 §8.5, GlobalPlatform Card Specification 2.3 §6), keyed by
the AID in hex, and the registry's own state (GP life cycles and instances)
under the key ``gp``.

Theory of operation
-------------------
:class:`CardStore` keeps two files per card in one directory, both mode 0600:
``<ICCID>.json``, a full snapshot, and ``<ICCID>.log``, changes since that
snapshot, one JSON line each. A save appends one line holding only the parts
that changed (a PIN counter, the EFs written, an application's state) — a
small ``write`` instead of rewriting the whole image, which is what lets a card
answer a personalization's UPDATEs at the pace of the reader. A card that knows
which entries its command touched hands over just those
(:meth:`CardStore.save_changes`) and skips building its image. Every
:data:`LOG_RECORDS_MAX` lines the store writes a new snapshot (a temporary file
renamed over the old one with :func:`os.replace`) with the next *generation*
number and empties the log; log lines carry the generation they follow, so a
line left over from before a snapshot (a kill between the rename and the
truncation) is ignored. Loading reads the snapshot and replays its
generation's lines; a torn last line (a kill in the middle of a write) is
dropped. So the image survives the card process being killed at any point.
It does not survive a power cut unless ``fsync=True`` (each append and each
snapshot is then flushed before the save returns). The image holds digests of
the PINs, never their values; it does hold application keys (a card's memory
does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from simwallet.applet.errors import AppletError, CodecError

IMAGE_FORMAT: Final = 1
# ITU-T E.118: an ICCID is at most 20 digits (19 plus the Luhn digit); 18 is the shortest in use.
ICCID_DIGITS_MIN: Final = 18
ICCID_DIGITS_MAX: Final = 20
# A card image is a few kilobytes; anything near this is not one of ours.
IMAGE_SIZE_MAX: Final = 16 * 1024 * 1024
# Change lines before a new snapshot: a personalization writes about thirty; a reload replays at most this many.
LOG_RECORDS_MAX: Final = 256
_ICCID = re.compile(r"[0-9]+")
_FILE_MODE = 0o600


class ImageError(CodecError):
    """A card image that cannot be read back, or does not match the card type it is loaded with."""


class CardExistsError(AppletError, FileExistsError):
    """A card with this ICCID was manufactured already."""


class CardNotFoundError(AppletError, FileNotFoundError):
    """No card image for this ICCID."""


def check_iccid(iccid: str) -> str:
    """``iccid`` if it is 18 to 20 decimal digits; CodecError otherwise."""
    if not isinstance(iccid, str) or not _ICCID.fullmatch(iccid) or not ICCID_DIGITS_MIN <= len(iccid) <= ICCID_DIGITS_MAX:
        raise CodecError(f"an ICCID is {ICCID_DIGITS_MIN} to {ICCID_DIGITS_MAX} decimal digits")
    return iccid


def _dumps(doc: Mapping[str, Any]) -> bytes:
    # Compact separators and no indent: json uses its C encoder only without indent.
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class CardImage:
    """Everything a card keeps across power cycles; the parts are the JSON-able exports of their owners."""

    card_type: str
    iccid: str
    salt: bytes = field(repr=False)
    pins: Mapping[str, Any] = field(repr=False)
    files: Mapping[str, Any] = field(repr=False)
    apps: Mapping[str, Any] = field(repr=False)

    def to_json(self) -> bytes:
        doc = {
            "format": IMAGE_FORMAT,
            "card_type": self.card_type,
            "iccid": self.iccid,
            "salt": self.salt.hex(),
            "pins": self.pins,
            "files": self.files,
            "apps": self.apps,
        }
        return _dumps(doc)

    @classmethod
    def from_json(cls, data: bytes) -> CardImage:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ImageError(f"card image is not JSON: {exc.msg if isinstance(exc, json.JSONDecodeError) else 'not UTF-8'}") from exc
        if not isinstance(doc, dict):
            raise ImageError("card image must be a JSON object")
        if doc.get("format") != IMAGE_FORMAT:
            raise ImageError(f"card image format {doc.get('format')!r} is not {IMAGE_FORMAT}")
        try:
            card_type, iccid, salt = doc["card_type"], doc["iccid"], bytes.fromhex(doc["salt"])
            pins, files, apps = doc["pins"], doc["files"], doc["apps"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ImageError(f"card image lacks or garbles {exc}") from exc
        if not isinstance(card_type, str) or not all(isinstance(p, dict) for p in (pins, files, apps)):
            raise ImageError("card image parts have the wrong types")
        try:
            check_iccid(iccid)
        except CodecError as exc:
            raise ImageError(f"card image ICCID: {exc.message}") from exc
        return cls(card_type, iccid, salt, pins, files, apps)


_PARTS: Final = ("pins", "files", "apps")


class CardStore:
    """A directory of card images: ``<ICCID>.json`` (snapshot) and ``<ICCID>.log`` (changes since) per card."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False, log_records_max: int = LOG_RECORDS_MAX) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.log_records_max = log_records_max
        # Per card: (generation, log lines since the snapshot, the parts as last written).
        self._written: dict[str, tuple[int, int, dict[str, dict[str, Any]]]] = {}
        self._log_names: dict[str, str] = {}  # ICCID -> its log's path, built once (every change appends to it)

    def __repr__(self) -> str:
        return f"CardStore({str(self.directory)!r}, fsync={self.fsync})"

    def path(self, iccid: str) -> Path:
        return self.directory / f"{check_iccid(iccid)}.json"

    def log_path(self, iccid: str) -> Path:
        return self.directory / f"{check_iccid(iccid)}.log"

    def exists(self, iccid: str) -> bool:
        return self.path(iccid).exists()

    def iccids(self) -> list[str]:
        """The ICCIDs of the stored cards, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if _ICCID.fullmatch(p.stem))

    def load(self, iccid: str) -> CardImage:
        """The card's snapshot with its generation's logged changes applied."""
        path = self.path(iccid)
        data = self._read(path, missing_ok=False)
        image = CardImage.from_json(data)
        if image.iccid != iccid:
            raise ImageError(f"card image {path.name} holds ICCID {image.iccid}")
        generation = _generation(data)
        parts = {"pins": dict(image.pins), "files": dict(image.files), "apps": dict(image.apps)}
        lines = 0
        log = self._read(self.log_path(iccid), missing_ok=True)
        for line in _log_lines(log, self.log_path(iccid).name):
            if line.get("g") != generation:
                continue  # written before the current snapshot
            lines += 1
            for part in _PARTS:
                change, removed = line.get(part), line.get(f"-{part}")
                if isinstance(change, dict):
                    parts[part].update(change)
                if isinstance(removed, list):
                    for key in removed:
                        parts[part].pop(key, None)
        self._written[iccid] = (generation, lines, {k: dict(v) for k, v in parts.items()})
        return CardImage(image.card_type, iccid, image.salt, parts["pins"], parts["files"], parts["apps"])

    def save(self, image: CardImage) -> None:
        """Record the card's image: a log line with what changed, or a new snapshot every ``log_records_max`` lines."""
        known = self._log_room(image.iccid)
        if known is None:
            previous = self._written.get(image.iccid)
            self._snapshot(image, 0 if previous is None else previous[0] + 1, replace=True)
            return
        last = known[2]
        change: dict[str, Any] = {}
        for part in _PARTS:
            now: Mapping[str, Any] = getattr(image, part)
            if delta := _take_delta(last[part], now):
                change[part] = delta
            if removed := [key for key in last[part] if key not in now]:
                change[f"-{part}"] = removed
                for key in removed:
                    del last[part][key]
        self._log(image.iccid, known, change)

    def save_changes(self, iccid: str, changes: Mapping[str, Mapping[str, Any]]) -> bool:
        """Log ``changes`` (part → the entries that changed) without the whole image; False if a :meth:`save` must do it.

        The card knows what its command changed, so it need not build its image for :meth:`save` to compare; the
        line is the one :meth:`save` would write. False, with nothing written, when this store has not written the
        card yet or a snapshot is due: then the caller saves the whole image.
        """
        known = self._log_room(iccid)
        if known is None:
            return False
        change = {part: delta for part, entries in changes.items() if (delta := _take_delta(known[2][part], entries))}
        self._log(iccid, known, change)
        return True

    def _log_room(self, iccid: str) -> tuple[int, int, dict[str, dict[str, Any]]] | None:
        """The card's (generation, log lines, parts as last written) if its log takes another line; None if a snapshot is due."""
        known = self._written.get(iccid)
        return None if known is None or known[1] >= self.log_records_max else known

    def _log(self, iccid: str, known: tuple[int, int, dict[str, dict[str, Any]]], change: dict[str, Any]) -> None:
        if not change:
            return
        generation, lines, last = known
        change["g"] = generation
        self._append(iccid, _dumps(change) + b"\n")
        self._written[iccid] = (generation, lines + 1, last)

    def create(self, image: CardImage) -> None:
        """Store a new card's image; CardExistsError if the ICCID has one already."""
        self._snapshot(image, 0, replace=False)

    def discard(self, iccid: str) -> None:
        """Remove the card's image (a card whose manufacture failed half-way); no error if there is none."""
        for path in (self.path(iccid), self.log_path(iccid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._written.pop(iccid, None)

    @staticmethod
    def _read(path: Path, *, missing_ok: bool) -> bytes:
        try:
            with path.open("rb") as handle:
                data = handle.read(IMAGE_SIZE_MAX + 1)
        except FileNotFoundError as exc:
            if missing_ok:
                return b""
            raise CardNotFoundError(f"no card image for ICCID {path.stem} in {path.parent}") from exc
        if len(data) > IMAGE_SIZE_MAX:
            raise ImageError(f"card image {path.name} exceeds {IMAGE_SIZE_MAX} bytes")
        return data

    def _append(self, iccid: str, line: bytes) -> None:
        name = self._log_names.get(iccid)
        if name is None:
            name = self._log_names[iccid] = str(self.log_path(iccid))
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
        try:
            os.write(fd, line)
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def _snapshot(self, image: CardImage, generation: int, *, replace: bool) -> None:
        target = self.path(image.iccid)
        self.directory.mkdir(parents=True, exist_ok=True)
        document = json.loads(image.to_json())
        document["generation"] = generation
        # mkstemp creates the file with mode 0600, in the target's directory so the rename stays on one file system.
        fd, temp = tempfile.mkstemp(prefix=f".{image.iccid}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_dumps(document))
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(temp, _FILE_MODE)
            if replace:
                os.replace(temp, target)
            else:
                try:
                    # link() refuses an existing target: two makers of one ICCID cannot both win.
                    os.link(temp, target)
                except FileExistsError as exc:
                    raise CardExistsError(f"a card with ICCID {image.iccid} exists in {self.directory}") from exc
                os.unlink(temp)
            if self.fsync:
                self._fsync_directory()
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        # Lines of the previous generation are ignored from now on; dropping them only saves space.
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.log_path(image.iccid), 0)
        self._written[image.iccid] = (generation, 0, {part: dict(getattr(image, part)) for part in _PARTS})

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _take_delta(before: dict[str, Any], now: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``now`` that differ from ``before``, which is brought up to date with them."""
    # Unchanged entries are usually the very objects last written (the file system caches its entries).
    delta = {key: value for key, value in now.items() if (old := before.get(key)) is not value and old != value}
    before.update(delta)
    return delta


def _generation(snapshot: bytes) -> int:
    generation = json.loads(snapshot).get("generation", 0)
    if not isinstance(generation, int) or generation < 0:
        raise ImageError("card image generation is malformed")
    return generation


def _log_lines(log: bytes, name: str) -> list[dict[str, Any]]:
    """The change lines of a log; a torn last line (no newline, or not JSON) is dropped, a bad line before it is an error."""
    raw = log.split(b"\n")
    lines: list[dict[str, Any]] = []
    for number, text in enumerate(raw, start=1):
        last = number == len(raw)
        if not text:
            continue
        try:
            if last:
                raise ValueError("no newline")
            line = json.loads(text)
            if not isinstance(line, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if last:
                break
            raise ImageError(f"{name}:{number}: card image log line is malformed") from exc
        lines.append(line)
    return lines
