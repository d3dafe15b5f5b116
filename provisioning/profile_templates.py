"""jinja2 in a profile's strings: compile them once when the profile loads, render them for each card.

Spec: jinja2's sandboxed environment (``jinja2.sandbox``) with
``StrictUndefined``: a template can read the card's values and call the
built-in filters (``default``, ``upper`` …), nothing else, and an undefined
name is an error instead of an empty string.

Theory of operation. :func:`compile_tree` walks a YAML subtree and replaces
each string that holds jinja2 syntax by a :class:`StringTemplate` (its
source, its path in the profile, the names it uses); plain strings stay
strings, numbers and booleans stay as they are (jinja2 only ever sees
strings). The loader checks the names of every template against the
declared values (:func:`templates_in`); :func:`render_tree` renders a subtree
for one card's values. Problems are
:class:`~simwallet.provisioning.profile_files.FieldProblem` with the field's
full path in the profile.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from simwallet.provisioning.profile_files import FieldProblem

# A rendered string longer than this is a template gone wrong (no field of any file is this long).
RENDERED_CHARS_MAX = 1000
# Names a template may use besides the declared values (derived from them for each card).
DERIVED_NAMES = frozenset({"msisdn_e164", "country_code", "mcc", "mnc"})

TreePath = tuple[str | int, ...]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class StringTemplate:
    """A string of the profile that is a jinja2 template: its source, where it is, and which names it uses."""

    source: str
    path: TreePath
    names: frozenset[str]
    compiled: Any = field(compare=False, repr=False)


def _compile(text: str, path: TreePath) -> StringTemplate | str:
    try:
        ast = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise FieldProblem(path, f"template syntax: {exc.message}") from exc
    if _is_literal(ast):
        return text
    return StringTemplate(text, path, frozenset(meta.find_undeclared_variables(ast)), _ENV.from_string(ast))


def _is_literal(ast: nodes.Template) -> bool:
    """Whether the template is plain text (one Output of TemplateData only)."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return not ast.body
    return all(isinstance(node, nodes.TemplateData) for node in ast.body[0].nodes)


def compile_tree(value: object, path: TreePath) -> object:
    """``value`` with every templated string compiled; raises FieldProblem on a syntax error."""
    if isinstance(value, str):
        return _compile(value, path)
    if isinstance(value, Mapping):
        return {key: compile_tree(item, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_tree(item, (*path, index)) for index, item in enumerate(value)]
    return value


def templates_in(value: object) -> Iterator[StringTemplate]:
    """Every template in a compiled subtree."""
    if isinstance(value, StringTemplate):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from templates_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from templates_in(item)


def render_tree(value: object, context: Mapping[str, str]) -> object:
    """A compiled subtree with every template rendered for ``context`` (plain dicts and lists)."""
    if isinstance(value, StringTemplate):
        try:
            text = value.compiled.render(context)
        except UndefinedError as exc:
            missing = sorted(name for name in value.names if name not in context)
            detail = f"{', '.join(missing)} not given for this card, and no default" if missing else exc.message or "undefined"
            raise FieldProblem(value.path, detail) from exc
        except TemplateError as exc:
            raise FieldProblem(value.path, f"template: {exc.message or exc}") from exc
        if len(text) > RENDERED_CHARS_MAX:
            raise FieldProblem(value.path, f"renders to {len(text)} characters, more than {RENDERED_CHARS_MAX}")
        return text
    if isinstance(value, Mapping):
        return {key: render_tree(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_tree(item, context) for item in value]
    return value
