"""Ansible host patterns: every operator, subscripts, limits, and inventory order."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.transport.hostpattern import (
    HostIndex,
    PatternError,
    order_terms,
    select,
    select_limited,
    split_pattern,
    unmatched_terms,
)

HOSTS = ("cp1", "node1", "node2", "node3", "db1", "bastion")
INDEX = HostIndex(
    HOSTS,
    {
        "all": list(HOSTS),
        "control": ["cp1"],
        "workers": ["node1", "node2", "node3"],
        "db": ["db1", "node3"],
        "staging": ["node2", "node3", "db1"],
        "ungrouped": ["bastion"],
    },
)


def test_split_pattern_on_colon_and_comma() -> None:
    assert split_pattern("web:&db:!x") == ["web", "&db", "!x"]
    assert split_pattern("web, db ,!x") == ["web", "db", "!x"]
    assert split_pattern("node[1:3]:db") == ["node[1:3]", "db"]  # ranges keep their colon
    assert split_pattern("fe80::1") == ["fe80::1"]
    assert split_pattern(["a:b", "c"]) == ["a", "b", "c"]


def test_order_terms_like_ansible() -> None:
    assert order_terms(["!x", "&y", "a", "b"]) == ["a", "b", "&y", "!x"]
    assert order_terms(["!x"]) == ["all", "!x"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", list(HOSTS)),
        ("*", list(HOSTS)),
        ("node2", ["node2"]),
        ("workers", ["node1", "node2", "node3"]),
        ("control:db", ["cp1", "node3", "db1"]),  # union, inventory order
        ("db,control", ["cp1", "node3", "db1"]),
        ("workers:&staging", ["node2", "node3"]),  # intersection
        ("workers:!staging", ["node1"]),  # exclusion
        ("!workers", ["cp1", "db1", "bastion"]),  # exclusion alone means all minus
        ("workers:&staging:!db", ["node2"]),
        ("!db:workers", ["node1", "node2"]),  # order of writing does not matter
        ("node*", ["node1", "node2", "node3"]),  # wildcard
        ("*1", ["cp1", "node1", "db1"]),
        ("~node[12]", ["node1", "node2"]),  # regex
        ("~(cp|db)1", ["cp1", "db1"]),
        ("work*", ["node1", "node2", "node3"]),  # wildcard on group names
        ("workers[0]", ["node1"]),  # subscripts
        ("workers[-1]", ["node3"]),
        ("workers[1:2]", ["node2", "node3"]),
        ("workers[1:]", ["node2", "node3"]),
        ("nosuch", []),
        ("node2:node2,workers", ["node1", "node2", "node3"]),  # deduplicated
    ],
)
def test_select(pattern: str, expected: list[str]) -> None:
    assert select(pattern, INDEX) == expected


def test_limit_intersects_with_play_hosts() -> None:
    assert select_limited("workers", INDEX, limit="staging") == ["node2", "node3"]
    assert select_limited("workers", INDEX, limit="node1,db1") == ["node1"]
    assert select_limited("workers", INDEX, limit="!node2") == ["node1", "node3"]
    assert select_limited("all", INDEX, limit=None) == list(HOSTS)
    assert select_limited("all", INDEX, limit="nosuch") == []


def test_limit_from_file(tmp_path: Path) -> None:
    retry = tmp_path / "site.retry"
    retry.write_text("node3\n# comment\nnode1\n")
    assert select_limited("all", INDEX, limit=f"@{retry}") == ["node1", "node3"]
    with pytest.raises(PatternError, match="cannot read host list"):
        select("@" + str(tmp_path / "missing"), INDEX)


def test_bad_patterns_raise_pattern_error() -> None:
    with pytest.raises(PatternError, match="regular expression"):
        select("~node(", INDEX)
    with pytest.raises(PatternError, match="unbalanced"):
        select("node[1", INDEX)


def test_unmatched_terms_are_reported() -> None:
    assert unmatched_terms("workers:typo:!nosuch", INDEX) == ["typo", "!nosuch"]
