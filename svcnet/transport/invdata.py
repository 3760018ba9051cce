"""Inventory building blocks shared by the YAML and INI readers.

`InventoryData` collects groups, hosts and their inline variables in the order the
sources declare them; `check_var` validates Ansible connection variables where they are
written (so errors carry a location); `expand_host_pattern` expands `node[01:03]:2222`.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from svcnet.transport.hostconfig import SUPPORTED_BECOME_METHODS, SshArgsError, parse_ssh_args, split_ssh_args

ALL, UNGROUPED = "all", "ungrouped"
# Group names must be usable in host patterns (no `:,!&[]~*?` or blanks).
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_RANGE_RE = re.compile(r"\[[^\]]*\]")
# Host entries (a host once for each group that lists it) one inventory may hold: far above any
# real cluster (Kubernetes supports 5,000 nodes), far below what exhausts memory.
MAX_HOST_ENTRIES = 100_000
_INTEGER_RE = re.compile(r"^\s*-?[0-9]{1,18}\s*$")  # what int() reads (see _is_number)

# Ansible connection variables svcnet reads; ansible_ssh_* spellings are old aliases.
V_HOST, V_PORT, V_USER = "ansible_host", "ansible_port", "ansible_user"
V_KEY = "ansible_ssh_private_key_file"
V_COMMON_ARGS, V_EXTRA_ARGS = "ansible_ssh_common_args", "ansible_ssh_extra_args"
V_BECOME, V_BECOME_USER, V_BECOME_METHOD = "ansible_become", "ansible_become_user", "ansible_become_method"
V_PRIORITY = "ansible_group_priority"
ALIASES = {
    V_HOST: ("ansible_ssh_host",),
    V_PORT: ("ansible_ssh_port",),
    V_USER: ("ansible_ssh_user",),
    V_KEY: ("ansible_private_key_file",),
}

_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})


def to_bool(value: Any) -> bool | None:
    """Ansible's `boolean()`: yes/no/true/false/on/off/1/0 (any case); None if not a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def _is_number(text: str) -> bool:
    """ASCII digits, few enough for int(): str.isdigit() also takes '²', and int() refuses more
    than 4,300 digits (sys.get_int_max_str_digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _word(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if any(c.isspace() for c in value):
        return "must not contain blanks"
    return None


def _port(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "must be a port number"
    if isinstance(value, str) and not _is_number(value.strip()):
        return f"must be a port number, not {value!r}"
    if not 1 <= int(value) <= 65535:
        return f"{value} is out of range 1-65535"
    return None


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _ssh_args(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string of ssh arguments"
    try:
        parse_ssh_args(split_ssh_args(value))
    except SshArgsError as exc:
        return str(exc)
    return None


def _boolean(value: Any) -> str | None:
    return None if to_bool(value) is not None else f"must be a boolean (true/false), not {value!r}"


def _method(value: Any) -> str | None:
    if value in SUPPORTED_BECOME_METHODS:
        return None
    return f"{value!r} is not supported (svcnet supports: {', '.join(SUPPORTED_BECOME_METHODS)})"


def _integer(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok or (isinstance(value, str) and _INTEGER_RE.match(value)) else "must be an integer"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    V_HOST: _word,
    V_PORT: _port,
    V_USER: _word,
    V_KEY: _string,
    V_COMMON_ARGS: _ssh_args,
    V_EXTRA_ARGS: _ssh_args,
    V_BECOME: _boolean,
    V_BECOME_USER: _word,
    V_BECOME_METHOD: _method,
    V_PRIORITY: _integer,
    "ansible_become_password": _string,
    "ansible_become_pass": _string,
}
for _canon, _aliases in ALIASES.items():
    for _alias in _aliases:
        _CHECKS[_alias] = _CHECKS[_canon]


def check_var(key: Any, value: Any) -> str | None:
    """Why an inventory variable is invalid, or None. Unknown variables are free-form."""
    if not isinstance(key, str) or not key:
        return f"variable name {key!r} must be a non-empty string"
    check = _CHECKS.get(key)
    if check is None or value is None:
        return None
    problem = check(value)
    return f"{key}: {problem}" if problem else None


def check_group_name(name: Any) -> str | None:
    if not isinstance(name, str) or not GROUP_NAME_RE.match(name):
        return f"invalid group name {name!r} (letters, digits, '_', '.', '-'; usable in host patterns)"
    return None


def _too_many(pattern: str, count: int, limit: int) -> ValueError:
    return ValueError(
        f"host pattern {pattern!r} would add {count:,} or more host entries; the inventory has room for "
        f"{max(limit, 0):,} more (at most {MAX_HOST_ENTRIES:,})"
    )


def _range_items(pattern: str, body: str, limit: int) -> list[str]:
    """The names one `[start:end:step]` stands for; counted before they are built."""
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{body}] must be [start:end] or [start:end:step]")
    beg, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError(f"host range [{body}] has no end")
    if not _is_number(step_text) or int(step_text) < 1:
        raise ValueError(f"host range [{body}] step must be a positive integer")
    step = int(step_text)
    if _is_number(beg) and _is_number(end):
        width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
        if width and len(end) != width:
            raise ValueError(f"host range [{body}]: zero-padded start and end must have the same width")
        if int(beg) > int(end):
            raise ValueError(f"host range [{body}]: start is after end")
        numbers = range(int(beg), int(end) + 1, step)
        if len(numbers) > limit:
            raise _too_many(pattern, len(numbers), limit)
        return [str(i).zfill(width) for i in numbers]
    if len(beg) == 1 and len(end) == 1 and beg in string.ascii_letters and end in string.ascii_letters:
        i_beg, i_end = string.ascii_letters.index(beg), string.ascii_letters.index(end)
        if i_beg > i_end:
            raise ValueError(f"host range [{body}]: start is after end")
        return list(string.ascii_letters[i_beg : i_end + 1 : step])
    raise ValueError(f"host range [{body}] must be numeric or single letters")




def expand_hostname_range(text: str, limit: int = MAX_HOST_ENTRIES) -> list[str]:
    """Ansible's `node[01:03]` / `db-[a:c]` / `n[1:9:2]` expansion (ranges may repeat).

    More than `limit` names is an error, found before any is built: a dozen characters such as
    `n[0:99999999]` would otherwise take gigabytes.
    """
    pieces: list[list[str]] = []
    count, rest = 1, text
    while m := _RANGE_RE.search(rest):
        items = _range_items(text, m.group()[1:-1], limit)
        count *= len(items)
        if count > limit:
            raise _too_many(text, count, limit)
        pieces += [[rest[: m.start()]], items]
        rest = rest[m.end() :]
    if count > limit:  # a single name where the inventory is full
        raise _too_many(text, count, limit)
    pieces.append([rest])
    return ["".join(parts) for parts in itertools.product(*pieces)]


def expand_host_pattern(text: str, limit: int = MAX_HOST_ENTRIES) -> tuple[list[str], int | None]:
    """`node[01:02]:2222` -> (["node01", "node02"], 2222); `[::1]:22` and bare IPv6 work too.

    More than `limit` host names is an error (see `expand_hostname_range`).
    """
    text = text.strip()
    port: int | None = None
    bracketed = re.match(r"^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$", text)  # [ipv6]:port
    if bracketed and bracketed.group(1).count(":") >= 2:
        text, port = bracketed.group(1), int(bracketed.group(2))
    else:
        depth, last = 0, -1
        colons = 0
        for i, ch in enumerate(text):
            depth += ch == "["
            depth -= ch == "]"
            if ch == ":" and depth == 0:
                colons += 1
                last = i
        if colons == 1 and _is_number(text[last + 1 :]):
            text, port = text[:last], int(text[last + 1 :])
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    names = expand_hostname_range(text, limit) if ":" not in text or "[" in text else [text]
    for name in names:
        if not name or not HOST_NAME_RE.match(name):
            raise ValueError(f"invalid host name {name!r}")
    return names, port


@dataclass
class GroupData:
    """A group as declared: its inline vars, direct hosts and children, in declaration order."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    host_set: set[str] = field(default_factory=set, repr=False)  # `hosts` for O(1) membership tests

    def add(self, host: str) -> None:
        if host not in self.host_set:
            self.host_set.add(host)
            self.hosts.append(host)

    def remove(self, drop: set[str]) -> None:
        self.hosts[:] = [h for h in self.hosts if h not in drop]
        self.host_set -= drop


