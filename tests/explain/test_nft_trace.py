"""The nftables tracer (svcnet/explain/nft.py) on small hand-written tables: the rule forms it does
not know are errors naming the chain and rule; `nft list` spellings read as the `nft -f` ones."""

from __future__ import annotations

import pytest

from svcnet.explain.nft import NftTraceError, parse_listing, parse_table, trace_nft
from svcnet.explain.trace import ORIGIN_OUTSIDE, Packet, TraceContext

HEAD = "add table ip kube-proxy\n"
PACKET = Packet("203.0.113.9", 40000, "10.96.0.10", 80, "tcp", ORIGIN_OUTSIDE)


def test_an_unknown_rule_form_is_an_error_naming_chain_and_rule() -> None:
    table = parse_table(HEAD + "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
                               "add rule ip kube-proxy nat-prerouting ct state new jump x\n"
                               "add chain ip kube-proxy x\n"
                               "add rule ip kube-proxy x tcp dport 80 accept\n")
    with pytest.raises(NftTraceError, match=r"chain x rule 1: unknown rule form 'tcp dport 80 accept'"):
        trace_nft(table, PACKET, TraceContext())


def test_a_jump_to_a_missing_chain_is_an_error() -> None:
    table = parse_table(HEAD + "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
                               "add rule ip kube-proxy nat-prerouting jump nowhere\n")
    with pytest.raises(NftTraceError, match="chain nowhere is not in table ip kube-proxy"):
        trace_nft(table, PACKET, TraceContext())


def test_listing_priorities_and_spellings() -> None:
    listing = """table ip kube-proxy {
	chain filter-prerouting-pre-dnat {
		type filter hook prerouting priority dstnat - 10; policy accept;
		ct state new jump svc
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
	}
	chain svc {
		numgen random mod 3 vmap { 0 : goto a, 1 : goto a, 2 : drop }
	}
	chain a {
		meta mark set meta mark | 0x00004000
	}
}
"""
    t = parse_listing(listing)
    assert [(b.name, b.priority) for b in t.base] == [("filter-prerouting-pre-dnat", -110), ("nat-postrouting", 100)]
    assert t.rules["nat-postrouting"] == ["mark and 0x00004000 == 0x00000000 return", "mark set mark xor 0x00004000"]
    assert t.rules["a"] == ["mark set mark or 0x00004000"]
    tr = trace_nft(t, PACKET, TraceContext())
    assert sorted(round(p.probability, 4) for p in tr.paths) == [0.3333, 0.3333, 0.3333]
    assert sorted(p.verdict for p in tr.paths) == ["ACCEPT", "ACCEPT", "DROP"]


def test_a_truncated_expression_is_an_error_not_a_traceback() -> None:
    table = parse_table(HEAD + "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
                               "add rule ip kube-proxy nat-prerouting ip saddr\n")
    with pytest.raises(NftTraceError, match="chain nat-prerouting rule 1: unreadable rule 'ip saddr'"):
        trace_nft(table, PACKET, TraceContext())


AFFINITY = HEAD + """add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add rule ip kube-proxy nat-prerouting jump svc
add chain ip kube-proxy svc
add chain ip kube-proxy ep-a
add set ip kube-proxy affinity-a { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy ep-b
add set ip kube-proxy affinity-b { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add rule ip kube-proxy svc ip saddr @affinity-a goto ep-a
add rule ip kube-proxy svc ip saddr @affinity-b goto ep-b
add rule ip kube-proxy svc numgen random mod 2 vmap { 0 : goto ep-a , 1 : goto ep-b }
add rule ip kube-proxy ep-a update @affinity-a { ip saddr }
add rule ip kube-proxy ep-a meta l4proto tcp dnat to 10.244.1.2:80
add rule ip kube-proxy ep-b update @affinity-b { ip saddr }
add rule ip kube-proxy ep-b meta l4proto tcp dnat to 10.244.2.2:80
"""


@pytest.mark.parametrize(("recorded", "expected"), [
    (frozenset(), [("10.244.1.2:80", 0.5), ("10.244.2.2:80", 0.5)]),
    (frozenset({"affinity-b"}), [("10.244.2.2:80", 1.0)]),
])
def test_session_affinity_follows_the_recorded_sets(recorded: frozenset[str],
                                                    expected: list[tuple[str, float]]) -> None:
    tr = trace_nft(parse_table(AFFINITY), PACKET, TraceContext(recent_recorded=recorded))
    assert [(p.dnat, p.probability) for p in tr.paths] == expected
    assert all(any("records the client in @affinity-" in n for s in p.steps for n in s.notes) for p in tr.paths)
