"""Ansible-compatible inventories: YAML or INI files, a directory of them, group_vars/host_vars.

Load with `load_inventory(path)`; a directory loads every `*.yaml`, `*.yml` and `*.ini` in
it (ASCII order, later files win), a file loads alone. `group_vars/` and `host_vars/`
beside the inventory (`<name>.yaml|.yml|.json|no suffix`, or `<name>/` holding such
files) are read as Ansible reads them.

Variable precedence, low to high, is Ansible's (docs "Understanding variable precedence"):
inventory-file group vars (ordered by group depth: `all` < parent < child, then
`ansible_group_priority`, then name) < `group_vars/all` < `group_vars/<group>` (same
order) < inventory-file host vars < `host_vars/<host>`.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svcnet.diagnostics import Diagnostic
from svcnet.load import Document, load_text, read_text
from svcnet.transport import hostpattern
from svcnet.transport.hostconfig import (
    DEFAULT_BECOME_USER,
    DEFAULT_PORT,
    DEFAULT_USER,
    SECRET_VARS,
    HostConfig,
    SecretStr,
    split_ssh_args,
)
from svcnet.transport.invdata import (
    ALIASES,
    ALL,
    UNGROUPED,
    V_BECOME,
    V_BECOME_METHOD,
    V_BECOME_USER,
    V_COMMON_ARGS,
    V_EXTRA_ARGS,
    V_HOST,
    V_KEY,
    V_PORT,
    V_PRIORITY,
    V_USER,
    InventoryData,
    check_group_name,
    check_var,
    expand_host_pattern,
    to_bool,
)
from svcnet.transport.inventory_ini import parse_ini
from svcnet.yamlbounds import AliasBudget

log = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")
INI_SUFFIXES = (".ini",)
VARS_SUFFIXES = ("", ".yaml", ".yml", ".json")
GROUP_VARS, HOST_VARS = "group_vars", "host_vars"
GROUP_KEYS = ("vars", "children", "hosts")  # Ansible's yaml plugin reads them in this order
_IGNORED_SUFFIXES = (".retry", ".swp", ".bak", ".orig", "~")
SCHEMA_KIND = "inventory"
NOT_A_MAPPING = "an inventory must be a mapping of groups, e.g. `all: {hosts: ..., children: ...}`"


class InventoryError(Exception):
    """The inventory is invalid; `messages` holds every located problem."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        self.messages = [str(d) for d in self.diagnostics]
        super().__init__("invalid inventory:\n" + "\n".join(self.messages))


@dataclass(frozen=True)
class Group:
    name: str
    hosts: tuple[str, ...]  # direct members
    children: tuple[str, ...]
    parents: tuple[str, ...]
    depth: int
    priority: int
    vars: dict[str, Any]


