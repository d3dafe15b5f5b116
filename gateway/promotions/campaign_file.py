"""Reading a campaign file: YAML with the line of every key, then the JSON Schema, with errors that name both.

Steps 1 and 2 of :mod:`.rules` (its theory of operation); step 3, the values,
is the rule's own dataclasses. Every refusal is a
:class:`~simwallet.gateway.errors.RequestError` with code ``campaign_invalid``,
the JSON path of the offending value as its field, and ``file:line:`` in its
message.
"""

from __future__ import annotations

import functools
import json
import re
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from importlib import resources
from typing import Any, Final

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from simwallet.gateway.errors import RejectCode, RequestError

# A campaign file is under 2 KiB; 64 KiB leaves room for a long description
# and bounds the parser's work on a wrong or hostile file.
CAMPAIGN_FILE_BYTES_MAX: Final = 64 * 1024
# Deepest nesting of mappings and lists in a campaign file. The format needs 3
# (caps > per_period > period); the limit keeps the recursive YAML composer and
# our walk over its nodes far from Python's recursion limit.
CAMPAIGN_NESTING_DEPTH_MAX: Final = 8
# Longest rendering of an offending value quoted in an error message: messages
# end up in CLI output and SMS replies.
ERROR_VALUE_LEN_MAX: Final = 40
# Name of the schema file, shipped as package data beside this module.
SCHEMA_RESOURCE: Final = "campaign.schema.json"

_PARENT_RE: Final = re.compile(r"(.*?)(?:\.[^.\[\]]*|\[[0-9]+\])")
_STR_TAG: Final = "tag:yaml.org,2002:str"
_short = reprlib.Repr()
_short.maxstring = ERROR_VALUE_LEN_MAX
_short.maxother = ERROR_VALUE_LEN_MAX


def invalid(field: str | None, message: str) -> RequestError:
    return RequestError(RejectCode.CAMPAIGN_INVALID, field, message)


def short_repr(value: object) -> str:
    """``repr(value)`` cut to :data:`ERROR_VALUE_LEN_MAX` characters, for quoting a bad value in an error."""
    return _short.repr(value)


def checked_mapping(data: object, source: str, lines: Mapping[str, int]) -> dict[str, Any]:
    """``data`` as plain dicts and lists, valid against the schema; the first violation (by line) otherwise."""
    plain = _plain(data)
    # Python callers (and yaml.safe_load) give dates as date objects; the schema describes the ISO text.
    window = plain.get("window") if isinstance(plain, dict) else None
    if isinstance(window, dict):
        for key in ("start", "end"):
            if isinstance(window.get(key), date):
                window[key] = window[key].isoformat()  # a datetime gets a "T" and fails the schema's pattern
    errors = list(_validator().iter_errors(plain))
    if errors:
        explained = [(*_explain(error), error) for error in errors]
        field, message, error = min(explained, key=lambda item: (_line_of(item[0], lines) or 0, item[0] or ""))
        raise located(source, lines, field, message) from error
    assert isinstance(plain, dict)  # the schema's top-level "type": "object"
    return plain


def campaign_schema() -> dict[str, Any]:
    """A fresh copy of the campaign JSON Schema (package data)."""
    text = resources.files(__package__ or "simwallet.gateway.promotions").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    # Built once: the schema is immutable package data.
    return Draft202012Validator(campaign_schema())


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(field: str | None, lines: Mapping[str, int]) -> int | None:
    """The line of ``field``, or of its nearest ancestor present in the file."""
    while field:
        if field in lines:
            return lines[field]
        parent = _PARENT_RE.fullmatch(field)
        field = parent[1] if parent else ""
    return None


def located(source: str, lines: Mapping[str, int], field: str | None, message: str) -> RequestError:
    line = _line_of(field, lines)
    where = f"{source}:{line}" if line is not None else source
    return invalid(field, f"{where}: {field}: {message}" if field else f"{where}: {message}")


