"""Ansible INI inventories: `[group]`, `host k=v ...`, `[group:vars]`, `[group:children]`.

Follows Ansible's `ini` inventory plugin: lines before any section belong to `ungrouped`;
`#` and `;` start comment lines; host lines are shlex-split (trailing `# ...` is a
comment); values are read as Python literals when they are one (`2222` -> int,
`True` -> bool), else kept as strings; hosts may carry `:port` and ranges `node[01:03]`.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from svcnet.diagnostics import Diagnostic
from svcnet.transport.invdata import (
    UNGROUPED,
    V_PORT,
    InventoryData,
    check_group_name,
    check_var,
    expand_host_pattern,
)

HOSTS, VARS, CHILDREN = "hosts", "vars", "children"
_SECTION_RE = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")


def parse_value(text: str) -> Any:
    """Ansible's `_parse_value`: a Python literal when the text is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _section_path(group: str, state: str) -> str:
    return f"[{group}]" if state == HOSTS else f"[{group}:{state}]"


def parse_ini(name: str, text: str, data: InventoryData) -> list[Diagnostic]:
    """Add an INI inventory's groups and hosts to `data`; return located problems."""
    diags: list[Diagnostic] = []
    group, state = UNGROUPED, HOSTS
    pending_vars: dict[str, tuple[int, dict[str, Any]]] = {}

    def err(lineno: int, message: str) -> None:
        diags.append(Diagnostic(name, lineno, 1, _section_path(group, state), message))

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            m = _SECTION_RE.match(line)
            if not m:
                group, state = line, HOSTS
                err(
                    lineno,
                    f"invalid section header {line!r} (expected [group], [group:vars] or [group:children])",
                )
                group = "(invalid)"
                continue
            group, state = m.group(1), m.group(2) or HOSTS
            if state not in (HOSTS, VARS, CHILDREN):
                err(lineno, f"section type {state!r} is unknown (use :vars or :children)")
                state = "(invalid)"
                continue
            problem = check_group_name(group)
            if problem:
                err(lineno, problem)
                group = "(invalid)"  # its lines are not read: they would land in no group
                continue
            if state == VARS:
                pending_vars.setdefault(group, (lineno, {}))
            else:
                data.add_group(group)
            continue
        if group == "(invalid)" or state == "(invalid)":
            continue  # already reported at the section header
        if state == HOSTS:
            _host_line(line, lineno, group, data, err)
        elif state == CHILDREN:
            child = line.split("#", 1)[0].strip()
            problem = check_group_name(child)
            if problem or " " in child:
                err(lineno, problem or f"a :children line holds one group name, not {child!r}")
                continue
            problem = data.add_child(group, child)
            if problem:
                err(lineno, problem)
        else:
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                err(lineno, f"expected key=value in a :vars section, got {line!r}")
                continue
            parsed = parse_value(value.strip())
            problem = check_var(key.strip(), parsed)
            if problem:
                err(lineno, problem)
                continue
            pending_vars[group][1][key.strip()] = parsed
    for target, (lineno, variables) in pending_vars.items():  # Ansible applies :vars after reading
        if target in data.groups:
            data.groups[target].vars.update(variables)
        else:
            diags.append(Diagnostic(name, lineno, 1, f"[{target}:vars]", f"vars for undefined group {target!r}"))
    return diags


def _host_line(line: str, lineno: int, group: str, data: InventoryData, err: Any) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        err(lineno, f"cannot split host line: {exc}")
        return
    if not tokens:
        return
    try:
        hosts, port = expand_host_pattern(tokens[0], data.room())
    except ValueError as exc:
        err(lineno, str(exc))
        return
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            err(lineno, f"expected key=value host variable, got {token!r}")
            return
        parsed = parse_value(value)
        problem = check_var(key, parsed)
        if problem:
            err(lineno, problem)
            return
        variables[key] = parsed
    if port is not None:
        variables[V_PORT] = port
    for host in hosts:
        data.add_host(group, host, dict(variables))
