"""The node's address config is as rendered: pod bridge, host-gw routes, sysctls."""

from __future__ import annotations

from svcnet.transport.protocol import DIFF_NETCONF
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.drift import netconf_drift

NETCONF_LEGEND = "(- on the node, + rendered)"


def check_fact(ctx: VerifyContext, node: str, kind: str, what: str) -> None:
    lines = netconf_drift((ctx.state_check(node).diff or {}).get(DIFF_NETCONF) or "", kind)
    if lines:
        body = "\n".join("    " + ln for ln in lines)
        raise VerifyError(f"{node}: {what} differ from the rendered address config {NETCONF_LEGEND}:\n{body}")


def test_bridge_as_rendered(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    check_fact(svcnet_context, svcnet_node, "bridge", f"bridge {svcnet_context.cluster.bridge} address/state")


def test_routes_as_rendered(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    check_fact(svcnet_context, svcnet_node, "route", "routes to the other nodes' pod CIDRs")


def test_sysctls_as_rendered(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    check_fact(svcnet_context, svcnet_node, "sysctl", "sysctls")
