"""YAML that remembers where every value came from: the loader of card profiles and card types.

Spec: YAML 1.1 as PyYAML's safe loader reads it, with three restrictions so
that a file means one thing: no anchors or aliases, no duplicate keys, and
only plain string keys. Timestamps stay text (an unquoted ``2026-05-16``
reaches the schema as a string).

Theory of operation. :func:`load_positioned` composes the node tree
(``yaml.compose``-style, through a :class:`yaml.SafeLoader` subclass),
records the 1-based line and column of every key and every value under its
path (a tuple of keys and list indexes), and then constructs plain Python
data. :class:`Positions` answers "where is this field" for any path,
falling back to the nearest ancestor present in the file, and
:func:`dotted` spells a path the way error messages show it
(``files.ADF.USIM/EF.SPN.name``, ``records[0]``). :func:`schema_issues`
validates a document against a JSON Schema (Draft 2020-12) and places every
error at its line and column; :class:`ProfileError` reports them as
``file:line:column: field: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from simwallet.provisioning.errors import ProvisioningError

# A profile or card type is a hand-written file; 1 MiB is far beyond any.
YAML_FILE_BYTES_MAX = 1 << 20
# The card type's file tree is the deepest structure (MF/DF/ADF/EF plus fields); 32 covers it.
YAML_NESTING_DEPTH_MAX = 32
# One error report lists at most this many problems; the rest are counted.
ISSUES_REPORTED_MAX = 20

_STR_TAG = "tag:yaml.org,2002:str"

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A 1-based line and column in a file."""

    line: int
    column: int


