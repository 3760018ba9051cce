"""A test-side packet tracer over a rendered nftables table, as kube-proxy's nftables tests trace
(helpers_test.go `tracePacket`/`runChain`, described in kube-proxy-nft-vectors/README.md).

It checks the renderer against the vectors' packet-flow expectations until `svcnet explain` reads
nftables mode (issue 14): it is not svcnet's explain, and knows only the rule forms kube-proxy's
nftables proxier writes (an unknown form fails loudly rather than being skipped).

Semantics: `ct state new` always matches, comments are ignored; run `filter-prerouting-pre-dnat`
and stop on a verdict; run `nat-prerouting`; if it DNATed, continue with the first target's IP as the
destination; run `filter-forward`, stop on a verdict; run `filter-input`. A `numgen … vmap` is
followed into every branch, so the output lists every endpoint. `masq` is true once a
`jump mark-for-masquerade` ran.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

_ELEMENT_RE = re.compile(r'add element \S+ \S+ (\S+) \{ (.*?)(?: comment "[^"]*")?(?: : (.*))? \}$')
_COMMENT_RE = re.compile(r' comment "[^"]*"$')


@dataclass
class Table:
    rules: dict[str, list[list[str]]] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)  # sets' elements, and maps' keys -> verdict
    maps: dict[str, dict[str, str]] = field(default_factory=dict)


def parse(dump: str) -> Table:
    t = Table()
    for line in dump.splitlines():
        w = line.split(" ")
        kind = w[1] if len(w) > 4 else ""
        if kind == "chain":
            t.rules.setdefault(w[4], [])
        elif kind == "set":
            t.sets.setdefault(w[4], set())
        elif kind == "map":
            t.maps.setdefault(w[4], {})
        elif kind == "rule":
            t.rules.setdefault(w[4], []).append(_COMMENT_RE.sub("", " ".join(w[5:])).split(" "))
        elif kind == "element":
            m = _ELEMENT_RE.match(line)
            assert m, line
            name, key, verdict = m.groups()
            if verdict is None:
                t.sets[name].add(key)
            else:
                t.maps[name][key] = verdict
    return t


@dataclass
class Packet:
    src: str
    dst: str
    proto: str
    port: int
    local_ips: frozenset[str]
    masq: bool = False
    dnat: list[str] = field(default_factory=list)


class Verdict(Exception):
    """DROP or REJECT: ends the trace."""


_END = object()  # a chain ended in a terminal statement (dnat) of the nat hook


def _addr_in(addr: str, value: str) -> bool:
    items = [v for v in value.strip("{}").replace(",", " ").split() if v]
    a = ipaddress.ip_address(addr)
    return any(a in ipaddress.ip_network(v, strict=False) for v in items)


class Tracer:
    def __init__(self, table: Table, pkt: Packet):
        self.t, self.p = table, pkt

    def run(self, chain: str) -> object:
        """Run a chain: None when it returned or ended, _END after a DNAT; raises Verdict."""
        for rule in self.t.rules[chain]:
            result = self._rule(list(rule))
            if result is not None:
                return None if result == "return" else result
        return None

    def _goto(self, verb: str, target: str) -> object:
        if verb == "goto":
            return self.run(target) or "return"
        if target == "mark-for-masquerade":
            self.p.masq = True
        return self.run(target)

    def _verdict(self, text: str) -> object:
        w = text.split(" ")
        if w[0] in ("goto", "jump"):
            return self._goto(w[0], w[1])
        if w[0] in ("drop", "reject"):
            raise Verdict(w[0].upper())
        raise AssertionError(f"unknown verdict {text!r}")

    def _rule(self, w: list[str]) -> object:
        """Match the rule's expressions left to right; None when it does not match."""
        p = self.p
        while w:
            if w[:3] == ["ct", "state", "new"]:
                del w[:3]
            elif w[0] in ("ip", "ip6") and w[2:9] == [".", "meta", "l4proto", ".", "th", "dport", "vmap"]:
                verdict = self.t.maps[w[9][1:]].get(f"{p.dst} . {p.proto} . {p.port}")
                return None if verdict is None else self._verdict(verdict)
            elif w[:5] == ["meta", "l4proto", ".", "th", "dport"] and w[5] == "vmap":
                verdict = self.t.maps[w[6][1:]].get(f"{p.proto} . {p.port}")
                return None if verdict is None else self._verdict(verdict)
            elif w[0] in ("ip", "ip6") and w[1] in ("saddr", "daddr"):
                addr = p.src if w[1] == "saddr" else p.dst
                negate = w[2] == "!="
                i = 3 if negate else 2
                if w[i] == "{":
                    j = w.index("}", i)
                    value, rest = " ".join(w[i:j + 1]), w[j + 1:]
                else:
                    value, rest = w[i], w[i + 1:]
                hit = addr in self.t.sets[value[1:]] if value.startswith("@") else _addr_in(addr, value)
                if hit == negate:
                    return None
                w = rest
            elif w[:3] == ["fib", "saddr", "type"] or w[:3] == ["fib", "daddr", "type"]:
                assert w[3] == "local", w
                if (p.src if w[1] == "saddr" else p.dst) not in p.local_ips:
                    return None
                del w[:4]
            elif w[:3] == ["numgen", "random", "mod"] and w[4] == "vmap":
                # Every branch, in vmap order: the output names every endpoint.
                branches = " ".join(w[6:-1]).split(" , ")
                ended = None
                for branch in branches:
                    ended = self._verdict(branch.split(" : ", 1)[1]) or ended
                return ended or "return"
            elif w[:3] == ["meta", "l4proto", p.proto] and w[3:5] == ["dnat", "to"]:
                p.dnat.append(w[5])
                return _END
            elif w[0] in ("jump", "goto"):
                return self._goto(w[0], w[1])
            elif w[0] in ("drop", "reject"):
                raise Verdict(w[0].upper())
            elif w[0] == "return":
                return "return"
            elif w[0] == "update" or w[:3] == ["mark", "set", "mark"]:
                return None  # records affinity / sets the mark: no effect on this packet's path
            else:
                raise AssertionError(f"unknown rule form {' '.join(w)!r}")
        return None


def trace(dump: str, src: str, dst: str, port: int, proto: str, local_ips: frozenset[str]) -> tuple[str, bool]:
    """(output, masq) of a new connection, in the vectors' spelling."""
    table = parse(dump)
    pkt = Packet(src, dst, proto.lower(), port, local_ips)
    try:
        Tracer(table, pkt).run("filter-prerouting-pre-dnat")
        Tracer(table, pkt).run("nat-prerouting")
        if pkt.dnat:
            host = pkt.dnat[0].rsplit(":", 1)[0].strip("[]")
            pkt.dst = host
        Tracer(table, pkt).run("filter-forward")
        Tracer(table, pkt).run("filter-input")
    except Verdict as v:
        return str(v), pkt.masq
    return ", ".join(pkt.dnat), pkt.masq
