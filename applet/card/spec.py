"""The card type: ATR, PINs and the file tree of a UICC, read from the card-type mapping (``card:`` in the YAML).

Spec: ETSI TS 102 221 §8.1-8.3 (MF, DF, ADF, EF structures), §8.4.1 (file IDs a
DF's children must not repeat), §8.6 (short file identifiers), §9.5.1 (key
references PIN1 01, PIN2 81, ADM1 0A), §13.1 (EF.DIR), §13.4 (EF.ARR);
ISO/IEC 7816-3 §8.2 (the ATR and its check byte TCK).

Theory of operation
-------------------
:meth:`CardSpec.from_mapping` checks the mapping field by field
(:mod:`.spec_parse`) and builds a tree of frozen :class:`FileSpec` values. Every error is a :class:`SpecError`
naming the file by its path of names (``MF/ADF.USIM/EF.IMSI``), the field, and
the keys that lead to it in the mapping (``keys``), so that a YAML loader can
point at the line. The card-maker's additions follow (:mod:`.arr`): the access
rule files EF.ARR (2F06 under the MF, 6F06 in each ADF) are generated from the
distinct rules of the files they serve, and EF.DIR is filled from the ADFs
unless the card type gives its content. The resulting tree is what the card
holds at manufacture: the runtime (:mod:`.filesystem`) only copies it.

Access rules per operation (read, update, activate, deactivate) are one of
``always``, ``pin1``, ``pin2``, ``adm1``, ``never``; when absent: read always,
the other three adm1. A DF has no read operation: its ``read`` must be
``always`` (SELECT and STATUS are never refused).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from simwallet.applet.errors import AppletError

# TS 102 221 §8.4.1 / ISO/IEC 7816-4 §5.3.1.1: FIDs the card reserves.
FID_MF: Final = 0x3F00
FID_CURRENT_ADF: Final = 0x7FFF
FIDS_RESERVED: Final = frozenset({FID_CURRENT_ADF, 0x3FFF, 0xFFFF})
# TS 102 221 §13.2, §13.1, §13.4: the MF's own EFs the card fills itself.
FID_ICCID: Final = 0x2FE2
FID_DIR: Final = 0x2F00
FID_ARR_MF: Final = 0x2F06
FID_ARR_ADF: Final = 0x6F06
ICCID_SIZE: Final = 10
# TS 102 221 §11.1.1.4.8: SFI 1..30.
SFI_MIN: Final = 1
SFI_MAX: Final = 30
# TS 102 221 §11.1.1.4.1: the file size in two bytes (READ BINARY reaches offsets up to 7FFF only).
FILE_SIZE_MAX: Final = 0xFFFF
# TS 102 221 §11.1.1.4.3: record length one byte on every UICC we emulate; records 01..FE (FF is RFU).
RECORD_LENGTH_MAX: Final = 255
RECORDS_MAX: Final = 254
# ISO/IEC 7816-4 §8.2.1.2: an AID is a 5-byte RID and at most 11 bytes of PIX.
AID_LENGTH_MIN: Final = 5
AID_LENGTH_MAX: Final = 16
# ISO/IEC 7816-4 §8.2.1.3 (tag 50): an application label is at most 16 bytes (EF.DIR records are short).
LABEL_LENGTH_MAX: Final = 16
# File names are paths in profiles and errors: short, no slash.
NAME_LENGTH_MAX: Final = 32
# MF > DF > DF > EF is as deep as TS 31.102 goes (DF.TELECOM/DF.GRAPHICS/EF.IMG); two more for proprietary trees.
TREE_DEPTH_MAX: Final = 6
# A generous bound on one card's files; commercial USIMs hold 100-300.
FILE_COUNT_MAX: Final = 1024
# ISO/IEC 7816-4 §6.8: retry counters fit the X of 63CX.
TRIES_MAX: Final = 15
# ISO/IEC 7816-3 §8.2: an ATR is TS plus at most 32 bytes.
ATR_LENGTH_MAX: Final = 33


class SpecError(AppletError, ValueError):
    """A card type that cannot be built: ``path`` names the file, ``field`` the field, ``keys`` the mapping keys to it."""

    def __init__(self, path: str, field: str, message: str, keys: tuple[str | int, ...] = ()) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{field} {message}" if field else f"{where}{message}")
        self.path = path
        self.field = field
        self.keys = keys


class AccessRule(enum.Enum):
    """Who may do an operation (TS 102 221 §9.2.7 security conditions, one key reference each)."""

    ALWAYS = "always"
    PIN1 = "pin1"
    PIN2 = "pin2"
    ADM1 = "adm1"
    NEVER = "never"

    @property
    def key_reference(self) -> int | None:
        """The TS 102 221 §9.5.1 key reference the rule asks for, None for always/never."""
        return _KEY_REFERENCES.get(self)


# TS 102 221 §9.5.1 Table 9.3: PIN Appl 1 (01), second PIN Appl 1 (81), ADM1 (0A).
KEY_PIN1: Final = 0x01
KEY_PIN2: Final = 0x81
KEY_ADM1: Final = 0x0A
_KEY_REFERENCES = MappingProxyType({AccessRule.PIN1: KEY_PIN1, AccessRule.PIN2: KEY_PIN2, AccessRule.ADM1: KEY_ADM1})


class Operation(enum.Enum):
    READ = "read"
    UPDATE = "update"
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"


@dataclass(frozen=True)
class Access:
    """The rule of each operation on one file."""

    read: AccessRule = AccessRule.ALWAYS
    update: AccessRule = AccessRule.ADM1
    activate: AccessRule = AccessRule.ADM1
    deactivate: AccessRule = AccessRule.ADM1

    def rule(self, operation: Operation) -> AccessRule:
        rule: AccessRule = getattr(self, operation.value)
        return rule


class FileType(enum.Enum):
    DF = "df"
    ADF = "adf"
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear_fixed"
    CYCLIC = "cyclic"

    @property
    def is_df(self) -> bool:
        return self in (FileType.DF, FileType.ADF)

    @property
    def is_record(self) -> bool:
        return self in (FileType.LINEAR_FIXED, FileType.CYCLIC)


@dataclass(frozen=True)
class FileSpec:
    """One file as the card maker creates it; ``content`` is its full initial content."""

    name: str
    type: FileType
    fid: int | None
    access: Access = Access()
    children: tuple[FileSpec, ...] = ()
    # Transparent EF: size in bytes. Record EF: record length and number of records.
    size: int | None = None
    record_length: int | None = None
    records: int | None = None
    sfi: int | None = None
    # ADF: application identifier and EF.DIR label.
    aid: bytes | None = None
    label: str | None = None
    # Transparent: bytes (size long); records: one bytes per record (record_length long). None for DFs,
    # and, before the card maker completes the tree, for EFs whose content the card type does not give.
    content: bytes | tuple[bytes, ...] | None = None
    fill: int = 0xFF
    # TS 102 221 §11.1.1.4.7.3: EF.ARR file ID and record that hold this file's rules (set by the card maker).
    arr: tuple[int, int] | None = None

    @property
    def is_df(self) -> bool:
        return self.type.is_df

    def child(self, name: str) -> FileSpec | None:
        return next((c for c in self.children if c.name == name), None)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, FileSpec]]:
        """(path, file) for this file and every descendant, parents first."""
        path = f"{prefix}/{self.name}" if prefix else self.name
        yield path, self
        for child in self.children:
            yield from child.walk(path)

    def find(self, path: str) -> FileSpec | None:
        """The file at ``path`` (names joined by '/', from this file; the leading 'MF/' may be left out)."""
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == self.name:
            parts = parts[1:]
        node: FileSpec | None = self
        for part in parts:
            node = node.child(part) if node is not None else None
        return node


@dataclass(frozen=True)
class PinSpec:
    """One PIN or ADM key: its TS 102 221 §9.5.1 key reference and counters (``unblock_tries`` None: no PUK)."""

    key_reference: int
    name: str
    tries: int
    unblock_tries: int | None
    enabled: bool = True


@dataclass(frozen=True)
class CardSpec:
    """A card type: what every card of the type looks like when it leaves the card maker."""

    name: str
    atr: bytes
    pins: tuple[PinSpec, ...]
    files: FileSpec
    # Sections of the card type this module does not read (``gp:`` for the security domain …), as given.
    extensions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def pin(self, key_reference: int) -> PinSpec | None:
        return next((p for p in self.pins if p.key_reference == key_reference), None)

    def file(self, path: str) -> FileSpec:
        """The file at ``path`` (``MF/ADF.USIM/EF.IMSI`` or ``ADF.USIM/EF.IMSI``); KeyError if there is none."""
        found = self.files.find(path)
        if found is None:
            raise KeyError(f"no file {path!r} in card type {self.name}")
        return found

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> CardSpec:
        """Build from the ``card:`` mapping of a card-type document; SpecError names what is wrong."""
        from simwallet.applet.card.spec_parse import parse_card

        return parse_card(doc)
