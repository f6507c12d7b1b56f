"""Templates of boot profiles (cmdline, user-data, vendor-data): Jinja2's immutable sandbox, compiled ahead.

A template is checked when it is written (`check`: a syntax error, an unknown
variable or filter, an `{% include %}`/`{% import %}`/`{% extends %}`, an attribute
starting with `_` are a 422 naming the line) and rendered per node when the boot
path builds its answers (`render`), never per request.

What a template can reach: only the context of the node it is rendered for
(`node_context`: its id, nid, mac, arch, role, subRole, type, hostname, groups,
labels, location and the profile's id).  The environment has no loader (nothing
to include, no file to read), the sandbox refuses attribute access to internals
(`''.__class__`) and calls that mutate, undefined names raise (StrictUndefined)
rather than render as nothing.  The rendered text is then checked like any stored
value (hotpath/_render.pyx): a cmdline that would add an iPXE command makes the
node wait, it is not booted.
"""

from __future__ import annotations

import traceback
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from core.problems import FieldError, ProblemError

VARIABLES = frozenset(("id", "nid", "mac", "arch", "role", "subRole", "type", "hostname", "groups", "labels",
                       "location", "profile"))
_FORBIDDEN = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_MARKERS = ("{{", "{%", "{#")

# One environment, shared: it has no loader and no globals beyond Jinja's few harmless ones (range, dict ...).
ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                            loader=None)
# A node for the trial render at write time: catches what the sandbox refuses only when run.
SAMPLE = {"id": "x1000c0s0b0n0", "nid": 1, "mac": "02:00:00:00:00:01", "arch": "x86_64", "role": "Compute",
          "subRole": "", "type": "Node", "hostname": "nid0001", "groups": ["compute"], "labels": {},
          "location": {"rack": "x1000", "unit": 0, "slot": 0, "subSlot": 0}, "profile": "sample"}


class TemplateProblem(ProblemError):
    """A template refused when written (422), naming the field and the line."""

    def __init__(self, field: str, line: int | None, detail: str) -> None:
        where = f"line {line}: " if line else ""
        super().__init__(422, f"{field}: {where}{detail}", errors=[FieldError(field, f"{where}{detail}")])


def is_template(source: str | None) -> bool:
    return bool(source) and any(marker in source for marker in _MARKERS)  # type: ignore[operator]


def _template_line(exc: BaseException) -> int | None:
    """The template line a render error was raised at (Jinja names template frames `<template>`)."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<template>"]
    return lines[-1] if lines else getattr(exc, "lineno", None)


def check(source: str, field: str) -> Template | None:
    """The compiled template, None for plain text, or a TemplateProblem."""
    if not is_template(source):
        return None
    try:
        tree = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.lineno, exc.message or "syntax error") from None
    for node in tree.find_all(_FORBIDDEN):
        raise TemplateProblem(field, node.lineno, "include, import and extends are not allowed: a template sees "
                                                  "only its own node")
    for access in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = getattr(access, "attr", None) or getattr(getattr(access, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateProblem(field, access.lineno, f"{name!r}: attributes starting with _ are not allowed")
    try:
        template = ENVIRONMENT.from_string(source)
    except TemplateError as exc:  # an unknown filter or test
        raise TemplateProblem(field, getattr(exc, "lineno", None), exc.message or str(exc)) from None
    unknown = sorted(find_undeclared_variables(tree) - VARIABLES)
    if unknown:
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown[0]), None)
        raise TemplateProblem(field, line, f"unknown variable {unknown[0]!r}; a template sees "
                                           f"{', '.join(sorted(VARIABLES))}")
    try:
        template.render(SAMPLE)
    except SecurityError as exc:
        raise TemplateProblem(field, _template_line(exc), str(exc)) from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError):
        pass  # depends on the node (a label it may not have): found per node when rendered, never at boot
    return template


def compile_stored(source: str | None) -> Template | str | None:
    """A stored template compiled for a load: the Template, the plain text itself, or None.  A stored source
    that no longer compiles (written around the admin API) gives a str starting with `!`: the reason."""
    if source is None or not is_template(source):
        return source
    try:
        return ENVIRONMENT.from_string(source)
    except TemplateError as exc:
        return f"!the template does not compile: {exc}"


def render(template: Template, context: dict[str, Any]) -> tuple[str | None, str | None]:
    """(text, None), or (None, why it failed, with the line, as one plain line: it goes into a wait script's
    echo and a YAML comment)."""
    try:
        try:
            # Template.render without its copy of Jinja's globals (3x faster per node): a checked template
            # names none of them (they are not in VARIABLES).
            return ENVIRONMENT.concat(template.root_render_func(template.new_context(context, shared=True))), None
        except Exception:  # noqa: BLE001
            ENVIRONMENT.handle_exception()  # re-raises with the template's own line numbers
    except Exception as exc:  # noqa: BLE001 - any failure of one node's render makes that node wait, never a 5xx
        line = _template_line(exc)
        why = (f"line {line}: " if line else "") + f"{type(exc).__name__}: {str(exc)[:200]}"
        return None, "".join(ch if ch in _PLAIN else "?" for ch in why)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/@+=,%~'()-")