@dataclass
class InventoryData:
    """Mutable collector the readers fill; `Inventory` is built from it once."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, GroupData] = field(default_factory=lambda: {ALL: GroupData(ALL)})
    entries: int = 0  # hosts added, each time it is added

    def add_group(self, name: str) -> GroupData:
        return self.groups.setdefault(name, GroupData(name))

    def room(self) -> int:
        """How many more host entries the inventory may take (see MAX_HOST_ENTRIES)."""
        return MAX_HOST_ENTRIES - self.entries

    def add_host(self, group: str, host: str, variables: dict[str, Any] | None = None) -> None:
        self.entries += 1
        self.hosts.setdefault(host, {}).update(variables or {})
        self.add_group(group).add(host)

    def add_child(self, parent: str, child: str) -> str | None:
        """Make `child` a child group of `parent`; the reason if that would make a loop."""
        if parent == child or parent in self.descendants(child):
            return f"adding group {child!r} as a child of {parent!r} makes a loop"
        if child == ALL:
            return "group 'all' cannot be a child group"
        pg, cg = self.add_group(parent), self.add_group(child)
        if child not in pg.children:
            pg.children.append(child)
        if parent not in cg.parents:
            cg.parents.append(parent)
        return None

    def descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].children) if name in self.groups else []
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.groups[g].children)
        return seen
