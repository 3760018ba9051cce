"""Render the `iptables-restore --noflush` input kube-proxy's iptables mode writes (full sync).

The structure follows `proxier.go` `syncProxyRules`: one pass per service port writing lines
into four buffers (filter rules, nat chains, nat rules, plus the fixed filter chains), which are
then concatenated as `*filter … COMMIT *nat … COMMIT`. Rule text, order and quoting are
kube-proxy's, so `canonical_sort(render_restore(...))` equals upstream test expectations.

`render_nodes` renders many nodes at once and shares work: per service port, the lines that do
not depend on the node are rendered once per group of nodes with the same node-independent
settings, and only node-dependent service ports (local traffic policy with endpoints somewhere,
LoadBalancer source ranges that may contain the node IP) are re-rendered, once per distinct
variant. Nodes whose complete output is identical share one string object.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from svcnet.model.types import (
    NFACCT_INVALID_DROPPED,
    NFACCT_LOCALHOST_NPS,
    Endpoint,
    LocalDetector,
    ProxierSettings,
    ServicePort,
)
from svcnet.render import chains as c
from svcnet.render.jumps import localhost_nodeports_enabled

# Targets and fixed texts.
MARK_MASQ_JUMP = "-j " + c.KUBE_MARK_MASQ
REJECT, DROP, ACCEPT = "REJECT", "DROP", "ACCEPT"
COMMENT_SNAT = '"kubernetes service traffic requiring SNAT"'
COMMENT_LOCALNET = '"block incoming localnet connections"'
COMMENT_FORWARD = '"kubernetes forwarding rules"'
COMMENT_FORWARD_CT = '"kubernetes forwarding conntrack rule"'
COMMENT_NODEPORTS_LAST = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
LOOPBACK_V4_NET = "127.0.0.0/8"
LOOPBACK_V6_NET = "::1/128"
LOOPBACK_IP = {4: "127.0.0.1", 6: "::1"}

_PROTOCOLS = frozenset(("tcp", "udp", "sctp"))
_LABEL = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_NAME_RE = re.compile(rf"{_LABEL}/{_LABEL}(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)?")  # ns/name[:port]
_ADDR_RE = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")
_TOKEN_RE = re.compile(r"!|[A-Za-z0-9_.:/@+-]+")  # one detector argument (CIDR, interface[+])
_MARK_RE = re.compile(r"0x[0-9A-Fa-f]{1,8}")


class RenderError(ValueError):
    """A service port the renderer cannot express safely; names the service port."""


def chain_line(name: str) -> str:
    """`MakeChainLine`: `:NAME - [0:0]`."""
    return f":{name} - [0:0]\n"


def probability(n: int) -> str:
    """`computeProbability`: 1/n with ten decimals (`%0.10f`)."""
    return "%0.10f" % (1.0 / n)


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # 10 bits -> 2 characters


def _hash16(text: str) -> str:
    """First 16 characters of base32(sha256(text)) (= base32 of the first 80 bits), fast path."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    t = _B32_PAIRS
    return (t[n >> 70] + t[(n >> 60) & 1023] + t[(n >> 50) & 1023] + t[(n >> 40) & 1023]
            + t[(n >> 30) & 1023] + t[(n >> 20) & 1023] + t[(n >> 10) & 1023] + t[n & 1023])


# --------------------------------------------------------------------------- per-port facts


@dataclass(frozen=True, slots=True)
class _Ep:
    """One endpoint as the renderer uses it (kube-proxy's endpointInfo)."""

    hp: str  # ip:port, [ip]:port for IPv6
    ip: str
    sep: str  # KUBE-SEP-h
    node: str | None
    ready: bool
    serving_terminating: bool


@dataclass(slots=True)
class _PortInfo:
    """Node-independent facts of one service port for one IP family (kube-proxy's servicePortInfo)."""

    sp: ServicePort
    spn: str
    match: str  # "-m tcp -p tcp"
    svc: str
    svl: str
    ext: str
    fw: str
    dst: str  # "-d <clusterIP> --dport <port>"
    port: str
    external_ips: tuple[str, ...]
    lb_ips: tuple[str, ...]
    ranges: tuple[str, ...]
    eps: tuple[_Ep, ...]  # family-filtered, deduplicated, sorted by ip:port string
    cluster: tuple[_Ep, ...]  # CategorizeEndpoints cluster endpoints (node-independent)
    has_any: bool
    uses_cluster: bool
    uses_local: bool
    local_nodes: frozenset[str]  # nodes that have a usable endpoint of this port
    range_nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def _family_of(addr: str) -> int:
    return 6 if ":" in addr else 4


