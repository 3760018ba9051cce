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
    assert {"overall", "repeated-1-full", "repeated-9-full-resync"} <= set(FULL)
    assert {f"repeated-{i}-" for i in range(2, 9)} == {n[:11] for n in PARTIAL}
    assert realpath.CANNOT_EXPRESS.keys() <= set(ALL)


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
