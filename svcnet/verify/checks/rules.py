"""Owned chains on each node equal what svcnet renders (kernel-normalised; drift shown as a diff).

Each family's rules apart, as kube-proxy's dual-stack mode keeps them: the IPv4 ones (iptables) and,
where the cluster has IPv6 Services, the IPv6 ones (ip6tables, rules6.restore).
"""

from __future__ import annotations

import pytest

from svcnet.desired import proxier_families
from svcnet.model.family import IPV4, IPV6
from svcnet.model.types import MODE_NFTABLES, ServicePort
from svcnet.transport.protocol import DIFF_RULES, DIFF_RULES6
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.drift import DiffLine, RulesDrift, describe_chains, rules_drift, sort_drift
from svcnet.verify.targets import chain_owners, port_family

pytestmark = pytest.mark.svcnet_ports("all")
DIFF_KEY = {IPV4: DIFF_RULES, IPV6: DIFF_RULES6}  # each family's rules diff in the agent's check answer
RULES_TOOL = {IPV4: "", IPV6: "ip6tables "}  # how a family's drift is named (IPv4's as before IPv6)


def rule_families(ctx: VerifyContext) -> tuple[int, ...]:
    """The families whose rules each node holds as iptables rules (nftables mode: its one table)."""
    if ctx.cluster.proxy.mode == MODE_NFTABLES:
        return (IPV4,)
    return tuple(f.version for f in proxier_families(ctx.cluster))


def node_drift(ctx: VerifyContext, node: str, version: int = IPV4) -> RulesDrift:
    diff = ctx.state_check(node).diff or {}
    key = DIFF_KEY[version]
    if key not in diff and version != IPV4:
        raise VerifyError(f"{node}: the agent's check reported no IPv{version} rules diff ('{key}'): "
                          f"the node's IPv{version} rules cannot be compared")
    return sort_drift(rules_drift(diff.get(key) or ""), chain_owners(ctx.cluster))


def describe(node: str, version: int, lines: list[DiffLine], owner: str = "") -> str:
    return describe_chains(node, lines, owner, RULES_TOOL[version])


def test_service_rules_match_rendered(svcnet_context: VerifyContext, svcnet_node: str,
                                      svcnet_service_port: ServicePort) -> None:
    """The service port's chains (SVC, SVL, EXT, FW, SEP) and the rules that lead to them, in the
    rules of its family (a dual-stack port is checked once per family)."""
    spn, version = svcnet_service_port.spn, port_family(svcnet_service_port)
    if version not in rule_families(svcnet_context):
        pytest.skip(f"{spn}: nftables mode renders IPv4 rules only")
    lines = node_drift(svcnet_context, svcnet_node, version).by_service.get(spn)
    if lines:
        raise VerifyError(describe(svcnet_node, version, lines, owner=spn))


def test_owned_chains_match_rendered(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    """Every other owned chain (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, ... and strays), of
    every family."""
    found = [describe(svcnet_node, v, lines) for v in rule_families(svcnet_context)
             if (lines := node_drift(svcnet_context, svcnet_node, v).other)]
    if found:
        raise VerifyError("\n".join(found))