def _check_addrs(spn: str, addrs: Iterable[str]) -> None:
    for a in addrs:
        if not _ADDR_RE.fullmatch(a):
            raise RenderError(f"service port {spn}: {a!r} is not a canonical IP address or CIDR")


def _endpoints(spn: str, proto: str, eps: Iterable[Endpoint], family: int) -> tuple[_Ep, ...]:
    """Endpoints of the family, one per ip:port (non-terminating preferred), sorted by ip:port."""
    by_hp: dict[str, Endpoint] = {}
    for ep in eps:
        ip = ep.ip
        if (":" in ip) != (family == 6):
            continue
        hp = f"[{ip}]:{ep.port}" if family == 6 else f"{ip}:{ep.port}"
        old = by_hp.get(hp)
        if old is None or (old.terminating and not ep.terminating):
            by_hp[hp] = ep
    _check_addrs(spn, (ep.ip for ep in by_hp.values()))
    prefix = spn + proto
    return tuple(
        _Ep(hp, ep.ip, c.SEP_PREFIX + _hash16(prefix + hp), ep.node_name, ep.ready,
            ep.serving and ep.terminating)
        for hp, ep in sorted(by_hp.items())
    )


def _port_info(sp: ServicePort, family: int) -> _PortInfo | None:
    """Facts for one service port, or None if kube-proxy would skip it for this family."""
    if not sp.cluster_ip or sp.cluster_ip == "None" or _family_of(sp.cluster_ip) != family:
        return None
    spn, proto = sp.spn, sp.proto
    if not _NAME_RE.fullmatch(spn):
        raise RenderError(f"service port {spn!r}: invalid namespace, name or port name")
    if proto not in _PROTOCOLS:
        raise RenderError(f"service port {spn}: unsupported protocol {sp.protocol!r}")
    ext_ips = tuple(ip for ip in sp.external_ips if _family_of(ip) == family)
    lb_ips = tuple(ip for ip in sp.lb_ips if _family_of(ip) == family)
    ranges = tuple(r.strip() for r in sp.lb_source_ranges if _family_of(r) == family)
    _check_addrs(spn, (sp.cluster_ip, *ext_ips, *lb_ips, *ranges))
    try:
        range_nets = tuple(ipaddress.ip_network(r, strict=False) for r in ranges)
    except ValueError as exc:
        raise RenderError(f"service port {spn}: bad loadBalancerSourceRange: {exc}") from None
    h = _hash16(spn + proto)
    eps = _endpoints(spn, proto, sp.endpoints, family)
    accessible = sp.externally_accessible
    itp_local = sp.internal_policy_local
    uses_cluster = not itp_local or accessible
    uses_local = itp_local or (sp.external_policy_local and accessible)
    usable = [ep for ep in eps if ep.ready or ep.serving_terminating]
    cluster: tuple[_Ep, ...] = ()
    if uses_cluster:
        cluster = tuple(ep for ep in eps if ep.ready) or tuple(ep for ep in eps if ep.serving_terminating)
    # CategorizeEndpoints' hasAnyEndpoints: some ready or serving-terminating endpoint anywhere.
    has_any = bool(usable)
    port = str(sp.port)
    return _PortInfo(
        sp=sp, spn=spn, match=f"-m {proto} -p {proto}",
        svc=c.SVC_PREFIX + h, svl=c.SVL_PREFIX + h, ext=c.EXT_PREFIX + h, fw=c.FW_PREFIX + h,
        dst=f"-d {sp.cluster_ip} --dport {port}", port=port,
        external_ips=ext_ips, lb_ips=lb_ips, ranges=ranges, eps=eps,
        cluster=cluster, has_any=has_any, uses_cluster=uses_cluster, uses_local=uses_local,
        local_nodes=frozenset(ep.node for ep in usable if ep.node), range_nets=range_nets,
    )


def _local_endpoints(info: _PortInfo, node: str | None) -> tuple[_Ep, ...]:
    """CategorizeEndpoints' local list: local ready endpoints, else local serving-terminating."""
    if not info.uses_local or node is None:
        return ()
    mine = [ep for ep in info.eps if ep.node == node]
    return tuple(ep for ep in mine if ep.ready) or tuple(ep for ep in mine if ep.serving_terminating)


