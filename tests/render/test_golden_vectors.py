"""Golden comparison with kube-proxy's own unit-test expectations (every full-sync vector)."""

from __future__ import annotations

import pytest
from vectors import load_vector, vector_names

from svcnet.agent.node import check_restore
from svcnet.render.dump import canonical_sort, parse_dump
from svcnet.render.iptables import render_restore

FULL_SYNC = [n for n in vector_names() if load_vector(n).sync_mode == "full"]


def _scoped_rules(text: str, table: str, chain: str) -> list[str]:
    found = parse_dump(text).chain(table, chain)
    return [f"-A {chain} {rule}" for rule in found.rules] if found else []


@pytest.mark.parametrize("name", FULL_SYNC)
def test_vector_matches_kube_proxy(name: str) -> None:
    vec = load_vector(name)
    rendered = render_restore(vec.settings, vec.ports, vec.stale_chains)
    if vec.expect_scope is None:
        assert canonical_sort(rendered) == vec.expected
    else:
        table, chain = vec.expect_scope
        expected = [line for line in vec.expected.splitlines() if line.strip()]
        assert _scoped_rules(rendered, table, chain) == expected


@pytest.mark.parametrize("name", vector_names())
def test_the_agent_accepts_every_rendered_vector(name: str) -> None:
    """The agent refuses restore lines outside svcnet's chains: none the renderer writes."""
    vec = load_vector(name)
    check_restore(render_restore(vec.settings, vec.ports, vec.stale_chains))


def test_full_sync_vectors_cover_every_kind() -> None:
    names = set(FULL_SYNC)
    assert {"overall", "bad-ips", "repeated-1-full", "repeated-9-full-resync"} <= names
    assert any(n.startswith("chain-") for n in names)
    assert any(n.startswith("nodeports-") for n in names)


def test_bad_ips_are_canonicalised_by_converter() -> None:
    vec = load_vector("bad-ips")
    (sp,) = vec.ports
    assert sp.cluster_ip == "172.30.0.41"
    assert sp.lb_ips == ("1.2.3.4",)
    assert sp.external_ips == ("192.168.99.22",)
    assert sp.lb_source_ranges == ("203.0.113.0/25",)
    assert [ep.ip for ep in sp.endpoints] == ["10.180.0.1"]


def test_packet_flow_tests_are_exposed() -> None:
    vec = load_vector("nodeports-ipv4-npa-multiple")
    assert len(vec.packet_flow_tests) == 5
    first = vec.packet_flow_tests[0]
    assert (first.source_ip, first.dest_ip, first.dest_port) == ("10.0.0.2", "172.30.0.41", 80)
    assert first.output == "10.180.0.1:80, 10.180.2.1:80"
    assert vec.tracer_local_ips[0] == "192.168.0.2"
    assert vec.settings.node_ips[:3] == ("192.168.0.2", "127.0.0.1", "::1")
