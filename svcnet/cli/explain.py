"""`svcnet explain`: trace one packet through the iptables rules svcnet renders for a node."""

from __future__ import annotations

import ipaddress

import click

from svcnet.cli.common import fail, files_option, load_or_exit
from svcnet.explain.trace import (
    ORIGIN_NODE,
    ORIGIN_OUTSIDE,
    ORIGIN_POD,
    ORIGINS,
    PROTOCOLS,
    Packet,
    Trace,
    TraceContext,
    TraceError,
    parse_local_ips,
    split_hostport,
)
from svcnet.model.family import IPV4, IPV6, family_of
from svcnet.model.types import DETECT_IFACE_PREFIX, Cluster, Node
from svcnet.render.artifacts import NodeArtifacts
from svcnet.render.chains import NFT_FAMILIES, NFT_TABLE

EXIT_USAGE = 2
DEFAULT_SRC_PORT = 40000  # an ephemeral client port; only matters for --sport rules
EXTERNAL_IFACE = "eth0"


def _endpoint(value: str, what: str, need_port: bool) -> tuple[str, int]:
    try:
        ip, port = split_hostport(value)
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        fail(f"--{what} {value!r}: expected IP{':PORT' if need_port else '[:PORT]'} ([IPv6]:PORT)", EXIT_USAGE)
        raise AssertionError from None  # fail() exits
    if port is None:
        if need_port:
            fail(f"--{what} {value!r} needs a port (IP:PORT)", EXIT_USAGE)
        port = DEFAULT_SRC_PORT
    return ip, port


def _in(ip: str, cidr: str | None) -> bool:
    if not cidr:
        return False
    addr, net = ipaddress.ip_address(ip), ipaddress.ip_network(cidr, strict=False)
    return addr.version == net.version and addr in net


def _origin(cluster: Cluster, src: str, local: TraceContext) -> str:
    """node if the source is LOCAL on the node, pod if in the cluster CIDR of its family, else outside."""
    if local.match_context().is_local(src):
        return ORIGIN_NODE
    return ORIGIN_POD if _in(src, cluster.cluster_cidr_of(family_of(src))) else ORIGIN_OUTSIDE


def _pod_iface(cluster: Cluster, node: Node, src: str) -> str:
    """The interface a pod's packet enters the node's IP stack on."""
    if not _in(src, node.pod_cidr_of(family_of(src))):
        return EXTERNAL_IFACE  # a pod on another node: routed in over the node network
    if cluster.proxy.detect_local_mode == DETECT_IFACE_PREFIX:
        for pod in cluster.pods:
            if src in pod.all_ips and pod.node_name == node.name:
                return pod.veth
        return (cluster.proxy.interface_name_prefix or "veth") + "0"
    return cluster.bridge


# The command printing a family's live rules (filter and nat) in iptables mode.
SAVE_COMMANDS = {IPV4: "iptables-save", IPV6: "ip6tables-save"}


def _save_command(version: int) -> str:
    save = SAVE_COMMANDS[version]
    return f"{save} -t filter && {save} -t nat"


def _live_rules(inventory_path: str, node: str, command: str = _save_command(IPV4),
                what: str = SAVE_COMMANDS[IPV4]) -> str:
    """`command`'s output on the node (default `iptables-save`, filter and nat), over a host-key-verified
    SSH session."""
    from svcnet.transport.gateway import Connector
    from svcnet.transport.inventory import InventoryError, load_inventory
    from svcnet.transport.ssh import SSHError

    try:
        inv = load_inventory(inventory_path)
        with Connector.from_env(inv).gateway(node) as gateway:
            result = gateway.run(command, timeout=60)
    except InventoryError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        fail(f"invalid inventory {inventory_path}", 1)
    except (KeyError, SSHError) as exc:
        fail(str(exc).strip('"'), 4)
    if result.rc != 0:
        fail(f"{node}: {what} failed: {result.stderr.strip()}", 2)
    return result.stdout


def _trace_nft(art: NodeArtifacts, node: str, packet: Packet, ctx: TraceContext, inventory: str | None) -> Trace:
    """nftables mode: trace through the node's rendered table, or with an inventory its live one
    (`nft -s list table`, read as the agent reads it)."""
    from svcnet.agent.node import nft_normal
    from svcnet.explain.nft import NftTraceError, parse_listing, parse_table, trace_nft

    family = NFT_FAMILIES[art.settings.ip_family]
    try:
        if inventory is None:
            table = parse_table(art.nft_table)
        else:
            listing = _live_rules(inventory, node, f"nft -s list table {family} {NFT_TABLE}",
                                  f"nft list table {family} {NFT_TABLE}")
            table = parse_listing(nft_normal(listing))
        return trace_nft(table, packet, ctx)
    except NftTraceError as exc:
        fail(f"{node}: table {family} {NFT_TABLE}: {exc}", 1)
        raise AssertionError from None  # fail() exits