# --------------------------------------------------------------------------- group context


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Settings every node of a render group shares (everything a service port's lines read)."""

    family: int
    masquerade_all: bool
    detector: LocalDetector
    localhost_nps_nfacct: bool  # write the 127.0.0.0/8 nfacct NodePort rule
    large: bool  # large-cluster mode: no comments on SEP and SVC->SEP rules
    if_local: str = field(default="")
    if_not_local: str = field(default="")


def _check_settings(s: ProxierSettings) -> None:
    """Reject settings that would put unvalidated text into the ruleset."""
    where = f"node {s.node_name}"
    if s.ip_family not in (4, 6):
        raise RenderError(f"{where}: ip_family must be 4 or 6, not {s.ip_family!r}")
    if not _MARK_RE.fullmatch(s.masquerade_mark):
        raise RenderError(f"{where}: masquerade mark {s.masquerade_mark!r} is not a hex mark like 0x4000")
    for arg in (*s.local_detector.if_local(), *s.local_detector.if_not_local()):
        if not _TOKEN_RE.fullmatch(arg):
            raise RenderError(f"{where}: local detector argument {arg!r} is not a CIDR or interface name")
    for addr in (*s.node_ips, *s.nodeport_addresses):
        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise RenderError(f"{where}: {addr!r} is not an IP address or CIDR") from None


def _make_ctx(s: ProxierSettings, total_endpoints: int) -> _Ctx:
    _check_settings(s)
    eff_localhost = localhost_nodeports_enabled(s)
    return _Ctx(
        family=s.ip_family,
        masquerade_all=s.masquerade_all,
        detector=s.local_detector,
        localhost_nps_nfacct=eff_localhost and NFACCT_LOCALHOST_NPS in s.facts.nfacct_counters,
        large=total_endpoints > s.large_cluster_threshold,
        if_local=" ".join(s.local_detector.if_local()),
        if_not_local=" ".join(s.local_detector.if_not_local()),
    )


# --------------------------------------------------------------------------- one service port


def _write_endpoint_dispatch(
    ctx: _Ctx, info: _PortInfo, chain: str, eps: Sequence[_Ep], nr: list[str]
) -> None:
    """`writeServiceToEndpointRules`: affinity checks, then the statistic cascade."""
    spn = info.spn
    prefix = f"-A {chain} "
    timeout = info.sp.affinity_timeout
    if timeout is not None:
        for ep in eps:
            sep = ep.sep
            comment = "" if ctx.large else f'-m comment --comment "{spn} -> {ep.hp}" '
            nr.append(f"{prefix}{comment}-m recent --name {sep} --rcheck --seconds {timeout} --reap "
                      f"-j {sep}\n")
    n = len(eps)
    for i, ep in enumerate(eps):
        comment = "" if ctx.large else f'-m comment --comment "{spn} -> {ep.hp}" '
        stat = f"-m statistic --mode random --probability {probability(n - i)} " if i < n - 1 else ""
        nr.append(f"{prefix}{comment}{stat}-j {ep.sep}\n")


def _write_endpoint_chains(
    ctx: _Ctx, info: _PortInfo, eps: Sequence[_Ep], nc: list[str], nr: list[str], active: list[str]
) -> None:
    """One KUBE-SEP chain per endpoint: hairpin masquerade, then DNAT (with affinity `--set`)."""
    comment = "" if ctx.large else f"-m comment --comment {info.spn} "
    affinity = info.sp.affinity_timeout is not None
    for ep in eps:
        sep = ep.sep
        nc.append(chain_line(sep))
        active.append(sep)
        head = f"-A {sep} {comment}"
        nr.append(f"{head}-s {ep.ip} {MARK_MASQ_JUMP}\n")
        recent = f"-m recent --name {sep} --set " if affinity else ""
        nr.append(f"{head}{recent}{info.match} -j DNAT --to-destination {ep.hp}\n")


def _write_port(
    ctx: _Ctx,
    info: _PortInfo,
    local_node: str | None,
    allow_from_node: bool,
    fr: list[str],
    nc: list[str],
    nr: list[str],
    active: list[str],
) -> None:
    """All lines of one service port (syncProxyRules' loop body), appended to the buffers."""
    sp, spn, match, port = info.sp, info.spn, info.match, info.port
    svc, svl, ext, fw = info.svc, info.svl, info.ext, info.fw
    has_any = info.has_any
    cluster = info.cluster
    local = _local_endpoints(info, local_node)
    itp_local, etp_local = sp.internal_policy_local, sp.external_policy_local
    uses_cluster_chain = bool(cluster) and info.uses_cluster
    uses_local_chain = bool(local) and info.uses_local
    internal_chain = svl if itp_local else svc
    has_internal = has_any and (not itp_local or bool(local))
    external_chain = svl if etp_local else svc
    has_external = has_any and (not etp_local or bool(local))
    uses_ext_chain = has_any and sp.externally_accessible
    uses_fw = has_any and bool(info.lb_ips) and bool(info.ranges)
    lb_chain = fw if uses_fw else ext

    if not has_any:
        int_target = ext_target = REJECT
        int_comment = ext_comment = f'"{spn} has no endpoints"'
    else:
        int_target = ext_target = DROP
        int_comment = ext_comment = f'"{spn} has no local endpoints"'

    # Cluster IP.
    if has_internal:
        nr.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} cluster IP" {match} {info.dst} '
                  f"-j {internal_chain}\n")
    else:
        fr.append(f"-A {c.KUBE_SERVICES} -m comment --comment {int_comment} {match} {info.dst} "
                  f"-j {int_target}\n")

    # External IPs.
    for ip in info.external_ips:
        if has_any:
            nr.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} external IP" {match} '
                      f"-d {ip} --dport {port} -j {ext}\n")
        if not has_external:
            fr.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                      f"-d {ip} --dport {port} -j {ext_target}\n")

    # Load-balancer ingress IPs.
    for ip in info.lb_ips:
        if has_any:
            nr.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} loadbalancer IP" {match} '
                      f"-d {ip} --dport {port} -j {lb_chain}\n")
        if uses_fw:
            fr.append(f'-A {c.KUBE_PROXY_FIREWALL} -m comment --comment "{spn} traffic not accepted by {fw}" '
                      f"{match} -d {ip} --dport {port} -j {DROP}\n")
    if not has_external:
        for ip in info.lb_ips:
            fr.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                      f"-d {ip} --dport {port} -j {ext_target}\n")

    # NodePort.
    if sp.node_port:
        if has_any:
            if ctx.localhost_nps_nfacct:
                nr.append(f"-A {c.KUBE_NODEPORTS} -m comment --comment {spn} {match} -d {LOOPBACK_V4_NET} "
                          f"--dport {sp.node_port} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NPS} -j {ext}\n")
            nr.append(f"-A {c.KUBE_NODEPORTS} -m comment --comment {spn} {match} --dport {sp.node_port} "
                      f"-j {ext}\n")
        if not has_external:
            fr.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                      f"-m addrtype --dst-type LOCAL {match} --dport {sp.node_port} -j {ext_target}\n")

    # Health check node port.
    hcnp = sp.effective_health_check_node_port
    if hcnp:
        fr.append(f'-A {c.KUBE_NODEPORTS} -m comment --comment "{spn} health check node port" '
                  f"-m tcp -p tcp --dport {hcnp} -j {ACCEPT}\n")

    # Masquerade off-cluster traffic to the cluster IP.
    if has_internal:
        head = f'-A {internal_chain} -m comment --comment "{spn} cluster IP" {match} {info.dst}'
        if ctx.masquerade_all:
            nr.append(f"{head} {MARK_MASQ_JUMP}\n")
        elif ctx.if_not_local:
            nr.append(f"{head} {ctx.if_not_local} {MARK_MASQ_JUMP}\n")

    # External destinations chain.
    if uses_ext_chain:
        nc.append(chain_line(ext))
        active.append(ext)
        if not etp_local:
            nr.append(f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" '
                      f"{MARK_MASQ_JUMP}\n")
        else:
            if ctx.if_local:
                nr.append(f'-A {ext} -m comment --comment "pod traffic for {spn} external destinations" '
                          f"{ctx.if_local} -j {svc}\n")
            nr.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {spn} external '
                      f'destinations" -m addrtype --src-type LOCAL {MARK_MASQ_JUMP}\n')
            nr.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {spn} external '
                      f'destinations" -m addrtype --src-type LOCAL -j {svc}\n')
        if has_external:
            nr.append(f"-A {ext} -j {external_chain}\n")

    # loadBalancerSourceRanges firewall chain.
    if uses_fw:
        nc.append(chain_line(fw))
        active.append(fw)
        head = f'-A {fw} -m comment --comment "{spn} loadbalancer IP"'
        for cidr in info.ranges:
            nr.append(f"{head} -s {cidr} -j {ext}\n")
        if allow_from_node:
            for ip in info.lb_ips:
                nr.append(f"{head} -s {ip} -j {ext}\n")
        nr.append(f'-A {fw} -m comment --comment "other traffic to {spn} will be dropped by '
                  f'{c.KUBE_PROXY_FIREWALL}"\n')

    # Policy chains.
    if uses_cluster_chain:
        nc.append(chain_line(svc))
        active.append(svc)
        _write_endpoint_dispatch(ctx, info, svc, cluster, nr)
    if uses_local_chain:
        nc.append(chain_line(svl))
        active.append(svl)
        _write_endpoint_dispatch(ctx, info, svl, local, nr)

    # Endpoint chains for every locally reachable endpoint.
    if not uses_local_chain:
        reachable: Sequence[_Ep] = cluster if info.uses_cluster else ()
    elif not info.uses_cluster:
        reachable = local
    else:
        merged = {ep.hp: ep for ep in cluster}
        merged.update((ep.hp, ep) for ep in local)
        reachable = [merged[hp] for hp in sorted(merged)]
    _write_endpoint_chains(ctx, info, reachable, nc, nr, active)


