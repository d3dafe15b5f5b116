"""The card type (CardSpec.from_mapping), what the card maker adds (EF.ARR, EF.DIR), and the FCPs of the runtime tree."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.card.arr import arr_record, dir_record
from simwallet.applet.card.filesystem import File, FileSystem
from simwallet.applet.card.pins import CardSecrets, Pins
from simwallet.applet.card.spec import (
    FID_ARR_ADF,
    FID_ARR_MF,
    Access,
    AccessRule,
    CardSpec,
    FileSpec,
    FileType,
    Operation,
    SpecError,
)
from simwallet.applet.card.spec_parse import check_atr
from simwallet.applet.protocols.fcp import LCSI_OPERATIONAL_ACTIVATED, NO_SFI, ArrReference, Fcp, FileStructure, PinStatus
from simwallet.applet.protocols.tlv import parse_tlvs

ROOT = Path(__file__).resolve().parent.parent
CARD_TYPE = ROOT / "cards" / "card-types" / "usim-wallet.yaml"
VECTORS = json.loads((Path(__file__).parent / "vectors" / "uicc.json").read_text())
USIM_ATR = "3B9F96801FC78031A073BE21136743200718000001A5"
USIM_AID = bytes.fromhex("A0000000871002FF86FF0389FFFFFFFF")


@functools.cache
def usim_wallet() -> CardSpec:
    return CardSpec.from_mapping(yaml.safe_load(CARD_TYPE.read_text())["card"])


def minimal() -> dict[str, Any]:
    """A small valid card type that the error tests break one field at a time."""
    return {
        "name": "mini",
        "atr": USIM_ATR,
        "pins": {"pin1": {"tries": 3, "unblock_tries": 10, "enabled": True}, "adm1": {"tries": 10}},
        "files": {
            "name": "MF",
            "fid": "3F00",
            "type": "df",
            "children": [
                {"name": "EF.ICCID", "fid": "2FE2", "type": "transparent", "size": 10, "sfi": 2},
                {"name": "EF.DIR", "fid": "2F00", "type": "linear_fixed", "record_length": 38, "records": 2, "sfi": 30},
                {
                    "name": "ADF.USIM",
                    "type": "adf",
                    "aid": "A0000000871002FF",
                    "label": "USIM",
                    "children": [
                        {"name": "EF.IMSI", "fid": "6F07", "type": "transparent", "size": 9, "sfi": 7, "access": {"read": "pin1"}}
                    ],
                },
            ],
        },
    }


# -- EF.ARR records: ISO/IEC 7816-4 §9.3 access mode and security condition DOs, decoded here by hand -----------

_SC = {"9000": AccessRule.ALWAYS, "9700": AccessRule.NEVER}
_KEYS = {0x01: AccessRule.PIN1, 0x81: AccessRule.PIN2, 0x0A: AccessRule.ADM1}
_AM_EF = {Operation.READ: 0x01, Operation.UPDATE: 0x02, Operation.DEACTIVATE: 0x08, Operation.ACTIVATE: 0x10}
_AM_DF = {Operation.UPDATE: 0x07, Operation.DEACTIVATE: 0x08, Operation.ACTIVATE: 0x10}


def decode_arr(record: bytes, is_df: bool) -> Access:
    """The rules an EF.ARR record grants (the inverse of arr_record, written independently)."""
    tlvs = parse_tlvs(record, padding=True)
    assert len(tlvs) % 2 == 0
    rules: dict[str, AccessRule] = {}
    for am, sc in zip(tlvs[::2], tlvs[1::2], strict=True):
        assert am.tag == 0x80 and len(am.value) == 1
        if sc.tag == 0xA4:
            inner = {t.tag: t.value for t in sc.children()}
            assert inner[0x95] == b"\x08"  # usage qualifier: user authentication
            rule = _KEYS[inner[0x83][0]]
        else:
            rule = _SC[sc.to_bytes().hex()]
        for operation, bits in (_AM_DF if is_df else _AM_EF).items():
            if am.value[0] & bits == bits:
                assert operation.value not in rules, "an operation is granted twice"
                rules[operation.value] = rule
    if is_df:
        rules["read"] = AccessRule.ALWAYS
    assert set(rules) == {o.value for o in Operation}
    return Access(**rules)


ALL_ACCESS = [Access(*combo) for combo in itertools.product(list(AccessRule), repeat=4)]


@pytest.mark.parametrize("is_df", [False, True], ids=["ef", "df"])
def test_arr_record_both_ways_for_every_rule_combination(is_df: bool) -> None:
    # All 625 combinations for an EF; a DF's read is always, so 125 distinct ones.
    for access in ALL_ACCESS:
        if is_df and access.read is not AccessRule.ALWAYS:
            continue
        assert decode_arr(arr_record(is_df, access), is_df) == access


@pytest.mark.parametrize("vector", VECTORS["ef_arr"]["vectors"], ids=lambda v: v["id"])
def test_arr_record_published_vector(vector: dict[str, Any]) -> None:
    access = Access(**{op: AccessRule(rule) for op, rule in vector["access"].items()})
    record = bytes.fromhex(vector["record"])
    assert arr_record(False, access) == record
    assert decode_arr(record, False) == access
    assert vector["published"].startswith(vector["record"])


@pytest.mark.parametrize("vector", VECTORS["ef_dir"]["vectors"], ids=lambda v: v["id"])
def test_dir_record_published_vector(vector: dict[str, Any]) -> None:
    record = bytes.fromhex(vector["record"])
    assert dir_record(bytes.fromhex(vector["aid"]), vector["label"]) == record
    (template,) = parse_tlvs(record)
    assert template.tag == 0x61
    assert {t.tag: t.value for t in template.children()} == {0x4F: bytes.fromhex(vector["aid"]), 0x50: vector["label"].encode()}


# -- the shipped card type ---------------------------------------------------------------------------------------

# (path, fid, type, size or (record length, records), sfi, read, update): TS 102 221 §13, TS 31.102 §4.2, TS 51.011 §10.
EXPECTED_FILES = [
    ("MF/EF.DIR", 0x2F00, FileType.LINEAR_FIXED, (38, 4), 30, "always", "adm1"),
    ("MF/EF.ICCID", 0x2FE2, FileType.TRANSPARENT, 10, 2, "always", "never"),
    ("MF/EF.PL", 0x2F05, FileType.TRANSPARENT, 10, 5, "always", "pin1"),
    ("MF/DF.TELECOM/EF.SMS", 0x6F3C, FileType.LINEAR_FIXED, (176, 10), None, "pin1", "pin1"),
    ("MF/DF.TELECOM/EF.MSISDN", 0x6F40, FileType.LINEAR_FIXED, (30, 2), None, "pin1", "pin1"),
    ("MF/DF.TELECOM/EF.FDN", 0x6F3B, FileType.LINEAR_FIXED, (30, 10), None, "pin1", "pin2"),
    ("MF/DF.TELECOM/EF.LND", 0x6F44, FileType.CYCLIC, (30, 5), None, "pin1", "pin1"),
    ("MF/DF.TELECOM/DF.GRAPHICS/EF.IMG", 0x4F20, FileType.LINEAR_FIXED, (11, 5), None, "pin1", "adm1"),
    ("MF/DF.GSM/EF.IMSI", 0x6F07, FileType.TRANSPARENT, 9, None, "pin1", "adm1"),
    ("MF/DF.GSM/EF.SPN", 0x6F46, FileType.TRANSPARENT, 17, None, "always", "adm1"),
    ("MF/DF.GSM/EF.AD", 0x6FAD, FileType.TRANSPARENT, 4, None, "always", "adm1"),
    ("MF/DF.GSM/EF.ACC", 0x6F78, FileType.TRANSPARENT, 2, None, "pin1", "adm1"),
    ("MF/DF.GSM/EF.LP", 0x6F05, FileType.TRANSPARENT, 4, None, "always", "pin1"),
    ("MF/ADF.USIM/EF.LI", 0x6F05, FileType.TRANSPARENT, 10, 2, "always", "pin1"),
    ("MF/ADF.USIM/EF.IMSI", 0x6F07, FileType.TRANSPARENT, 9, 7, "pin1", "adm1"),
    ("MF/ADF.USIM/EF.KEYS", 0x6F08, FileType.TRANSPARENT, 33, 8, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.HPPLMN", 0x6F31, FileType.TRANSPARENT, 1, 18, "pin1", "adm1"),
    ("MF/ADF.USIM/EF.UST", 0x6F38, FileType.TRANSPARENT, 17, 4, "pin1", "adm1"),
    ("MF/ADF.USIM/EF.SMS", 0x6F3C, FileType.LINEAR_FIXED, (176, 10), None, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.MSISDN", 0x6F40, FileType.LINEAR_FIXED, (30, 2), None, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.SMSP", 0x6F42, FileType.LINEAR_FIXED, (44, 2), None, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.SPN", 0x6F46, FileType.TRANSPARENT, 17, None, "always", "adm1"),
    ("MF/ADF.USIM/EF.EST", 0x6F56, FileType.TRANSPARENT, 1, 5, "pin1", "pin2"),
    ("MF/ADF.USIM/EF.ACC", 0x6F78, FileType.TRANSPARENT, 2, 6, "pin1", "adm1"),
    ("MF/ADF.USIM/EF.FPLMN", 0x6F7B, FileType.TRANSPARENT, 12, 13, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.LOCI", 0x6F7E, FileType.TRANSPARENT, 11, 11, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.PSLOCI", 0x6F73, FileType.TRANSPARENT, 14, 12, "pin1", "pin1"),
    ("MF/ADF.USIM/EF.AD", 0x6FAD, FileType.TRANSPARENT, 4, 3, "always", "adm1"),
    ("MF/ADF.USIM/EF.ECC", 0x6FB7, FileType.LINEAR_FIXED, (20, 5), 1, "always", "adm1"),
]


@pytest.mark.parametrize("expected", EXPECTED_FILES, ids=[e[0] for e in EXPECTED_FILES])
def test_usim_wallet_files_follow_the_specs(expected: tuple[Any, ...]) -> None:
    path, fid, ftype, geometry, sfi, read, update = expected
    spec = usim_wallet().file(path)
    assert (spec.fid, spec.type, spec.sfi) == (fid, ftype, sfi)
    if isinstance(geometry, tuple):
        assert (spec.record_length, spec.records) == geometry
        assert isinstance(spec.content, tuple) and len(spec.content) == geometry[1]
    else:
        assert spec.size == geometry and isinstance(spec.content, bytes) and len(spec.content) == geometry
    assert (spec.access.read.value, spec.access.update.value) == (read, update)


def test_usim_wallet_card_level_fields() -> None:
    spec = usim_wallet()
    assert spec.name == "usim-wallet"
    assert spec.atr == bytes.fromhex(USIM_ATR)
    assert [(p.key_reference, p.tries, p.unblock_tries, p.enabled) for p in spec.pins] == [
        (0x01, 3, 10, True),
        (0x81, 3, 10, True),
        (0x0A, 10, None, True),
    ]
    assert spec.extensions["gp"]["isd_aid"] == "A000000151000000"
    adf = spec.file("ADF.USIM")
    assert (adf.type, adf.aid, adf.label, adf.fid) == (FileType.ADF, USIM_AID, "USIM", None)
    # EF.DIR is written by the card maker from the ADFs: one template, then unused records.
    records = spec.file("MF/EF.DIR").content
    assert isinstance(records, tuple)
    assert records[0] == dir_record(USIM_AID, "USIM").ljust(38, b"\xff")
    assert records[1:] == (b"\xff" * 38,) * 3
    assert spec.file("ADF.USIM/EF.ECC").content[0][:3] == bytes.fromhex("11F2FF")  # type: ignore[index]


def _arr_file(spec: CardSpec, path: str, fid: int) -> tuple[str, FileSpec]:
    """The EF.ARR a file's 8B reference names, searched from its parent towards the MF (TS 102 221 §9.2.7)."""
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        df = spec.files.find("/".join(parts[:depth]))
        assert df is not None
        found = next((c for c in df.children if c.fid == fid), None)
        if found is not None:
            return "/".join(parts[:depth]) + "/" + found.name, found
    found = next(c for c in spec.files.children if c.fid == fid)
    return "MF/" + found.name, found


