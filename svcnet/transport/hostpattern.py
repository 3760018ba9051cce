"""Ansible host patterns, evaluated over an inventory's hosts and groups (pure functions).

Follows `ansible.inventory.manager.InventoryManager`:

- a pattern splits on `,` (or on `:` outside brackets): `web:db`, `web,db`;
- terms are ordered as Ansible orders them: plain terms (union), then `&term`
  (intersection), then `!term` (exclusion); no plain term means `all`;
- a term matches group names and host names by fnmatch (`node*`), or by regex when it
  starts with `~` (`~node[12]`, `re.match`, i.e. anchored at the start);
- a term may carry a subscript `web[0]`, `web[-1]`, `web[0:2]` (inclusive, as Ansible);
- `@file` reads host names from a file, one per line (`--limit @retry`).

The result keeps inventory order and holds each host once.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ALL = "all"
_TERM_RE = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT_RE = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]+)?)\]$")
_WILDCARD_CHARS = (".", "?", "*", "[")


class PatternError(ValueError):
    """A host pattern cannot be evaluated (bad regex, bad subscript, unreadable @file)."""


@dataclass(frozen=True, slots=True)
class HostIndex:
    """What patterns match against: hosts in inventory order, and every group's hosts.

    `groups` maps a group name to all hosts of that group and of its descendants, in
    inventory order; it must contain `all`.
    """

    hosts: tuple[str, ...]
    groups: Mapping[str, Sequence[str]]


def split_pattern(pattern: str | Sequence[str]) -> list[str]:
    """Split a pattern into terms: `a:&b,!c` -> [`a`, `&b`, `!c`] (IPv6 addresses stay whole)."""
    if not isinstance(pattern, str):
        return [t for p in pattern for t in split_pattern(p)]
    pieces = pattern.split(",") if "," in pattern else [pattern]
    terms: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if piece.count("[") != piece.count("]"):
            raise PatternError(f"unbalanced brackets in host pattern {piece!r}")
        if _is_ip_address(piece):
            terms.append(piece)
        else:
            terms.extend(t.strip() for t in _TERM_RE.findall(piece) if t.strip())
    return terms


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def order_terms(terms: Sequence[str]) -> list[str]:
    """Ansible's `order_patterns`: unions first, then `&` intersections, then `!` exclusions."""
    regular = [t for t in terms if t and t[0] not in "!&"]
    inter = [t for t in terms if t.startswith("&")]
    exclude = [t for t in terms if t.startswith("!")]
    return (regular or [ALL]) + inter + exclude


def _compile(term: str) -> re.Pattern[str]:
    try:
        return re.compile(term[1:]) if term.startswith("~") else re.compile(fnmatch.translate(term))
    except re.error as exc:
        raise PatternError(f"invalid regular expression in host pattern {term!r}: {exc}") from exc


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    """`web[1:3]` -> (`web`, (1, 3)); `web[-1]` -> (`web`, (-1, None)); `~re[..]` is never split."""
    if term.startswith("~"):
        return term, None
    m = _SUBSCRIPT_RE.match(term)
    if not m:
        return term, None
    base, idx, start, _sep, end = m.groups()  # `_sep` is `:` or Ansible's old `-`
    if idx is not None:
        return base, (int(idx), None)
    return base, (int(start), int(end) if end is not None else -1)


def _apply_subscript(hosts: list[str], sub: tuple[int, int | None] | None) -> list[str]:
    if sub is None:
        return hosts
    start, end = sub
    if end is None:
        return [hosts[start]] if -len(hosts) <= start < len(hosts) else []
    if end == -1:
        end = len(hosts) - 1
    return hosts[start : end + 1]


def _read_host_file(term: str) -> list[str]:
    path = Path(term[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PatternError(f"cannot read host list {path}: {exc.strerror or exc}") from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _dedup(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def match_term(term: str, index: HostIndex) -> list[str]:
    """Hosts matched by one term (without its `!`/`&` prefix), in match order, deduplicated."""
    if term.startswith("@"):
        wanted = set(_read_host_file(term))
        return [h for h in index.hosts if h in wanted]
    base, sub = _split_subscript(term)
    if base in (ALL, "*") and sub is None:
        return list(index.hosts)
    regex = _compile(base)
    results: list[str] = []
    groups = [g for g in index.groups if regex.match(g)]
    for group in groups:
        results.extend(index.groups[group])
    if not groups or base.startswith("~") or any(c in base for c in _WILDCARD_CHARS):
        results.extend(h for h in index.hosts if regex.match(h))
    return _apply_subscript(_dedup(results), sub)


def unmatched_terms(pattern: str | Sequence[str], index: HostIndex) -> list[str]:
    """Terms that match no host (Ansible warns "Could not match supplied host pattern")."""
    return [t for t in split_pattern(pattern) if not match_term(t.lstrip("!&"), index)]


def select(pattern: str | Sequence[str], index: HostIndex) -> list[str]:
    """Hosts a pattern selects, in inventory order, each once."""
    hosts: list[str] = []
    for term in order_terms(split_pattern(pattern)):
        if term.startswith("!"):
            drop = set(match_term(term[1:], index))
            hosts = [h for h in hosts if h not in drop]
        elif term.startswith("&"):
            keep = set(match_term(term[1:], index))
            hosts = [h for h in hosts if h in keep]
        else:
            seen = set(hosts)
            hosts.extend(h for h in match_term(term, index) if h not in seen)
    order = {h: i for i, h in enumerate(index.hosts)}
    return sorted(_dedup(hosts), key=lambda h: order.get(h, len(order)))


def select_limited(pattern: str | Sequence[str], index: HostIndex, limit: str | None = None) -> list[str]:
    """`hosts:` of a play narrowed by `--limit` (the two selections intersect)."""
    hosts = select(pattern, index)
    if limit is None or not limit.strip():
        return hosts
    allowed = set(select(limit, index))
    return [h for h in hosts if h in allowed]
