"""The demo's walk: the seed article's path of a ClusterIP packet, in the node's proxy mode.

The walk is written once (`walk_text`); `Walk` holds what differs per mode: how a packet is
traced (`svcnet explain`'s tracer of the mode), which traced steps name the path, and, in
nftables mode, which pieces of the node's `kube-proxy` table stand for the article's iptables
chains. iptables mode's walk is the article's own chains and prints what it always printed (the
README and the lab tests show it); nftables mode adds the table's pieces, the NodePort's path from
the lab's client and where the packet is masqueraded, since its chain names alone do not say so.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from svcnet.explain.combine import combine
from svcnet.explain.nft import NftTable, parse_table, trace_nft
from svcnet.explain.trace import ORIGIN_NODE, ORIGIN_OUTSIDE, Packet, Step, Trace, TraceContext, trace
from svcnet.explain.trace import Path as TracePath
from svcnet.model.types import MODE_IPTABLES, MODE_NFTABLES, Cluster, ServicePort
from svcnet.render import chains as c
from svcnet.render.artifacts import NodeArtifacts, node_artifacts

CLIENT_PORT = 40000  # the traced packets' source port: an ephemeral one, as explain's default


@dataclass(frozen=True)
class Walk:
    """What the walk needs to know of one proxy mode on one node."""

    mode: str
    rules: str  # where the packet goes, for the headings
    list_command: str  # prints the node's rules, for the closing hints
    trace: Callable[[NodeArtifacts, Packet, TraceContext], Trace]
    is_hop: Callable[[Step], bool]  # a traced step the path line names by its chain
    pieces: Callable[[NodeArtifacts, ServicePort], str] | None = None  # the rules behind the article's chains
    node_port: bool = False  # also trace the NodePort from the lab's client
    masquerade: bool = False  # end a masqueraded path with the chain that masquerades it


def _trace_iptables(art: NodeArtifacts, packet: Packet, ctx: TraceContext) -> Trace:
    return trace(combine(art.restore, art.jump_rules), packet, ctx)


def _iptables_hop(s: Step) -> bool:
    # The article's chains: kube-proxy's own in the nat table; the jump to KUBE-MARK-MASQ is an aside.
    return (s.matched and s.table == c.TABLE_NAT and s.chain.startswith(c.OWNED_CHAIN_PREFIX)
            and c.KUBE_MARK_MASQ not in (s.chain, s.target))


def _trace_nftables(art: NodeArtifacts, packet: Packet, ctx: TraceContext) -> Trace:
    return trace_nft(parse_table(art.nft_table), packet, ctx)


_NFT_BASE = frozenset(name for name, _kind, _hook, _priority in c.NFT_BASE_CHAINS)


def _nftables_hop(s: Step) -> bool:
    # The path's own chains: not the base chains (the hooks, which jump to `services` or to checks a
    # served packet misses), and not the masquerade mark, an aside as KUBE-MARK-MASQ is in iptables mode.
    return s.matched and s.chain not in _NFT_BASE and c.NFT_MARK_FOR_MASQUERADE not in (s.chain, s.target)


def walk_for(art: NodeArtifacts) -> Walk:
    """The walk of the node's proxy mode."""
    if not art.nftables_mode:
        return Walk(MODE_IPTABLES, "the nat table", "iptables-save -t nat", _trace_iptables, _iptables_hop)
    table = f"{c.NFT_FAMILIES[art.settings.ip_family]} {c.NFT_TABLE}"
    return Walk(MODE_NFTABLES, f"table {table}", f"nft list table {table}", _trace_nftables, _nftables_hop,
                pieces=nft_pieces, node_port=True, masquerade=True)


def walk_text(cluster: Cluster, node: str, sp: ServicePort, client_ip: str | None = None) -> str:
    """What the demo prints for one service port before its traffic: in nftables mode the table's
    pieces behind the article's chains, then the traced paths (`chain_walk`)."""
    art = node_artifacts(cluster, node)
    walk = walk_for(art)
    out = ""
    if walk.pieces is not None:
        out += (f"\nThe seed article's chains in {walk.mode} terms ({walk.rules} on {node}, as rendered and "
                "verified on the node):\n")
        out += walk.pieces(art, sp)
    out += f"\nThe path of a packet through {walk.rules} (svcnet explain on {node}):\n"
    return out + chain_walk(cluster, node, sp, client_ip, art)


def chain_walk(cluster: Cluster, node: str, sp: ServicePort, client_ip: str | None = None,
               art: NodeArtifacts | None = None) -> str:
    """The traced paths of the ClusterIP from `node` (nftables mode: also of the NodePort from
    `client_ip`), through the rendered rules of `node`, one line per path with its probability."""
    art = art or node_artifacts(cluster, node)
    walk = walk_for(art)
    n = cluster.node(node)
    ctx = TraceContext(local_ips=frozenset({*n.addresses, "127.0.0.0/8"}), pod_iface=cluster.bridge,
                       pod_cidrs=(n.pod_cidr,))
    packets = [(f"from {node} to {sp.cluster_ip}:{sp.port}/{sp.protocol} ({sp.spn})",
                Packet(n.internal_ip, CLIENT_PORT, sp.cluster_ip or "", sp.port, sp.proto, ORIGIN_NODE))]
    if walk.node_port and sp.node_port and client_ip and _same_family(client_ip, n.internal_ip):
        packets.append((f"from the client {client_ip} to the NodePort {n.internal_ip}:{sp.node_port}/{sp.protocol}",
                        Packet(client_ip, CLIENT_PORT, n.internal_ip, sp.node_port, sp.proto, ORIGIN_OUTSIDE)))
    lines: list[str] = []
    for title, packet in packets:
        lines.append(f"{title}:")
        for path in walk.trace(art, packet, ctx).paths:
            lines.append("  " + " → ".join(_hops(walk, path)) + f"   ({path.probability:.0%})")
    return "\n".join(lines) + "\n"