def test_every_file_references_an_arr_record_that_grants_its_rules() -> None:
    spec = usim_wallet()
    seen = 0
    for path, file in spec.files.walk():
        assert file.arr is not None, path
        fid, record = file.arr
        in_adf = path.startswith("MF/ADF.USIM/")
        assert fid == (FID_ARR_ADF if in_adf else FID_ARR_MF), path
        arr_path, arr = _arr_file(spec, path, fid)
        assert arr_path == ("MF/ADF.USIM/EF.ARR" if in_adf else "MF/EF.ARR")
        assert isinstance(arr.content, tuple) and 1 <= record <= len(arr.content)
        assert decode_arr(arr.content[record - 1], file.is_df) == file.access, path
        seen += 1
    assert seen > 50
    # Distinct rules only: no two records of one EF.ARR are equal.
    for path in ("MF/EF.ARR", "MF/ADF.USIM/EF.ARR"):
        content = spec.file(path).content
        assert isinstance(content, tuple) and len(set(content)) == len(content)


def test_missing_arr_files_are_added() -> None:
    spec = CardSpec.from_mapping(minimal())
    mf_arr, adf_arr = spec.file("MF/EF.ARR"), spec.file("ADF.USIM/EF.ARR")
    assert (mf_arr.fid, mf_arr.sfi, adf_arr.fid, adf_arr.sfi) == (0x2F06, 6, 0x6F06, 0x17)
    assert mf_arr.records == 2  # the MF and ADF (DF rules), the MF's EFs (EF rules)
    assert spec.file("ADF.USIM/EF.IMSI").arr == (0x6F06, 1)  # first rule of the ADF's own EF.ARR


