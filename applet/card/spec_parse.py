"""Reading a card type's ``card:`` mapping into a :class:`~simwallet.applet.card.spec.CardSpec`, field by field.

Spec: ETSI TS 102 221 §8.4.1 (a DF's children have distinct FIDs, none its
own), §8.6 / §11.1.1.4.8 (SFI 1..30, distinct within a DF), §9.5.1 (PIN
retry counters); ISO/IEC 7816-3 §8.2 (ATR structure and TCK); ISO/IEC 7816-4
§8.2.1.2 (AID length).

Every check raises :class:`~simwallet.applet.card.spec.SpecError` with the
file's path of names, the field, and the mapping keys leading to it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from simwallet.applet.card.arr import complete_tree
from simwallet.applet.card.spec import (
    AID_LENGTH_MAX,
    AID_LENGTH_MIN,
    ATR_LENGTH_MAX,
    FID_ARR_ADF,
    FID_ARR_MF,
    FID_ICCID,
    FID_MF,
    FIDS_RESERVED,
    FILE_COUNT_MAX,
    FILE_SIZE_MAX,
    ICCID_SIZE,
    KEY_ADM1,
    KEY_PIN1,
    KEY_PIN2,
    LABEL_LENGTH_MAX,
    NAME_LENGTH_MAX,
    RECORD_LENGTH_MAX,
    RECORDS_MAX,
    SFI_MAX,
    SFI_MIN,
    TREE_DEPTH_MAX,
    TRIES_MAX,
    Access,
    AccessRule,
    CardSpec,
    FileSpec,
    FileType,
    Operation,
    PinSpec,
    SpecError,
)

_HEX = re.compile(r"[0-9A-Fa-f]*")


def parse_card(doc: Mapping[str, Any]) -> CardSpec:
    """The :class:`CardSpec` of a card type's ``card:`` mapping (see :meth:`CardSpec.from_mapping`)."""
    if not isinstance(doc, Mapping):
        raise SpecError("", "card", "must be a mapping")
    for key in ("name", "atr", "pins", "files"):
        if key not in doc:
            raise SpecError("", key, "is missing", (key,))
    name = _string(doc["name"], "", "name", ("name",), NAME_LENGTH_MAX)
    atr = check_atr(_hex(doc["atr"], "", "atr", ("atr",)))
    pins = _pins(doc["pins"])
    counter = [0]
    root = _file(doc["files"], "", ("files",), 0, counter)
    if root.name != "MF" or root.fid != FID_MF or root.type is not FileType.DF:
        raise SpecError(root.name, "files", "must be rooted at a df named MF with fid 3F00", ("files",))
    iccid = root.child("EF.ICCID")
    if iccid is None or iccid.fid != FID_ICCID or iccid.type is not FileType.TRANSPARENT or iccid.size != ICCID_SIZE:
        raise SpecError("MF", "children", "must hold EF.ICCID (2FE2), transparent, 10 bytes", ("files", "children"))
    extensions = {k: v for k, v in doc.items() if k not in ("name", "atr", "pins", "files")}
    return CardSpec(name, atr, pins, complete_tree(root), MappingProxyType(extensions))


def check_atr(atr: bytes) -> bytes:
    """``atr`` if its structure and TCK are right (ISO/IEC 7816-3 §8.2); SpecError otherwise."""
    if not 2 <= len(atr) <= ATR_LENGTH_MAX or atr[0] not in (0x3B, 0x3F):
        raise SpecError("", "atr", f"must be 2..{ATR_LENGTH_MAX} bytes starting with 3B or 3F", ("atr",))
    pos, y, historical = 1, atr[1] >> 4, atr[1] & 0x0F
    protocols: set[int] = set()
    pos += 1
    while True:
        present = [y & bit for bit in (1, 2, 4, 8)]
        pos += sum(1 for bit in present[:3] if bit)
        if not present[3]:
            break
        if pos >= len(atr):
            raise SpecError("", "atr", "ends inside its interface bytes", ("atr",))
        y, protocol = atr[pos] >> 4, atr[pos] & 0x0F
        protocols.add(protocol)
        pos += 1
    # ISO/IEC 7816-3 §8.2.5: TCK is present unless only T=0 is indicated.
    tck = 1 if protocols - {0} else 0
    if len(atr) != pos + historical + tck:
        raise SpecError("", "atr", f"has {len(atr)} bytes, its structure says {pos + historical + tck}", ("atr",))
    if tck and functools.reduce(lambda a, b: a ^ b, atr[1:], 0):
        raise SpecError("", "atr", "has a wrong check byte TCK", ("atr",))
    return atr


