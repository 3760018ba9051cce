"""The nftables vectors the real path cannot express (nftrealpath.CANNOT_EXPRESS: an IPv6 proxier),
rendered from inputs built directly (vectors.convert, beside the product's front half), so that
every packet flow of kube-proxy's nftables tests is checked against the renderer."""

from __future__ import annotations

import dataclasses

import nftflows
import nftrealpath
import pytest
from vectors import convert

from svcnet.render.nftables import render_buffers


def _table(name: str) -> str:
    raw = nftrealpath.raw(name)
    vec = convert(raw)
    settings = dataclasses.replace(vec.settings, proxy_mode="nftables",
                                   service_cidrs=tuple(raw["proxier"].get("service_cidrs") or ()))
    return render_buffers(settings, vec.ports, raw["sync"].get("stale_chains") or ()).dump()


DIRECT = sorted(nftrealpath.CANNOT_EXPRESS)


@pytest.mark.parametrize("name", [n for n in DIRECT if nftrealpath.raw(n).get("packet_flow_tests")])
def test_packet_flows_of_an_inexpressible_vector(name: str) -> None:
    raw = nftrealpath.raw(name)
    table = _table(name)
    local = frozenset(raw.get("tracer_local_ips") or ())
    for flow in raw["packet_flow_tests"]:
        got = nftflows.vector_result(nftflows.explain(table, flow, local))
        assert got == (flow["output"], flow["masq"]), flow["name"]


def test_ipv6_tables_are_ip6_kube_proxy() -> None:
    table = _table("nodeports-ipv6")
    assert table.startswith('add table ip6 kube-proxy { comment "rules for kube-proxy" ; }\n')
    assert all(ln.split(" ")[2:4] == ["ip6", "kube-proxy"] for ln in table.splitlines())
    assert "add set ip6 kube-proxy cluster-ips { type ipv6_addr ;" in table
    assert " dnat to [" in table