def test_file_lookup() -> None:
    spec = usim_wallet()
    assert spec.file("MF/ADF.USIM/EF.IMSI") is spec.file("ADF.USIM/EF.IMSI")
    assert spec.files.find("ADF.USIM/EF.NOPE") is None
    with pytest.raises(KeyError):
        spec.file("DF.NOPE")


# -- errors name the file, the field and the keys -----------------------------------------------------------------


def _at(doc: dict[str, Any], *keys: str | int) -> Any:
    node: Any = doc
    for key in keys:
        node = node[key]
    return node


ICCID = ("files", "children", 0)
DIR = ("files", "children", 1)
ADF = ("files", "children", 2)
IMSI = (*ADF, "children", 0)
NEW = ("files", "children", 3)  # a child appended to the MF
_Break = Callable[[dict[str, Any]], Any]


def _set(keys: tuple[str | int, ...], **fields: Any) -> _Break:
    return lambda doc: _at(doc, *keys).update(fields)


def _drop(keys: tuple[str | int, ...], field: str) -> _Break:
    return lambda doc: _at(doc, *keys).pop(field)


def _add(keys: tuple[str | int, ...], child: dict[str, Any]) -> _Break:
    return lambda doc: _at(doc, *keys, "children").append(child)


ARR_NO_GEOMETRY = {"name": "EF.ARR", "fid": "2F06", "type": "linear_fixed", "content": ["00"]}
ARR_ONE_RECORD = {"name": "EF.ARR", "fid": "2F06", "type": "linear_fixed", "records": 1}
BREAKS: list[tuple[str, _Break, str, tuple[str | int, ...]]] = [
    ("size-zero", _set(IMSI, size=0), "MF/ADF.USIM/EF.IMSI: size must be 1..65535", (*IMSI, "size")),
    ("size-huge", _set(IMSI, size=70000), "MF/ADF.USIM/EF.IMSI: size must be 1..65535", (*IMSI, "size")),
    ("size-string", _set(IMSI, size="9"), "size must be", (*IMSI, "size")),
    ("no-fid", _drop(IMSI, "fid"), "MF/ADF.USIM/EF.IMSI: fid is missing", IMSI),
    ("bad-fid", _set(IMSI, fid="6F0"), "fid must be an even number of hex digits", (*IMSI, "fid")),
    ("reserved-fid", _set(IMSI, fid="7FFF"), "7FFF is reserved", (*IMSI, "fid")),
    ("bad-type", _set(IMSI, type="binary"), "type must be one of", (*IMSI, "type")),
    ("unknown-field", _set(IMSI, colour="red"), "colour is not a file field", (*IMSI, "colour")),
    ("df-size", _set(("files",), size=3), "MF: size does not apply to a df file", ("files", "size")),
    ("ef-aid", _set(IMSI, aid="A000000087"), "aid does not apply", (*IMSI, "aid")),
    ("sfi-31", _set(IMSI, sfi=31), "sfi must be 1..30", (*IMSI, "sfi")),
    ("dup-sfi", _set(ICCID, sfi=30), "MF/EF.DIR: sfi 30 repeats a sibling's", (*DIR, "sfi")),
    ("dup-fid", _set(ICCID, fid="2F00"), "MF/EF.DIR: fid 2F00 repeats", (*DIR, "fid")),
    ("dup-name", _set(DIR, name="EF.ICCID"), "repeats a sibling's name", (*DIR, "name")),
    ("content-long", _set(IMSI, content="00" * 10), "content has 10 bytes, the file 9", (*IMSI, "content")),
    ("content-odd", _set(IMSI, content="123"), "content must be an even number", (*IMSI, "content")),
    ("records-too-many", _set(DIR, content=["61", "61", "61"]), "content has 3 records, the file 2", (*DIR, "content")),
    ("record-long", _set(DIR, content=["00" * 39]), "content[0] has 39 bytes", (*DIR, "content", 0)),
    ("no-record-length", _drop(DIR, "record_length"), "record_length is missing", (*DIR, "record_length")),
    ("bad-rule", _set(IMSI, access={"read": "pin3"}), "access.read must be one of", (*IMSI, "access", "read")),
    ("bad-op", _set(IMSI, access={"write": "pin1"}), "access.write is not an operation", (*IMSI, "access", "write")),
    ("df-read", _set(("files",), access={"read": "pin1"}), "MF: access.read of a DF must be always", ("files", "access", "read")),
    ("short-aid", _set(ADF, aid="A00000"), "aid must be 5..16 bytes", (*ADF, "aid")),
    ("long-label", _set(ADF, label="L" * 17), "label must be a string of 1..16", (*ADF, "label")),
    (
        "adf-under-adf",
        _add(ADF, {"name": "ADF.X", "type": "adf", "aid": "A000000087"}),
        "must be a child of the MF",
        (*ADF, "children", 1, "type"),
    ),
    ("ef-children", _set(IMSI, children=[]), "children does not apply", (*IMSI, "children")),
    ("no-iccid", lambda d: _at(d, "files", "children").pop(0), "MF: children must hold EF.ICCID", ("files", "children")),
    ("root-not-mf", _set(("files",), fid="3F01"), "must be rooted at a df named MF", ("files",)),
    ("no-pin1", lambda d: d["pins"].pop("pin1"), "pins.pin1 is missing", ("pins",)),
    ("adm-puk", _set(("pins", "adm1"), unblock_tries=10), "pins.adm1.unblock_tries is not allowed", ("pins", "adm1", "unblock_tries")),
    ("tries-16", _set(("pins", "pin1"), tries=16), "pins.pin1.tries must be 1..15", ("pins", "pin1", "tries")),
    ("enabled-text", _set(("pins", "pin1"), enabled="yes"), "pins.pin1.enabled must be true or false", ("pins", "pin1", "enabled")),
    ("pin3", _set(("pins",), pin3={"tries": 3}), "pins.pin3 is not a PIN", ("pins", "pin3")),
    ("no-atr", _drop((), "atr"), "atr is missing", ("atr",)),
    ("bad-tck", _set((), atr=USIM_ATR[:-2] + "A4"), "atr has a wrong check byte TCK", ("atr",)),
    ("atr-short", _set((), atr=USIM_ATR[:-4]), "atr has 20 bytes, its structure says 22", ("atr",)),
    ("arr-content", _add(("files",), ARR_NO_GEOMETRY), "content needs record_length", (*NEW, "content")),
    ("arr-too-small", _add(("files",), ARR_ONE_RECORD), "MF/EF.ARR: records must be at least 2", (*NEW, "records")),
    ("dir-too-short", _set(DIR, record_length=10), "MF/EF.DIR: record_length must be at least 18 for ADF.USIM", (*DIR, "record_length")),
    ("name-slash", _set(IMSI, name="EF/IMSI"), "must not contain '/'", (*IMSI, "name")),
]


