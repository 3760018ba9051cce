"""The vectors the real path cannot express, through the converter (vectors.py) straight into the
renderer. Every other vector goes through description files in test_vectors_real_path.py;
realpath.CANNOT_EXPRESS says why these cannot (leading-zero IPs svcnet's schema refuses, IPv6)."""

from __future__ import annotations

import pytest
from realpath import CANNOT_EXPRESS
from vectors import load_vector, vector_names

from svcnet.agent.node import check_restore
from svcnet.render.dump import canonical_sort, parse_dump
from svcnet.render.iptables import render_restore

CONVERTER_ONLY = sorted(CANNOT_EXPRESS)


def _scoped_rules(text: str, table: str, chain: str) -> list[str]:
    found = parse_dump(text).chain(table, chain)
    return [f"-A {chain} {rule}" for rule in found.rules] if found else []


@pytest.mark.parametrize("name", CONVERTER_ONLY)
def test_vector_matches_kube_proxy(name: str) -> None:
    vec = load_vector(name)
    assert vec.sync_mode == "full"
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


def test_packet_flow_tests_are_exposed() -> None:
    vec = load_vector("nodeports-ipv4-npa-multiple")
    assert len(vec.packet_flow_tests) == 5
    first = vec.packet_flow_tests[0]
    assert (first.source_ip, first.dest_ip, first.dest_port) == ("10.0.0.2", "172.30.0.41", 80)
    assert first.output == "10.180.0.1:80, 10.180.2.1:80"
    assert vec.tracer_local_ips[0] == "192.168.0.2"
    assert vec.settings.node_ips[:3] == ("192.168.0.2", "127.0.0.1", "::1")
