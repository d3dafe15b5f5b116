"""The card type's file tree as a profile sees it, and the codecs that turn a profile's file fields into file bytes.

Spec: ETSI TS 102 221 §8.1 (the file tree: MF, DFs, ADFs, EFs), §11.1.1.4.3
(transparent, linear fixed and cyclic EFs); the contents are those of
:mod:`simwallet.applet.protocols.efs` (3GPP TS 31.102 §4.2, TS 102 221 §13).

Theory of operation. :func:`card_files` walks a validated card type's
``files`` tree once and indexes every file by its full path
(``MF/ADF.USIM/EF.IMSI``). :func:`resolve` finds a profile's path in that
index; the ``MF/`` in front is optional. :func:`encode_file` takes the
rendered fields of one file (strings already through jinja2) and the card
file they are written to, and returns either the body of a transparent file
or one body per record; a problem raises :class:`FieldProblem` with the
field it concerns, which the profile turns into ``file:line:column``. The
codec is chosen by the file's name (EF.IMSI, EF.SPN, …); ``{hex: …}`` is the
raw escape for any file.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import alpha_length
from simwallet.applet.protocols.efs import (
    DIALLING_RECORD_FIXED_BYTES,
    SMSP_RECORD_FIXED_BYTES,
    SPN_NAME_BYTES,
    AccessClasses,
    AdditionalInfo,
    Address,
    AdministrativeData,
    DiallingNumber,
    HplmnSearchPeriod,
    Iccid,
    Imsi,
    LanguageList,
    Npi,
    ServiceProviderName,
    ServiceTable,
    SmsParameters,
    SpnDisplayCondition,
    Ton,
    UeOperationMode,
    validity_from_minutes,
)

RECORD_STRUCTURES = frozenset({"linear_fixed", "cyclic"})
_PAD = 0xFF

Field = tuple[str | int, ...]
_T = TypeVar("_T")


class FieldProblem(Exception):
    """A field of one file's entry is wrong; ``field`` is its path inside the entry (``("records", 0, "alpha")``)."""

    def __init__(self, field: Field, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CardFile:
    """One file of the card type, as a profile addresses it."""

    path: str
    name: str
    structure: str
    fid: str | None = None
    size: int | None = None
    record_length: int | None = None
    records: int | None = None
    sfi: int | None = None
    # The AID of the ADF the file is in, when it is in one.
    adf_aid: str | None = None

    @property
    def is_ef(self) -> bool:
        return self.structure not in ("df", "adf")

    @property
    def is_record(self) -> bool:
        return self.structure in RECORD_STRUCTURES


def card_files(files: Mapping[str, Any]) -> Mapping[str, CardFile]:
    """Every file of a card type's ``files`` tree by full path (``MF/ADF.USIM/EF.IMSI``)."""
    index: dict[str, CardFile] = {}
    for card_file in _walk(files, "", None):
        index[card_file.path] = card_file
    return MappingProxyType(index)


def _walk(node: Mapping[str, Any], parent: str, adf_aid: str | None) -> Iterator[CardFile]:
    path = f"{parent}/{node['name']}" if parent else str(node["name"])
    structure = str(node["type"])
    if structure == "adf":
        adf_aid = str(node["aid"]).upper()
    yield CardFile(
        path,
        str(node["name"]),
        structure,
        fid_text(node.get("fid")),
        node.get("size"),
        node.get("record_length"),
        node.get("records"),
        node.get("sfi"),
        adf_aid,
    )
    for child in node.get("children", ()):
        yield from _walk(child, path, adf_aid)


def fid_text(fid: object) -> str | None:
    """A file identifier as four upper-case hex digits (the card type writes "6F07" or, unquoted, an integer)."""
    if fid is None:
        return None
    if isinstance(fid, int):
        return f"{fid:04X}"
    return str(fid).upper()


def resolve(index: Mapping[str, CardFile], path: str) -> CardFile | None:
    """The card file at ``path``, written with or without the leading ``MF/``."""
    root = next(iter(index), None)
    if root is None:
        return None
    found = index.get(path)
    if found is None and not path.startswith(root + "/") and path != root:
        found = index.get(f"{root}/{path}")
    return found


def nearest_names(index: Mapping[str, CardFile], path: str) -> list[str]:
    """Paths of EFs with the same file name as ``path``, to suggest when ``path`` does not exist."""
    name = path.rsplit("/", 1)[-1]
    return sorted(p for p, f in index.items() if f.name == name and f.is_ef)


# --- encoding ------------------------------------------------------------------------------------

# What a codec returns: a transparent body, or one body (or None: an empty record) per record.
Encoded = bytes | tuple[bytes | None, ...]


@dataclass(frozen=True)
class FileCodec:
    """How one kind of EF is written: ``record`` says whether it needs a record file."""

    name: str
    record: bool
    encode: Callable[[Mapping[str, Any], CardFile], Encoded]


def encode_file(card_file: CardFile, fields: Mapping[str, Any]) -> Encoded:
    """The bytes of ``fields`` (rendered) for ``card_file``; raises FieldProblem."""
    if "hex" in fields:
        return _raw(fields["hex"], card_file)
    codec = CODECS.get(card_file.name)
    if codec is None:
        raise FieldProblem((), f"{card_file.name} has no codec; write it raw with hex:")
    try:
        return codec.encode(fields, card_file)
    except CodecError as exc:
        raise FieldProblem((), exc.message) from exc


def codec_kind_problem(card_file: CardFile, fields: Mapping[str, Any]) -> str | None:
    """Why ``fields`` cannot be written to ``card_file`` whatever the values: wrong file structure or no codec."""
    if "hex" in fields:
        is_list = isinstance(fields["hex"], list)
        if is_list and not card_file.is_record:
            return f"{card_file.name} is {card_file.structure}: hex is one string, not a list of records"
        if not is_list and card_file.is_record:
            return f"{card_file.name} is a record file ({card_file.structure}): hex is a list, one string per record"
        return None
    codec = CODECS.get(card_file.name)
    if codec is None:
        return f"{card_file.name} has no codec; write it raw with hex:"
    if codec.record != card_file.is_record:
        want = "a record file" if codec.record else "a transparent file"
        return f"the {card_file.name} codec writes {want}, and this card's {card_file.name} is {card_file.structure}"
    return None


def _raw(value: object, card_file: CardFile) -> Encoded:
    def one(text: object, field: Field) -> bytes:
        if not isinstance(text, str):
            raise FieldProblem(field, "hex is a string")
        try:
            return binascii.unhexlify("".join(text.split()))
        except (binascii.Error, ValueError):
            raise FieldProblem(field, f"{text!r} is not hex (two digits per byte)") from None

    if isinstance(value, list):
        return tuple(None if item is None else one(item, ("hex", index)) for index, item in enumerate(value))
    return one(value, ("hex",))


def _iccid(fields: Mapping[str, Any], _: CardFile) -> bytes:
    return _field(("iccid",), lambda: Iccid(fields["iccid"]).to_bytes())


def _imsi(fields: Mapping[str, Any], _: CardFile) -> bytes:
    return _field(("imsi",), lambda: Imsi(fields["imsi"]).to_bytes())


_AD_FLAGS = MappingProxyType(
    {
        "ciphering_indicator": AdditionalInfo.CIPHERING_INDICATOR,
        "csg_display_control": AdditionalInfo.CSG_DISPLAY_CONTROL,
        "prose_services": AdditionalInfo.PROSE_SERVICES,
        "extended_drx": AdditionalInfo.EXTENDED_DRX,
    }
)


def _ad(fields: Mapping[str, Any], _: CardFile) -> bytes:
    mode = UeOperationMode[str(fields.get("operation_mode", "normal")).upper()]
    info = AdditionalInfo.NONE
    for name, flag in _AD_FLAGS.items():
        if fields.get(name):
            info |= flag
    return AdministrativeData(mode, info, int(fields.get("mnc_length", 2))).to_bytes()


def _spn(fields: Mapping[str, Any], card_file: CardFile) -> bytes:
    name = fields["name"]
    _alpha_fits(name, SPN_NAME_BYTES, ("name",), card_file.name)
    return _field(("name",), lambda: ServiceProviderName(name, SpnDisplayCondition(int(fields.get("display_condition", 0)))).to_bytes())


def _alpha_fits(text: str, room: int, field: Field, what: str) -> None:
    try:
        needed = alpha_length(text)
    except CodecError as exc:
        raise FieldProblem(field, exc.message) from exc
    if needed > room:
        raise FieldProblem(field, f"too long for {what} ({room} bytes): {text!r} needs {needed}")


def _records(fields: Mapping[str, Any], card_file: CardFile, one: Callable[[Mapping[str, Any], Field, int], bytes]) -> Encoded:
    assert card_file.record_length is not None  # the card type schema requires it of record files
    out: list[bytes | None] = []
    items: Sequence[Any] = fields["records"]
    for index, item in enumerate(items):
        out.append(None if item is None else one(item, ("records", index), card_file.record_length))
    return tuple(out)


def _number(text: str) -> tuple[str, int]:
    """A number as written in a profile: a leading + makes it international."""
    if text.startswith("+"):
        return text[1:], Ton.INTERNATIONAL
    return text, Ton.UNKNOWN


def _dialling_record(item: Mapping[str, Any], field: Field, record_length: int, what: str) -> bytes:
    alpha = item.get("alpha", "")
    _alpha_fits(alpha, record_length - DIALLING_RECORD_FIXED_BYTES, (*field, "alpha"), f"a {what} record")
    number, ton = _number(item.get("number", ""))
    if "ton" in item:
        ton = Ton[str(item["ton"]).upper()]
    npi = Npi[str(item["npi"]).upper()] if "npi" in item else Npi.ISDN
    record = _field((*field, "number"), lambda: DiallingNumber(alpha, number, ton, npi, item.get("ccp"), item.get("ext")))
    return _field(field, lambda: record.to_bytes(record_length))


def _dialling(fields: Mapping[str, Any], card_file: CardFile) -> Encoded:
    return _records(fields, card_file, lambda item, field, length: _dialling_record(item, field, length, card_file.name))


def _address(item: Mapping[str, Any], key: str, field: Field) -> Address | None:
    if key not in item:
        return None
    number, ton = _number(item[key])
    return _field((*field, key), lambda: Address(number, ton))


def _smsp_record(item: Mapping[str, Any], field: Field, record_length: int) -> bytes:
    alpha = item.get("alpha", "")
    _alpha_fits(alpha, record_length - SMSP_RECORD_FIXED_BYTES, (*field, "alpha"), "an EF.SMSP record")
    validity = item.get("validity")
    if "validity_minutes" in item:
        validity = _field((*field, "validity_minutes"), lambda: validity_from_minutes(int(item["validity_minutes"])))
    record = SmsParameters(
        alpha,
        _address(item, "destination", field),
        _address(item, "service_centre", field),
        item.get("pid"),
        item.get("dcs"),
        validity,
    )
    return _field(field, lambda: record.to_bytes(record_length))


def _smsp(fields: Mapping[str, Any], card_file: CardFile) -> Encoded:
    return _records(fields, card_file, _smsp_record)


def _ust(fields: Mapping[str, Any], card_file: CardFile) -> bytes:
    table = _field(("services",), lambda: ServiceTable(frozenset(fields["services"])))
    return _field(("services",), lambda: table.to_bytes(card_file.size))


def _languages(fields: Mapping[str, Any], card_file: CardFile) -> bytes:
    codes: list[str] = list(fields["languages"])
    for index, code in enumerate(codes):
        try:
            LanguageList((code,))
        except CodecError as exc:
            raise FieldProblem(("languages", index), exc.message) from exc
    languages = _field(("languages",), lambda: LanguageList(tuple(codes)))
    return _field(("languages",), lambda: languages.to_bytes(card_file.size))


def _acc(fields: Mapping[str, Any], _: CardFile) -> bytes:
    if "from_imsi" in fields:
        return _field(("from_imsi",), lambda: AccessClasses.from_imsi(fields["from_imsi"]).to_bytes())
    return _field(("classes",), lambda: AccessClasses(frozenset(fields["classes"])).to_bytes())


def _hpplmn(fields: Mapping[str, Any], _: CardFile) -> bytes:
    return _field(("period",), lambda: HplmnSearchPeriod(int(fields["period"])).to_bytes())


def _field(field: Field, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except CodecError as exc:
        raise FieldProblem(field, exc.message) from exc


CODECS: Mapping[str, FileCodec] = MappingProxyType(
    {
        codec.name: codec
        for codec in (
            FileCodec("EF.ICCID", False, _iccid),
            FileCodec("EF.IMSI", False, _imsi),
            FileCodec("EF.AD", False, _ad),
            FileCodec("EF.SPN", False, _spn),
            FileCodec("EF.MSISDN", True, _dialling),
            FileCodec("EF.ADN", True, _dialling),
            FileCodec("EF.SMSP", True, _smsp),
            FileCodec("EF.UST", False, _ust),
            FileCodec("EF.LI", False, _languages),
            FileCodec("EF.PL", False, _languages),
            FileCodec("EF.ACC", False, _acc),
            FileCodec("EF.HPPLMN", False, _hpplmn),
        )
    }
)


def fit(card_file: CardFile, encoded: Encoded) -> bytes | tuple[bytes, ...]:
    """The bytes to write: a transparent body padded with FF to the file size, or every record of the file.

    Records that are None or shorter than the record length are padded with
    FF; unused records are written empty (all FF). Raises FieldProblem when a
    body is longer than its file or record, or there are more records than
    the file has.
    """
    if isinstance(encoded, bytes):
        assert card_file.size is not None  # the card type schema requires it of transparent files
        if len(encoded) > card_file.size:
            raise FieldProblem((), f"{len(encoded)} bytes do not fit {card_file.name} ({card_file.size} bytes)")
        return encoded + bytes([_PAD]) * (card_file.size - len(encoded))
    assert card_file.record_length is not None and card_file.records is not None
    if len(encoded) > card_file.records:
        raise FieldProblem(("records",), f"{len(encoded)} records, {card_file.name} has {card_file.records}")
    out: list[bytes] = []
    for index, record in enumerate(encoded):
        body = b"" if record is None else record
        if len(body) > card_file.record_length:
            raise FieldProblem(
                ("hex", index), f"record {index + 1} is {len(body)} bytes, {card_file.name} records are {card_file.record_length}"
            )
        # Codecs write whole records; a shorter raw record is padded like a card type's content.
        out.append(body + bytes([_PAD]) * (card_file.record_length - len(body)))
    out += [bytes([_PAD]) * card_file.record_length] * (card_file.records - len(encoded))
    return tuple(out)
