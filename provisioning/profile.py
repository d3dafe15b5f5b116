"""Card profiles: load and check a product's YAML, then render one card's values into what personalization writes.

Spec: the profile format is this project's own, described by
``cards/profile.schema.json`` (JSON Schema Draft 2020-12); the card type's by
``cards/card-type.schema.json``. File contents follow 3GPP TS 31.102 §4.2
and ETSI TS 102 221 §13 (:mod:`simwallet.applet.protocols.efs`); PINs
ETSI TS 102 221 §9.5.

The profile format (``cards/profiles/<profile>.yaml``)::

    profile: wallet-cmcc-zh                # the file's own name
    description: 手机钱包 SIM，营业厅开卡
    card_type: usim-wallet                 # cards/card-types/usim-wallet.yaml
    keys: {scp03: active, ota: active, wallet: active}   # master key versions: 'active' or 1..127
    values:                                # what each card brings, and its checks
      iccid: {required: true, prefix: "898600"}
      imsi: {required: true, plmns: ["46000", "46002"]}
      msisdn: {required: true, country_code: "86"}
      customer: {required: true}
      language: {default: zh, choices: [zh, en]}
      pin1: {required: true}               # a secret: never a default, used only under pins
    files:                                 # path in the card type -> the fields of the file's codec
      ADF.USIM/EF.IMSI: {imsi: "{{ imsi }}"}
      ADF.USIM/EF.SPN: {name: 中国移动, display_condition: 1}
      ADF.USIM/EF.MSISDN: {records: [{alpha: 本机号码, number: "+86{{ msisdn }}"}]}
      MF/EF.XYZ: {hex: "00 01 02"}         # the raw escape, for a file without a codec
    wallet:                                # the STK wallet applet's parameters
      language: "{{ language }}"
      service_number: "1065800010"
      tar: "B00010"
      menu_title: {zh: 手机钱包, en: Wallet}
      menu: [{id: 1, action: balance, title: {zh: 余额查询, en: Balance}}]
      pin_tries: 3
    pins: {pin1: {initial: "{{ pin1 }}", unblock: "{{ puk1 }}", enabled: true}}

Every string may be a jinja2 template (rendered in a sandbox, an undefined
name is an error) over the declared values and the derived ``msisdn_e164``,
``country_code``, ``mcc`` and ``mnc``. ``cards/profile.schema.json`` lists
every codec's fields.

Theory of operation. :func:`load_profile` reads the YAML keeping the line
and column of every node (:mod:`simwallet.provisioning.yamlpos`), validates
it against the schema, loads its card type, resolves each file path to an
EF of the card type, compiles the templates and checks that they use only
declared values (secrets only under ``pins``), and encodes right away every
file that has no template, so that a literal that does not fit its file is
reported before any card is in the reader. :meth:`Profile.render` checks a
card's values (:mod:`simwallet.provisioning.values`), renders the
templates, encodes each file with its codec and fits it to the card type's
file (transparent: at most the file size, padded with FF; records: the
record length and count, unused records empty). Every problem is a
:class:`ProfileError` naming ``file:line:column: field``; a card's value
that fails its check is a :class:`~simwallet.provisioning.values.CardValueError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from simwallet.provisioning.profile_cardtype import (
    CARD_TYPES_DIR,
    CARDS_DIR,
    PROFILE_SCHEMA,
    PROFILES_DIR,
    ROOT_NAME,
    load_card_type,
    load_card_type_index,
    read_text,
    schema_validator,
)
from simwallet.provisioning.profile_files import CardFile, FieldProblem, codec_kind_problem, encode_file, fit, nearest_names, resolve
from simwallet.provisioning.profile_templates import DERIVED_NAMES, TreePath, compile_tree, render_tree, templates_in
from simwallet.provisioning.profile_wallet import MenuItem, WalletParams, wallet_params
from simwallet.provisioning.values import CardValues, Secret, ValueKind, ValueSpec, check_card_values, check_value
from simwallet.provisioning.yamlpos import Issue, Mark, Positions, ProfileError, issue_at, load_file, schema_issues

__all__ = [
    "CARDS_DIR",
    "CARD_TYPES_DIR",
    "PROFILES_DIR",
    "FileKind",
    "FileWrite",
    "KeyVersions",
    "MenuItem",
    "Personalization",
    "PinSetting",
    "Profile",
    "ProfileError",
    "WalletParams",
    "load_card_type",
    "load_profile",
]

_T = TypeVar("_T")

ACTIVE: Literal["active"] = "active"
KeyVersion = int | Literal["active"]


class FileKind(enum.StrEnum):
    """How a file is written: UPDATE BINARY of the whole body, or UPDATE RECORD of every record."""

    TRANSPARENT = "transparent"
    RECORD = "record"


@dataclass(frozen=True)
class FileWrite:
    """One file personalization writes: ``data`` (transparent, the whole file) or ``records`` (record n at index n-1).

    ``path`` is the card type's full path (``MF/ADF.USIM/EF.IMSI``),
    ``structure`` its type there (``transparent``, ``linear_fixed``,
    ``cyclic``), ``adf_aid`` the AID of the ADF the file is in.
    """

    path: str
    kind: FileKind
    structure: str
    fid: bytes | None
    sfi: int | None
    adf_aid: bytes | None
    data: bytes = b""
    records: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class PinSetting:
    """A PIN to set: its initial value and unblock key (secrets) and whether it is enabled (None: as the card type says)."""

    name: str
    initial: Secret
    unblock: Secret | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class KeyVersions:
    """Which master key version personalization uses for each key set: a version number or ``'active'``."""

    scp03: KeyVersion = ACTIVE
    ota: KeyVersion = ACTIVE
    wallet: KeyVersion = ACTIVE


@dataclass(frozen=True)
class Personalization:
    """Everything one card is personalized with; ``repr`` shows no PIN (secrets print as ``***``)."""

    profile: str
    card_type: str
    values: CardValues
    files: tuple[FileWrite, ...]
    wallet: WalletParams
    pins: tuple[PinSetting, ...]
    keys: KeyVersions

    def file(self, path: str) -> FileWrite:
        """The write of ``path`` (full, or without ``MF/``)."""
        for write in self.files:
            if write.path in (path, f"{ROOT_NAME}/{path}"):
                return write
        raise KeyError(path)


# --- the profile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ProfileFile:
    card_file: CardFile
    fields: Mapping[str, Any]
    path: TreePath
    # Set when the entry has no template: the bytes are the same for every card.
    fixed: bytes | tuple[bytes, ...] | None


@dataclass(frozen=True)
class Profile:
    """A loaded, checked profile; :meth:`render` gives one card's :class:`Personalization`.

    ``card_type`` is the validated card type mapping (``doc["card"]``), ready
    for ``CardSpec.from_mapping``.
    """

    name: str
    description: str
    source: str
    card_type_name: str
    card_type: Mapping[str, Any] = field(repr=False)
    keys: KeyVersions
    value_specs: tuple[ValueSpec, ...]
    mnc_length: int
    _files: tuple[_ProfileFile, ...] = field(repr=False)
    _wallet: Mapping[str, Any] = field(repr=False)
    _pins: Mapping[str, Mapping[str, Any]] = field(repr=False)
    _positions: Positions = field(repr=False)

    @property
    def file_paths(self) -> tuple[str, ...]:
        """The full paths of the files the profile writes, in its order."""
        return tuple(entry.card_file.path for entry in self._files)

    def check_values(self, values: Mapping[str, str], *, row: int | None = None, allow_extra: bool = False) -> CardValues:
        """The batch pre-flight: one card's values checked against the profile (CardValueError names each bad one)."""
        return check_card_values(self.value_specs, values, mnc_length=self.mnc_length, row=row, allow_extra=allow_extra)

    def render(self, values: Mapping[str, str], *, row: int | None = None) -> Personalization:
        """One card's personalization from its values; raises CardValueError or ProfileError."""
        card_values = self.check_values(values, row=row)
        context = self._context(card_values)
        issues: list[Issue] = []
        writes: list[FileWrite] = []
        # Every FieldProblem raised below carries the field's full path in the profile.
        for entry in self._files:
            try:
                writes.append(self._write(entry, context))
            except FieldProblem as problem:
                issues.append(self._issue(problem.field, problem.message))
        wallet: WalletParams | None = None
        try:
            wallet = _located(("wallet",), wallet_params, render_tree(dict(self._wallet), context))
        except FieldProblem as problem:
            issues.append(self._issue(problem.field, problem.message))
        if issues or wallet is None:
            raise ProfileError(issues)
        return Personalization(
            self.name, self.card_type_name, card_values, tuple(writes), wallet, self._pin_settings(card_values), self.keys
        )

    def _context(self, card_values: CardValues) -> dict[str, str]:
        context = dict(card_values.values)
        for spec in self.value_specs:
            if spec.kind is ValueKind.MSISDN and spec.name in context and spec.country_code is not None:
                context.setdefault("country_code", spec.country_code)
                context.setdefault("msisdn_e164", spec.country_code + context[spec.name])
            if spec.kind is ValueKind.IMSI and spec.name in context:
                context.setdefault("mcc", context[spec.name][:3])
                context.setdefault("mnc", context[spec.name][3 : 3 + self.mnc_length])
        return context

    def _write(self, entry: _ProfileFile, context: Mapping[str, str]) -> FileWrite:
        body = entry.fixed
        if body is None:
            fields = render_tree(dict(entry.fields), context)
            assert isinstance(fields, dict)
            body = _located(entry.path, _encode, entry.card_file, fields)
        return _file_write(entry.card_file, body)

    def _pin_settings(self, card_values: CardValues) -> tuple[PinSetting, ...]:
        out: list[PinSetting] = []
        for name, setting in self._pins.items():
            initial = card_values.secret(_reference(setting["initial"]))
            if initial is None:
                # An optional PIN value that was not given: the card keeps its PIN.
                continue
            unblock = card_values.secret(_reference(setting["unblock"])) if "unblock" in setting else None
            out.append(PinSetting(name, initial, unblock, setting.get("enabled")))
        return tuple(out)

    def _issue(self, path: TreePath, message: str) -> Issue:
        return issue_at(self.source, self._positions.of(path), path, message)


