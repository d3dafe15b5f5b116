"""The file commands of the virtual UICC on the basic logical channel: selection by FID and path, and EF access.

Spec: ETSI TS 102 221 §8.4.1 (which files a FID reaches from the current DF),
§8.4.2 (paths, 7FFF for the current ADF), §8.5 (current application),
§11.1.1 SELECT (P1 00/01/03/08/09 here; by DF name in :mod:`.uicc`), §11.1.2
STATUS, §11.1.3 READ BINARY, §11.1.4 UPDATE BINARY, §11.1.5 READ RECORD,
§11.1.6 UPDATE RECORD, §11.1.7 SEARCH RECORD, §11.1.14 DEACTIVATE FILE,
§11.1.15 ACTIVATE FILE; ISO/IEC 7816-4 §7.2 (SFI in P1 of the binary
commands, in P2 b8-b4 of the record commands).

Theory of operation
-------------------
:class:`Channel` is the volatile selection state: current DF, current EF,
current ADF (the application 7FFF names), record pointer, and the selected
:class:`~simwallet.applet.card.app.Application` if any. :class:`FileOps` runs
one command against it and returns the response; an error ends the command
with :class:`~simwallet.applet.errors.CardStatusError` carrying the status
word. ``changed`` tells the card that file content or a life cycle moved and
the card image must be written.

Choices where the specs leave room (the same as common UICCs): a read past the
end of a transparent EF answers 6CXX with the bytes available, unless Le is
00 (read to the end); READ RECORD with a Le other than 00 or the record length
answers 6CXX; an operation on a deactivated EF (or one under a deactivated DF)
answers 6283; SEARCH RECORD that finds nothing answers 9000 without data and
sets the record pointer to the first record found otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

from simwallet.applet.card.filesystem import File, FileSystem
from simwallet.applet.card.pins import Pins
from simwallet.applet.card.spec import FID_CURRENT_ADF, FID_MF, FileType, Operation
from simwallet.applet.errors import CardStatusError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.tlv import Tlv

if TYPE_CHECKING:
    from simwallet.applet.card.app import Application

# One READ BINARY answer at most this long: with SW1 SW2 it must fit a vpcd frame (64 KiB).
READ_LENGTH_MAX: Final = 0x8000
# ISO/IEC 7816-4 §5.1: Le 00 (short) and 0000 (extended) ask for "all available, up to Ne".
_NE_ALL = (256, 65536)
# P1 of READ/UPDATE BINARY: b8 set means b5-b1 is an SFI and P2 the offset.
_SFI_FLAG = 0x80
# ISO/IEC 7816-4 Table 49: P2 b3-b1 of READ/UPDATE RECORD.
MODE_NEXT: Final = 0x02
MODE_PREVIOUS: Final = 0x03
MODE_ABSOLUTE: Final = 0x04
# TS 102 221 Table 11.12: P2 b3-b1 of SEARCH RECORD.
SEARCH_FORWARD: Final = 0x04
SEARCH_BACKWARD: Final = 0x05
SEARCH_ENHANCED: Final = 0x06
# TS 102 221 Table 11.13: the search indication byte of an enhanced search.
_ENHANCED_FROM_P1 = 0x04
_ENHANCED_OFFSET_BY_VALUE = 0x08
_DF_NAME_TAG = 0x84

SW_WARNING_INVALIDATED: Final = 0x6283
SW_WRONG_LENGTH: Final = 0x6700
SW_INCOMPATIBLE: Final = 0x6981
SW_SECURITY: Final = 0x6982
SW_NO_EF: Final = 0x6986
SW_NOT_FOUND: Final = 0x6A82
SW_NO_RECORD: Final = 0x6A83
SW_BAD_P1P2: Final = 0x6A86
SW_NO_DATA: Final = 0x6A88
SW_OFFSET: Final = 0x6B00


def fail(sw: int) -> NoReturn:
    raise CardStatusError(sw, "")


@dataclass
class Channel:
    """What is selected on the basic logical channel (TS 102 221 §8.4, §8.5)."""

    current_df: File
    current_ef: File | None = None
    current_adf: File | None = None
    record: int = 0  # record pointer, 0 when undefined (TS 102 221 §8.3)
    app: Application | None = None

    @property
    def current_file(self) -> File:
        return self.current_ef or self.current_df

    def enter(self, file: File) -> None:
        """Make ``file`` the current file (and its DF the current DF)."""
        self.record = 0
        if file.is_df:
            self.current_df, self.current_ef = file, None
            if file.is_adf:
                self.current_adf = file
        else:
            assert file.parent is not None
            self.current_df, self.current_ef = file.parent, file


class FileOps:
    """The file system commands, run against one file system, its PINs and one channel."""

    def __init__(self, fs: FileSystem, pins: Pins, channel: Channel) -> None:
        self.fs = fs
        self.pins = pins
        self.channel = channel
        self.changed = False

    # -- selection -------------------------------------------------------------------------

    def by_fid(self, fid: int) -> File:
        """TS 102 221 §8.4.1: the file ``fid`` names from the current DF."""
        ch = self.channel
        if fid == FID_MF:
            return self.fs.mf
        if fid == FID_CURRENT_ADF:
            return ch.current_adf or fail(SW_NOT_FOUND)
        current = ch.current_df
        found = current.child_by_fid(fid)
        if found is not None:
            return found
        parent = current.parent
        if parent is not None:
            if parent.fid == fid:
                return parent
            sibling = parent.child_by_fid(fid)
            if sibling is not None and sibling.is_df:
                return sibling
        if current.fid == fid:
            return current
        fail(SW_NOT_FOUND)

    def by_path(self, data: bytes, *, from_mf: bool) -> File:
        """TS 102 221 §8.4.2: a path of FIDs from the MF (3F00 may lead) or from the current DF; 7FFF may lead."""
        if not data or len(data) % 2:
            fail(SW_WRONG_LENGTH)
        fids = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        node = self.fs.mf if from_mf else self.channel.current_df
        if from_mf and fids[0] == FID_MF:
            fids = fids[1:]
        if fids and fids[0] == FID_CURRENT_ADF:
            node = self.channel.current_adf or fail(SW_NOT_FOUND)
            fids = fids[1:]
        for i, fid in enumerate(fids):
            child = node.child_by_fid(fid)
            if child is None or (i < len(fids) - 1 and not child.is_df):
                fail(SW_NOT_FOUND)
            node = child
        return node

    def select_target(self, command: CommandApdu) -> File:
        """The file SELECT (or ACTIVATE/DEACTIVATE FILE) with P1 00/01/03/08/09 names."""
        p1, data = command.p1, command.data
        if p1 == 0x00:
            if not data:
                return self.fs.mf  # ISO/IEC 7816-4 §7.1.1: no data selects the MF
            if len(data) != 2:
                fail(SW_WRONG_LENGTH)
            return self.by_fid(int.from_bytes(data, "big"))
        if p1 == 0x01:
            if len(data) != 2:
                fail(SW_WRONG_LENGTH)
            child = self.channel.current_df.child_by_fid(int.from_bytes(data, "big"))
            return child if child is not None and child.is_df else fail(SW_NOT_FOUND)
        if p1 == 0x03:
            return self.channel.current_df.parent or fail(SW_NOT_FOUND)
        if p1 in (0x08, 0x09):
            return self.by_path(data, from_mf=p1 == 0x08)
        fail(SW_BAD_P1P2)

    # -- access ------------------------------------------------------------------------------

    def _check(self, file: File, operation: Operation) -> None:
        if operation in (Operation.READ, Operation.UPDATE) and not file.usable():
            fail(SW_WARNING_INVALIDATED)
        if not self.pins.satisfies(file.spec.access.rule(operation)):
            fail(SW_SECURITY)

    def _ef(self, sfi: int) -> File:
        """The EF a command addresses: by SFI in the current DF (and it becomes the current EF), or the current EF."""
        ch = self.channel
        if sfi:
            ef = ch.current_df.child_by_sfi(sfi)
            if ef is None or ef.is_df:
                fail(SW_NOT_FOUND)
            ch.enter(ef)
        if ch.current_ef is None:
            fail(SW_NO_EF)
        return ch.current_ef

    def _transparent(self, command: CommandApdu, operation: Operation) -> tuple[File, int]:
        """The transparent EF and the offset of READ/UPDATE BINARY: P1 b8 set, SFI in b5-b1 and offset in P2; else a 15-bit offset."""
        p1 = command.p1
        if p1 & _SFI_FLAG:
            if p1 & 0x60:
                fail(SW_BAD_P1P2)
            ef, offset = self._ef(p1 & 0x1F), command.p2
        else:
            ef, offset = self._ef(0), p1 << 8 | command.p2
        if ef.type is not FileType.TRANSPARENT:
            fail(SW_INCOMPATIBLE)
        self._check(ef, operation)
        return ef, offset

    def _record_file(self, p2: int, operation: Operation) -> File:
        ef = self._ef(p2 >> 3)
        if not ef.type.is_record:
            fail(SW_INCOMPATIBLE)
        self._check(ef, operation)
        return ef

    # -- transparent EFs -------------------------------------------------------------------------

    def read_binary(self, command: CommandApdu) -> ResponseApdu:
        ef, offset = self._transparent(command, Operation.READ)
        size = len(ef.data)
        if offset >= size:
            fail(SW_OFFSET)
        available = size - offset
        ne = command.le
        if ne is not None and ne > available and ne not in _NE_ALL:
            fail(0x6C00 | (available if available < 256 else 0))
        length = min(available, ne or available, READ_LENGTH_MAX)
        return ResponseApdu(bytes(ef.data[offset : offset + length]), 0x9000)

    def update_binary(self, command: CommandApdu) -> ResponseApdu:
        ef, offset = self._transparent(command, Operation.UPDATE)
        if offset >= len(ef.data):
            fail(SW_OFFSET)
        if not command.data or offset + len(command.data) > len(ef.data):
            fail(SW_WRONG_LENGTH)
        ef.data[offset : offset + len(command.data)] = command.data
        self.changed = True
        self.fs.touch(ef)
        return ResponseApdu.status(0x9000)

    # -- record EFs --------------------------------------------------------------------------------

    def _record_number(self, ef: File, p1: int, mode: int) -> tuple[int, int]:
        """(record to use, record pointer afterwards) for READ/UPDATE RECORD (TS 102 221 §11.1.5.1, §11.1.6.1)."""
        count, pointer, cyclic = len(ef.records), self.channel.record, ef.type is FileType.CYCLIC
        if mode == MODE_ABSOLUTE:
            number = p1 or pointer
            if not 1 <= number <= count:
                fail(SW_NO_RECORD)
            return number, pointer
        if mode == MODE_NEXT:
            if pointer == 0:
                number = 1
            elif pointer < count:
                number = pointer + 1
            else:
                number = 1 if cyclic else fail(SW_NO_RECORD)
            return number, number
        if mode == MODE_PREVIOUS:
            if pointer == 0:
                number = count
            elif pointer > 1:
                number = pointer - 1
            else:
                number = count if cyclic else fail(SW_NO_RECORD)
            return number, number
        fail(SW_BAD_P1P2)

    def read_record(self, command: CommandApdu) -> ResponseApdu:
        ef = self._record_file(command.p2, Operation.READ)
        number, pointer = self._record_number(ef, command.p1, command.p2 & 0x07)
        ne = command.le
        if ne is not None and ne != ef.record_length and ne not in _NE_ALL:
            fail(0x6C00 | (ef.record_length & 0xFF))
        self.channel.record = pointer
        return ResponseApdu(ef.records[number - 1], 0x9000)

    def update_record(self, command: CommandApdu) -> ResponseApdu:
        ef = self._record_file(command.p2, Operation.UPDATE)
        mode = command.p2 & 0x07
        if len(command.data) != ef.record_length:
            fail(SW_WRONG_LENGTH)
        if ef.type is FileType.CYCLIC:
            # TS 102 221 §11.1.6: a cyclic EF is written in PREVIOUS mode only; the oldest record becomes record 1.
            if mode != MODE_PREVIOUS:
                fail(SW_BAD_P1P2)
            ef.records = [command.data, *ef.records[:-1]]
            self.channel.record = 1
        else:
            number, pointer = self._record_number(ef, command.p1, mode)
            ef.records[number - 1] = command.data
            self.channel.record = pointer
        self.changed = True
        self.fs.touch(ef)
        return ResponseApdu.status(0x9000)

    def search_record(self, command: CommandApdu) -> ResponseApdu:
        ef = self._record_file(command.p2, Operation.READ)
        mode, data, count = command.p2 & 0x07, command.data, len(ef.records)
        from_p1 = True
        if mode in (SEARCH_FORWARD, SEARCH_BACKWARD):
            pattern, backward, step_first, offset_at = data, mode == SEARCH_BACKWARD, False, None
            offset = 0
        elif mode == SEARCH_ENHANCED:
            if len(data) < 3:
                fail(SW_WRONG_LENGTH)
            indication, pattern = data[0], data[2:]
            from_p1 = bool(indication & _ENHANCED_FROM_P1)
            backward, step_first = bool(indication & 0x01), bool(indication & 0x02)
            offset_at = data[1] if indication & _ENHANCED_OFFSET_BY_VALUE else None
            offset = 0 if offset_at is not None else data[1]
        else:
            fail(SW_BAD_P1P2)
        if not pattern:
            fail(SW_WRONG_LENGTH)
        start = command.p1 if from_p1 and command.p1 else self.channel.record
        if not 1 <= start <= count:
            fail(SW_NO_RECORD)
        if step_first:
            start += -1 if backward else 1
        order = range(start, 0, -1) if backward else range(start, count + 1)
        found = []
        for number in order:
            record = ef.records[number - 1]
            at = offset
            if offset_at is not None:
                index = record.find(bytes([offset_at]))
                if index < 0:
                    continue
                at = index + 1
            if record[at : at + len(pattern)] == pattern:
                found.append(number)
        if found:
            self.channel.record = found[0]
        return ResponseApdu(bytes(found), 0x9000)

    # -- status and life cycle ---------------------------------------------------------------------

    def status(self, command: CommandApdu) -> ResponseApdu:
        """STATUS (TS 102 221 §11.1.2): the current DF's FCP (P2 00), the current application's DF name (01), nothing (0C)."""
        if command.p1 not in (0x00, 0x01, 0x02):
            fail(SW_BAD_P1P2)
        if command.p2 == 0x00:
            return ResponseApdu(self.fs.fcp(self.channel.current_df, self.pins).to_bytes(), 0x9000)
        if command.p2 == 0x01:
            adf = self.channel.current_adf
            if adf is None or adf.spec.aid is None:
                fail(SW_NO_DATA)
            return ResponseApdu(Tlv(_DF_NAME_TAG, adf.spec.aid).to_bytes(), 0x9000)
        if command.p2 == 0x0C:
            return ResponseApdu.status(0x9000)
        fail(SW_BAD_P1P2)

    def set_active(self, command: CommandApdu, active: bool) -> ResponseApdu:
        """ACTIVATE FILE / DEACTIVATE FILE (TS 102 221 §11.1.14-15): the named file, or the current one."""
        if command.p2 != 0x00:
            fail(SW_BAD_P1P2)
        if command.data or command.p1 != 0x00:
            file = self.select_target(command)
            self.channel.enter(file)
        else:
            file = self.channel.current_file
        self._check(file, Operation.ACTIVATE if active else Operation.DEACTIVATE)
        if file.active != active:
            file.active = active
            self.changed = True
            self.fs.touch(file)
        return ResponseApdu.status(0x9000)
