"""Every kube-proxy vector through the product's real path: description files → load → validate
→ model → desired → render (see realpath.py), compared with kube-proxy's own expectation.

Full-sync vectors are compared whole (or the one chain they scope). Partial-sync vectors
(`repeated-2..8`, kube-proxy's MinimizeIPTablesRestore) are compared on what kube-proxy always
writes, until svcnet applies incrementally: the filter table, every nat chain kube-proxy wrote
(the fixed chains and the changed services' chains) and its `-X` deletions; the chains svcnet
adds are exactly those a partial sync leaves untouched (already present, of unchanged services).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import realpath
import yaml
from vectors import load_vector, vector_dir, vector_names

from svcnet.diagnostics import errors, warnings
from svcnet.model.load import check_paths
from svcnet.render.dump import Dump, canonical_sort, parse_dump

ALL = vector_names()
EXPRESSIBLE = [n for n in ALL if n not in realpath.CANNOT_EXPRESS]
PARTIAL = [n for n in EXPRESSIBLE if load_vector(n).sync_mode == "partial"]
FULL = [n for n in EXPRESSIBLE if n not in PARTIAL]


def _raw(name: str) -> realpath.Raw:
    return yaml.safe_load((vector_dir() / f"{name}.input.yaml").read_text())


def _run(name: str, tmp_path: Path, rewrite: bool = True) -> realpath.RealPath:
    return realpath.run(_raw(name), tmp_path, rewrite)


def _chain_rules(text: str, table: str, chain: str) -> list[str]:
    found = parse_dump(text).chain(table, chain)
    return [f"-A {chain} {rule}" for rule in found.rules] if found else []


@pytest.mark.parametrize("name", FULL)
def test_full_sync_vector_through_the_real_path(name: str, tmp_path: Path) -> None:
    vec = load_vector(name)
    result = _run(name, tmp_path)
    assert result.errors == ()
    if vec.expect_scope is None:
        assert canonical_sort(result.restore) == vec.expected
    else:
        table, chain = vec.expect_scope
        assert _chain_rules(result.restore, table, chain) == [ln for ln in vec.expected.splitlines() if ln.strip()]


def _owner(rules: list[str]) -> str:
    """The `ns/name` a service chain belongs to, from its first rule's comment."""
    comment = rules[0].split("--comment ", 1)[1].lstrip('"')
    return comment.split(":", 1)[0].split(" ", 1)[0]


def _chains(dump: Dump, table: str) -> dict[str, tuple[list[str], bool]]:
    t = dump.tables.get(table)
    return {name: (c.rules, c.deleted) for name, c in t.chains.items()} if t else {}


@pytest.mark.parametrize("name", PARTIAL)
def test_partial_sync_vector_on_the_chains_kube_proxy_always_writes(name: str, tmp_path: Path) -> None:
    vec = load_vector(name)
    sync = vec.raw["sync"]
    result = _run(name, tmp_path)
    assert result.errors == ()
    got, want = parse_dump(canonical_sort(result.restore)), parse_dump(vec.expected)
    assert _chains(got, "filter") == _chains(want, "filter")
    ours, theirs = _chains(got, "nat"), _chains(want, "nat")
    assert {c: ours.get(c) for c in theirs} == theirs
    skipped = set(ours) - set(theirs)
    assert skipped <= set(sync["existing_nat_chains"])
    assert not {_owner(ours[c][0]) for c in skipped} & set(sync["changed_services"])


def test_every_vector_is_run_or_named_as_inexpressible() -> None:
    assert set(FULL) | set(PARTIAL) | set(realpath.CANNOT_EXPRESS) == set(ALL)
    assert {"overall", "bad-ips", "repeated-1-full", "repeated-9-full-resync"} <= set(FULL)
    assert {f"repeated-{i}-" for i in range(2, 9)} == {n[:11] for n in PARTIAL}
    assert realpath.CANNOT_EXPRESS.keys() <= set(ALL)