# --------------------------------------------------------------------------- planning and sharing


@dataclass(slots=True)
class _Block:
    """Pre-rendered lines of a run of node-independent service ports."""

    fr: str
    nc: str
    nr: str
    active: tuple[str, ...]


@dataclass(slots=True)
class _Slot:
    """A node-dependent service port, rendered once per distinct variant key."""

    info: _PortInfo
    needs_local: bool
    needs_fw: bool
    variants: dict[tuple[str | None, bool], _Block] = field(default_factory=dict)


def _render_block(ctx: _Ctx, infos: Iterable[_PortInfo], local_node: str | None, allow: bool) -> _Block:
    fr: list[str] = []
    nc: list[str] = []
    nr: list[str] = []
    active: list[str] = []
    for info in infos:
        _write_port(ctx, info, local_node, allow, fr, nc, nr, active)
    return _Block("".join(fr), "".join(nc), "".join(nr), tuple(active))


def _plan(ctx: _Ctx, infos: Sequence[_PortInfo]) -> list[_Block | _Slot]:
    """Split the service ports into shared blocks and node-dependent slots, in order."""
    plan: list[_Block | _Slot] = []
    run: list[_PortInfo] = []
    for info in infos:
        needs_local = info.uses_local and bool(info.local_nodes)
        needs_fw = info.has_any and bool(info.lb_ips) and bool(info.ranges)
        if not (needs_local or needs_fw):
            run.append(info)
            continue
        if run:
            plan.append(_render_block(ctx, run, None, False))
            run = []
        plan.append(_Slot(info, needs_local, needs_fw))
    if run:
        plan.append(_render_block(ctx, run, None, False))
    return plan


