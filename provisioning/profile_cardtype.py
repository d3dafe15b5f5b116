"""Card types (``cards/card-types/<name>.yaml``) as profiles use them: validated, located, indexed by file path.

Spec: ``cards/card-type.schema.json`` (JSON Schema Draft 2020-12), then the
card's own builders, :meth:`simwallet.applet.card.spec.CardSpec.from_mapping`
(ETSI TS 102 221 §8: the file tree, FIDs, SFIs, the ATR's TCK) and
:meth:`simwallet.applet.card.isd_spec.IsdSpec.from_mapping` (GlobalPlatform
CS v2.3 §7.1: the issuer security domain), whose errors are placed at the
line and column of the field they name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from simwallet.applet.card.isd_spec import IsdSpec, IsdSpecError
from simwallet.applet.card.spec import CardSpec, SpecError
from simwallet.provisioning.profile_files import CardFile, card_files, fid_text
from simwallet.provisioning.profile_templates import TreePath
from simwallet.provisioning.yamlpos import Issue, Positions, ProfileError, issue_at, load_file, schema_issues

# The data folder of the checkout (``cards/``): profiles, card types and the two schemas.
CARDS_DIR = Path(__file__).resolve().parent.parent / "cards"
PROFILES_DIR = CARDS_DIR / "profiles"
CARD_TYPES_DIR = CARDS_DIR / "card-types"
PROFILE_SCHEMA = "profile.schema.json"
CARD_TYPE_SCHEMA = "card-type.schema.json"
ROOT_NAME = "MF"


@functools.cache
def schema_validator(name: str) -> Draft202012Validator:
    """The validator of ``cards/<name>``; built once per schema, the schemas are immutable data files."""
    schema = json.loads((CARDS_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a ProfileError naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([Issue(str(path), None, None, None, f"no such {what} file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([Issue(str(path), None, None, None, f"cannot read the {what}: {exc}")]) from exc


def load_card_type(path: str | Path) -> dict[str, Any]:
    """The card type at ``path``, validated: its ``card`` mapping, for ``CardSpec.from_mapping``. Raises ProfileError."""
    card, _ = load_card_type_index(Path(path))
    return card


def load_card_type_index(path: Path) -> tuple[dict[str, Any], Mapping[str, CardFile]]:
    """:func:`load_card_type`, and every file of the card type by full path."""
    source = str(path)
    data, positions = load_file(source, read_text(path, "card type"))
    issues = schema_issues(schema_validator(CARD_TYPE_SCHEMA), data, positions, source)
    if issues:
        raise ProfileError(issues)
    assert isinstance(data, dict)
    card: dict[str, Any] = data["card"]
    issues = list(_tree_issues(card["files"], ("card", "files"), positions, source, root=True))
    issues = issues or _spec_issues(card, positions, source)
    if issues:
        raise ProfileError(issues)
    return card, card_files(card["files"])


_PREFIXES = {"df": "DF.", "adf": "ADF.", "transparent": "EF.", "linear_fixed": "EF.", "cyclic": "EF."}


def _tree_issues(node: Mapping[str, Any], path: TreePath, positions: Positions, source: str, *, root: bool = False) -> Iterator[Issue]:
    """Names that tell a file's kind (profiles address files by name): MF at the root, DF./ADF./EF. below."""
    name, kind = node["name"], node["type"]
    if root and (name != ROOT_NAME or kind != "df" or fid_text(node.get("fid")) != "3F00"):
        yield issue_at(
            source, positions.of((*path, "name")), (*path, "name"), "the root of the file tree is the MF: name MF, type df, fid 3F00"
        )
    elif not root and not name.startswith(_PREFIXES[kind]):
        yield issue_at(source, positions.of((*path, "name")), (*path, "name"), f"a {kind} file is named {_PREFIXES[kind]}<name>")
    for index, child in enumerate(node.get("children", ())):
        yield from _tree_issues(child, (*path, "children", index), positions, source)


def _spec_issues(card: Mapping[str, Any], positions: Positions, source: str) -> list[Issue]:
    """What the card's own builders (CardSpec, IsdSpec) refuse beyond the schema, placed at its line."""
    try:
        CardSpec.from_mapping(card)
    except SpecError as exc:
        path: TreePath = ("card", *exc.keys)
        return [issue_at(source, positions.of(path), path, str(exc))]
    if "gp" in card:
        try:
            IsdSpec.from_mapping(card["gp"])
        except IsdSpecError as exc:
            path = ("card", "gp", *_dotted_path(exc.field))
            return [issue_at(source, positions.of(path), path, exc.message)]
    return []


def _dotted_path(text: str) -> TreePath:
    """``load_files[0].modules[1]`` as ``("load_files", 0, "modules", 1)``."""
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)
