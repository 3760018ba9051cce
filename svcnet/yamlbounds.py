"""Bounds on what one YAML document may build, checked before a parser builds it.

Two shapes of small text make a parser build something huge or crash it:

* **alias bombs** ("billion laughs"): an anchored node referenced many times, or aliases of
  aliases. yaml-rs copies every alias into its own Python objects, so a 120 KB file can
  take gigabytes and abort the process with a Rust panic when memory runs out.
* **deep nesting**: yaml-rs recurses once per nested block collection without a limit and
  overflows its stack (a segfault) at a few thousand levels; Python code after the loader
  recurses too.

`check` refuses both with a located `BoundError` (line and column inside the document, and
the field path). It costs a substring test and one cheap regular expression for ordinary
documents; only documents that use aliases, or that could nest deeper than `MAX_DEPTH`, are
scanned exactly with libyaml's event parser (PyYAML's C binding), which builds no nodes.

The alias bound is shared by everything one load reads (an `AliasBudget`): aliases may add
at most `ALIAS_FLOOR` plus `ALIAS_RATIO` times the size of the YAML text read so far, each
node counted as its text plus `NODE_COST` bytes. So a description's memory stays
proportional to its size however its aliases are arranged, while anchors used the way people
use them (shared labels, a container spec reused a few times) stay far below the bound.
kubectl accepts aliases, so they are bounded rather than refused.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import yaml

from svcnet.diagnostics import PathT

try:  # pragma: no cover - depends on how PyYAML was built
    from yaml import CSafeLoader as _EventLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _EventLoader  # type: ignore[assignment]

# A Kubernetes manifest's deepest field svcnet reads is 9 levels down (a Deployment's
# spec.template.spec.containers[].ports[].containerPort) and CRDs rarely pass 30; 100 keeps
# yaml-rs far from its stack's end (~20,000) and Python's recursion limit (1,000) far away
# for any code that walks a document.
MAX_DEPTH = 100
ALIAS_FLOOR = 16 * 1024 * 1024
ALIAS_RATIO = 10
# What one node costs beyond its text once loaded (a Python object plus a container slot),
# so that aliases of many tiny nodes are bounded as well as aliases of long strings.
NODE_COST = 64
_BOUND_TEXT = f"{ALIAS_FLOOR // 2**20} MiB plus {ALIAS_RATIO}x the size of the YAML read"

# Characters that may precede, on its line, the start of a block collection: indentation and
# the compact indicators of `- - x`, `? - x`, `: - x` (see `_may_nest_deeper`).
_PREFIX_CHARS = r"[ \t?:-]"
# yaml-rs (YAML 1.2) breaks lines at \n and \r; PyYAML (1.1) also at NEL, LS and PS.
_LINE_BREAKS = "\r\x85\u2028\u2029"


class BoundError(Exception):
    """A document exceeds a bound; `line` and `col` are 0-based within the document text."""

    def __init__(self, line: int, col: int, path: PathT, message: str):
        super().__init__(message)
        self.line, self.col, self.path, self.message = line, col, path, message


@dataclass
class AliasBudget:
    """How much aliases may still add to what one load builds (see the module docstring)."""

    limit: int = ALIAS_FLOOR
    spent: int = 0

    def add_text(self, size: int) -> None:
        """Raise the bound for `size` more characters of YAML text read."""
        self.limit += ALIAS_RATIO * size


def check(text: str, budget: AliasBudget) -> None:
    """Raise `BoundError` if the document nests deeper than `MAX_DEPTH` or its aliases overspend.

    Malformed YAML found while scanning raises PyYAML's located `MarkedYAMLError`.
    """
    if ("&" in text and "*" in text) or _may_nest_deeper(text):
        _Scan(budget).run(text)


def _may_nest_deeper(text: str) -> bool:
    """Whether `text` could nest deeper than `MAX_DEPTH` (False is certain; True is a maybe).

    Along any chain of nested block collections the start columns never decrease and grow at
    least every second level (only a block sequence may sit at its parent mapping's column),
    and a block collection starts either where a line's indentation ends or right after the
    compact indicators `- `, `? `, `: ` following it; a property-led compact mapping
    (`- &a k: v`) can only end a chain on its line. So with every line's prefix of those
    characters shorter than `k`, block nesting is at most 2k + 1 deep; each flow collection
    needs its own `[` or `{`.
    """
    flows = text.count("[") + text.count("{")
    k = (MAX_DEPTH - flows - 3) // 2
    if k < 1:
        return True
    if len(text) < k:
        return False
    other_breaks = "\r" in text or (not text.isascii() and any(c in text for c in _LINE_BREAKS))
    at_start, after_break = _prefix_patterns(k, other_breaks)
    return at_start.match(text) is not None or after_break.search(text) is not None


@functools.lru_cache(maxsize=256)
def _prefix_patterns(k: int, other_breaks: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A `k`-character prefix at the start, and after a line break (a literal newline is searched fastest)."""
    breaks = "[\n" + _LINE_BREAKS + "]" if other_breaks else "\n"
    return re.compile(f"{_PREFIX_CHARS}{{{k}}}"), re.compile(f"{breaks}{_PREFIX_CHARS}{{{k}}}")


@dataclass
class _Frame:
    """An open collection during the scan."""

    part: str | int | None  # where it sits in its parent (None: the document root)
    anchor: str | None
    mapping: bool
    size: int = NODE_COST
    index: int = 0  # next item's index (sequences) or the count of keys and values (mappings)
    key: str | int = "?"  # the last key seen (mappings)


@dataclass
class _Scan:
    """One pass over a document's libyaml events: depth, anchors' expanded sizes, aliases."""

    budget: AliasBudget
    stack: list[_Frame] = field(default_factory=list)
    anchors: dict[str, int | None] = field(default_factory=dict)  # None: still open (being defined)

    def run(self, text: str) -> None:
        for event in _events(text):
            if isinstance(event, yaml.CollectionStartEvent):
                self.open(event)
            elif isinstance(event, yaml.CollectionEndEvent):
                frame = self.stack.pop()
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = frame.size
                self.close(frame.size)
            elif isinstance(event, yaml.ScalarEvent):
                size = NODE_COST + len(event.value)
                if event.anchor is not None:
                    self.anchors[event.anchor] = size
                self.close(size, event.value)
            elif isinstance(event, yaml.AliasEvent):
                self.close(self.alias(event))

    def part(self) -> str | int | None:
        """The path element of the next node in the innermost open collection."""
        if not self.stack:
            return None
        top = self.stack[-1]
        if not top.mapping:
            return top.index
        return "(key)" if top.index % 2 == 0 else top.key

    def path(self) -> PathT:
        parts = (*(f.part for f in self.stack), self.part())
        return tuple(p for p in parts if p is not None)

    def fail(self, event: yaml.Event, message: str) -> NoReturn:
        mark = event.start_mark
        raise BoundError(mark.line if mark else 0, mark.column if mark else 0, self.path(), message)

    def open(self, event: yaml.CollectionStartEvent) -> None:
        if len(self.stack) >= MAX_DEPTH:
            self.fail(event, f"YAML nested deeper than {MAX_DEPTH} levels")
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        self.stack.append(_Frame(self.part(), event.anchor, isinstance(event, yaml.MappingStartEvent)))

    def close(self, size: int, scalar: str | None = None) -> None:
        """A node of `size` ends: count it in its parent and move the parent to the next slot."""
        if not self.stack:
            return
        top = self.stack[-1]
        top.size += size
        if top.mapping and top.index % 2 == 0:
            top.key = scalar if scalar is not None else "(key)"
        top.index += 1

    def alias(self, event: yaml.AliasEvent) -> int:
        name = event.anchor
        if name not in self.anchors:
            return 0  # an undefined alias: the parser that builds the document reports it
        size = self.anchors[name]
        if size is None:
            self.fail(event, f"alias *{name} refers to a node that contains it (a recursive structure)")
        budget = self.budget
        if budget.spent + size > budget.limit:
            self.fail(
                event,
                f"YAML aliases expand past the limit of {budget.limit:,} bytes here ({_BOUND_TEXT}; "
                f"*{name} adds {size:,}): refused as a possible alias bomb; write the value out or use fewer aliases",
            )
        budget.spent += size
        return size


def huge_number(text: str, obj: object) -> PathT | None:
    """Where `obj` (parsed from `text`) holds an integer too long for Python to print, if anywhere.

    yaml-rs builds integers of any length, but Python refuses to turn one of more than
    `sys.get_int_max_str_digits()` digits into text (a guard against quadratic conversion), so
    any message showing it would raise. Only documents with such a run of digits are walked.
    """
    limit = sys.get_int_max_str_digits()
    if not limit or not _digit_run(limit).search(text):
        return None
    too_big = 10**limit
    todo: list[tuple[object, PathT]] = [(obj, ())]
    while todo:
        node, path = todo.pop()
        if isinstance(node, int) and abs(node) >= too_big:
            return path
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, int) and abs(key) >= too_big:
                    return path  # the key itself cannot be shown: point at its mapping
                todo.append((value, (*path, key)))
        elif isinstance(node, list):
            todo.extend((value, (*path, i)) for i, value in enumerate(node))
    return None


@functools.lru_cache(maxsize=4)
def _digit_run(n: int) -> re.Pattern[str]:
    return re.compile(f"[0-9]{{{n}}}")  # documents shorter than n are skipped at once


def _events(text: str) -> Iterator[yaml.Event]:
    loader = _EventLoader(text)
    try:
        while (event := loader.get_event()) is not None:
            yield event
    finally:
        loader.dispose()
