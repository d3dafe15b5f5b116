"""The UICC file system at run time: the file tree of a card type with each EF's content and life cycle state.

Spec: ETSI TS 102 221 §8.2 (MF, DF, ADF and EF), §8.3 (transparent, linear
fixed and cyclic EFs; in a cyclic EF record 1 is the most recently written),
§11.1.1.3 (the FCP template SELECT returns), §11.1.1.4.9 (life cycle status:
05 operational and activated, 04 operational and deactivated), §11.1.1.4.6
(proprietary information A5 with the UICC characteristics of the MF).

The static shape comes from :class:`~simwallet.applet.card.spec.CardSpec`
(re-exported here with :class:`FileSpec`); a :class:`File` adds what changes
in use: the content and whether the file is activated. Records are held in
logical order (index 0 is record 1), so a cyclic UPDATE is a rotation.
:meth:`FileSystem.export` and :meth:`FileSystem.restore` move the changing
part to and from the card image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from simwallet.applet.card.pins import Pins
from simwallet.applet.card.spec import KEY_ADM1, KEY_PIN1, KEY_PIN2, CardSpec, FileSpec, FileType
from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.fcp import (
    LCSI_OPERATIONAL_ACTIVATED,
    LCSI_OPERATIONAL_DEACTIVATED,
    NO_SFI,
    ArrReference,
    Fcp,
)
from simwallet.applet.protocols.tlv import Tlv

__all__ = ["CardSpec", "File", "FileSpec", "FileSystem"]

# TS 102 221 §11.1.1.4.6.1: UICC characteristics 71 = clock stop allowed, supply voltage classes A, B and C.
UICC_CHARACTERISTICS: Final = 0x71
_UICC_CHARACTERISTICS_TAG = 0x80
# TS 102 221 §9.5.2: the keys a DF's PIN status template lists (those that exist on the card).
STATUS_TEMPLATE_KEYS: Final = (KEY_PIN1, KEY_PIN2, KEY_ADM1)


class File:
    """One file on the card: its spec, its place in the tree, and (for an EF) its content."""

    def __init__(self, spec: FileSpec, parent: File | None) -> None:
        self.spec = spec
        self.parent = parent
        self.path: str = f"{parent.path}/{spec.name}" if parent is not None else spec.name
        self.active = True
        self.children: list[File] = [File(child, self) for child in spec.children]
        self.data = bytearray()
        self.records: list[bytes] = []
        self.reset_content()

    def __repr__(self) -> str:
        return f"File({self.path!r})"

    def reset_content(self) -> None:
        """Back to the content the card maker wrote."""
        content = self.spec.content
        if isinstance(content, bytes):
            self.data = bytearray(content)
        elif isinstance(content, tuple):
            self.records = list(content)

    @property
    def fid(self) -> int | None:
        return self.spec.fid

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> FileType:
        return self.spec.type

    @property
    def is_df(self) -> bool:
        return self.spec.is_df

    @property
    def is_adf(self) -> bool:
        return self.spec.type is FileType.ADF

    @property
    def record_length(self) -> int:
        return self.spec.record_length or 0

    def child_by_fid(self, fid: int) -> File | None:
        return next((c for c in self.children if c.fid == fid), None)

    def child_by_sfi(self, sfi: int) -> File | None:
        return next((c for c in self.children if c.spec.sfi == sfi), None)

    def usable(self) -> bool:
        """Activated, and so are the DFs above it (a deactivated DF shuts its subtree)."""
        node: File | None = self
        while node is not None:
            if not node.active:
                return False
            node = node.parent
        return True

    def content(self) -> bytes:
        """A transparent EF's bytes, or a record EF's records joined in logical order."""
        return bytes(self.data) if self.type is FileType.TRANSPARENT else b"".join(self.records)


class FileSystem:
    """The tree of :class:`File` built from a card type's root :class:`FileSpec`."""

    def __init__(self, root: FileSpec) -> None:
        self.mf = File(root, None)
        self._by_path = {f.path: f for f in self.walk()}
        self.adfs = [c for c in self.mf.children if c.is_adf]
        # path -> ((active, content), exported entry); see export().
        self._export_cache: dict[str, tuple[tuple[bool, object], dict[str, Any]]] = {}
        # Paths written since the last export() (FileOps calls touch()); None: every file (new, or restored).
        self._dirty: set[str] | None = None
        self._exported: dict[str, Any] = {}

    def walk(self, start: File | None = None) -> Iterator[File]:
        node = start or self.mf
        yield node
        for child in node.children:
            yield from self.walk(child)

    def file(self, path: str) -> File:
        """The file at ``path``: ``MF/ADF.USIM/EF.IMSI``, or without the leading ``MF/``; KeyError if none."""
        key = path.strip("/")
        found = self._by_path.get(key) or self._by_path.get(f"{self.mf.name}/{key}")
        if found is None:
            raise KeyError(f"no file {path!r} on this card")
        return found

    def fcp(self, file: File, pins: Pins) -> Fcp:
        """The FCP template of ``file`` (TS 102 221 §11.1.1.3), with the current life cycle and PIN states."""
        spec = file.spec
        assert spec.arr is not None, "the card maker sets every file's EF.ARR reference"
        arr = ArrReference(*spec.arr)
        lcsi = LCSI_OPERATIONAL_ACTIVATED if file.active else LCSI_OPERATIONAL_DEACTIVATED
        if file.is_df:
            proprietary = Tlv(_UICC_CHARACTERISTICS_TAG, bytes([UICC_CHARACTERISTICS])).to_bytes() if file is self.mf else None
            template = pins.status_template(STATUS_TEMPLATE_KEYS)
            # TS 102 221 §11.1.1.4.2: total file size, the memory the DF's EFs take.
            total = sum(len(f.content()) for f in self.walk(file) if not f.is_df)
            return Fcp.df(spec.fid, pin_status=template, arr=arr, aid=spec.aid, lcsi=lcsi, proprietary=proprietary, total_file_size=total)
        sfi = NO_SFI if spec.sfi is None else spec.sfi
        if spec.type is FileType.TRANSPARENT:
            return Fcp.transparent_ef(_fid(spec), len(file.data), arr=arr, sfi=sfi, lcsi=lcsi)
        if spec.type is FileType.LINEAR_FIXED:
            return Fcp.linear_fixed_ef(_fid(spec), file.record_length, len(file.records), arr=arr, sfi=sfi, lcsi=lcsi)
        return Fcp.cyclic_ef(_fid(spec), file.record_length, len(file.records), arr=arr, sfi=sfi, lcsi=lcsi)

    # -- the card image ---------------------------------------------------------------------

    def touch(self, file: File) -> None:
        """Note that ``file`` was written (content or life cycle): the next :meth:`export` renews its entry."""
        if self._dirty is not None:
            self._dirty.add(file.path)

    def export_changes(self) -> dict[str, Any] | None:
        """The entries of :meth:`export` that changed since the last export or this call; None before the first export."""
        if self._dirty is None:
            return None
        before = {path: self._exported.get(path) for path in self._dirty}
        self._export_files([self._by_path[path] for path in sorted(self._dirty)])
        return {path: entry for path, old in before.items() if (entry := self._exported[path]) is not old}

    def export(self) -> dict[str, Any]:
        """JSON-able content and life cycle of every file, keyed by path.

        The card saves its image after every change, so only the files written since the last export (see
        :meth:`touch`) get a new entry, and only when their bytes differ from those it was made from; the
        other entries are the very objects of the last export (which lets the image store skip them by
        identity). Entries are shared between calls: callers must not modify them.
        """
        dirty = self._dirty
        if dirty is None:
            files: Iterable[File] = self._by_path.values()
            self._exported = {}
        else:
            files = [self._by_path[path] for path in sorted(dirty)]
        self._export_files(files)
        return dict(self._exported)

    def _export_files(self, files: Iterable[File]) -> None:
        exported, cache = self._exported, self._export_cache
        for file in files:
            if file.type is FileType.TRANSPARENT:
                raw: object = bytes(file.data)
            elif file.type.is_record:
                raw = tuple(file.records)
            else:
                raw = None
            key = (file.active, raw)
            cached = cache.get(file.path)
            if cached is not None and cached[0] == key:
                exported[file.path] = cached[1]
                continue
            entry: dict[str, Any] = {"active": file.active}
            if file.type is FileType.TRANSPARENT:
                entry["data"] = file.data.hex()
            elif file.type.is_record:
                entry["records"] = [r.hex() for r in file.records]
            cache[file.path] = (key, entry)
            exported[file.path] = entry
        self._dirty = set()

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load :meth:`export` output; files it does not name keep the card maker's content. CodecError if it does not fit."""
        self._dirty = None
        for path, entry in data.items():
            file = self._by_path.get(path)
            if file is None:
                raise CodecError(f"card image holds {path}, which the card type does not have")
            if not isinstance(entry, Mapping) or not isinstance(entry.get("active"), bool):
                raise CodecError(f"card image entry of {path} is malformed")
            file.active = entry["active"]
            try:
                if file.type is FileType.TRANSPARENT:
                    raw = bytes.fromhex(entry["data"])
                    if len(raw) != file.spec.size:
                        raise CodecError(f"card image holds {len(raw)} bytes for {path}, the card type {file.spec.size}")
                    file.data = bytearray(raw)
                elif file.type.is_record:
                    records = [bytes.fromhex(r) for r in entry["records"]]
                    if len(records) != file.spec.records or any(len(r) != file.record_length for r in records):
                        raise CodecError(f"card image records of {path} do not match the card type")
                    file.records = records
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, CodecError):
                    raise
                raise CodecError(f"card image content of {path} is malformed") from exc
        # The entries just read are this export's; files the image did not name are new to it.
        self._exported = {path: data[path] for path in data}
        self._dirty = {path for path in self._by_path if path not in data}


def _fid(spec: FileSpec) -> int:
    assert spec.fid is not None, "every EF has a file identifier"
    return spec.fid