@dataclass(frozen=True)
class Inventory:
    """A loaded inventory. Host names are the cluster's node names, in inventory order."""

    hosts: tuple[str, ...]
    groups: dict[str, Group]
    inline_host_vars: dict[str, dict[str, Any]]
    group_file_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_file_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def group_hosts(self, name: str) -> list[str]:
        """Hosts of a group and of all its descendants, in inventory order."""
        members: set[str] = set()
        todo, seen = [name], set()
        while todo:
            g = todo.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            members.update(self.groups[g].hosts)
            todo.extend(self.groups[g].children)
        if name == ALL:
            return list(self.hosts)
        return [h for h in self.hosts if h in members]

    @functools.cached_property
    def _direct_groups(self) -> dict[str, list[str]]:
        """host -> the groups that list it, in group order (one pass, not one per host)."""
        out: dict[str, list[str]] = {}
        for g in self.groups.values():
            for h in g.hosts:
                out.setdefault(h, []).append(g.name)
        return out

    def groups_of(self, host: str) -> list[str]:
        """Every group the host belongs to, directly or through a child group (with `all`)."""
        direct = self._direct_groups.get(host, [])
        found: set[str] = {ALL}
        todo = list(direct)
        while todo:
            g = todo.pop()
            if g not in found:
                found.add(g)
                todo.extend(self.groups[g].parents)
        return _ordered_groups(found, self.groups)

    def index(self) -> hostpattern.HostIndex:
        return hostpattern.HostIndex(self.hosts, _GroupHosts(self))

    def select(self, pattern: str | Sequence[str], limit: str | None = None) -> list[str]:
        """Hosts matching an Ansible host pattern, narrowed by `--limit`, in inventory order."""
        return hostpattern.select_limited(pattern, self.index(), limit)

    def host_vars(self, host: str) -> dict[str, Any]:
        """The host's variables merged with Ansible's precedence (see the module docstring)."""
        if host not in self.inline_host_vars:
            raise KeyError(f"host {host!r} is not in the inventory")
        groups = self.groups_of(host)
        merged: dict[str, Any] = {}
        for g in groups:
            merged.update(self.groups[g].vars)
        merged.update(self.group_file_vars.get(ALL, {}))
        for g in groups:
            if g != ALL:
                merged.update(self.group_file_vars.get(g, {}))
        merged.update(self.inline_host_vars[host])
        merged.update(self.host_file_vars.get(host, {}))
        return merged

    def host_config(self, host: str, become_password: SecretStr | None = None) -> HostConfig:
        """Resolve a host's connection variables (`become_password` beats inventory passwords)."""
        v = self.host_vars(host)

        def pick(key: str) -> Any:
            for name in (key, *ALIASES.get(key, ())):
                if v.get(name) is not None:
                    return v[name]
            return None

        explicit = frozenset(
            attr
            for attr, key in (("address", V_HOST), ("port", V_PORT), ("user", V_USER), ("key_file", V_KEY))
            if pick(key) is not None
        )
        args = split_ssh_args(str(v.get(V_COMMON_ARGS) or "")) + split_ssh_args(str(v.get(V_EXTRA_ARGS) or ""))
        password = become_password
        for key in ("ansible_become_password", "ansible_become_pass"):
            if password is None and v.get(key) is not None:
                password = SecretStr(str(v[key]))
        safe_vars = {k: (SecretStr(str(val)) if k in SECRET_VARS and val is not None else val) for k, val in v.items()}
        key_file = pick(V_KEY)
        config = HostConfig(
            name=host,
            address=str(pick(V_HOST) or host),
            port=int(pick(V_PORT) or DEFAULT_PORT),
            user=str(pick(V_USER) or DEFAULT_USER),
            key_file=str(Path(str(key_file)).expanduser()) if key_file else None,
            ssh_common_args=tuple(args),
            become=bool(to_bool(v.get(V_BECOME))),
            become_user=str(v.get(V_BECOME_USER) or DEFAULT_BECOME_USER),
            become_method=str(v.get(V_BECOME_METHOD) or "sudo"),
            become_password=password,
            vars=safe_vars,
            explicit=explicit,
        )
        log.debug("resolved host %r", config)
        return config


class _GroupHosts(Mapping[str, Sequence[str]]):
    """Each group's hosts, worked out when a host pattern names the group: all of them up
    front costs groups x hosts, minutes for a range of many hosts under many groups."""

    def __init__(self, inventory: Inventory):
        self._inventory = inventory
        self._done: dict[str, list[str]] = {}

    def __getitem__(self, name: str) -> list[str]:
        if name not in self._inventory.groups:
            raise KeyError(name)
        if name not in self._done:
            self._done[name] = self._inventory.group_hosts(name)
        return self._done[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._inventory.groups)

    def __len__(self) -> int:
        return len(self._inventory.groups)


def _ordered_groups(names: set[str], groups: Mapping[str, Group]) -> list[str]:
    return sorted(names, key=lambda g: (groups[g].depth, groups[g].priority, g))


# ---------------------------------------------------------------- YAML inventories


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_vars(doc: Document, path: tuple[Any, ...], obj: Any, diags: list[Diagnostic]) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        diags.append(doc.diag(path, f"vars must be a mapping of name: value, not {type(obj).__name__}"))
        return {}
    good: dict[str, Any] = {}
    for key, value in obj.items():
        problem = check_var(key, value)
        if problem:
            diags.append(doc.diag((*path, key), problem))
        else:
            good[key] = value
    return good


def _yaml_group(
    doc: Document, path: tuple[Any, ...], name: Any, body: Any, data: InventoryData, diags: list[Diagnostic]
) -> bool:
    problem = check_group_name(name)
    if problem:
        diags.append(doc.diag(path, problem))
        return False
    data.add_group(name)
    if body is None:
        return True
    if not isinstance(body, dict):
        diags.append(doc.diag(path, f"group {name!r} must be a mapping with hosts, children and vars"))
        return True
    for key in body:
        if key not in GROUP_KEYS:
            hint = _suggest(str(key), GROUP_KEYS)
            diags.append(
                doc.diag(
                    (*path, key),
                    f"unknown key {key!r} in group {name!r}{hint}; expected hosts, children, vars",
                )
            )
    if "vars" in body:
        data.add_group(name).vars.update(_check_vars(doc, (*path, "vars"), body["vars"], diags))
    children = body.get("children")
    if children is not None and not isinstance(children, dict):
        diags.append(doc.diag((*path, "children"), "children must be a mapping of group names"))
    elif children:
        for child, child_body in children.items():
            if _yaml_group(doc, (*path, "children", child), child, child_body, data, diags):
                loop = data.add_child(name, child)
                if loop:
                    diags.append(doc.diag((*path, "children", child), loop))
    hosts = body.get("hosts")
    if hosts is not None and not isinstance(hosts, dict):
        diags.append(
            doc.diag((*path, "hosts"), f"hosts must be a mapping of host name: vars, not {type(hosts).__name__}")
        )
    elif hosts:
        for pattern, host_body in hosts.items():
            hpath = (*path, "hosts", pattern)
            try:
                names, port = expand_host_pattern(str(pattern), data.room())
            except ValueError as exc:
                diags.append(doc.diag(hpath, str(exc)))
                continue
            if host_body is not None and not isinstance(host_body, dict):
                diags.append(doc.diag(hpath, f"host {pattern!r} must map to its vars (a mapping) or nothing"))
                continue
            variables = _check_vars(doc, hpath, host_body, diags)
            if port is not None:
                variables[V_PORT] = port
            for host in names:
                data.add_host(name, host, dict(variables))
    return True