_PIN_KEYS = MappingProxyType({"pin1": (KEY_PIN1, True), "pin2": (KEY_PIN2, False), "adm1": (KEY_ADM1, True)})


def _pins(value: Any) -> tuple[PinSpec, ...]:
    if not isinstance(value, Mapping):
        raise SpecError("", "pins", "must be a mapping", ("pins",))
    out = []
    for key in value:
        if key not in _PIN_KEYS:
            raise SpecError("", f"pins.{key}", "is not a PIN of this card (pin1, pin2, adm1)", ("pins", key))
    for name, (reference, required) in _PIN_KEYS.items():
        if name not in value:
            if required:
                raise SpecError("", f"pins.{name}", "is missing", ("pins",))
            continue
        entry, keys = value[name], ("pins", name)
        if not isinstance(entry, Mapping):
            raise SpecError("", f"pins.{name}", "must be a mapping", keys)
        allowed = {"tries"} if name == "adm1" else {"tries", "unblock_tries", "enabled"}
        for key in entry:
            if key not in allowed:
                raise SpecError("", f"pins.{name}.{key}", f"is not allowed (only {', '.join(sorted(allowed))})", (*keys, key))
        tries = _int(entry.get("tries"), "", f"pins.{name}.tries", (*keys, "tries"), 1, TRIES_MAX)
        unblock = None
        enabled = True
        if name != "adm1":
            unblock = _int(entry.get("unblock_tries"), "", f"pins.{name}.unblock_tries", (*keys, "unblock_tries"), 1, TRIES_MAX)
            enabled = _bool(entry.get("enabled", True), "", f"pins.{name}.enabled", (*keys, "enabled"))
        out.append(PinSpec(reference, name.upper(), tries, unblock, enabled))
    return tuple(out)


_Keys = tuple[str | int, ...]
# Which optional fields each kind of file takes.
_EFS = frozenset({FileType.TRANSPARENT, FileType.LINEAR_FIXED, FileType.CYCLIC})
_RECORD_EFS = frozenset({FileType.LINEAR_FIXED, FileType.CYCLIC})
_DFS = frozenset({FileType.DF, FileType.ADF})
# Which kinds of file take each optional field.
_FIELD_APPLIES: Mapping[str, frozenset[FileType]] = MappingProxyType(
    {
        "size": frozenset({FileType.TRANSPARENT}),
        "record_length": _RECORD_EFS,
        "records": _RECORD_EFS,
        "sfi": _EFS,
        "content": _EFS,
        "fill": _EFS,
        "children": _DFS,
        "aid": frozenset({FileType.ADF}),
        "label": frozenset({FileType.ADF}),
    }
)


def _file(value: Any, parent: str, keys: _Keys, depth: int, counter: list[int]) -> FileSpec:
    name = _file_name(value, parent, keys)
    path = f"{parent}/{name}" if parent else name
    counter[0] += 1
    if counter[0] > FILE_COUNT_MAX:
        raise SpecError(path, "", f"the card type has more than {FILE_COUNT_MAX} files", keys)
    if depth >= TREE_DEPTH_MAX:
        raise SpecError(path, "", f"is nested deeper than {TREE_DEPTH_MAX} levels", keys)
    for key in value:
        if key not in _FIELD_APPLIES and key not in ("name", "fid", "type", "access"):
            raise SpecError(path, str(key), "is not a file field", (*keys, key))
    try:
        ftype = FileType(value.get("type"))
    except ValueError:
        choices = ", ".join(t.value for t in FileType)
        raise SpecError(path, "type", f"must be one of {choices}", (*keys, "type")) from None
    for key, applies in _FIELD_APPLIES.items():
        if key in value and ftype not in applies:
            raise SpecError(path, key, f"does not apply to a {ftype.value} file", (*keys, key))
    fid = None
    if "fid" in value:
        fid = _int(_hex_int(value["fid"], path, "fid", (*keys, "fid")), path, "fid", (*keys, "fid"), 0, 0xFFFF)
        if fid in FIDS_RESERVED:
            raise SpecError(path, "fid", f"{fid:04X} is reserved (TS 102 221 §8.4.1)", (*keys, "fid"))
    elif ftype is not FileType.ADF:
        raise SpecError(path, "fid", "is missing", keys)
    access = _access(value.get("access", {}), ftype, path, (*keys, "access"))
    if ftype.is_df:
        return _df(value, name, ftype, fid, access, path, keys, depth, counter)
    return _ef(value, name, ftype, fid, access, path, keys)


