"""Fast tests of nftables mode's pure parts: the script check (one test per attack), the normal form,
and the controller's request."""

from __future__ import annotations

import pytest
from agentnode import seed_artifacts
from nftscript import overall, without_table

from svcnet.agent import node
from svcnet.transport import protocol

HEAD = "add table ip kube-proxy\ndelete table ip kube-proxy\nadd table ip kube-proxy\n"
CHAIN = "add chain ip kube-proxy services\n"


def refused(script: str) -> str:
    with pytest.raises(node.AgentError) as err:
        node.check_nft_script(script)
    return str(err.value)


def test_the_shared_vector_passes_and_names_its_family():
    assert node.check_nft_script(overall()) == ("ip",)
    six = HEAD.replace(" ip ", " ip6 ") + CHAIN.replace(" ip ", " ip6 ")
    assert node.check_nft_script(HEAD + CHAIN + six) == ("ip", "ip6")


@pytest.mark.parametrize(("attack", "says"), [
    ("flush ruleset", "only 'add|create|delete|flush|insert|replace chain|element"),
    ("list ruleset", "only 'add|create"),
    ("reset counters", "only 'add|create"),
    ("add table ip filter", "table ip filter is not svcnet's"),
    ("delete table ip nat", "table ip nat is not svcnet's"),
    ("flush chain ip filter INPUT", "table ip filter is not svcnet's"),
    ("add rule ip filter INPUT drop", "table ip filter is not svcnet's"),
    ("add table inet kube-proxy", "table inet kube-proxy is not svcnet's"),
    ("add table bridge kube-proxy", "table bridge kube-proxy is not svcnet's"),
    ("add chain netdev kube-proxy x", "table netdev kube-proxy is not svcnet's"),
    ("add table kube-proxy", "is not svcnet's"),  # the family left to nft's default
    ('add table ip "kube-proxy"', "is not svcnet's"),  # quoted: another spelling, refused
    ("table ip filter { chain input { type filter hook input priority 0 ; } }", "only 'add|create"),
    ("add chain ip kube-proxy x ; flush ruleset", "only 'add|create"),  # a second statement on the line
    ("add chain ip kube-proxy x\nflush ruleset", "only 'add|create"),
    ('include "/etc/nftables.conf"', "'include' is not allowed"),
    ('add table ip kube-proxy { include "/tmp/planted" }', "'include' is not allowed"),
    ("define T = filter", "'define' is not allowed"),
    ("add chain ip $T INPUT", "character '$' is not allowed"),
    ("add chain ip kube-proxy x \\\n flush ruleset", "character '\\\\' is not allowed"),
    ("add chain ip kube-proxy 'x'", "character \"'\" is not allowed"),
    ("add chain ip kube-proxy x\rflush ruleset", "character '\\r' is not allowed"),
    ("add chain ip kube-proxy x\x00", "character '\\x00' is not allowed"),
    ("add chain ip kube-proxy x { type filter hook input priority 0 ;", "is never closed"),
    ("add chain ip kube-proxy x }\nflush ruleset", "'}' without '{'"),
    ('add rule ip kube-proxy x comment "open', "unterminated string"),
    ('add rule ip kube-proxy x comment "a\x1b[2J"', "character '\\x1b' is not allowed"),
    ("add chain ip kube-proxy x { type filter hook input priority 0 ; policy drop ; }", "policy must be accept"),
    ("add chain ip kube-proxy x { type filter hook input priority 0;policy drop; }", "policy must be accept"),
    ("delete table ip6 kube-proxy", "must replace table ip6 kube-proxy whole"),
])
def test_each_attack_is_refused(attack, says):
    assert says in refused(HEAD + CHAIN + attack + "\n")


def test_a_table_must_be_replaced_whole():
    assert "must replace table ip kube-proxy whole" in refused(CHAIN)
    assert "must replace table ip kube-proxy whole" in refused("add table ip kube-proxy\n" + CHAIN)
    assert "must replace" in refused("add table ip kube-proxy\ndelete table ip kube-proxy { }\n")


def test_an_accept_policy_passes():
    ok = HEAD + "add chain ip kube-proxy x { type filter hook input priority 0 ; policy accept ; }\n"
    assert node.check_nft_script(ok) == ("ip",)
    assert node.check_nft_script(HEAD + 'add chain ip kube-proxy x { comment "policy drop" ; }\n') == ("ip",)


def test_keywords_inside_longer_names_pass():
    names = "add chain ip kube-proxy x-include\nadd chain ip kube-proxy predefine\nadd chain ip kube-proxy no-policy\n"
    assert node.check_nft_script(HEAD + names) == ("ip",)


def test_quotes_and_comments_do_not_split_statements():
    quoted = HEAD + CHAIN + 'add rule ip kube-proxy services accept comment "a; flush ruleset # x"\n'
    assert node.check_nft_script(quoted) == ("ip",)
    commented = HEAD + CHAIN + "add rule ip kube-proxy services accept # ; flush ruleset\n"
    assert node.check_nft_script(commented) == ("ip",)
    assert node.nft_statements(commented)[-1] == (5, "add rule ip kube-proxy services accept")


