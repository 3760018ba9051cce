"""Evaluate a rule's match conditions against one packet state.

Each condition yields a short human reason. A rule either matches, does not match (the first
failing condition is the reason), or matches only with some probability (`statistic`): a branch.
Conditions on history are modelled for a first packet: conntrack state NEW (plus DNAT/SNAT once
applied), `recent --rcheck` only for clients the caller declares already recorded.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field

from svcnet.explain.rules import BUILTIN, Match, Rule

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

MATCH, NOMATCH, BRANCH = "match", "nomatch", "branch"
LOCAL = "LOCAL"
PROTO_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp", "136": "udplite"}
_ALWAYS = frozenset({"comment", "nfacct"})
RECENT_ALL = "*"


@dataclass(frozen=True, slots=True)
class PacketState:
    """What the matches look at: addresses/ports (after NAT so far), interfaces, mark, ct state."""

    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    in_iface: str | None
    out_iface: str | None
    mark: int = 0
    ctstate: frozenset[str] = frozenset({"NEW"})
    recent_set: frozenset[str] = frozenset()  # `recent --set` names this packet was recorded in


@dataclass(frozen=True)
class MatchContext:
    """Node facts the matches need: which addresses are LOCAL, which clients affinity recorded."""

    local_nets: tuple[IPNet, ...]
    recent_recorded: frozenset[str] = field(default_factory=frozenset)  # recent list names; "*" = all

    def is_local(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr.version == n.version and addr in n for n in self.local_nets)

    def recorded(self, name: str) -> bool:
        return RECENT_ALL in self.recent_recorded or name in self.recent_recorded


@dataclass(frozen=True, slots=True)
class Eval:
    result: str  # MATCH, NOMATCH or BRANCH
    reason: str
    probability: float = 1.0  # for BRANCH: chance of matching
    notes: tuple[str, ...] = ()


class _Fail(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def evaluate(rule: Rule, pkt: PacketState, ctx: MatchContext) -> Eval:
    """Does `rule` match `pkt`? Returns the first failing condition as the reason otherwise."""
    held: list[str] = []
    notes: list[str] = []
    probability = 1.0
    for m in rule.matches:
        if m.module == "recent" and m.option in ("--rcheck", "--update"):
            notes.append("session affinity: a client already recorded would take this rule")
        try:
            outcome = _condition(m, rule, pkt, ctx)
        except _Fail as fail:
            return Eval(NOMATCH, f"{m.text()}: {fail.reason}", notes=tuple(notes))
        if isinstance(outcome, float):
            probability *= outcome
            held.append(f"{m.text()}: random, taken with probability {outcome:.4g}")
        elif outcome:
            if m.negated:
                ok = outcome.startswith("!")
                outcome = outcome[1:] if ok else outcome
                if not ok:
                    return Eval(NOMATCH, f"{m.text()}: {outcome}", notes=tuple(notes))
            elif outcome.startswith("!"):
                return Eval(NOMATCH, f"{m.text()}: {outcome[1:]}", notes=tuple(notes))
            held.append(f"{m.text()}: {outcome}")
    reason = "; ".join(held) if held else "unconditional"
    if probability < 1.0:
        return Eval(BRANCH, reason, probability, tuple(notes))
    return Eval(MATCH, reason, notes=tuple(notes))


# A condition returns: "" (always true, nothing to say), a reason string meaning "holds",
# "!" + reason meaning "does not hold" (negation is applied by the caller), or a float
# probability for statistic. Unsupported conditions raise _Fail.


def _condition(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str | float:
    if m.module == BUILTIN:
        return _builtin(m, pkt)
    if m.module in _ALWAYS:
        return ""  # comments document, nfacct only counts: both always match
    if m.option in ("--dport", "--destination-port", "--sport", "--source-port"):
        return _port(m, pkt)
    if m.option in ("--dports", "--sports", "--ports", "--destination-ports", "--source-ports"):
        return _multiport(m, pkt)
    handler = _MODULE_HANDLERS.get(m.module)
    if handler is None:
        raise _Fail(f"match module '{m.module}' is not modelled: assumed not to match")
    return handler(m, rule, pkt, ctx)


def _says(holds: bool, yes: str, no: str) -> str:
    return yes if holds else "!" + no


def _in_cidr(ip: str, spec: str) -> bool:
    addr = ipaddress.ip_address(ip)
    for part in spec.split(","):
        net = ipaddress.ip_network(part, strict=False)
        if net.version == addr.version and addr in net:
            return True
    return False


def _iface_matches(iface: str, pattern: str) -> bool:
    if pattern.endswith("+"):
        return iface.startswith(pattern[:-1])
    return fnmatch.fnmatchcase(iface, pattern) if "*" in pattern else iface == pattern


def _builtin(m: Match, pkt: PacketState) -> str:
    value = m.values[0] if m.values else ""
    if m.option in ("-s", "-d"):
        ip, what = (pkt.src, "source") if m.option == "-s" else (pkt.dst, "destination")
        try:
            inside = _in_cidr(ip, value)
        except ValueError:
            raise _Fail(f"bad address {value!r} in rule") from None
        return _says(inside, f"{what} {ip} is in {value}", f"{what} {ip} is not in {value}")
    if m.option == "-p":
        want = PROTO_NUMBERS.get(value.lower(), value.lower())
        if want in ("all", "0"):
            return _says(True, "any protocol", "")
        return _says(pkt.proto == want, f"protocol is {pkt.proto}", f"protocol {pkt.proto} is not {want}")
    if m.option in ("-i", "-o"):
        iface, what = (pkt.in_iface, "input") if m.option == "-i" else (pkt.out_iface, "output")
        if iface is None:
            return "!" + f"no known {what} interface"
        return _says(_iface_matches(iface, value), f"{what} interface {iface} matches {value}",
                     f"{what} interface {iface} does not match {value}")
    if m.option == "-f":
        return "!" + "a first packet is not a fragment"
    raise _Fail(f"option {m.option} is not modelled")


def _parse_ports(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        lo, colon, hi = part.partition(":")
        if colon:
            out.append((int(lo or 0), int(hi or 65535)))
        else:
            out.append((int(lo), int(lo)))
    return out


def _port_value(m: Match, pkt: PacketState) -> tuple[int, str]:
    dest = m.option.startswith(("--d", "--destination"))
    return (pkt.dport, "destination") if dest else (pkt.sport, "source")


def _port(m: Match, pkt: PacketState) -> str:
    port, what = _port_value(m, pkt)
    if pkt.proto not in ("tcp", "udp", "sctp", "udplite", "dccp"):
        raise _Fail(f"protocol {pkt.proto} has no ports")
    try:
        ranges = _parse_ports(m.value)
    except ValueError:
        raise _Fail(f"bad port {m.value!r} in rule") from None
    holds = any(lo <= port <= hi for lo, hi in ranges)
    return _says(holds, f"{what} port {port} is {m.value}", f"{what} port {port} is not {m.value}")


def _multiport(m: Match, pkt: PacketState) -> str:
    if m.option == "--ports":
        try:
            ranges = _parse_ports(m.value)
        except ValueError:
            raise _Fail(f"bad port list {m.value!r}") from None
        holds = any(lo <= p <= hi for lo, hi in ranges for p in (pkt.sport, pkt.dport))
        return _says(holds, f"a port is in {m.value}", f"ports {pkt.sport},{pkt.dport} not in {m.value}")
    return _port(Match(m.module, m.option.replace("ports", "port"), m.negated, m.values), pkt)


def _addrtype(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str:
    if m.option == "--limit-iface-in" or m.option == "--limit-iface-out":
        return ""
    if m.option not in ("--src-type", "--dst-type"):
        raise _Fail(f"addrtype option {m.option} is not modelled")
    ip, what = (pkt.src, "source") if m.option == "--src-type" else (pkt.dst, "destination")
    types = _addr_types(ip, ctx)
    wanted = set(m.value.upper().split(","))
    holds = bool(types & wanted)
    kind = "/".join(sorted(types)) or "not LOCAL"
    return _says(holds, f"{what} {ip} is {kind}", f"{what} {ip} is {kind}, not {m.value}")


def _addr_types(ip: str, ctx: MatchContext) -> set[str]:
    addr = ipaddress.ip_address(ip)
    types: set[str] = set()
    if ctx.is_local(ip):
        types.add(LOCAL)
    if addr.is_multicast:
        types.add("MULTICAST")
    elif str(addr) == "255.255.255.255":
        types.add("BROADCAST")
    elif LOCAL not in types:
        types.add("UNICAST")
    return types


def _conntrack(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str:
    if m.option not in ("--ctstate", "--state"):
        raise _Fail(f"conntrack option {m.option} is not modelled")
    wanted = set(m.value.upper().split(","))
    have = ",".join(sorted(pkt.ctstate))
    hit = sorted(wanted & pkt.ctstate)
    return _says(bool(hit), f"state {have} includes {','.join(hit)}", f"state is {have}, not {m.value}")


def _mark(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str:
    if m.option != "--mark":
        raise _Fail(f"mark option {m.option} is not modelled")
    value, mask = parse_mark(m.value)
    holds = (pkt.mark & mask) == value
    return _says(holds, f"mark {pkt.mark:#x} & {mask:#x} == {value:#x}",
                 f"mark {pkt.mark:#x} & {mask:#x} != {value:#x}")


def parse_mark(spec: str) -> tuple[int, int]:
    """`0x4000/0x4000` -> (0x4000, 0x4000); `0x4000` -> (0x4000, 0xffffffff)."""
    value, _, mask = spec.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def _recent(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str:
    name_m = rule.find("recent", "--name")
    name = name_m.value if name_m else "DEFAULT"
    if m.option in ("--rcheck", "--update"):
        recorded = ctx.recorded(name) or name in pkt.recent_set
        return _says(recorded, f"client {pkt.src} already recorded in {name} (session affinity applies)",
                     f"client {pkt.src} not recorded in {name} yet (assumed first connection; "
                     "a recorded client would stick to this endpoint)")
    if m.option == "--remove":
        return _says(ctx.recorded(name), f"client recorded in {name}", f"client not recorded in {name}")
    if m.option == "--set":
        return f"records client {pkt.src} in {name}"
    return ""  # --name, --seconds, --reap, --rsource, --mask, --hitcount: modifiers


def _statistic(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str | float:
    if m.option == "--mode":
        return ""
    if m.option == "--probability":
        p = float(m.value)
        return 1.0 - p if m.negated else p
    if m.option == "--every":
        n = int(m.value)
        return 1.0 - 1.0 / n if m.negated else 1.0 / n  # nth mode: 1 in n packets
    if m.option == "--packet":
        return ""
    raise _Fail(f"statistic option {m.option} is not modelled")


def _tcp_flags(m: Match, rule: Rule, pkt: PacketState, ctx: MatchContext) -> str:
    if m.option == "--syn":
        return _says(True, "a first packet is a SYN", "")
    if m.option == "--tcp-flags" and len(m.values) == 2:
        mask, comp = (set(v.upper().split(",")) for v in m.values)
        flags = {"SYN"}
        mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in mask else mask
        holds = (flags & mask) == (comp - {"NONE"})
        return _says(holds, "SYN packet matches the flags", "a SYN packet does not match the flags")
    raise _Fail(f"option {m.option} is not modelled")


_MODULE_HANDLERS = {
    "addrtype": _addrtype,
    "conntrack": _conntrack,
    "state": _conntrack,
    "mark": _mark,
    "recent": _recent,
    "statistic": _statistic,
    "tcp": _tcp_flags,
}
