"""What the card maker adds to a card type's tree: EF.ARR records, the FCP references to them, and EF.DIR.

Spec: ETSI TS 102 221 §9.2.7 and §13.4 (EF.ARR: access rule records of
AM_DO/SC_DO pairs, ISO/IEC 7816-4 §9.3), §11.1.1.4.7.3 (tag 8B: EF.ARR file
ID and record number), §13.1 (EF.DIR: one application template 61 per
application, with 4F AID and 50 label).

Theory of operation
-------------------
Files share access rule records the way commercial USIMs do: one EF.ARR
(2F06) under the MF serves the MF, its EFs, its DFs and everything below them,
and the ADFs themselves; one EF.ARR (6F06) in each ADF serves that ADF's
descendants. TS 102 221 §9.2.7 has the terminal look for the referenced EF.ARR
in the current DF first and then up towards the MF, which finds exactly these.
A card type may list its EF.ARR files (to give them an SFI or their access
rules); missing ones are added. Each distinct (DF or EF, rules) pair becomes
one record, in the order the tree first uses it, and every file's FCP points
at its record with tag 8B.

A record groups the operations that share a condition under one access mode
byte (AM_DO, tag 80), followed by the condition (SC_DO): ``90 00`` always,
``97 00`` never, or a control reference template ``A4 06 83 01 <key
reference> 95 01 08`` (user authentication with that PIN or ADM key). Access
mode bits, ISO/IEC 7816-4 Tables 17-18: for an EF read 01, update 02,
deactivate 08, activate 10; for a DF "update" means creating and deleting
children (create DF 04, create EF 02, delete child 01).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from simwallet.applet.card.spec import (
    FID_ARR_ADF,
    FID_ARR_MF,
    FID_DIR,
    RECORD_LENGTH_MAX,
    RECORDS_MAX,
    Access,
    AccessRule,
    FileSpec,
    FileType,
    Operation,
    SpecError,
)
from simwallet.applet.protocols.tlv import Tlv

# TS 102 221 §13.4: the SFIs TS 102 221 and TS 31.102 Annex H give EF.ARR.
SFI_ARR_MF: Final = 0x06
SFI_ARR_ADF: Final = 0x17
# ISO/IEC 7816-4 §9.3.2 Tables 17/18: access mode bits.
_AM_EF = {Operation.READ: 0x01, Operation.UPDATE: 0x02, Operation.DEACTIVATE: 0x08, Operation.ACTIVATE: 0x10}
_AM_DF = {Operation.UPDATE: 0x07, Operation.DEACTIVATE: 0x08, Operation.ACTIVATE: 0x10}
_AM_DO_TAG = 0x80
# ISO/IEC 7816-4 §9.3.4 Table 33: SC_DO always (90) and never (97); CRT (A4) with key reference (83) and usage qualifier (95).
_SC_ALWAYS = bytes.fromhex("9000")
_SC_NEVER = bytes.fromhex("9700")
_USAGE_USER_AUTH = 0x08
# ISO/IEC 7816-4 §8.2.1: application template 61, AID 4F, label 50 (EF.DIR records, TS 102 221 §13.1).
_APP_TEMPLATE_TAG = 0x61
_AID_TAG = 0x4F
_LABEL_TAG = 0x50

_RuleKey = tuple[bool, Access]


def security_condition(rule: AccessRule) -> bytes:
    """The SC_DO of ``rule``."""
    if rule is AccessRule.ALWAYS:
        return _SC_ALWAYS
    if rule is AccessRule.NEVER:
        return _SC_NEVER
    reference = rule.key_reference
    assert reference is not None
    crt = Tlv(0x83, bytes([reference])).to_bytes() + Tlv(0x95, bytes([_USAGE_USER_AUTH])).to_bytes()
    return Tlv(0xA4, crt).to_bytes()


def arr_record(is_df: bool, access: Access) -> bytes:
    """One EF.ARR record: (AM_DO, SC_DO) per distinct condition, in the order of the operations."""
    bits = _AM_DF if is_df else _AM_EF
    modes: dict[AccessRule, int] = {}
    for operation, bit in bits.items():
        rule = access.rule(operation)
        modes[rule] = modes.get(rule, 0) | bit
    return b"".join(Tlv(_AM_DO_TAG, bytes([mode])).to_bytes() + security_condition(rule) for rule, mode in modes.items())


def dir_record(aid: bytes, label: str | None) -> bytes:
    """One EF.DIR application template (without the padding)."""
    inner = Tlv(_AID_TAG, aid).to_bytes()
    if label is not None:
        inner += Tlv(_LABEL_TAG, label.encode("ascii")).to_bytes()
    return Tlv(_APP_TEMPLATE_TAG, inner).to_bytes()


def complete_tree(root: FileSpec) -> FileSpec:
    """Add the EF.ARR files, their records, the 8B references and EF.DIR's content; fill unset contents."""
    root = _with_arr_files(root)
    records: dict[int, list[_RuleKey]] = {id(root): []}
    for child in root.children:
        if child.type is FileType.ADF:
            records[id(child)] = []
    _collect(root, root, records)
    root = _assign(root, root, records, ("files",))
    return root