def _same_family(a: str, b: str) -> bool:
    return ipaddress.ip_address(a).version == ipaddress.ip_address(b).version


def _hops(walk: Walk, path: TracePath) -> list[str]:
    """e.g. KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… → DNAT to ip:port, from one traced path."""
    hops: list[str] = []
    for s in path.steps:
        if not walk.is_hop(s):
            continue
        if not hops or hops[-1] != s.chain:
            hops.append(s.chain)
        if s.target == c.DNAT and path.dnat:
            hops.append(f"DNAT to {path.dnat}")
            break
    if walk.masquerade and path.masquerade_step is not None:
        hops.append(path.masquerade_step.chain)
    return hops


# ---------------------------------------------------------------- nftables mode's pieces

_JUMP_RE = re.compile(r"\b(?:jump|goto) (\S+)")


def nft_pieces(art: NodeArtifacts, sp: ServicePort) -> str:
    """The rules and map elements of the node's table that do what each of the article's iptables
    chains does for `sp`, under that chain's name: the ClusterIP's service-ips element, the
    service chain's numgen, the endpoint chains' dnat, the masquerade mark and masquerading, and
    the NodePort's service-nodeports element (with nodeport-ips when nodePortAddresses is set)."""
    t = parse_table(art.nft_table)
    by_ip = f"{sp.cluster_ip} . {sp.proto} . {sp.port}"
    by_port = f"{sp.proto} . {sp.node_port}"
    node_port = t.maps.get(c.NFT_SERVICE_NODEPORTS, {}).get(by_port, "") if sp.node_port else ""
    # Every chain of the port, met from its ClusterIP or from its NodePort (local-… only from there).
    reached = _reached(t, f"{t.maps.get(c.NFT_SERVICE_IPS, {}).get(by_ip, '')} {node_port}")
    sections = [
        (f"{c.KUBE_SERVICES}: the ClusterIP's port is an element of the verdict map {c.NFT_SERVICE_IPS}, "
         f"which chain {c.NFT_SERVICES} looks up",
         _elements(t, c.NFT_SERVICE_IPS, by_ip) + _rules(t, c.NFT_SERVICES, f"@{c.NFT_SERVICE_IPS}")),
        (f"{c.SVC_PREFIX}…: the service's chain, where numgen random picks the endpoint's chain",
         _chains(t, reached, (c.NFT_SERVICE_PREFIX, c.NFT_LOCAL_PREFIX))),
        (f"{c.SEP_PREFIX}…: one chain per endpoint, {c.DNAT} to its pod",
         _chains(t, reached, (c.NFT_ENDPOINT_PREFIX,))),
        (f"{c.KUBE_MARK_MASQ}, {c.KUBE_POSTROUTING}: {c.NFT_MARK_FOR_MASQUERADE} marks the packet, "
         f"{c.NFT_MASQUERADING} (from {c.NFT_NAT_POSTROUTING}) masquerades what is marked",
         _chains(t, [c.NFT_MARK_FOR_MASQUERADE]) + _rules(t, c.NFT_NAT_POSTROUTING, c.NFT_MASQUERADING)
         + _chains(t, [c.NFT_MASQUERADING])),
    ]
    if node_port:
        sections.append((
            f"{c.KUBE_NODEPORTS}, {c.EXT_PREFIX}…: the NodePort is an element of the verdict map "
            f"{c.NFT_SERVICE_NODEPORTS}, whose chain goes on to the same service chain",
            _elements(t, c.NFT_SERVICE_NODEPORTS, by_port) + _rules(t, c.NFT_SERVICES, f"@{c.NFT_SERVICE_NODEPORTS}")
            + _set(t, c.NFT_NODEPORT_IPS) + _chains(t, reached, (c.NFT_EXTERNAL_PREFIX, c.NFT_FIREWALL_PREFIX))))
    return "".join(f"{title}\n" + "".join(f"  {line}\n" for line in lines) for title, lines in sections)


def _reached(t: NftTable, verdicts: str) -> list[str]:
    """The chains verdicts (`goto service-…`) lead to, through every jump and goto on the way, in
    the order met."""
    order: list[str] = []
    todo = _JUMP_RE.findall(verdicts)
    while todo:
        chain = todo.pop(0)
        if chain in order or chain not in t.rules:
            continue
        order.append(chain)
        todo.extend(target for rule in t.rules[chain] for target in _JUMP_RE.findall(rule))
    return order


def _elements(t: NftTable, name: str, key: str) -> list[str]:
    verdict = t.maps.get(name, {}).get(key)
    return [f"map {name}: {key} : {verdict}"] if verdict else []


def _rules(t: NftTable, chain: str, word: str) -> list[str]:
    """The rules of `chain` that name `word` (a map `@service-ips`, a chain)."""
    return [f"chain {chain}: {rule}" for rule in t.rules.get(chain, []) if word in rule.split(" ")]


def _chains(t: NftTable, names: list[str], prefixes: tuple[str, ...] = ("",)) -> list[str]:
    return [f"chain {name}: {rule}" for name in names if name.startswith(prefixes) for rule in t.rules.get(name, [])]


def _set(t: NftTable, name: str) -> list[str]:
    elements = sorted(t.sets.get(name, set()))
    return [f"set {name}: {', '.join(elements)}"] if elements else []