@pytest.mark.parametrize(("name", "break_it", "message", "keys"), BREAKS, ids=[b[0] for b in BREAKS])
def test_spec_errors_name_path_field_and_keys(
    name: str, break_it: Callable[[dict[str, Any]], None], message: str, keys: tuple[str | int, ...]
) -> None:
    doc = minimal()
    CardSpec.from_mapping(doc)  # valid before the break
    break_it(doc)
    with pytest.raises(SpecError) as info:
        CardSpec.from_mapping(doc)
    assert message in str(info.value)
    assert info.value.keys == keys
    assert isinstance(info.value, ValueError)


def test_spec_error_attributes() -> None:
    doc = minimal()
    _at(doc, *IMSI).update(size=0)
    with pytest.raises(SpecError) as info:
        CardSpec.from_mapping(doc)
    assert str(info.value) == "MF/ADF.USIM/EF.IMSI: size must be 1..65535"
    assert (info.value.path, info.value.field) == ("MF/ADF.USIM/EF.IMSI", "size")


_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.text(max_size=40)
    | st.sampled_from(["3F00", "FF", "df", "adf", "pin1", "6F07"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["name", "fid", "type", "size", "children", "read"]), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_broken_field_raises_spec_error_only(data: st.DataObject) -> None:
    doc = minimal()
    target = data.draw(st.sampled_from(_paths(doc)[1:]))
    value = data.draw(_JSONISH)
    parent = _at(doc, *target[:-1])
    parent[target[-1]] = value
    with contextlib.suppress(SpecError):
        CardSpec.from_mapping(copy.deepcopy(doc))


# -- ATR ----------------------------------------------------------------------------------------------------------


def with_tck(body: bytes) -> bytes:
    return body + bytes([functools.reduce(lambda a, b: a ^ b, body[1:], 0)])


@pytest.mark.parametrize(
    "atr",
    [
        bytes.fromhex(USIM_ATR),
        with_tck(bytes.fromhex("3B9F96801FC78031E073FE211B633A204F83009000")),
        bytes.fromhex("3B021234"),  # T=0 only: no TCK
        bytes.fromhex("3B800181"),  # T=1 indicated: TCK 81
    ],
    ids=["usim-wallet", "pcsc-link", "t0-only", "t1-tck"],
)
def test_atr_accepted(atr: bytes) -> None:
    assert check_atr(atr) == atr


@pytest.mark.parametrize(
    "atr",
    ["3B", "3B02", "3B021234FF", "3B80", "3B8080", "3C021234", "3B800180", "3B8001"],
)
def test_atr_refused(atr: str) -> None:
    with pytest.raises(SpecError):
        check_atr(bytes.fromhex(atr))


# -- the runtime tree's FCPs ------------------------------------------------------------------------------------------

SECRETS = CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"88888888", pin2=b"5678", puk2=b"87654321")


