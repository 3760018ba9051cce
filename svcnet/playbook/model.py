"""Typed model of an svcnet playbook: a list of plays, each a list of tasks from svcnet's verbs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The task vocabulary: what a task may ask svcnet to do, in pipeline order.
VALIDATE, PREFLIGHT, NETWORK, RULES, VERIFY, TEARDOWN = (
    "validate",
    "preflight",
    "network",
    "rules",
    "verify",
    "teardown",
)
VERBS = (VALIDATE, PREFLIGHT, NETWORK, RULES, VERIFY, TEARDOWN)

# Ansible's reserved tags.
ALWAYS, NEVER, ALL_TAGS, TAGGED, UNTAGGED = "always", "never", "all", "tagged", "untagged"

# `serial` as written: an int, "N%", or a list of those (Ansible's rolling batches).
SerialItem = int | str
Serial = SerialItem | tuple[SerialItem, ...] | None


@dataclass(frozen=True)
class Task:
    """One task: `action` is a verb of VERBS; `tags` include the play's tags (as Ansible inherits them)."""

    name: str
    action: str
    options: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    line: int = 0  # where the task starts in the playbook file (1-based), 0 if unknown


@dataclass(frozen=True)
class Play:
    """One play: which hosts (an Ansible host pattern), which cluster description, which tasks."""

    name: str
    hosts: str
    cluster: tuple[Path, ...]
    tasks: tuple[Task, ...]
    serial: Serial = None
    vars: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    source: str = ""  # file:line of the play
