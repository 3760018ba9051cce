"""`canonical_sort` against kube-proxy's own `sortIPTablesRules` (pkg/proxy/iptables/proxier_test.go).

Upstream's sort, which every golden comparison relies on: tables by name; chains KUBE-NODEPORTS,
KUBE-SERVICES, the other KUBE-* chains by name, then the rest by name; a *stable* sort of the rules
of filter/nat KUBE-NODEPORTS and filter/nat KUBE-SERVICES by "service name" (the comment up to its
first space or ':'), nat KUBE-SERVICES' "must be the last rule" rule last; every other chain keeps
the proxier's rule order. A plain `sorted()` of chains or rules gets each of these wrong, so the
cases below are built where it does.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from vectors import vector_dir, vector_names

from svcnet.render.dump import canonical_sort

CASES = Path(__file__).resolve().parent / "canonical"
# The tables and chains upstream sorts rules in (filter and nat only).
SORTED_CHAINS = {("filter", "KUBE-NODEPORTS"), ("nat", "KUBE-NODEPORTS"), ("filter", "KUBE-SERVICES"),
                 ("nat", "KUBE-SERVICES")}


def naive_sort(text: str) -> str:
    """What a plain sort would print: tables, chains and the same chains' rules in byte order."""
    tables: dict[str, tuple[list[str], dict[str, list[str]], list[str]]] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith("*"):
            name = line[1:]
            tables[name] = ([], {}, [])
        elif line.startswith(":"):
            tables[name][0].append(line)
        elif line.startswith("-A "):
            chain = line.split()[1]
            tables[name][1].setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            tables[name][2].append(line)
    out = []
    for name in sorted(tables):
        decls, rules, deleted = tables[name]
        chains = sorted(d[1:].split()[0] for d in decls)
        out += [f"*{name}", *sorted(decls)]
        for chain in chains:
            found = rules.get(chain, [])
            out += sorted(found) if (name, chain) in SORTED_CHAINS else found
        out += [*sorted(deleted), "COMMIT"]
    return "\n".join(out) + "\n"


def test_sorts_as_kube_proxy_where_a_naive_sort_does_not():
    """svc1 before svc10 (the key stops at ':'), svc1's ports and rules keep their order (stable),
    nat's last rule last but filter's by its name, KUBE-NODEPORTS and KUBE-SERVICES first, KUBE-*
    before other chains (KUBECUSTOM is not KUBE-*), unsorted chains untouched, `-X` after the rules
    in chain order, counters kept, comment and blank lines dropped."""
    given = (CASES / "naive-differs.input.rules").read_text()
    want = (CASES / "naive-differs.expected.rules").read_text()
    assert canonical_sort(given) == want
    assert naive_sort(given) != want  # the case tells the two apart
    assert canonical_sort(want) == want


def _full_dumps() -> list[str]:
    return [n for n in vector_names() if (vector_dir() / f"{n}.expected.rules").read_text().startswith("*")]


def _service(rule: str) -> str:
    """The service a rule belongs to, read independently of svcnet's sort key."""
    found = re.search(r'--comment "?([^"]*)', rule)
    return re.split(r"[ :]", found.group(1))[0] if found else ""


def _shuffled(text: str, rng: random.Random) -> str:
    """The same rules as a proxier could have written them: tables, chain declarations and services
    in another order, rules of different chains interleaved; each service's and each unsorted
    chain's own rule order kept (upstream's sort keeps those as written)."""
    blocks = []
    for block in text.split("COMMIT\n")[:-1]:
        lines = block.splitlines()
        table, decls = lines[0][1:], [ln for ln in lines if ln.startswith(":")]
        deleted = [ln for ln in lines if ln.startswith("-X ")]
        by_chain: dict[str, list[str]] = {}
        for ln in lines:
            if ln.startswith("-A "):
                by_chain.setdefault(ln.split()[1], []).append(ln)
        queues = []
        for chain, rules in by_chain.items():
            if (table, chain) not in SORTED_CHAINS:
                queues.append(rules)
                continue
            groups: dict[str, list[str]] = {}
            for r in rules:
                groups.setdefault(_service(r), []).append(r)
            order = list(groups.values())
            rng.shuffle(order)
            queues.append([r for g in order for r in g])
        rng.shuffle(decls)
        merged = []
        while any(queues):
            q = rng.choice([q for q in queues if q])
            merged.append(q.pop(0))
        blocks.append("\n".join([f"*{table}", *decls, *merged, *deleted, "COMMIT"]))
    rng.shuffle(blocks)
    return "\n".join(blocks) + "\n"


@pytest.mark.parametrize("name", _full_dumps())
def test_kube_proxy_expectations_sort_back_from_any_service_order(name: str):
    """Upstream's expected outputs are sortIPTablesRules' own output: they are fixed points, and
    any order a proxier could write the same rules in sorts back to them."""
    want = (vector_dir() / f"{name}.expected.rules").read_text()
    assert canonical_sort(want) == want
    rng = random.Random(name)
    shuffles = [_shuffled(want, rng) for _ in range(5)]
    assert any(s != want for s in shuffles)
    for shuffled in shuffles:
        assert canonical_sort(shuffled) == want
