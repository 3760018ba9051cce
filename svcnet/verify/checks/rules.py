"""Owned chains on each node equal what svcnet renders (kernel-normalised; drift shown as a diff)."""

from __future__ import annotations

import pytest

from svcnet.model.types import ServicePort
from svcnet.transport.protocol import DIFF_RULES
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.drift import RulesDrift, describe_chains, rules_drift, sort_drift
from svcnet.verify.targets import chain_owners

pytestmark = pytest.mark.svcnet_ports("all")


def node_drift(ctx: VerifyContext, node: str) -> RulesDrift:
    diff = (ctx.state_check(node).diff or {}).get(DIFF_RULES) or ""
    return sort_drift(rules_drift(diff), chain_owners(ctx.cluster))


def test_service_rules_match_rendered(svcnet_context: VerifyContext, svcnet_node: str,
                                      svcnet_service_port: ServicePort) -> None:
    """The service port's chains (SVC, SVL, EXT, FW, SEP) and the rules that lead to them."""
    spn = svcnet_service_port.spn
    lines = node_drift(svcnet_context, svcnet_node).by_service.get(spn)
    if lines:
        raise VerifyError(describe_chains(svcnet_node, lines, owner=spn))


def test_owned_chains_match_rendered(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    """Every other owned chain (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, ... and strays)."""
    lines = node_drift(svcnet_context, svcnet_node).other
    if lines:
        raise VerifyError(describe_chains(svcnet_node, lines))