def _variant(slot: _Slot, node: str, primary: ipaddress.IPv4Address | ipaddress.IPv6Address | None
             ) -> tuple[str | None, bool]:
    local = node if slot.needs_local and node in slot.info.local_nodes else None
    allow = (
        slot.needs_fw and primary is not None and any(primary in net for net in slot.info.range_nets)
    )
    return local, allow


# --------------------------------------------------------------------------- fixed parts


def _filter_chains(s: ProxierSettings) -> str:
    owned = c.OWNED_CHAINS[c.TABLE_FILTER]
    names = owned if localhost_nodeports_enabled(s) else tuple(n for n in owned if n != c.KUBE_FIREWALL)
    return "".join(chain_line(n) for n in names)


def _filter_head_rules(s: ProxierSettings) -> str:
    if not localhost_nodeports_enabled(s):
        return ""
    return (f"-A {c.KUBE_FIREWALL} -m comment --comment {COMMENT_LOCALNET} -d {LOOPBACK_V4_NET} "
            f"! -s {LOOPBACK_V4_NET} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j {DROP}\n")


def _filter_tail_rules(s: ProxierSettings) -> str:
    out = []
    if not s.facts.tcp_be_liberal:
        nfacct = (f" -m nfacct --nfacct-name {NFACCT_INVALID_DROPPED}"
                  if NFACCT_INVALID_DROPPED in s.facts.nfacct_counters else "")
        out.append(f"-A {c.KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j {DROP}\n")
    mark = s.masquerade_mark
    out.append(f"-A {c.KUBE_FORWARD} -m comment --comment {COMMENT_FORWARD} -m mark --mark {mark}/{mark} "
               f"-j {ACCEPT}\n")
    out.append(f"-A {c.KUBE_FORWARD} -m comment --comment {COMMENT_FORWARD_CT} -m conntrack "
               f"--ctstate RELATED,ESTABLISHED -j {ACCEPT}\n")
    return "".join(out)


