"""Printing answers as a table (for people), JSON or YAML (for scripts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def dig(item: Any, path: str) -> Any:
    """`spec.location.rack` out of nested dicts; `spec.ipAddrs[].ipAddress` maps over a list."""
    keys = path.split(".")
    for i, key in enumerate(keys):
        if not isinstance(item, dict):
            return None
        if key.endswith("[]"):
            rest = ".".join(keys[i + 1:])
            values = item.get(key[:-2])
            return [dig(v, rest) if rest else v for v in values] if isinstance(values, list) else None
        item = item.get(key)
    return item


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(rows: Sequence[Any], columns: Sequence[tuple[str, str]], out=None) -> None:
    """columns: (HEADER, path into each row); a row that is not an object shows as dashes."""
    out = out or sys.stdout
    cells = [[_cell(dig(row, path)) for _, path in columns] for row in rows]
    widths = [max([len(header)] + [len(c[i]) for c in cells]) for i, (header, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


def emit(value: Any, fmt: str, columns: Sequence[tuple[str, str]] | None = None, items_key: str | None = "items",
         out=None) -> None:
    """Print an answer: whole as JSON/YAML; as a table of its items (or itself) otherwise."""
    out = out or sys.stdout
    if fmt == "json":
        print(json.dumps(value, indent=2, sort_keys=False), file=out)
    elif fmt == "yaml":
        print(yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip(), file=out)
    elif columns is None:
        print(yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip(), file=out)
    else:
        rows = value.get(items_key) if isinstance(value, dict) and items_key in value else value
        table(rows if isinstance(rows, list) else [rows], columns, out)
        total = dig(value, "metadata.total") if isinstance(value, dict) else None
        if isinstance(total, int) and isinstance(rows, list) and total > len(rows):
            print(f"({len(rows)} of {total}; --limit/--offset for more)", file=sys.stderr)


class Progress:
    """One line that redraws itself on a terminal and prints changes otherwise."""

    def __init__(self, label: str, out=None) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.last = ""

    def show(self, done: int, total: int, note: str = "") -> None:
        width = 30
        filled = int(width * done / total) if total else width
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {note}".rstrip()
        if line == self.last:
            return
        self.last = line
        if self.tty:
            print("\r\033[K" + line, end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    def done(self) -> None:
        if self.tty and self.last:
            print(file=self.out, flush=True)