def _file_name(value: Any, parent: str, keys: _Keys) -> str:
    if not isinstance(value, Mapping):
        raise SpecError(parent, "file", "must be a mapping", keys)
    if "name" not in value:
        raise SpecError(parent, "name", "is missing", keys)
    name = _string(value["name"], parent, "name", (*keys, "name"), NAME_LENGTH_MAX)
    if "/" in name:
        raise SpecError(parent, "name", f"{name!r} must not contain '/'", (*keys, "name"))
    return name


def _df(
    value: Mapping[str, Any],
    name: str,
    ftype: FileType,
    fid: int | None,
    access: Access,
    path: str,
    keys: _Keys,
    depth: int,
    counter: list[int],
) -> FileSpec:
    aid = label = None
    if ftype is FileType.ADF:
        if "aid" not in value:
            raise SpecError(path, "aid", "is missing", keys)
        aid = _hex(value["aid"], path, "aid", (*keys, "aid"))
        if not AID_LENGTH_MIN <= len(aid) <= AID_LENGTH_MAX:
            raise SpecError(path, "aid", f"must be {AID_LENGTH_MIN}..{AID_LENGTH_MAX} bytes", (*keys, "aid"))
        if "label" in value:
            label = _string(value["label"], path, "label", (*keys, "label"), LABEL_LENGTH_MAX)
            if not label.isascii():
                raise SpecError(path, "label", "must be ASCII (ISO/IEC 7816-4 tag 50)", (*keys, "label"))
    raw = value.get("children", [])
    at = (*keys, "children")
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise SpecError(path, "children", "must be a list of files", at)
    children = tuple(_file(c, path, (*at, i), depth + 1, counter) for i, c in enumerate(raw))
    _check_siblings(path, fid, children, at)
    return FileSpec(name, ftype, fid, access, children, aid=aid, label=label)


def _ef(value: Mapping[str, Any], name: str, ftype: FileType, fid: int | None, access: Access, path: str, keys: _Keys) -> FileSpec:
    def at(key: str) -> _Keys:
        return (*keys, key)

    fill = _int(_hex_int(value.get("fill", "FF"), path, "fill", at("fill")), path, "fill", at("fill"), 0, 0xFF)
    sfi = _int(value["sfi"], path, "sfi", at("sfi"), SFI_MIN, SFI_MAX) if "sfi" in value else None
    size = record_length = records = None
    content: bytes | tuple[bytes, ...] | None = None
    if ftype is FileType.TRANSPARENT:
        size = _int(value.get("size"), path, "size", at("size"), 1, FILE_SIZE_MAX)
        if "content" in value:
            raw = _hex(value["content"], path, "content", at("content"))
            if len(raw) > size:
                raise SpecError(path, "content", f"has {len(raw)} bytes, the file {size}", at("content"))
            content = raw + bytes([fill]) * (size - len(raw))
        return FileSpec(name, ftype, fid, access, size=size, sfi=sfi, content=content, fill=fill)
    # EF.ARR may leave its geometry to the card maker, which sizes it to the rules it holds.
    arr = fid in (FID_ARR_MF, FID_ARR_ADF) and ftype is FileType.LINEAR_FIXED
    if not arr or "record_length" in value:
        record_length = _int(value.get("record_length"), path, "record_length", at("record_length"), 1, RECORD_LENGTH_MAX)
    if not arr or "records" in value:
        records = _int(value.get("records"), path, "records", at("records"), 1, RECORDS_MAX)
    if "content" in value:
        if record_length is None or records is None:
            raise SpecError(path, "content", "needs record_length and records", at("content"))
        content = _records(value["content"], record_length, records, fill, path, at("content"))
    return FileSpec(name, ftype, fid, access, record_length=record_length, records=records, sfi=sfi, content=content, fill=fill)