class _CampaignLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that timestamps stay text.

    An unquoted ``2026-05-16`` then reaches the schema and the date parser as
    ``"2026-05-16"``, so an impossible date (``2026-02-30``) or a time of day is
    refused with its field and line instead of escaping as a bare ValueError.
    """


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)  # the resolver tags only scalars as timestamps
    return loader.construct_scalar(node)


_CampaignLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def read_yaml(text: str, source: str) -> tuple[object, dict[str, int]]:
    if not isinstance(text, str):
        raise invalid(None, f"{source}: a campaign file is read as text")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > CAMPAIGN_FILE_BYTES_MAX:
        raise invalid(None, f"{source}: {size} bytes, more than the {CAMPAIGN_FILE_BYTES_MAX} a campaign file may have")
    lines: dict[str, int] = {}
    try:
        _prescan(text, source)
        loader = _CampaignLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, lines
            _record_lines(node, (), lines, source)
            data: object = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    return data, lines


def _prescan(text: str, source: str) -> None:
    """Bound the nesting and refuse anchors and aliases, before anything recursive runs."""
    depth = 0
    for event in yaml.parse(text, Loader=_CampaignLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        if isinstance(event, yaml.NodeEvent) and (event.anchor is not None or isinstance(event, yaml.AliasEvent)):
            raise invalid(None, f"{source}:{line}: anchors and aliases (& and *) are not allowed in a campaign file")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > CAMPAIGN_NESTING_DEPTH_MAX:
                raise invalid(None, f"{source}:{line}: nested deeper than {CAMPAIGN_NESTING_DEPTH_MAX} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _record_lines(node: yaml.Node, path: tuple[str | int, ...], lines: dict[str, int], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                field = _dotted(path) or None
                where = f"{source}:{line}: {field}:" if field else f"{source}:{line}:"
                raise invalid(field, f"{where} keys must be plain names, not {key_node.tag.rsplit(':', 1)[-1]}")
            child = (*path, key_node.value)
            field = _dotted(child)
            if key_node.value in seen:
                raise invalid(field, f"{source}:{line}: {field}: given twice (first on line {seen[key_node.value]})")
            seen[key_node.value] = lines[field] = line
            _record_lines(value_node, child, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[_dotted(child)] = item.start_mark.line + 1
            _record_lines(item, child, lines, source)


def _yaml_error(exc: yaml.YAMLError, source: str) -> RequestError:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        problem = exc.problem or "malformed YAML"
        context = f" ({exc.context}" if exc.context else ""
        if context and exc.context_mark is not None:
            context += f" on line {exc.context_mark.line + 1}"
        context += ")" if context else ""
        return invalid(None, f"{source}:{exc.problem_mark.line + 1}: {problem}{context}")
    return invalid(None, f"{source}: {exc}")


def _plain(value: object, depth: int = 0) -> object:
    """Copy mappings to dicts and sequences to lists, which is what JSON Schema validates."""
    if depth > CAMPAIGN_NESTING_DEPTH_MAX:
        raise invalid(None, f"nested deeper than {CAMPAIGN_NESTING_DEPTH_MAX} levels")
    if isinstance(value, Mapping):
        return {key: _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(item, depth + 1) for item in value]
    return value


def _explain(error: ValidationError) -> tuple[str | None, str]:
    """The JSON path and a plain sentence for one schema violation."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    expected: Any = error.validator_value
    match error.validator:
        case "required":
            missing = [name for name in expected if name not in instance]
            return _dotted([*path, missing[0]]), "is required but missing"
        case "additionalProperties":
            known = list(schema.get("properties", {}))
            extra = [name for name in instance if name not in known]
            return _dotted([*path, str(extra[0])]), f"is not a known field here (known: {', '.join(known)})"
        case "type" if expected == "string" and isinstance(instance, int | float) and not isinstance(instance, bool):
            message = f"YAML read {instance!r} as a number; write amounts and text in quotes, such as \"100.00\""
        case "type":
            message = f"must be {_SCHEMA_TYPE_NAMES.get(str(expected), expected)}, not {_json_type(instance)}"
        case "enum":
            message = f"{short_repr(instance)} is not one of {', '.join(map(str, expected))}"
        case "pattern":
            description = schema.get("description", f"the form {expected}")
            message = f"{short_repr(instance)} is not of the required form: {description}"
        case "minLength" | "maxLength":
            message = f"must have {'at least' if error.validator == 'minLength' else 'at most'} {expected} characters"
        case "minimum" | "maximum":
            message = f"must be {'at least' if error.validator == 'minimum' else 'at most'} {expected}, not {short_repr(instance)}"
        case "minItems":
            message = f"must list at least {expected} item(s)"
        case "uniqueItems":
            message = "lists an item twice"
        case _:
            message = error.message[:ERROR_VALUE_LEN_MAX * 4]
    return _dotted(path) or None, message


_SCHEMA_TYPE_NAMES: Final = {"integer": "a whole number", "string": "text", "object": "a mapping", "array": "a list"}
_JSON_TYPE_NAMES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "true/false"), (int, "a number"), (float, "a number"), (str, "text"), (dict, "a mapping"), (list, "a list"),
)


def _json_type(value: object) -> str:
    if value is None:
        return "empty"
    return next((name for cls, name in _JSON_TYPE_NAMES if isinstance(value, cls)), type(value).__name__)