def _all_files(fs: FileSystem) -> list[File]:
    return list(fs.walk())


def test_every_fcp_parses_back_and_matches_the_spec() -> None:
    spec = usim_wallet()
    fs = FileSystem(spec.files)
    pins = Pins.manufacture(spec.pins, SECRETS, b"\x00" * 16)
    for file in _all_files(fs):
        raw = fs.fcp(file, pins).to_bytes()
        fcp = Fcp.from_bytes(raw)
        s = file.spec
        assert fcp.fid == s.fid, file.path
        assert fcp.lcsi == LCSI_OPERATIONAL_ACTIVATED
        assert fcp.security == ArrReference(*s.arr)  # type: ignore[misc]
        if file.is_df:
            assert fcp.structure is FileStructure.DF
            assert fcp.df_name == s.aid
            assert fcp.total_file_size == sum(len(f.content()) for f in fs.walk(file) if not f.is_df)
            assert fcp.pin_status is not None
            assert fcp.pin_status.pins == (PinStatus(0x01, True), PinStatus(0x81, True), PinStatus(0x0A, True))
            if file is fs.mf:
                (characteristics,) = parse_tlvs(fcp.proprietary or b"")
                assert (characteristics.tag, characteristics.value) == (0x80, b"\x71")
            continue
        assert fcp.sfi == (NO_SFI if s.sfi is None else s.sfi), file.path
        assert fcp.effective_sfi == s.sfi
        if s.type is FileType.TRANSPARENT:
            assert (fcp.structure, fcp.file_size) == (FileStructure.TRANSPARENT, s.size)
        else:
            structure = FileStructure.CYCLIC if s.type is FileType.CYCLIC else FileStructure.LINEAR_FIXED
            assert fcp.structure is structure
            assert (fcp.descriptor.record_length, fcp.descriptor.record_count) == (s.record_length, s.records)
            assert fcp.file_size == (s.record_length or 0) * (s.records or 0)


