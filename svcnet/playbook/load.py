"""Read a playbook file into `Play`s, with every problem located as `file:line:col: path: message`.

A playbook is a YAML list of plays:

    - name: services on the workers
      hosts: workers:!node3          # an Ansible host pattern
      cluster: ../clusters/demo.yaml # or a list; relative to this file's directory
      serial: "50%"                  # int, "N%", or a list of them (rolling batches)
      tags: [svcnet]
      tasks:
        - name: check the description
          validate:
        - name: push the rules
          rules: {dry_run: false}
          tags: [rules]
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svcnet import resources
from svcnet.diagnostics import Diagnostic
from svcnet.load import Document, load_text, read_text
from svcnet.playbook.model import VERBS, Play, Serial, Task
from svcnet.transport import hostpattern
from svcnet.transport.inventory import merge_diagnostics, schema_diagnostics

SCHEMA_KIND = "playbook"
PLAY_KEYS = ("name", "hosts", "cluster", "serial", "vars", "tags", "tasks")
REQUIRED_PLAY_KEYS = ("hosts", "cluster", "tasks")
TASK_KEYS = ("name", "tags")
# ASCII digits only (str.isdigit() also takes '²', which int() refuses), and few enough for int().
_PERCENT_RE = re.compile(r"^\s*([0-9]{1,18})\s*%\s*$")
_COUNT_RE = re.compile(r"^\s*([0-9]{1,18})\s*$")


class PlaybookError(Exception):
    """The playbook is invalid; `messages` holds every located problem."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        self.messages = [str(d) for d in self.diagnostics]
        super().__init__("invalid playbook:\n" + "\n".join(self.messages))


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Checks and converts one playbook document, collecting diagnostics."""

    def __init__(self, doc: Document, base: Path, check_paths: bool):
        self.doc, self.base, self.check_paths = doc, base, check_paths
        self.diags: list[Diagnostic] = []

    def err(self, path: tuple[Any, ...], message: str) -> None:
        self.diags.append(self.doc.diag(path, message))

    def line(self, path: tuple[Any, ...]) -> int:
        return self.doc.locate(path)[0]

    def strings(self, path: tuple[Any, ...], value: Any, what: str) -> list[str] | None:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
            self.err(path, f"{what} must be a non-empty string or a list of non-empty strings")
            return None
        return [i.strip() for i in items]

    def tags(self, path: tuple[Any, ...], value: Any) -> frozenset[str]:
        if value is None:
            return frozenset()
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str | int) and not isinstance(i, bool) for i in items):
            self.err(path, "tags must be a string or a list of strings")
            return frozenset()
        return frozenset(str(i).strip() for i in items if str(i).strip())

    def hosts(self, path: tuple[Any, ...], value: Any) -> str:
        items = self.strings(path, value, "hosts")
        if items is None:
            return ""
        pattern = ",".join(items)
        try:
            terms = hostpattern.split_pattern(pattern)
        except hostpattern.PatternError as exc:
            self.err(path, str(exc))
            return pattern
        if not terms:
            self.err(path, "hosts pattern selects nothing")
        for term in terms:
            bare = term.lstrip("!&")
            if bare.startswith("@"):  # Ansible reads host lists from files for --limit only
                self.err(path, f"host pattern {term!r}: a host list file (@file) is for --limit, not a play's hosts")
            elif bare.startswith("~"):
                try:
                    re.compile(bare[1:])
                except re.error as exc:
                    self.err(path, f"invalid regular expression in host pattern {term!r}: {exc}")
        return pattern

    def cluster(self, path: tuple[Any, ...], value: Any) -> tuple[Path, ...]:
        items = self.strings(path, value, "cluster")
        if items is None:
            return ()
        out = []
        for i, item in enumerate(items):
            resolved = (self.base / item).resolve() if not Path(item).is_absolute() else Path(item)
            if self.check_paths and not resolved.exists():
                where = path if isinstance(value, str) else (*path, i)
                self.err(where, f"cluster description {item!r} not found (looked for {resolved})")
            out.append(resolved)
        return tuple(out)

    def serial_item(self, path: tuple[Any, ...], value: Any) -> int | str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                self.err(path, f"serial must be a positive host count (omit it for all hosts at once), not {value}")
                return None
            return value
        if isinstance(value, str):
            m = _PERCENT_RE.match(value)
            if m and 0 < int(m.group(1)) <= 100:
                return f"{int(m.group(1))}%"
            m = _COUNT_RE.match(value)
            if m and int(m.group(1)) >= 1:  # "0" is refused as 0 is
                return int(m.group(1))
        self.err(path, f"serial must be a host count or a percentage like '30%' (1-100), not {value!r}")
        return None

    def serial(self, path: tuple[Any, ...], value: Any) -> Serial:
        if value is None:
            return None
        if isinstance(value, list):
            if not value:
                self.err(path, "serial list must not be empty")
                return None
            items = [self.serial_item((*path, i), v) for i, v in enumerate(value)]
            return tuple(i for i in items if i is not None)
        return self.serial_item(path, value)

    def task(self, path: tuple[Any, ...], obj: Any, play_tags: frozenset[str]) -> Task | None:
        if not isinstance(obj, dict):
            self.err(path, f"a task must be a mapping like {{name: ..., rules: ...}}, not {type(obj).__name__}")
            return None
        verbs = [k for k in obj if k in VERBS]
        for key in obj:
            if key not in VERBS and key not in TASK_KEYS:
                hint = _hint(str(key), (*VERBS, *TASK_KEYS))
                self.err(
                    (*path, key),
                    f"unknown task key {key!r}{hint}; a task has name, tags and one of: " + ", ".join(VERBS),
                )
        if not verbs:
            self.err(path, "task has no action: give one of " + ", ".join(VERBS))
            return None
        if len(verbs) > 1:
            self.err((*path, verbs[1]), f"task has several actions ({', '.join(verbs)}); give exactly one")
            return None
        verb = verbs[0]
        options = obj[verb]
        if options is not None and not isinstance(options, dict):
            self.err((*path, verb), f"options of {verb!r} must be a mapping or empty, not {type(options).__name__}")
            return None
        name = obj.get("name", verb)
        if not isinstance(name, str) or not name.strip():
            self.err((*path, "name"), "task name must be a non-empty string")
            return None
        tags = self.tags((*path, "tags"), obj.get("tags"))
        return Task(name.strip(), verb, dict(options or {}), tags | play_tags, self.line(path))

    def play(self, index: int, obj: Any) -> Play | None:
        path: tuple[Any, ...] = (index,)
        if not isinstance(obj, dict):
            self.err(path, f"a play must be a mapping with hosts, cluster and tasks, not {type(obj).__name__}")
            return None
        before = len(self.diags)
        for key in obj:
            if key not in PLAY_KEYS:
                self.err(
                    (*path, key),
                    f"unknown play key {key!r}{_hint(str(key), PLAY_KEYS)}; a play has {', '.join(PLAY_KEYS)}",
                )
        for key in REQUIRED_PLAY_KEYS:
            if key not in obj:
                self.err(path, f"play is missing {key!r}")
        name = obj.get("name") or ""
        if not isinstance(name, str):
            self.err((*path, "name"), "play name must be a string")
        hosts = self.hosts((*path, "hosts"), obj["hosts"]) if "hosts" in obj else ""
        cluster = self.cluster((*path, "cluster"), obj["cluster"]) if "cluster" in obj else ()
        serial = self.serial((*path, "serial"), obj.get("serial"))
        play_vars = obj.get("vars") or {}
        if not isinstance(play_vars, dict) or not all(isinstance(k, str) for k in play_vars):
            self.err((*path, "vars"), "vars must be a mapping of name: value")
        tags = self.tags((*path, "tags"), obj.get("tags"))
        tasks_obj = obj.get("tasks")
        tasks: list[Task] = []
        if "tasks" in obj and (not isinstance(tasks_obj, list) or not tasks_obj):
            self.err((*path, "tasks"), "tasks must be a non-empty list")
        elif isinstance(tasks_obj, list):
            for i, t in enumerate(tasks_obj):
                task = self.task((*path, "tasks", i), t, tags)
                if task is not None:
                    tasks.append(task)
        if len(self.diags) > before:
            return None
        source = f"{self.doc.file}:{self.line(path)}"
        return Play(str(name).strip(), hosts, cluster, tuple(tasks), serial, dict(play_vars), tags, source)


def parse_playbook(doc: Document, base: Path, check_paths: bool = True) -> tuple[list[Play], list[Diagnostic]]:
    """Plays of one playbook document, and the problems found (plays are empty if any)."""
    if not isinstance(doc.obj, list) or not doc.obj:
        return [], [doc.diag((), "a playbook must be a non-empty list of plays")]
    reader = _Reader(doc, base, check_paths)
    plays = [reader.play(i, obj) for i, obj in enumerate(doc.obj)]
    diags = merge_diagnostics(reader.diags, schema_diagnostics(SCHEMA_KIND, doc))
    if diags:
        return [], diags
    return [p for p in plays if p is not None], []


def load_playbook(path: str | Path, check_paths: bool = True) -> list[Play]:
    """Load and check a playbook file; raise PlaybookError listing every located problem."""
    path = Path(path)
    if not path.is_file():
        raise PlaybookError([Diagnostic(str(path), 1, 1, "(file)", "no such playbook file")])
    text, err = read_text(path)
    if err:
        raise PlaybookError([err])
    assert text is not None
    result = load_text(str(path), text)
    if result.diagnostics:
        raise PlaybookError(result.diagnostics)
    if len(result.documents) > 1:
        raise PlaybookError([result.documents[1].diag((), "a playbook is one YAML document; found more")])
    plays, diags = parse_playbook(result.documents[0], path.parent, check_paths)
    if diags:
        raise PlaybookError(diags)
    return plays


def playbook_path(name: str) -> Path:
    """A playbook given by path, or by name from the shipped `playbooks/` directory."""
    p = Path(name)
    if p.exists():
        return p
    return resources.playbook(name) or p
