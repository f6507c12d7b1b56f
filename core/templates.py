"""Templates of boot profiles (iPXE script, cmdline, user-data, vendor-data): Jinja2's immutable sandbox,
compiled ahead.

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

A profile's iPXE script template (`check_script` when written, `render` per node)
is the whole script a node runs.  Besides the node's context it sees five values the boot path
fills in when it serves the script (`SCRIPT_SLOTS`), because they depend on the
request: `kernel` and `initrd` (the profile's URIs, for the architecture asked),
`params` (the command line with what Chamicore adds: initrd=, BOOTIF=, the
cloud-init seed), `baseUrl` and `seedUrl`.  They are used as they are (a filter
on them is refused when written).  Every other value a script prints must be safe
in an iPXE command line (no line break, no `||`, `&&`, `;` or `#` word), else the
node waits; the boot path appends the `:retry` label (back-off, then ask again),
so `|| goto retry` works in every script.
"""

from __future__ import annotations

import functools
import traceback
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from core.identity import boot_text_problem
from core.problems import FieldError, ProblemError

VARIABLES = frozenset(("id", "nid", "mac", "arch", "role", "subRole", "type", "hostname", "groups", "labels",
                       "location", "profile"))
# What a script template sees besides VARIABLES: placeholders the boot path replaces when it serves the script
# (hotpath/_render.pyx).  NUL cannot come from stored text (PostgreSQL refuses it), so no value can forge one.
SCRIPT_SLOTS = {name: f"\x00{name}\x00" for name in ("kernel", "initrd", "params", "baseUrl", "seedUrl")}
SCRIPT_VARIABLES = VARIABLES | SCRIPT_SLOTS.keys()
SCRIPT_MAX = 16_384
_SLOT_VALUES = frozenset(SCRIPT_SLOTS.values())
_FORBIDDEN = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_MARKERS = ("{{", "{%", "{#")


class UnsafeScriptValue(SecurityError):
    """A value a script template prints that would change the iPXE script's commands."""


def _script_value(value: Any) -> Any:
    """Every `{{ ... }}` of a script template: a slot as given, anything else one safe iPXE command-line text."""
    if isinstance(value, str) and value in _SLOT_VALUES:
        return value
    text = "" if value is None else str(value)
    if "\x00" in text:
        raise UnsafeScriptValue("kernel, initrd, params, baseUrl and seedUrl are filled in when the script is "
                                "served: print them as they are, without filters or other text in the same {{ }}")
    if (why := boot_text_problem(text, one_word=False)) is not None:
        raise UnsafeScriptValue(f"a printed value {why}")
    return value


# One environment, shared: it has no loader and no globals beyond Jinja's few harmless ones (range, dict ...).
ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                            loader=None)
# Script templates: the same, each printed value checked (_script_value).
SCRIPT_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                                   keep_trailing_newline=True, loader=None, finalize=_script_value)
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


def check(source: str, field: str, *, script: bool = False) -> Template | None:
    """The compiled template, None for plain text, or a TemplateProblem.  `script`: an iPXE script template
    (its environment checks every printed value, and it also sees SCRIPT_SLOTS)."""
    if not is_template(source):
        return None
    environment, variables = (SCRIPT_ENVIRONMENT, SCRIPT_VARIABLES) if script else (ENVIRONMENT, VARIABLES)
    try:
        tree = environment.parse(source)
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
        template = environment.from_string(source)
    except TemplateError as exc:  # an unknown filter or test
        raise TemplateProblem(field, getattr(exc, "lineno", None), exc.message or str(exc)) from None
    unknown = sorted(find_undeclared_variables(tree) - variables)
    if unknown:
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown[0]), None)
        raise TemplateProblem(field, line, f"unknown variable {unknown[0]!r}; a template sees "
                                           f"{', '.join(sorted(variables))}")
    _trial(template, field, {**SAMPLE, **SCRIPT_SLOTS} if script else SAMPLE)
    return template


def _trial(template: Template, field: str, sample: dict[str, Any]) -> str | None:
    """The template rendered for the sample node, None when that depends on the node; a TemplateProblem for what
    the sandbox (or a script's value check) refuses whatever the node."""
    try:
        return template.render(sample)
    except SecurityError as exc:
        raise TemplateProblem(field, _template_line(exc), str(exc)) from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError):
        return None  # depends on the node (a label it may not have): found per node when rendered, never at boot


def check_script(source: str, field: str) -> Template | None:
    """A profile's iPXE script (template) checked when written: check()'s rules, then script_problem's on the
    text as written (plain) or as rendered for a sample node."""
    template = check(source, field, script=True)
    text = source if template is None else _trial(template, field, {**SAMPLE, **SCRIPT_SLOTS})
    if text is not None and (why := script_problem(text)) is not None:
        raise TemplateProblem(field, None, why)
    return template


def script_problem(text: str) -> str | None:
    """Why a (rendered) script cannot be served, or None: it is an iPXE script, every line printable, and it
    leaves the `:retry` label to the boot path, which appends it."""
    if not text.startswith("#!ipxe\n") and text != "#!ipxe":
        return "an iPXE script starts with the line #!ipxe"
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.replace("\t", " ").replace("\x00", "").isprintable():
            return f"line {number}: a line break, carriage return or other control character"
        if line.strip() == ":retry":
            return (f"line {number}: the label :retry is the boot path's (it waits with back-off and asks again); "
                    "use `goto retry`, do not define it")
    return None


def compile_stored(source: str | None, *, script: bool = False) -> Template | str | None:
    """A stored template compiled for a load: the Template, the plain text itself, or None.  A stored source
    that no longer compiles (written around the admin API) gives a str starting with `!`: the reason."""
    if source is None or not is_template(source):
        return source
    return _compiled(source, script)


# Every load of the boot path (a profile edit re-renders a few nodes) compiles the profiles' templates again;
# compiling costs ~1 ms each, rendering a node a few us.  A Template is immutable: kept by its source.
@functools.lru_cache(maxsize=256)
def _compiled(source: str, script: bool) -> Template | str:
    try:
        return (SCRIPT_ENVIRONMENT if script else ENVIRONMENT).from_string(source)
    except TemplateError as exc:
        return f"!the template does not compile: {exc}"


def render(template: Template, context: dict[str, Any]) -> tuple[str | None, str | None]:
    """(text, None), or (None, why it failed, with the line, as one plain line: it goes into a wait script's
    echo and a YAML comment)."""
    try:
        try:
            # Template.render without its copy of Jinja's globals (3x faster per node): a checked template
            # names none of them (they are not in VARIABLES).
            environment = template.environment
            return environment.concat(template.root_render_func(template.new_context(context, shared=True))), None
        except Exception:  # noqa: BLE001
            environment.handle_exception()  # re-raises with the template's own line numbers
    except Exception as exc:  # noqa: BLE001 - any failure of one node's render makes that node wait, never a 5xx
        line = _template_line(exc)
        return None, plain((f"line {line}: " if line else "") + f"{type(exc).__name__}: {str(exc)[:200]}")


def plain(text: str) -> str:
    """`text` as one plain line, safe in a wait script's echo and a YAML comment (anything else becomes ?)."""
    return "".join(ch if ch in _PLAIN else "?" for ch in text)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/@+=,%~'()-")