def test_an_nftables_apply_request_is_checked_before_anything():
    with pytest.raises(node.AgentError, match=r"needs artifacts with a rules\.nft"):
        node.ApplyRequest.parse({"op": "apply", "proxy_mode": "nftables", "artifacts": {"rules.restore": ""}})
    with pytest.raises(node.AgentError, match=r"rules\.restore: not applied in proxy_mode nftables"):
        node.ApplyRequest.parse({"op": "apply", "proxy_mode": "nftables",
                                 "artifacts": {"rules.restore": "*nat\nCOMMIT\n", "rules.nft": HEAD}})
    with pytest.raises(node.AgentError, match=r"rules\.nft is for proxy_mode nftables"):
        node.ApplyRequest.parse({"op": "apply", "artifacts": {"rules.restore": "*nat\nCOMMIT\n", "rules.nft": HEAD}})
    with pytest.raises(node.AgentError, match="'proxy_mode' must be iptables or nftables"):
        node.ApplyRequest.parse({"op": "apply", "proxy_mode": "ipvs", "artifacts": {"rules.restore": ""}})
    with pytest.raises(node.AgentError, match="table ip filter is not svcnet's"):
        node.ApplyRequest.parse({"op": "apply", "proxy_mode": "nftables",
                                 "artifacts": {"rules.nft": HEAD + "add table ip filter\n"}})


LISTING = """table ip kube-proxy {
\tcomment "rules for kube-proxy"
\tset affinity-X {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t\telements = { 10.0.0.9 timeout 3h expires 2h59m58s, 10.0.0.1 timeout 3h expires 1h }
\t}

\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 172.30.0.42 . tcp . 80 comment "b, c" : goto service-B,
\t\t\t     172.30.0.41 . tcp . 80 : goto service-A }
\t}

\tchain service-A {
\t\tnumgen random mod 2 vmap { 0 : goto e1, 1 : goto e2 }
\t}
}
"""


def test_normal_form_sorts_elements_and_drops_affinity_records():
    normal = node.nft_normal(LISTING)
    assert "expires" not in normal and "10.0.0.9" not in normal  # traffic's state, not svcnet's rules
    assert "\t\tflags dynamic,timeout\n\t\ttimeout 3h\n\t}\n" in normal  # the set itself stays
    assert ('\t\telements = {\n\t\t\t172.30.0.41 . tcp . 80 : goto service-A,\n'
            '\t\t\t172.30.0.42 . tcp . 80 comment "b, c" : goto service-B\n\t\t}\n') in normal
    assert "numgen random mod 2 vmap { 0 : goto e1, 1 : goto e2 }" in normal  # rules as listed
    assert node.nft_normal(normal) == normal


def test_tables_are_found_in_a_listing():
    foreign = "table inet filter {\n\tchain input {\n\t}\n}\n"
    ruleset = foreign + LISTING + LISTING.replace("table ip ", "table ip6 ")
    assert node.nft_tables(ruleset) == {"ip": LISTING, "ip6": LISTING.replace("table ip ", "table ip6 ")}
    assert without_table(without_table(ruleset), "ip6") == foreign


def test_rules_normal_is_normal_form_alone_without_tables():
    snap = node.empty_snapshot()
    assert node.rules_normal(snap, {}) == node.normal_form(snap)  # iptables mode keeps its hashes
    assert node.rules_normal(snap, {"ip6": "B\n", "ip": "A\n"}).endswith("COMMIT\nA\nB\n")


def test_transaction_drops_the_tables_the_script_does_not_write():
    assert node.nft_transaction("", {}) == ""
    assert node.nft_transaction("", {"ip": "x"}) == "delete table ip kube-proxy\n"
    script = HEAD + CHAIN
    assert node.nft_transaction(script, {"ip": "x", "ip6": "y"}) == script + "delete table ip6 kube-proxy\n"


def test_the_request_carries_the_mode(tmp_path):
    art = seed_artifacts(tmp_path)
    wire = protocol.ApplyRequest("r1", art).to_wire()
    assert "proxy_mode" not in wire and "rules.nft" not in wire["artifacts"]  # iptables: as before
    nft = protocol.ApplyRequest("r1", art, proxy_mode=protocol.MODE_NFTABLES).to_wire()
    assert nft["proxy_mode"] == "nftables"
    assert nft["artifacts"]["rules.restore"] == nft["artifacts"]["jumps.rules"] == ""
    assert "rules.nft" in nft["artifacts"]
    pre = protocol.PreflightRequest("r1", proxy_mode=protocol.MODE_NFTABLES).to_wire()
    assert pre == {"op": "preflight", "run_id": "r1", "proxy_mode": "nftables"}
    assert node.PreflightRequest.parse(pre).proxy_mode == "nftables"
