"""The persistent card image: one JSON file per card (its EEPROM), and the directory that keeps them.

Spec: the image is this project's own format (``format`` 1); its parts follow
ETSI TS 102 221: the content and life cycle (§11.1.1.4.9) of every EF, the PIN
digests and retry counters (§9.5), and the state of each application selected
by AID (TS 102 221 §8.5, GlobalPlatform Card Specification 2.3 §6), keyed by
the AID in hex, and the registry's own state (GP life cycles and instances)
under the key ``gp``.

Theory of operation
-------------------
:class:`CardStore` writes ``<ICCID>.json`` with mode 0600 in one directory.
Each save writes a temporary file in the same directory and renames it over
the old image with :func:`os.replace`, so a reader sees the old image or the
new one, never a mix: the image survives the card process being killed at any
point. It does not survive a power cut unless ``fsync=True`` (then the data
and the directory entry are flushed before the rename counts), which costs a
disk flush per changing APDU. The image holds digests of the PINs, never their
values; it does hold application keys (a card's memory does).
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
        return json.dumps(doc, indent=1, sort_keys=True).encode()

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


class CardStore:
    """A directory of card images, one ``<ICCID>.json`` per card."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"CardStore({str(self.directory)!r}, fsync={self.fsync})"

    def path(self, iccid: str) -> Path:
        return self.directory / f"{check_iccid(iccid)}.json"

    def exists(self, iccid: str) -> bool:
        return self.path(iccid).exists()

    def iccids(self) -> list[str]:
        """The ICCIDs of the stored cards, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if _ICCID.fullmatch(p.stem))

    def load(self, iccid: str) -> CardImage:
        path = self.path(iccid)
        try:
            with path.open("rb") as handle:
                data = handle.read(IMAGE_SIZE_MAX + 1)
        except FileNotFoundError as exc:
            raise CardNotFoundError(f"no card image for ICCID {iccid} in {self.directory}") from exc
        if len(data) > IMAGE_SIZE_MAX:
            raise ImageError(f"card image {path.name} exceeds {IMAGE_SIZE_MAX} bytes")
        image = CardImage.from_json(data)
        if image.iccid != iccid:
            raise ImageError(f"card image {path.name} holds ICCID {image.iccid}")
        return image

    def save(self, image: CardImage) -> None:
        """Replace the card's image atomically."""
        self._write(image, replace=True)

    def create(self, image: CardImage) -> None:
        """Store a new card's image; CardExistsError if the ICCID has one already."""
        self._write(image, replace=False)

    def _write(self, image: CardImage, *, replace: bool) -> None:
        target = self.path(image.iccid)
        self.directory.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600, in the target's directory so the rename stays on one file system.
        fd, temp = tempfile.mkstemp(prefix=f".{image.iccid}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(image.to_json())
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

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
