"""Every vector, through the converter (vectors.py) straight into the renderer: the agent accepts what
the renderer writes. The vectors' expected rules are checked through description files in
test_vectors_real_path.py, which can express all of them."""

from __future__ import annotations

import pytest
from vectors import load_vector, vector_names

from svcnet.agent.node import check_restore
from svcnet.render.iptables import render_restore


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