_NAT_CHAINS = "".join(chain_line(n) for n in c.OWNED_CHAINS[c.TABLE_NAT])


def _nat_head_rules(s: ProxierSettings) -> str:
    mark = s.masquerade_mark
    fully = " --random-fully" if s.facts.random_fully else ""
    return (f"-A {c.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN\n"
            f"-A {c.KUBE_POSTROUTING} -j MARK --xor-mark {mark}\n"
            f"-A {c.KUBE_POSTROUTING} -m comment --comment {COMMENT_SNAT} -j MASQUERADE{fully}\n"
            f"-A {c.KUBE_MARK_MASQ} -j MARK --or-mark {mark}\n")


def nodeport_ips(s: ProxierSettings) -> list[str] | None:
    """Node IPs the NodePort catch-all is limited to, or None for "all local addresses".

    `--nodeport-addresses` CIDRs of the proxier's family filter the node's addresses
    (`settings.node_ips` plus the loopback address); no CIDR of the family, or a zero CIDR, means
    match all. Loopback is skipped on IPv6 and when localhost NodePorts are off.
    """
    family = s.ip_family
    nets = [ipaddress.ip_network(n, strict=False) for n in s.nodeport_addresses if _family_of(n) == family]
    if not nets or any(n.prefixlen == 0 for n in nets):
        return None
    loop = LOOPBACK_IP[s.ip_family]
    candidates = [ip for ip in s.node_ips if _family_of(ip) == s.ip_family]
    if loop not in candidates:
        candidates.append(loop)
    localhost = localhost_nodeports_enabled(s)
    out: list[str] = []
    for ip in dict.fromkeys(candidates):
        addr = ipaddress.ip_address(ip)
        if addr.is_loopback and (s.ip_family == 6 or not localhost):
            continue
        if any(addr in n for n in nets):
            out.append(str(addr))
    return out


def _nat_tail_rules(s: ProxierSettings) -> str:
    head = f"-A {c.KUBE_SERVICES} -m comment --comment {COMMENT_NODEPORTS_LAST}"
    ips = nodeport_ips(s)
    if ips is None:
        dest = "-m addrtype --dst-type LOCAL"
        if s.ip_family == 6:
            dest += f" ! -d {LOOPBACK_V6_NET}"
        elif not localhost_nodeports_enabled(s):
            dest += f" ! -d {LOOPBACK_V4_NET}"
        return f"{head} {dest} -j {c.KUBE_NODEPORTS}\n"
    return "".join(f"{head} -d {ip} -j {c.KUBE_NODEPORTS}\n" for ip in ips)


def _primary_ip(s: ProxierSettings) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for ip in s.node_ips:
        if _family_of(ip) == s.ip_family:
            return ipaddress.ip_address(ip)
    return None


# --------------------------------------------------------------------------- public API


@dataclass(slots=True)
class _Layout:
    """Everything one node's text is made of; `key` identifies identical outputs."""

    key: tuple
    items: list[_Block]
    fixed: tuple[str, str, str, str, str]  # filter chains/head/tail, nat head/tail
    stale: list[str]