class YamlProblem(Exception):
    """The text is not YAML this loader accepts; ``mark`` is where, when known, and ``path`` the field."""

    def __init__(self, message: str, mark: Mark | None = None, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


@dataclass(frozen=True)
class Positions:
    """Where each path of a document is: its key's mark, its value node's mark, and which paths hold scalars."""

    keys: Mapping[Path, Mark] = field(default_factory=lambda: MappingProxyType({}))
    values: Mapping[Path, Mark] = field(default_factory=lambda: MappingProxyType({}))
    scalars: frozenset[Path] = frozenset()

    def of(self, path: Path) -> Mark | None:
        """Where ``path`` is: a scalar's value, a collection's key; else the nearest ancestor's."""
        path = tuple(path)
        while True:
            if path in self.scalars and path in self.values:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def key_of(self, path: Path) -> Mark | None:
        """The mark of the key of ``path`` (not its value), or of the nearest ancestor present."""
        path = tuple(path)
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get(())


def dotted(path: Iterable[str | int]) -> str:
    """``('files', 'ADF.USIM/EF.SPN', 'records', 0)`` as ``files.ADF.USIM/EF.SPN.records[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that timestamps stay text."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)  # the resolver tags only scalars as timestamps
    return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _mark(mark: Any) -> Mark | None:
    # PyYAML's pure and C marks share line and column (0-based).
    return None if mark is None else Mark(mark.line + 1, mark.column + 1)


def load_positioned(text: str) -> tuple[object, Positions]:
    """The data of one YAML document and where each of its values is. Raises :class:`YamlProblem`."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > YAML_FILE_BYTES_MAX:
        raise YamlProblem(f"{size} bytes, more than the {YAML_FILE_BYTES_MAX} a file may have")
    keys: dict[Path, Mark] = {}
    values: dict[Path, Mark] = {}
    scalars: set[Path] = set()
    try:
        _prescan(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, Positions()
            _record(node, (), keys, values, scalars)
            data: object = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "malformed YAML"
        if exc.context:
            problem += f" ({exc.context}"
            problem += f" on line {exc.context_mark.line + 1})" if exc.context_mark is not None else ")"
        raise YamlProblem(problem, _mark(exc.problem_mark)) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(str(exc)) from exc
    return data, Positions(MappingProxyType(keys), MappingProxyType(values), frozenset(scalars))


def _prescan(text: str) -> None:
    """Bound the nesting and refuse anchors and aliases before anything recursive runs."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.NodeEvent) and (event.anchor is not None or isinstance(event, yaml.AliasEvent)):
            raise YamlProblem("anchors and aliases (& and *) are not allowed", _mark(event.start_mark))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > YAML_NESTING_DEPTH_MAX:
                raise YamlProblem(f"nested deeper than {YAML_NESTING_DEPTH_MAX} levels", _mark(event.start_mark))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _record(node: yaml.Node, path: Path, keys: dict[Path, Mark], values: dict[Path, Mark], scalars: set[Path]) -> None:
    mark = _mark(node.start_mark)
    assert mark is not None  # composed nodes always carry marks
    values[path] = mark
    if isinstance(node, yaml.ScalarNode):
        scalars.add(path)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(key_node.start_mark)
            assert key_mark is not None
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                raise YamlProblem(f"keys must be plain names, not {key_node.tag.rsplit(':', 1)[-1]}", key_mark, path)
            child = (*path, key_node.value)
            if key_node.value in seen:
                first = seen[key_node.value]
                raise YamlProblem(f"{key_node.value!r} given twice (first on line {first.line})", key_mark, child)
            seen[key_node.value] = keys[child] = key_mark
            _record(value_node, child, keys, values, scalars)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record(item, (*path, index), keys, values, scalars)


# --- problems and their report ---------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem of a profile or card type file: where it is and what is wrong."""

    source: str
    line: int | None
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def issue_at(source: str, mark: Mark | None, path: Path | None, message: str) -> Issue:
    return Issue(source, mark.line if mark else None, mark.column if mark else None, dotted(path) if path else None, message)


class ProfileError(ProvisioningError, ValueError):
    """A card profile or card type file is wrong, or its values do not render.

    ``path`` is the file, ``line`` and ``column`` (1-based) where the first
    problem is, and ``field`` the dotted field name (``files.ADF.USIM/EF.SPN.name``);
    ``issues`` holds every problem found, first one first. ``str()`` prints one
    problem per line, as ``file:line:column: field: message``.
    """

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        if not self.issues:
            raise ValueError("a ProfileError needs at least one issue")
        first = self.issues[0]
        self.path = first.source
        self.line = first.line
        self.column = first.column
        self.field = first.field
        self.message = first.message
        shown = [str(issue) for issue in self.issues[:ISSUES_REPORTED_MAX]]
        if len(self.issues) > ISSUES_REPORTED_MAX:
            shown.append(f"… and {len(self.issues) - ISSUES_REPORTED_MAX} more")
        super().__init__("\n".join(shown))


def load_file(path: str, text: str) -> tuple[object, Positions]:
    """:func:`load_positioned`, with a YAML problem raised as a :class:`ProfileError` on ``path``."""
    try:
        return load_positioned(text)
    except YamlProblem as exc:
        raise ProfileError([issue_at(path, exc.mark, exc.path or None, exc.message)]) from exc


# --- JSON Schema ---------------------------------------------------------------------------------

# A schema may give a friendlier message for a subschema under this key (JSON Schema ignores unknown keywords).
MESSAGE_KEYWORD = "x-message"
# … and for a required field that is missing, under this key.
MISSING_KEYWORD = "x-missing"


def schema_issues(validator: Draft202012Validator, data: object, positions: Positions, source: str) -> list[Issue]:
    """Every schema error of ``data``, placed at its line and column, in file order."""
    issues: list[Issue] = []
    seen: set[tuple[Path, str]] = set()
    for error in validator.iter_errors(data):
        for path, mark, message in _explain(error, positions):
            if (path, message) in seen:
                continue
            seen.add((path, message))
            issues.append(issue_at(source, mark, path, message))
    issues.sort(key=lambda issue: (issue.line or 0, issue.column or 0))
    return issues


def _explain(error: ValidationError, positions: Positions) -> Iterator[tuple[Path, Mark | None, str]]:
    path: Path = tuple(error.absolute_path)
    schema: Any = error.schema
    custom = schema.get(MESSAGE_KEYWORD) if isinstance(schema, dict) else None
    if error.context and custom is None:
        # oneOf / anyOf: the alternative that came closest says best what is wrong.
        for sub in _closest_alternative(error.context):
            yield from _explain(sub, positions)
        return
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        for name in required:
            if name not in instance:
                missing = schema.get(MISSING_KEYWORD) if isinstance(schema, dict) else None
                yield (*path, name), positions.key_of(path), missing or "required, and missing"
        return
    if error.validator == "additionalProperties" and isinstance(instance, dict) and isinstance(schema, dict):
        known = sorted(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for name in instance:
            if name in known or any(re.search(pattern, name) for pattern in patterns):
                continue
            hint = f" (fields here: {', '.join(known)})" if known else ""
            yield (*path, name), positions.key_of((*path, name)), f"unknown field{hint}"
        return
    if error.validator == "propertyNames" or (error.absolute_schema_path and "propertyNames" in error.absolute_schema_path):
        # The instance is the offending key itself.
        name = str(instance)
        yield (*path, name), positions.key_of((*path, name)), custom or f"{name!r} is not an allowed name here"
        return
    if schema is False:
        # A "false" subschema: the field exists where the schema forbids it.
        yield path, positions.key_of(path), "not allowed here"
        return
    yield path, positions.of(path), custom or error.message


def _closest_alternative(errors: list[ValidationError]) -> list[ValidationError]:
    """The errors of the oneOf/anyOf alternative that came closest: one of the right type, then jsonschema's best match."""
    alternatives: dict[object, list[ValidationError]] = {}
    for sub in errors:
        alternatives.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)

    def wrong_type(group: list[ValidationError]) -> bool:
        return any(sub.validator == "type" and not sub.relative_path for sub in group)

    candidates = [group for group in alternatives.values() if not wrong_type(group)] or list(alternatives.values())
    best = best_match([sub for group in candidates for sub in group])
    return next((group for group in candidates if best in group), [best] if best is not None else [])
