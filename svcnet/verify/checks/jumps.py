"""The jump rules from the built-in chains into svcnet's chains are present (and no others)."""

from __future__ import annotations

from svcnet.verify.checks.rules import node_drift
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.drift import LEGEND


def test_jump_rules_present(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    lines = node_drift(svcnet_context, svcnet_node).jumps
    if lines:
        missing = sum(1 for ln in lines if ln.sign == "+")
        body = "\n".join("    " + ln.show() for ln in lines)
        raise VerifyError(f"{svcnet_node}: jump rules into svcnet's chains differ from the rendered ones "
                          f"({missing} missing) {LEGEND}:\n{body}")