def _check_siblings(path: str, fid: int | None, children: tuple[FileSpec, ...], keys: tuple[str | int, ...]) -> None:
    names: set[str] = set()
    fids: set[int] = set()
    sfis: set[int] = set()
    for i, child in enumerate(children):
        where = (*keys, i)
        if child.name in names:
            raise SpecError(f"{path}/{child.name}", "name", "repeats a sibling's name", (*where, "name"))
        names.add(child.name)
        if child.fid is not None:
            # TS 102 221 §8.4.1: children of one DF have distinct FIDs, none equal to the DF's own.
            if child.fid in fids or child.fid in (fid, FID_MF):
                raise SpecError(f"{path}/{child.name}", "fid", f"{child.fid:04X} repeats a sibling's or the parent's", (*where, "fid"))
            fids.add(child.fid)
        if child.sfi is not None:
            if child.sfi in sfis:
                raise SpecError(f"{path}/{child.name}", "sfi", f"{child.sfi} repeats a sibling's", (*where, "sfi"))
            sfis.add(child.sfi)
        if child.type is FileType.ADF and path != "MF":
            raise SpecError(f"{path}/{child.name}", "type", "an ADF must be a child of the MF", (*where, "type"))


def _access(value: Any, ftype: FileType, path: str, keys: tuple[str | int, ...]) -> Access:
    if not isinstance(value, Mapping):
        raise SpecError(path, "access", "must be a mapping", keys)
    rules: dict[str, AccessRule] = {}
    for op, raw in value.items():
        if op not in {o.value for o in Operation}:
            raise SpecError(path, f"access.{op}", "is not an operation (read, update, activate, deactivate)", (*keys, op))
        try:
            rules[op] = AccessRule(raw)
        except ValueError:
            choices = ", ".join(r.value for r in AccessRule)
            raise SpecError(path, f"access.{op}", f"must be one of {choices}", (*keys, op)) from None
    if ftype.is_df and rules.get("read", AccessRule.ALWAYS) is not AccessRule.ALWAYS:
        raise SpecError(path, "access.read", "of a DF must be always (SELECT and STATUS are never refused)", (*keys, "read"))
    return Access(**rules)


def _records(value: Any, length: int, count: int, fill: int, path: str, keys: tuple[str | int, ...]) -> tuple[bytes, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise SpecError(path, "content", "of a record file must be a list of hex strings", keys)
    if len(value) > count:
        raise SpecError(path, "content", f"has {len(value)} records, the file {count}", keys)
    out = []
    for i, item in enumerate(value):
        raw = _hex(item, path, f"content[{i}]", (*keys, i))
        if len(raw) > length:
            raise SpecError(path, f"content[{i}]", f"has {len(raw)} bytes, a record {length}", (*keys, i))
        out.append(raw + bytes([fill]) * (length - len(raw)))
    out += [bytes([fill]) * length] * (count - len(out))
    return tuple(out)


def _hex(value: Any, path: str, name: str, keys: tuple[str | int, ...]) -> bytes:
    if not isinstance(value, str):
        raise SpecError(path, name, "must be a hex string", keys)
    text = value.replace(" ", "")
    if not _HEX.fullmatch(text) or len(text) % 2:
        raise SpecError(path, name, "must be an even number of hex digits", keys)
    return bytes.fromhex(text)


def _hex_int(value: Any, path: str, name: str, keys: tuple[str | int, ...]) -> int:
    # YAML writes FIDs as quoted hex ("3F00"); an unquoted 2F00 would be a string too, 0x2F00 an int.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raw = _hex(value, path, name, keys)
    if not raw:
        raise SpecError(path, name, "must not be empty", keys)
    return int.from_bytes(raw, "big")


def _int(value: Any, path: str, name: str, keys: tuple[str | int, ...], low: int, high: int) -> int:
    if value is None:
        raise SpecError(path, name, "is missing", keys)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(path, name, f"must be {low}..{high}", keys)
    return value


def _bool(value: Any, path: str, name: str, keys: tuple[str | int, ...]) -> bool:
    if not isinstance(value, bool):
        raise SpecError(path, name, "must be true or false", keys)
    return value


def _string(value: Any, path: str, name: str, keys: tuple[str | int, ...], length_max: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= length_max:
        raise SpecError(path, name, f"must be a string of 1..{length_max} characters", keys)
    return value