def test_fcp_shows_deactivation_and_disabled_pin() -> None:
    spec = usim_wallet()
    fs = FileSystem(spec.files)
    pins = Pins.manufacture(spec.pins, SECRETS, b"\x01" * 16)
    assert pins.set_enabled(0x01, b"1234\xff\xff\xff\xff", enabled=False) == 0x9000
    spn = fs.file("ADF.USIM/EF.SPN")
    spn.active = False
    assert Fcp.from_bytes(fs.fcp(spn, pins).to_bytes()).lcsi == 0x04
    template = Fcp.from_bytes(fs.fcp(fs.mf, pins).to_bytes()).pin_status
    assert template is not None and template.pins[0] == PinStatus(0x01, False)


def test_export_restore_round_trip_and_mismatch() -> None:
    spec = usim_wallet()
    fs = FileSystem(spec.files)
    fs.file("ADF.USIM/EF.IMSI").data[:] = bytes.fromhex("082982608200002080")
    fs.file("DF.TELECOM/EF.LND").records[0] = b"\x01" * 30
    fs.file("DF.GSM").active = False
    exported = json.loads(json.dumps(fs.export()))
    again = FileSystem(spec.files)
    again.restore(exported)
    assert again.export() == exported
    assert not again.file("DF.GSM/EF.IMSI").usable()
    exported["MF/ADF.USIM/EF.IMSI"]["data"] = "00"
    with pytest.raises(ValueError, match=r"EF\.IMSI"):
        FileSystem(spec.files).restore(exported)
    with pytest.raises(ValueError, match=r"EF\.NOPE"):
        FileSystem(spec.files).restore({"MF/EF.NOPE": {"active": True}})