def test_every_rewrite_names_the_rule_that_stops_the_vector_as_written() -> None:
    """What is still rewritten is what an API server would never store (or svcnet's IPv6 limit);
    the API's spelling rules (leading zeros, padded source ranges) need no rewrite any more."""
    named = [r for n in ALL for r in realpath.rewrites(_raw(n))]
    assert named and all(r.rule for r in named)
    assert all(r.rule.startswith(("the API server", "ValidateService", "svcnet's own")) for r in named)
    assert realpath.rewrites(_raw("bad-ips")) == ()
    assert all(why for why, _ in realpath.CANNOT_EXPRESS.values())


# The API server's warnings for bad-ips (GetWarningsForIP/GetWarningsForCIDR), in document order.
BAD_IPS_WARNINGS = [
    "spec.clusterIP: warning: non-standard IP address \"172.30.0.041\" will be considered invalid in a "
    "future Kubernetes release: use \"172.30.0.41\"",
    "spec.externalIPs[0]: warning: non-standard IP address \"192.168.099.022\"",
    "spec.loadBalancerSourceRanges[0]: warning: non-standard CIDR value \"203.0.113.000/025\" will be "
    "considered invalid in a future Kubernetes release: use \"203.0.113.0/25\"",
    "status.loadBalancer.ingress[0].ip: warning: non-standard IP address \"1.2.3.004\"",
    "endpoints[0].addresses[0]: warning: non-standard IP address \"10.180.00.001\"",
]


def test_bad_ips_spellings_go_through_as_written_with_located_warnings(tmp_path: Path) -> None:
    docs, reasons = realpath.describe(_raw("bad-ips"))
    path = realpath.write(docs, tmp_path)
    text = path.read_text()
    assert reasons == ()
    assert all(v in text for v in ("172.30.0.041", "192.168.099.022", "203.0.113.000/025", "1.2.3.004",
                                   "10.180.00.001"))
    checked = check_paths([path])
    assert errors(checked.diagnostics) == []
    found = [str(d) for d in warnings(checked.diagnostics)]
    assert len(found) == len(BAD_IPS_WARNINGS)
    lines = text.splitlines()
    for got, want in zip(found, BAD_IPS_WARNINGS, strict=True):
        where, _, rest = got.partition(": ")
        assert rest.startswith(want), got
        file, line, col = where.rsplit(":", 2)
        value = rest.split('"')[1]
        assert file == str(path) and lines[int(line) - 1][int(col) - 1:].lstrip("'\"").startswith(value), got


def test_overall_keeps_its_space_padded_source_range(tmp_path: Path) -> None:
    docs, _ = realpath.describe(_raw("overall"))
    svc5 = next(d for d in docs if d["metadata"].get("name") == "svc5")
    assert svc5["spec"]["loadBalancerSourceRanges"] == [" 203.0.113.0/25"]


@pytest.mark.parametrize("name", sorted(realpath.CANNOT_EXPRESS))
def test_inexpressible_vector_is_refused_for_the_stated_reason(name: str, tmp_path: Path) -> None:
    _, pattern = realpath.CANNOT_EXPRESS[name]
    result = _run(name, tmp_path)
    assert result.errors
    assert all(re.search(pattern, e) for e in result.errors), result.errors


REWRITTEN = [(n, i) for n in EXPRESSIBLE for i in range(len(realpath.rewrites(_raw(n))))]


@pytest.mark.parametrize(("name", "index"), REWRITTEN)
def test_each_rewrite_is_needed(name: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any one rewrite, svcnet refuses the vector or renders other rules."""
    raw = _raw(name)
    kept = tuple(r for i, r in enumerate(realpath.rewrites(raw)) if i != index)
    monkeypatch.setattr(realpath, "rewrites", lambda _raw: kept)
    result = realpath.run(raw, tmp_path)
    vec = load_vector(name)
    if result.errors:
        return
    if vec.expect_scope is None:
        assert canonical_sort(result.restore) != vec.expected
    else:
        table, chain = vec.expect_scope
        assert _chain_rules(result.restore, table, chain) != [ln for ln in vec.expected.splitlines() if ln.strip()]