def _encode(card_file: CardFile, fields: Mapping[str, Any]) -> bytes | tuple[bytes, ...]:
    return fit(card_file, encode_file(card_file, fields))


def _located(prefix: TreePath, build: Callable[..., _T], *args: Any) -> _T:
    """``build(*args)``, with the field of a FieldProblem made absolute by ``prefix``."""
    try:
        return build(*args)
    except FieldProblem as problem:
        raise FieldProblem((*prefix, *problem.field), problem.message) from problem


def _reference(text: str) -> str:
    """The value name in a ``{{ name }}`` reference (the schema guarantees the form)."""
    return text.strip("{} ")


def _file_write(card_file: CardFile, body: bytes | tuple[bytes, ...]) -> FileWrite:
    fid = bytes.fromhex(card_file.fid) if card_file.fid else None
    aid = bytes.fromhex(card_file.adf_aid) if card_file.adf_aid else None
    if isinstance(body, bytes):
        return FileWrite(card_file.path, FileKind.TRANSPARENT, card_file.structure, fid, card_file.sfi, aid, data=body)
    return FileWrite(card_file.path, FileKind.RECORD, card_file.structure, fid, card_file.sfi, aid, records=body)


def load_profile(
    path_or_name: str | Path,
    profiles_dir: str | Path = PROFILES_DIR,
    *,
    card_types_dir: str | Path | None = None,
) -> Profile:
    """Load and check a profile: a path to its YAML, or a name in ``profiles_dir``.

    The card type comes from ``card_types_dir`` (default: the ``card-types``
    folder next to the profile's folder, as in ``cards/``). Raises
    ProfileError with every problem found.
    """
    path = Path(path_or_name)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = Path(profiles_dir) / f"{path_or_name}.yaml"
    types_dir = Path(card_types_dir) if card_types_dir is not None else path.parent.parent / "card-types"
    source = str(path)
    data, positions = load_file(source, read_text(path, "profile"))
    issues = schema_issues(schema_validator(PROFILE_SCHEMA), data, positions, source)
    if issues:
        raise ProfileError(issues)
    assert isinstance(data, dict)
    return _Loader(source, data, positions, types_dir).load()