def _with_arr_files(root: FileSpec) -> FileSpec:
    children = [
        replace(child, children=(*child.children, _new_arr(child, FID_ARR_ADF, SFI_ARR_ADF)))
        if child.type is FileType.ADF and not _find_arr(child, FID_ARR_ADF)
        else child
        for child in root.children
    ]
    if not _find_arr(root, FID_ARR_MF):
        children.append(_new_arr(root, FID_ARR_MF, SFI_ARR_MF))
    return replace(root, children=tuple(children))


def _find_arr(df: FileSpec, fid: int) -> FileSpec | None:
    return next((c for c in df.children if c.fid == fid), None)


def _new_arr(df: FileSpec, fid: int, sfi: int) -> FileSpec:
    taken = {c.sfi for c in df.children}
    access = Access(read=AccessRule.ALWAYS, update=AccessRule.ADM1)
    return FileSpec("EF.ARR", FileType.LINEAR_FIXED, fid, access, sfi=None if sfi in taken else sfi)


def _collect(node: FileSpec, root: FileSpec, records: dict[int, list[_RuleKey]], adf: FileSpec | None = None) -> None:
    domain = records[id(adf if adf is not None and node is not adf else root)]
    key = (node.is_df, node.access)
    if key not in domain:
        domain.append(key)
    for child in node.children:
        _collect(child, root, records, child if child.type is FileType.ADF else adf)


def _assign(
    node: FileSpec,
    root: FileSpec,
    records: dict[int, list[_RuleKey]],
    keys: tuple[str | int, ...],
    adf: FileSpec | None = None,
    path: str = "",
) -> FileSpec:
    path = f"{path}/{node.name}" if path else node.name
    owner = adf if adf is not None and node is not adf else root
    arr_fid = FID_ARR_ADF if owner is not root else FID_ARR_MF
    rules = records[id(owner)]
    changes: dict[str, Any] = {"arr": (arr_fid, rules.index((node.is_df, node.access)) + 1)}
    in_mf = adf is None and _parent_is(root, node)
    in_adf = adf is not None and _parent_is(adf, node)
    is_arr = node.type is FileType.LINEAR_FIXED and ((node.fid == FID_ARR_MF and in_mf) or (node.fid == FID_ARR_ADF and in_adf))
    if is_arr:
        changes.update(_arr_content(node, [arr_record(is_df, access) for is_df, access in rules], path, keys))
    elif node.fid == FID_DIR and in_mf and node.type is FileType.LINEAR_FIXED and node.content is None:
        changes.update(_dir_content(node, root, path, keys))
    elif not node.is_df:
        changes.update(_default_content(node, path, keys))
    children = tuple(
        _assign(child, root, records, (*keys, "children", i), child if child.type is FileType.ADF else adf, path)
        for i, child in enumerate(node.children)
    )
    return replace(node, children=children, **changes)


def _parent_is(parent: FileSpec, node: FileSpec) -> bool:
    return any(child is node for child in parent.children)


def _arr_content(node: FileSpec, rules: list[bytes], path: str, keys: tuple[str | int, ...]) -> dict[str, Any]:
    if node.content is not None:
        raise SpecError(path, "content", "of EF.ARR is generated by the card from the access rules; leave it out", keys)
    needed = max(len(r) for r in rules)
    length = node.record_length if node.record_length is not None else needed
    count = node.records if node.records is not None else len(rules)
    if length < needed or length > RECORD_LENGTH_MAX:
        raise SpecError(path, "record_length", f"must be at least {needed} for the access rules it holds", (*keys, "record_length"))
    if count < len(rules) or count > RECORDS_MAX:
        raise SpecError(path, "records", f"must be at least {len(rules)}: the distinct access rules it holds", (*keys, "records"))
    content = tuple(r + bytes([node.fill]) * (length - len(r)) for r in rules)
    content += (bytes([node.fill]) * length,) * (count - len(rules))
    return {"record_length": length, "records": count, "content": content}


def _dir_content(node: FileSpec, root: FileSpec, path: str, keys: tuple[str | int, ...]) -> dict[str, Any]:
    assert node.record_length is not None and node.records is not None
    adfs = [c for c in root.children if c.type is FileType.ADF]
    if len(adfs) > node.records:
        raise SpecError(path, "records", f"must be at least {len(adfs)}: one per ADF", (*keys, "records"))
    out = []
    for adf in adfs:
        assert adf.aid is not None
        record = dir_record(adf.aid, adf.label)
        if len(record) > node.record_length:
            raise SpecError(path, "record_length", f"must be at least {len(record)} for {adf.name}", (*keys, "record_length"))
        out.append(record + bytes([node.fill]) * (node.record_length - len(record)))
    out += [bytes([node.fill]) * node.record_length] * (node.records - len(out))
    return {"content": tuple(out)}


def _default_content(node: FileSpec, path: str, keys: tuple[str | int, ...]) -> dict[str, Any]:
    if node.type.is_record and (node.record_length is None or node.records is None):
        raise SpecError(path, "record_length", "and records are required (only EF.ARR may leave them out)", keys)
    if node.content is not None:
        return {}
    if node.type is FileType.TRANSPARENT:
        assert node.size is not None
        return {"content": bytes([node.fill]) * node.size}
    assert node.record_length is not None and node.records is not None
    return {"content": (bytes([node.fill]) * node.record_length,) * node.records}