@click.command()
@files_option
@click.option("--node", "node_name", required=True, metavar="NAME", help="Node whose rules to trace.")
@click.option("--src", required=True, metavar="IP[:PORT]", help="Packet source (port default 40000; IPv6: [IP]:PORT).")
@click.option("--dst", required=True, metavar="IP:PORT",
              help="Packet destination (IPv6: [IP]:PORT, traced through the node's IPv6 rules).")
@click.option("--proto", type=click.Choice(PROTOCOLS), default="tcp", show_default=True)
@click.option("--from", "origin", type=click.Choice(ORIGINS),
              help="Where the packet comes from (default: node if SRC is the node's, pod if in the "
                   "cluster CIDR, else outside).")
@click.option("--local-ip", "local_ips", multiple=True, metavar="IP|CIDR",
              help="Extra addresses that are LOCAL on the node (repeatable).")
@click.option("--recorded", multiple=True, metavar="NAME",
              help="Session-affinity lists (KUBE-SEP-...; nftables mode: affinity-... sets) the client is "
                   "already in; '*' for all.")
@click.option("--live", is_flag=True,
              help="Trace the rules really on the node (iptables-save, or nft list table, over SSH).")
@click.option("-i", "--inventory", metavar="PATH", help="Inventory for --live.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--only-matched", is_flag=True, help="Text: hide rules that did not match.")
def explain(paths: tuple[str, ...], node_name: str, src: str, dst: str, proto: str, origin: str | None,
            local_ips: tuple[str, ...], recorded: tuple[str, ...], live: bool, inventory: str | None,
            fmt: str, only_matched: bool) -> None:
    """Trace a first packet through the node's nat and filter rules (nftables mode: its kube-proxy
    table's base chains, maps, vmaps and numgen): every chain and rule it meets, why each matched or
    not, branch probabilities, DNAT destinations, verdict and masquerade."""
    from svcnet.explain.report import render_json, render_text

    src_ip, src_port = _endpoint(src, "src", need_port=False)
    dst_ip, dst_port = _endpoint(dst, "dst", need_port=True)
    if live and not inventory:
        fail("--live needs -i INVENTORY to reach the node", EXIT_USAGE)
    cluster = load_or_exit(paths)
    tr = trace_packet(cluster, node_name, (src_ip, src_port), (dst_ip, dst_port), proto, origin, local_ips,
                      recorded, inventory if live else None)
    click.echo(render_json(tr) if fmt == "json" else render_text(tr, only_matched=only_matched), nl=False)


def trace_packet(cluster: Cluster, node_name: str, src: tuple[str, int], dst: tuple[str, int], proto: str,
                 origin: str | None, local_ips: tuple[str, ...], recorded: tuple[str, ...],
                 inventory: str | None) -> Trace:
    """What `svcnet explain` prints, traced: through the rendered rules of the packet's IP family (an
    IPv6 packet through rules6.restore and the IPv6 jump rules), or with `inventory` the live ones."""
    from svcnet.explain.combine import combine, trace_live_text
    from svcnet.explain.trace import trace
    from svcnet.render.artifacts import node_artifacts
    from svcnet.render.jumps import jump_rules

    names = [n.name for n in cluster.nodes]
    if node_name not in names:
        fail(f"no node {node_name!r} in the description (nodes: {', '.join(names)})", 1)
    node = cluster.node(node_name)
    version = family_of(dst[0])
    try:
        extra = parse_local_ips(local_ips)
        ctx = TraceContext(
            local_ips=frozenset({*node.addresses, "127.0.0.0/8", *extra}),
            pod_iface=cluster.bridge, external_iface=EXTERNAL_IFACE, pod_cidrs=node.all_pod_cidrs,
            recent_recorded=frozenset(recorded),
        )
        origin = origin or _origin(cluster, src[0], ctx)
        in_iface = None if origin == ORIGIN_NODE else (
            _pod_iface(cluster, node, src[0]) if origin == ORIGIN_POD else EXTERNAL_IFACE)
        packet = Packet(*src, *dst, proto, origin, in_iface)
    except TraceError as exc:
        fail(str(exc), EXIT_USAGE)
        raise AssertionError from None  # fail() exits
    art = node_artifacts(cluster, node_name)
    if art.nftables_mode:
        if version != IPV4:
            fail(f"node {node_name} is in nftables mode: explain traces its IPv4 table (ip kube-proxy) only", 1)
        return _trace_nft(art, node_name, packet, ctx, inventory)
    restore, settings = art.restore_of(version), art.settings6 if version == IPV6 else art.settings
    if restore is None or settings is None:
        fail(f"node {node_name} has no IPv{version} rules (the description has no IPv{version} serviceCIDR)", 1)
        raise AssertionError  # fail() exits
    if inventory is not None:
        return trace_live_text(_live_rules(inventory, node_name, _save_command(version), SAVE_COMMANDS[version]),
                               packet, ctx)
    return trace(combine(restore, jump_rules(settings)), packet, ctx)
