"""The jump rules from the built-in chains into svcnet's chains are present (and no others), in
each family's rules."""

from __future__ import annotations

from svcnet.verify.checks.rules import RULES_TOOL, node_drift, rule_families
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.drift import LEGEND


def test_jump_rules_present(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    found = []
    for version in rule_families(svcnet_context):
        lines = node_drift(svcnet_context, svcnet_node, version).jumps
        if lines:
            missing = sum(1 for ln in lines if ln.sign == "+")
            body = "\n".join("    " + ln.show() for ln in lines)
            found.append(f"{svcnet_node}: {RULES_TOOL[version]}jump rules into svcnet's chains differ from the "
                         f"rendered ones ({missing} missing) {LEGEND}:\n{body}")
    if found:
        raise VerifyError("\n".join(found))
