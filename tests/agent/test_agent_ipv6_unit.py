"""Fast tests of the agent's IPv6 rules logic and of how the IPv6 files travel (no kernel)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from agentnode import seed_artifacts

from svcnet.agent import node
from svcnet.model.load import check_paths
from svcnet.render.artifacts import JUMPS6_FILE, RESTORE6_FILE, node_artifacts
from svcnet.transport import protocol

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SAVE6 = """*filter
:INPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A INPUT -s 2001:db8::7/128 -j ACCEPT
-A INPUT -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
"""


def dual_artifacts():
    checked = check_paths([GOLDEN / "dual-stack.yaml"], ipv6=True)
    assert checked.build is not None
    return node_artifacts(checked.build.cluster, "node1")


def snap(text: str) -> dict:
    return {t: node.parse_save(text, t) for t in node.TABLES}


def test_rules_normal_without_ipv6_chains_is_the_ipv4_text_alone():
    """A node with no IPv6 chains of svcnet's keeps the hash it had before IPv6 rules existed."""
    v4 = snap(SAVE6.replace("2001:db8::7/128", "198.51.100.7/32"))
    assert node.rules_normal(v4, {}) == node.normal_form(v4)
    assert node.rules_normal(v4, {}, node.empty_snapshot()) == node.normal_form(v4)
    assert node.rules_normal(v4, {}, snap(SAVE6.replace("KUBE-", "OTHER-"))) == node.normal_form(v4)


def test_rules_normal_has_the_ipv6_chains_after_their_header():
    v4, v6 = node.empty_snapshot(), snap(SAVE6)
    text = node.rules_normal(v4, {"ip": "table ip kube-proxy {\n}\n"}, v6)
    assert text == (node.normal_form(v4) + node.IPV6_RULES_HEADER + node.normal_form(v6)
                    + "table ip kube-proxy {\n}\n")
    assert node.has_owned(v6) and not node.has_owned(v4)
    assert "2001:db8::7" not in text  # a foreign rule is no part of it


def test_the_ipv6_files_are_checked_as_the_ipv4_ones():
    base = {"op": "apply", "artifacts": {node.RESTORE_FILE: ""}}
    bad_restore = {**base["artifacts"], node.RESTORE6_FILE: "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"}
    with pytest.raises(node.AgentError, match=r"rules6\.restore line 2: chain 'INPUT' is not svcnet's"):
        node.ApplyRequest.parse({**base, "artifacts": bad_restore})
    bad_jumps = {**base["artifacts"], node.JUMPS6_FILE: "-t nat -A PREROUTING -j FOREIGN\n"}
    with pytest.raises(node.AgentError, match=r"jumps6\.rules line 1: only jumps"):
        node.ApplyRequest.parse({**base, "artifacts": bad_jumps})
    nft = {"op": "apply", "proxy_mode": node.MODE_NFTABLES,
           "artifacts": {node.NFT_FILE: "add table ip kube-proxy\n", node.RESTORE6_FILE: "*nat\nCOMMIT\n"}}
    with pytest.raises(node.AgentError, match=r"rules6\.restore: not applied in proxy_mode nftables"):
        node.ApplyRequest.parse(nft)


@pytest.mark.parametrize("value", [6, 4])
def test_scratch_request_family(value):
    assert node.ScratchRequest.parse({"op": "_scratch_normalize", "family": value}).family == value


@pytest.mark.parametrize("value", [5, "6", True, 6.0])
def test_scratch_request_refuses_another_family(value):
    with pytest.raises(node.AgentError, match="request field 'family' must be 4 or 6"):
        node.ScratchRequest.parse({"op": "_scratch_normalize", "family": value})


def test_no_ip6tables_reads_as_no_ipv6_rules(monkeypatch):
    """A node without ip6tables (or without IPv6) runs nothing of ip6tables: it has no IPv6 rules of svcnet's."""
    monkeypatch.setattr(node.shutil, "which", lambda name: None)
    monkeypatch.setattr(node, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    assert node.snapshot(family=node.IPV6) == node.empty_snapshot()
    assert not node.set_owned_rules(node.empty_snapshot(), family=node.IPV6)


def test_empty_ipv6_files_are_not_kept():
    assert node.not_kept(node.RESTORE6_FILE, node.MODE_IPTABLES) and node.not_kept(node.JUMPS6_FILE, node.MODE_IPTABLES)
    assert not node.not_kept(node.RESTORE_FILE, node.MODE_IPTABLES)
    assert node.not_kept(node.RESTORE_FILE, node.MODE_NFTABLES)
    assert node.wants_ipv6({node.RESTORE6_FILE: "*nat\nCOMMIT\n"}) and not node.wants_ipv6({node.RESTORE6_FILE: ""})


def test_a_dual_stack_apply_sends_the_ipv6_files_and_an_ipv4_one_does_not(tmp_path):
    art = dual_artifacts()
    sent = protocol.ApplyRequest("r1", art).to_wire()["artifacts"]
    assert sent[RESTORE6_FILE] == art.restore6
    # the IPv6 proxier's own jump rules: no localhost-NodePort KUBE-FIREWALL jumps in IPv6
    assert "KUBE-SERVICES" in sent[JUMPS6_FILE] and "KUBE-FIREWALL" not in sent[JUMPS6_FILE]
    node.ApplyRequest.parse({"op": "apply", "artifacts": sent})  # the agent takes them
    other = dataclasses.replace(art, restore6=(art.restore6 or "") + "# another\n")
    assert protocol.desired_hashes(other)[node.PART_RULES] != protocol.desired_hashes(art)[node.PART_RULES]

    seed = seed_artifacts(tmp_path)
    ipv4 = protocol.ApplyRequest("r2", seed).to_wire()["artifacts"]
    assert RESTORE6_FILE not in ipv4 and JUMPS6_FILE not in ipv4  # the wire of IPv4-only nodes as before
    nft = protocol.apply_files(art, protocol.MODE_NFTABLES)
    assert RESTORE6_FILE not in nft and JUMPS6_FILE not in nft


def test_the_rules_diff_is_one_per_family_and_the_nft_tables_stay_with_ipv4():
    """A chain's name is the same in both families (KUBE-SVC-h): each family's drift in its own diff."""
    v4 = "*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j KUBE-SEP-A\nCOMMIT\n"
    v6 = "*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j KUBE-SEP-B\nCOMMIT\n"
    nft = "table ip kube-proxy {\n}\n"
    text = v4 + node.IPV6_RULES_HEADER + v6 + nft
    assert node.split_rules_normal(text) == (v4 + nft, v6)
    assert node.split_rules_normal(v4 + nft) == (v4 + nft, "")
    changed = text.replace("KUBE-SEP-B", "KUBE-SEP-C")
    diffs = node.rules_diffs(text, changed)
    assert diffs["rules"] == "" and "+-A KUBE-SVC-X -j KUBE-SEP-C" in diffs[node.DIFF_RULES6]
    assert node.DIFF_RULES6 not in node.rules_diffs(v4, v4.replace("SEP-A", "SEP-C"))