@functools.lru_cache(maxsize=1)
def _schemas() -> Any:
    from svcnet.validate_schema import Schemas

    return Schemas.load()


def schema_diagnostics(kind: str, doc: Document) -> list[Diagnostic]:
    """Problems from the project's JSON Schema for `kind` (none if that schema is not available)."""
    try:
        problems = _schemas().validate(kind, doc.obj)
    except (ImportError, AttributeError, KeyError, LookupError, OSError, ValueError, TypeError) as exc:
        log.debug("no %s schema check: %s", kind, exc)
        return []
    return [doc.diag(tuple(p.path), p.message) for p in problems]


def _related(a: str, b: str) -> bool:
    """Same field path, or one inside the other (`[0]` and `[0].hosts`)."""
    short, long_ = sorted((a, b), key=len)
    return long_ == short or (long_.startswith(short) and long_[len(short)] in ".[")


def merge_diagnostics(own: list[Diagnostic], schema: list[Diagnostic]) -> list[Diagnostic]:
    """Our own located checks, plus schema findings about places our checks did not report."""
    return own + [
        d for d in schema if not any(o.file == d.file and (o.line == d.line or _related(o.path, d.path)) for o in own)
    ]


def parse_yaml(doc: Document, data: InventoryData) -> list[Diagnostic]:
    """Add a YAML inventory document (`all: {hosts, children, vars}`) to `data`."""
    if not isinstance(doc.obj, dict):
        return [doc.diag((), NOT_A_MAPPING)]
    diags: list[Diagnostic] = []
    for name, body in doc.obj.items():
        _yaml_group(doc, (name,), name, body, data, diags)
    return merge_diagnostics(diags, schema_diagnostics(SCHEMA_KIND, doc))


# ---------------------------------------------------------------- files and directories


def _file_diag(path: Path | str, message: str) -> Diagnostic:
    return Diagnostic(str(path), 1, 1, "(file)", message)


def _load_yaml_doc(path: Path, diags: list[Diagnostic], budget: AliasBudget) -> Document | None:
    text, err = read_text(path)
    if err:
        diags.append(err)
        return None
    assert text is not None
    result = load_text(str(path), text, budget)
    if result.diagnostics and not result.documents and "holds no YAML document" in result.diagnostics[0].message:
        return Document(str(path), 0, 1, "", None)  # an empty file is allowed (nothing in it)
    diags.extend(result.diagnostics)
    if len(result.documents) > 1:
        diags.append(result.documents[1].diag((), "expected one YAML document, found more"))
    return result.documents[0] if result.documents else None


def _is_yaml_inventory(path: Path, text: str) -> bool:
    if path.suffix in YAML_SUFFIXES:
        return True
    if path.suffix in INI_SUFFIXES:
        return False
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", ";"))), "")
    return not first.lstrip().startswith("[") and first.rstrip().endswith(":")


def _load_source(path: Path, data: InventoryData, diags: list[Diagnostic], budget: AliasBudget) -> None:
    text, err = read_text(path)
    if err:
        diags.append(err)
        return
    assert text is not None
    if _is_yaml_inventory(path, text):
        doc = _load_yaml_doc(path, diags, budget)
        if doc is not None and doc.obj is not None:
            diags.extend(parse_yaml(doc, data))
    else:
        diags.extend(parse_ini(str(path), text, data))


