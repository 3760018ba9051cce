"""Parse and print `iptables-save`/`iptables-restore` text, and kube-proxy's canonical sort.

This follows kube-proxy's `pkg/util/iptables/testing/parse.go` (`ParseIPTablesDump`) and the
`sortIPTablesRules` helper of its proxier tests, so golden comparisons use the same order.
Rules are kept as the text after `-A CHAIN ` (their "args").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from svcnet.render.chains import KUBE_NODEPORTS, KUBE_SERVICES, OWNED_CHAIN_PREFIX, TABLE_FILTER, TABLE_NAT


class DumpError(ValueError):
    """Malformed iptables dump; carries the 1-based line number."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Chain:
    name: str
    policy: str = "-"
    counters: str = "[0:0]"
    rules: list[str] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass
class Dump:
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        return self.tables.setdefault(name, Table(name))

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t else None


def parse_dump(text: str, strict: bool = True) -> Dump:
    """Parse iptables-save/restore text into tables and chains.

    With `strict`, a rule for an undeclared chain, a rule outside a table or a missing
    COMMIT is an error (as in kube-proxy's parser); otherwise chains are created on demand,
    which suits `iptables-save` output of single chains.
    """
    dump = Dump()
    table: Table | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = dump.table(line[1:])
            continue
        if line == "COMMIT":
            table = None
            continue
        if table is None:
            raise DumpError(lineno, f"{line.split()[0]!r} outside a table")
        if line.startswith(":"):
            parts = line[1:].split()
            name = parts[0]
            chain = table.chains.setdefault(name, Chain(name))
            if len(parts) > 1:
                chain.policy = parts[1]
            if len(parts) > 2:
                chain.counters = parts[2]
        elif line.startswith("-A "):
            name, _, args = line[3:].partition(" ")
            found = table.chains.get(name)
            if found is None:
                if strict:
                    raise DumpError(lineno, f"rule for undeclared chain {name}")
                found = table.chains.setdefault(name, Chain(name))
            found.rules.append(args)
        elif line.startswith("-X "):
            name = line[3:].strip()
            found = table.chains.get(name)
            if found is None:
                if strict:
                    raise DumpError(lineno, f"-X of undeclared chain {name}")
                found = table.chains.setdefault(name, Chain(name))
            found.deleted = True
        elif strict:
            raise DumpError(lineno, f"unexpected line {line[:40]!r}")
    if table is not None and strict:
        raise DumpError(len(text.splitlines()), f"table {table.name} has no COMMIT")
    return dump


def _chain_order(name: str) -> tuple[int, str]:
    if name == KUBE_NODEPORTS:
        return (0, "")
    if name == KUBE_SERVICES:
        return (1, "")
    return (2 if name.startswith(OWNED_CHAIN_PREFIX) else 3, name)


def _service_name(rule: str) -> str:
    """The comment value up to the first space or ':' (kube-proxy tests' sort key)."""
    marker = "--comment "
    i = rule.find(marker)
    if i < 0:
        return ""
    value = rule[i + len(marker):]
    if value.startswith('"'):
        value = value[1:]
    for j, ch in enumerate(value):
        if ch in ' :"':
            return value[:j]
    return value


def _sorted_rules(table: str, chain: str, rules: list[str]) -> list[str]:
    if chain == KUBE_NODEPORTS or (chain == KUBE_SERVICES and table == TABLE_FILTER):
        return sorted(rules, key=_service_name)
    if chain == KUBE_SERVICES and table == TABLE_NAT:
        return sorted(rules, key=lambda r: ("must be the last rule" in r, _service_name(r)))
    return list(rules)


def to_text(dump: Dump, canonical: bool = False) -> str:
    """Print a dump; with `canonical`, in the order kube-proxy's tests compare."""
    out: list[str] = []
    tables = sorted(dump.tables) if canonical else list(dump.tables)
    for tname in tables:
        table = dump.tables[tname]
        chains = sorted(table.chains, key=_chain_order) if canonical else list(table.chains)
        out.append(f"*{tname}")
        for cname in chains:
            c = table.chains[cname]
            out.append(f":{cname} {c.policy} {c.counters}")
        for cname in chains:
            c = table.chains[cname]
            rules = _sorted_rules(tname, cname, c.rules) if canonical else c.rules
            out.extend(f"-A {cname} {r}" for r in rules)
        for cname in chains:
            if table.chains[cname].deleted:
                out.append(f"-X {cname}")
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def canonical_sort(text: str) -> str:
    """kube-proxy's `sortIPTablesRules`: parse, then print in canonical order."""
    return to_text(parse_dump(text), canonical=True)