class _Loader:
    """The semantic checks of one schema-valid profile; collects every problem before raising."""

    def __init__(self, source: str, data: dict[str, Any], positions: Positions, types_dir: Path) -> None:
        self.source = source
        self.data = data
        self.positions = positions
        self.types_dir = types_dir
        self.issues: list[Issue] = []

    def issue(self, path: TreePath, message: str, *, key: bool = False) -> None:
        mark: Mark | None = self.positions.key_of(path) if key else self.positions.of(path)
        self.issues.append(issue_at(self.source, mark, path, message))

    def load(self) -> Profile:
        data = self.data
        stem = Path(self.source).stem
        if data["profile"] != stem:
            self.issue(("profile",), f"the profile is named {data['profile']!r}, its file {stem!r}: they must agree")
        card_type_path = self.types_dir / f"{data['card_type']}.yaml"
        if not card_type_path.exists():
            self.issue(("card_type",), f"no card type {data['card_type']!r} ({card_type_path} does not exist)")
            raise ProfileError(self.issues)
        card, index = load_card_type_index(card_type_path)
        mnc_length = self._mnc_length()
        specs = self._value_specs()
        files = self._files(index)
        wallet = self._compiled(data["wallet"], ("wallet",))
        pins = self._pins(card, specs)
        self._check_names(specs, files, wallet)
        if isinstance(wallet, dict) and not any(True for _ in templates_in(wallet)):
            try:
                _located(("wallet",), wallet_params, wallet)
            except FieldProblem as problem:
                self.issue(problem.field, problem.message)
        if self.issues:
            self.issues.sort(key=lambda issue: (issue.line or 0, issue.column or 0))
            raise ProfileError(self.issues)
        keys = data.get("keys", {})
        return Profile(
            data["profile"],
            data.get("description", ""),
            self.source,
            data["card_type"],
            MappingProxyType(card),
            KeyVersions(keys.get("scp03", ACTIVE), keys.get("ota", ACTIVE), keys.get("wallet", ACTIVE)),
            specs,
            mnc_length,
            tuple(files),
            MappingProxyType(wallet if isinstance(wallet, dict) else {}),
            MappingProxyType(pins),
            self.positions,
        )

    def _mnc_length(self) -> int:
        for path, fields in self.data["files"].items():
            if path.rsplit("/", 1)[-1] == "EF.AD" and isinstance(fields.get("mnc_length"), int):
                return int(fields["mnc_length"])
        return 2

    def _value_specs(self) -> tuple[ValueSpec, ...]:
        specs: list[ValueSpec] = []
        for name, raw in self.data["values"].items():
            kind = ValueKind(raw["kind"]) if "kind" in raw else ValueKind.for_name(name)
            for option, kinds in (("prefix", {ValueKind.ICCID}), ("plmns", {ValueKind.IMSI}), ("country_code", {ValueKind.MSISDN})):
                if option in raw and kind not in kinds:
                    self.issue(
                        ("values", name, option), f"{option} applies to {', '.join(k.value for k in kinds)} values, not {kind.value}"
                    )
            for option in ("choices", "pattern"):
                if option in raw and kind is not ValueKind.TEXT:
                    self.issue(("values", name, option), f"{option} applies to text values, not {kind.value}")
            try:
                spec = ValueSpec(
                    name,
                    kind,
                    bool(raw.get("required", False)),
                    raw.get("default"),
                    tuple(raw.get("choices", ())),
                    raw.get("pattern"),
                    raw.get("prefix"),
                    tuple(raw.get("plmns", ())),
                    raw.get("country_code"),
                    raw.get("description", ""),
                )
            except ValueError as exc:
                self.issue(("values", name), str(exc).split(": ", 1)[-1], key=True)
                continue
            if spec.default is not None:
                try:
                    check_value(spec, spec.default, mnc_length=self._mnc_length())
                except ValueError as exc:
                    self.issue(("values", name, "default"), str(exc))
            specs.append(spec)
        return tuple(specs)

    def _compiled(self, value: object, path: TreePath) -> object | None:
        """The tree with its templates compiled; None (and an issue) on a template syntax error."""
        try:
            return compile_tree(value, path)
        except FieldProblem as problem:
            self.issue(problem.field, problem.message)
            return None

    def _files(self, index: Mapping[str, CardFile]) -> list[_ProfileFile]:
        out: list[_ProfileFile] = []
        for path_text, raw in self.data["files"].items():
            where: TreePath = ("files", path_text)
            card_file = resolve(index, path_text)
            if card_file is None:
                near = nearest_names(index, path_text)
                hint = f" (the card type has {', '.join(near)})" if near else ""
                self.issue(where, f"no such file in card type {self.data['card_type']!r}{hint}", key=True)
                continue
            if not card_file.is_ef:
                self.issue(where, f"{card_file.path} is a {card_file.structure}, not an EF", key=True)
                continue
            problem = codec_kind_problem(card_file, raw)
            if problem is not None:
                self.issue(where, problem, key=True)
                continue
            fields = self._compiled(raw, where)
            if not isinstance(fields, dict):
                continue
            fixed = None
            if not any(True for _ in templates_in(fields)):
                try:
                    fixed = _located(where, _encode, card_file, fields)
                except FieldProblem as exc:
                    self.issue(exc.field, exc.message)
                    continue
            out.append(_ProfileFile(card_file, MappingProxyType(fields), where, fixed))
        return out

    def _pins(self, card: Mapping[str, Any], specs: tuple[ValueSpec, ...]) -> dict[str, Mapping[str, Any]]:
        kinds = {spec.name: spec.kind for spec in specs}
        pins: dict[str, Mapping[str, Any]] = {}
        for name, setting in self.data.get("pins", {}).items():
            if name not in card["pins"]:
                self.issue(("pins", name), f"card type {self.data['card_type']!r} has no {name}", key=True)
            for key, want in (("initial", ValueKind.PIN), ("unblock", ValueKind.PUK)):
                if key not in setting:
                    continue
                ref = _reference(setting[key])
                if kinds.get(ref) is not want:
                    self.issue(("pins", name, key), f"{ref!r} is not a declared {want.value} value")
            pins[name] = MappingProxyType(dict(setting))
        return pins

    def _check_names(self, specs: tuple[ValueSpec, ...], files: list[_ProfileFile], wallet: object) -> None:
        declared = {spec.name for spec in specs}
        secrets = {spec.name for spec in specs if spec.kind.secret}
        for template in (*(t for entry in files for t in templates_in(dict(entry.fields))), *templates_in(wallet)):
            for name in sorted(template.names):
                if name in secrets:
                    self.issue(template.path, f"{name!r} is a secret: it may only be used under pins")
                elif name not in declared and name not in DERIVED_NAMES:
                    self.issue(template.path, f"{name!r} is not a declared value (values: {', '.join(sorted(declared))})")