def _vars_files(base: Path) -> list[tuple[str, Path]]:
    """(name, file) pairs under `base` (group_vars or host_vars), in the order Ansible reads them."""
    if not base.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith(_IGNORED_SUFFIXES):
            continue
        if entry.is_file() and entry.suffix in VARS_SUFFIXES:
            out.append((entry.stem if entry.suffix else entry.name, entry))
        elif entry.is_dir():
            for sub in sorted(p for p in entry.rglob("*") if p.is_file()):
                if (
                    sub.suffix in VARS_SUFFIXES
                    and not sub.name.startswith(".")
                    and not sub.name.endswith(_IGNORED_SUFFIXES)
                ):
                    out.append((entry.name, sub))
    return out


def _load_vars_dir(
    base: Path,
    known: Sequence[str],
    into: dict[str, dict[str, Any]],
    diags: list[Diagnostic],
    warns: list[str],
    budget: AliasBudget,
) -> None:
    for name, path in _vars_files(base):
        if name not in known:
            warns.append(f"{path}: {name!r} is not in the inventory; file ignored")
            continue
        doc = _load_yaml_doc(path, diags, budget)
        if doc is None or doc.obj is None:
            continue
        if not isinstance(doc.obj, dict):
            diags.append(doc.diag((), f"a vars file must be a mapping of name: value, not {type(doc.obj).__name__}"))
            continue
        local: list[Diagnostic] = []
        good = _check_vars(doc, (), doc.obj, local)
        diags.extend(local)
        into.setdefault(name, {}).update(good)


def inventory_files(path: Path) -> list[Path]:
    """The inventory files a path stands for: itself, or a directory's yaml/yml/ini files."""
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix in (*YAML_SUFFIXES, *INI_SUFFIXES) and not p.name.startswith(".")
        )
    return [path]


def _depths(data: InventoryData) -> dict[str, int]:
    depth: dict[str, int] = {ALL: 0}
    todo = [ALL]
    while todo:  # longest path from `all` (loops were refused when added)
        g = todo.pop()
        for child in data.groups[g].children:
            if depth.get(child, -1) < depth[g] + 1:
                depth[child] = depth[g] + 1
                todo.append(child)
    return depth


def _finish(data: InventoryData) -> None:
    """Ansible's implicit structure: parentless groups hang under `all`; `ungrouped` hosts."""
    for name in list(data.groups):
        if name != ALL and not data.groups[name].parents:
            data.add_child(ALL, name)
    grouped = {h for g in data.groups.values() if g.name not in (ALL, UNGROUPED) for h in g.hosts}
    if UNGROUPED in data.groups:
        data.groups[UNGROUPED].remove(grouped)
    for host in data.hosts:
        if host not in grouped:
            data.add_host(UNGROUPED, host)
    data.add_child(ALL, UNGROUPED)


def _freeze(data: InventoryData) -> dict[str, Group]:
    depth = _depths(data)
    groups: dict[str, Group] = {}
    for g in data.groups.values():
        prio = g.vars.get(V_PRIORITY, 1)
        groups[g.name] = Group(
            g.name,
            tuple(g.hosts),
            tuple(g.children),
            tuple(g.parents),
            depth.get(g.name, 1),
            int(prio),
            dict(g.vars),
        )
    return groups


def load_inventory(paths: str | Path | Sequence[str | Path]) -> Inventory:
    """Load one or more inventory sources (files or directories; later sources win)."""
    sources = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    data = InventoryData()
    diags: list[Diagnostic] = []
    bases: list[Path] = []
    files: list[Path] = []
    for src in sources:
        if not src.exists():
            diags.append(_file_diag(src, "no such inventory file or directory"))
            continue
        found = inventory_files(src)
        if not found:
            diags.append(_file_diag(src, "directory holds no inventory file (*.yaml, *.yml, *.ini)"))
        files.extend(found)
        base = src if src.is_dir() else src.parent
        if base not in bases:
            bases.append(base)
    budget = AliasBudget()  # one for every file this load reads, vars files included
    for path in files:
        _load_source(path, data, diags, budget)
    if diags:
        raise InventoryError(diags)
    _finish(data)
    group_file_vars: dict[str, dict[str, Any]] = {}
    host_file_vars: dict[str, dict[str, Any]] = {}
    warns: list[str] = []
    for base in bases:
        _load_vars_dir(base / GROUP_VARS, list(data.groups), group_file_vars, diags, warns, budget)
        _load_vars_dir(base / HOST_VARS, list(data.hosts), host_file_vars, diags, warns, budget)
    if diags:
        raise InventoryError(diags)
    inv = Inventory(
        hosts=tuple(data.hosts),
        groups=_freeze(data),
        inline_host_vars={h: dict(v) for h, v in data.hosts.items()},
        group_file_vars=group_file_vars,
        host_file_vars=host_file_vars,
        sources=tuple(str(f) for f in files),
        warnings=tuple(warns),
    )
    for w in warns:
        log.warning("%s", w)
    return inv