def _layout(
    s: ProxierSettings, node: str, ctx: _Ctx, plan: list[_Block | _Slot], stale_chains: Iterable[str]
) -> _Layout:
    """Pick (rendering on first use) the variant of every node-dependent service port for a node."""
    primary = _primary_ip(s)
    items: list[_Block] = []
    keys: list[tuple[str | None, bool]] = []
    for item in plan:
        if isinstance(item, _Block):
            items.append(item)
            continue
        key = _variant(item, node, primary)
        keys.append(key)
        block = item.variants.get(key)
        if block is None:
            block = item.variants[key] = _render_block(ctx, (item.info,), key[0], key[1])
        items.append(block)
    stale: list[str] = []
    wanted = [ch for ch in dict.fromkeys(stale_chains) if c.is_service_chain(ch)]
    if wanted:
        active = {ch for b in items for ch in b.active}
        stale = [ch for ch in wanted if ch not in active]
    fixed = (_filter_chains(s), _filter_head_rules(s), _filter_tail_rules(s), _nat_head_rules(s),
             _nat_tail_rules(s))
    return _Layout((id(plan), fixed, tuple(keys), tuple(stale)), items, fixed, stale)


def _join(lay: _Layout) -> str:
    """The restore text: filter (chains, rules) then nat (chains, rules, -X, final jump)."""
    filter_chains, filter_head, filter_tail, nat_head, nat_tail = lay.fixed
    items, stale = lay.items, lay.stale
    parts = ["*filter\n", filter_chains, filter_head]
    parts.extend(b.fr for b in items)
    parts += [filter_tail, "COMMIT\n", "*nat\n", _NAT_CHAINS]
    parts.extend(b.nc for b in items)
    parts.extend(chain_line(ch) for ch in stale)
    parts.append(nat_head)
    parts.extend(b.nr for b in items)
    parts.extend(f"-X {ch}\n" for ch in stale)
    parts += [nat_tail, "COMMIT\n"]
    return "".join(parts)


def iter_render_nodes(
    settings_by_node: Mapping[str, ProxierSettings],
    ports: Sequence[ServicePort],
    stale_chains_by_node: Mapping[str, Iterable[str]] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield `(node, restore text)` per node, in mapping order, sharing node-independent work.

    Streaming form of `render_nodes`: a consumer that pushes and drops each text keeps memory
    flat. Nodes with identical output get the same string object (joined once).
    """
    ports = tuple(ports)
    infos_by_family: dict[int, tuple[list[_PortInfo], int]] = {}
    plans: dict[_Ctx, list[_Block | _Slot]] = {}
    layouts: list[tuple[str, _Layout]] = []
    for node, s in settings_by_node.items():
        known = infos_by_family.get(s.ip_family)
        if known is None:
            infos = [i for i in (_port_info(sp, s.ip_family) for sp in ports) if i is not None]
            known = infos_by_family[s.ip_family] = (infos, sum(len(i.eps) for i in infos))
        infos, total_endpoints = known
        ctx = _make_ctx(s, total_endpoints)
        plan = plans.get(ctx)
        if plan is None:
            plan = plans[ctx] = _plan(ctx, infos)
        stale = (stale_chains_by_node or {}).get(node, ())
        layouts.append((node, _layout(s, s.node_name or node, ctx, plan, stale)))
    remaining = Counter(lay.key for _, lay in layouts)
    texts: dict[tuple, str] = {}
    for node, lay in layouts:
        text = texts.get(lay.key)
        if text is None:
            text = _join(lay)
        remaining[lay.key] -= 1
        if remaining[lay.key]:
            texts[lay.key] = text
        else:
            texts.pop(lay.key, None)
        yield node, text


def render_nodes(
    settings_by_node: Mapping[str, ProxierSettings],
    ports: Sequence[ServicePort],
    stale_chains_by_node: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, str]:
    """Full-sync restore input for every node, sharing node-independent work.

    `ports` must be in the caller's stable order (sorted by namespace, name, port name, protocol).
    `stale_chains_by_node` gives, per node, the nat chains present on it (for `-X` of stale ones).
    Nodes with identical output share one string object.
    """
    return dict(iter_render_nodes(settings_by_node, ports, stale_chains_by_node))


def render_restore(
    settings: ProxierSettings, ports: Sequence[ServicePort], stale_chains: Iterable[str] = ()
) -> str:
    """Full-sync `iptables-restore --noflush` input for one node (filter then nat, kube-proxy order).

    `stale_chains` are the nat service chains that exist on the node; those this sync does not
    write are flushed and deleted (`:X - [0:0]` + `-X X`).
    """
    node = settings.node_name
    return render_nodes({node: settings}, ports, {node: tuple(stale_chains)})[node]
