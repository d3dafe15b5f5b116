"""The ``files`` step as a plan of APDUs: which SELECT, UPDATE BINARY and UPDATE RECORD commands write a profile's files.

Spec: ETSI TS 102 221 §8.4.1 (a FID reaches the children of the current DF),
§8.4.2 (paths from the MF, ``7FFF`` for the current ADF), §8.5 (an ADF is
selected by its AID), §11.1.1 SELECT (P1 ``00`` by FID, ``04`` by DF name,
``08`` by path from the MF; P2 ``0C``: no data returned), §11.1.4 UPDATE
BINARY and §11.1.6 UPDATE RECORD (an SFI in P1 b5-b1, resp. P2 b8-b4, names
the EF in the current DF and makes it the current EF; ISO/IEC 7816-4 §7.2.2);
UPDATE RECORD of a cyclic EF only in PREVIOUS mode (TS 102 221 §11.1.6.1).

Theory of operation
-------------------
Personalization is judged by APDUs per card, so the plan never sends a
SELECT that does not change the current file and never reads before it
writes. :class:`Navigator` is a pure model of the card's selection state
(current DF, current EF, the ADF that ``7FFF`` names); for each
:class:`~simwallet.provisioning.profile.FileWrite` it yields the cheapest way
there, in this order of preference:

1. the EF is already current: no SELECT;
2. the EF is in the current DF and has an SFI: the UPDATE names it by SFI
   (no SELECT at all);
3. the EF is in the current DF: SELECT by FID;
4. the EF is in an ADF: the ADF by AID (once), then 2 or 3; later, once the
   card knows that ADF as the current application, one SELECT by path
   ``7FFF``‖FID;
5. anywhere else: one SELECT by path from the MF.

Writes are grouped by DF first (stable within a DF), which keeps the number
of SELECTs at one per DF change. The navigator starts from the state the
``identify`` step leaves (EF.ICCID under the MF current); every SELECT uses P2
``0C`` and no Le, so each costs exactly one exchange, also on T=0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from simwallet.provisioning.profile import FileKind, FileWrite
from simwallet.provisioning.profile_files import CardFile

# ISO/IEC 7816-4 §5.1: a short APDU carries at most 255 data bytes.
UPDATE_CHUNK_MAX: Final = 255
# TS 102 221 §11.1.4.1: an offset in P1-P2 has 15 bits (P1 b8 marks an SFI).
BINARY_OFFSET_MAX: Final = 0x7FFF
# TS 102 221 §11.1.1.2 Table 11.2: SELECT by FID, by DF name, by path from the MF; P2 0C: no data.
SELECT_BY_FID: Final = 0x00
SELECT_BY_NAME: Final = 0x04
SELECT_BY_PATH_FROM_MF: Final = 0x08
SELECT_NO_DATA: Final = 0x0C
# ISO/IEC 7816-4 §7.4.3 Table 49 (TS 102 221 §11.1.6): record modes in P2 b3-b1.
RECORD_ABSOLUTE: Final = 0x04
RECORD_PREVIOUS: Final = 0x03
# ISO/IEC 7816-4 §7.2.2: P1 b8 = 1 names the EF by its SFI in b5-b1.
BINARY_SFI_FLAG: Final = 0x80
# TS 102 221 §8.4.2: 7FFF stands for the current ADF in a path.
FID_CURRENT_ADF: Final = b"\x7f\xff"
INS_SELECT: Final = 0xA4
INS_UPDATE_BINARY: Final = 0xD6
INS_UPDATE_RECORD: Final = 0xDC
ROOT: Final = "MF"


class PlanError(ValueError):
    """A write the card type cannot place: an unknown path, a file without FID, a body too long."""


@dataclass(frozen=True)
class PlannedApdu:
    """One command of the plan: the C-APDU and the file it concerns (its full path)."""

    capdu: bytes
    path: str
    kind: str  # "select", "update_binary", "update_record"


def select_by_fid(fid: bytes) -> bytes:
    return bytes([0x00, INS_SELECT, SELECT_BY_FID, SELECT_NO_DATA, len(fid)]) + fid


def select_by_path_from_mf(path: bytes) -> bytes:
    return bytes([0x00, INS_SELECT, SELECT_BY_PATH_FROM_MF, SELECT_NO_DATA, len(path)]) + path


def select_by_aid(aid: bytes) -> bytes:
    return bytes([0x00, INS_SELECT, SELECT_BY_NAME, SELECT_NO_DATA, len(aid)]) + aid


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


class Navigator:
    """The card's selection state, as far as the commands it was handed let it know.

    ``index`` is the card type's files by full path
    (:func:`~simwallet.provisioning.profile_files.card_files`). The state
    starts at ``current_ef`` (default: EF.ICCID under the MF, where
    ``identify`` leaves the card).
    """

    def __init__(self, index: Mapping[str, CardFile], *, current_ef: str | None = f"{ROOT}/EF.ICCID") -> None:
        self._index = index
        self.current_ef = current_ef
        self.current_df = _parent(current_ef) if current_ef else ROOT
        # The ADF the card takes as current application (what 7FFF names), once one was selected by AID.
        self.current_adf: str | None = None

    def _file(self, path: str) -> CardFile:
        found = self._index.get(path)
        if found is None:
            raise PlanError(f"{path}: not a file of the card type")
        return found

    def _fid(self, path: str) -> bytes:
        fid = self._file(path).fid
        if fid is None:
            raise PlanError(f"{path}: the card type gives no file ID")
        return bytes.fromhex(fid)

    def _adf_of(self, path: str) -> str | None:
        parts = path.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:depth])
            if self._file(prefix).structure == "adf":
                return prefix
        return None

    def _fids(self, base: str, path: str) -> bytes:
        """The FIDs of every file from below ``base`` down to ``path``."""
        relative = path[len(base) + 1 :].split("/")
        return b"".join(self._fid(f"{base}/{'/'.join(relative[: i + 1])}") for i in range(len(relative)))

    def go_to(self, write: FileWrite) -> tuple[list[PlannedApdu], bool]:
        """The SELECTs that make ``write.path`` reachable, and whether the UPDATE should name it by SFI."""
        path = write.path
        target_df = _parent(path)
        out: list[PlannedApdu] = []
        if self.current_ef == path:
            return out, False
        adf = self._adf_of(path)
        if self.current_df != target_df and adf is not None and self.current_adf != adf:
            # The ADF by AID, once: from then on 7FFF names it.
            aid = self._file(adf).adf_aid
            if aid is None:
                raise PlanError(f"{adf}: an ADF without AID")
            out.append(PlannedApdu(select_by_aid(bytes.fromhex(aid)), adf, "select"))
            self.current_adf = adf
            self.current_df, self.current_ef = adf, None
        if self.current_df == target_df:
            by_sfi = write.sfi is not None
            if not by_sfi:
                out.append(PlannedApdu(select_by_fid(self._fid(path)), path, "select"))
            self.current_ef = path
            return out, by_sfi
        # One SELECT by path from the MF: 7FFF/… inside the current ADF, the FIDs below the MF elsewhere.
        fids = FID_CURRENT_ADF + self._fids(adf, path) if adf is not None else self._fids(ROOT, path)
        out.append(PlannedApdu(select_by_path_from_mf(fids), path, "select"))
        self.current_df, self.current_ef = target_df, path
        return out, False


def order_writes(writes: Sequence[FileWrite]) -> list[FileWrite]:
    """The writes grouped by DF, DFs in order of first appearance, writes in profile order within a DF."""
    first: dict[str, int] = {}
    for position, write in enumerate(writes):
        first.setdefault(_parent(write.path), position)
    return sorted(writes, key=lambda write: first[_parent(write.path)])


def update_commands(write: FileWrite, *, by_sfi: bool) -> Iterator[PlannedApdu]:
    """The UPDATE BINARY / UPDATE RECORD commands writing ``write`` (whole body, every record)."""
    if write.kind is FileKind.TRANSPARENT:
        data = write.data
        if len(data) > BINARY_OFFSET_MAX + 1:
            raise PlanError(f"{write.path}: {len(data)} bytes exceed what UPDATE BINARY offsets reach")
        for offset in range(0, len(data), UPDATE_CHUNK_MAX):
            chunk = data[offset : offset + UPDATE_CHUNK_MAX]
            if offset == 0 and by_sfi and write.sfi is not None:
                p1, p2 = BINARY_SFI_FLAG | write.sfi, 0
            else:
                p1, p2 = offset >> 8, offset & 0xFF
            yield PlannedApdu(bytes([0x00, INS_UPDATE_BINARY, p1, p2, len(chunk)]) + chunk, write.path, "update_binary")
        return
    sfi_bits = (write.sfi << 3) if by_sfi and write.sfi is not None else 0
    records = write.records
    if write.structure == "cyclic":
        # TS 102 221 §11.1.6.1: PREVIOUS writes the oldest record, which becomes record 1; the last written ends first.
        for index, record in enumerate(reversed(records)):
            p2 = (sfi_bits if index == 0 else 0) | RECORD_PREVIOUS
            yield PlannedApdu(_update_record(0, p2, record), write.path, "update_record")
        return
    for number, record in enumerate(records, start=1):
        # The SFI is needed once: the first UPDATE makes the EF current.
        p2 = (sfi_bits if number == 1 else 0) | RECORD_ABSOLUTE
        yield PlannedApdu(_update_record(number, p2, record), write.path, "update_record")


def _update_record(number: int, p2: int, record: bytes) -> bytes:
    if not record or len(record) > UPDATE_CHUNK_MAX:
        raise PlanError(f"a record of {len(record)} bytes does not fit one UPDATE RECORD")
    return bytes([0x00, INS_UPDATE_RECORD, number, p2, len(record)]) + record


def plan_files(writes: Sequence[FileWrite], index: Mapping[str, CardFile], *, navigator: Navigator | None = None) -> list[PlannedApdu]:
    """Every command of the ``files`` step, in order (pure: nothing is sent)."""
    nav = navigator or Navigator(index)
    out: list[PlannedApdu] = []
    for write in order_writes(writes):
        selects, by_sfi = nav.go_to(write)
        out += selects
        out += update_commands(write, by_sfi=by_sfi)
    return out


# TS 102 221 §11.1.3 READ BINARY, §11.1.5 READ RECORD.
INS_READ_BINARY: Final = 0xB0
INS_READ_RECORD: Final = 0xB2
# ISO/IEC 7816-4 §5.1: a short Le asks for at most 256 bytes.
READ_CHUNK_MAX: Final = 256


def read_commands(write: FileWrite, *, by_sfi: bool) -> Iterator[PlannedApdu]:
    """The READ BINARY / READ RECORD commands that read back what ``write`` wrote (same length, every record)."""
    if write.kind is FileKind.TRANSPARENT:
        for offset in range(0, len(write.data), READ_CHUNK_MAX):
            length = min(READ_CHUNK_MAX, len(write.data) - offset)
            if offset == 0 and by_sfi and write.sfi is not None:
                p1, p2 = BINARY_SFI_FLAG | write.sfi, 0
            else:
                p1, p2 = offset >> 8, offset & 0xFF
            yield PlannedApdu(bytes([0x00, INS_READ_BINARY, p1, p2, length & 0xFF]), write.path, "read_binary")
        return
    sfi_bits = (write.sfi << 3) if by_sfi and write.sfi is not None else 0
    for number, record in enumerate(write.records, start=1):
        p2 = (sfi_bits if number == 1 else 0) | RECORD_ABSOLUTE
        yield PlannedApdu(bytes([0x00, INS_READ_RECORD, number, p2, len(record) & 0xFF]), write.path, "read_record")
