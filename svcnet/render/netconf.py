"""A node's address config: pod bridge, sysctls, host-gw routes and pod network namespaces.

`node_netconf` derives the desired state from the model; `render_script` turns it into an
idempotent POSIX sh script of `ip`/`sysctl` commands (every value shell-quoted), and
`state_lines` into a stable text form used for diffs and drift checks.

svcnet changes only what it created: the script marks every link it creates (the bridge, the pod
veths) with the alias `OWNER_ALIAS` and every route it adds with the protocol number `ROUTE_PROTO`;
the node agent refuses to run it while a link, route or netns it names exists unmarked, and deletes
only what carries the mark. The agent (svcnet/agent/node.py, one stdlib-only file) holds copies of
both values; tests/render/test_netconf.py checks they agree.
"""

from __future__ import annotations

import ipaddress
import shlex
import threading
from dataclasses import dataclass
from functools import cache

import jinja2

from svcnet.model.types import Cluster, Node, ProcessSecurity

POD_IFACE = "eth0"
# `ip link ... alias` of the links svcnet creates: the mark that makes a link svcnet's.
OWNER_ALIAS = "svcnet:owned"
# rtnetlink protocol of the routes svcnet adds (`ip route ... proto 115`): 0x73, "s". Numbers up to
# 4 belong to the kernel; routing daemons use their own (iproute2's rt_protos and FRR's 186-198,
# Calico's 80, osctld's 230): 115 is registered by none of them.
ROUTE_PROTO = 0x73


@dataclass(frozen=True, slots=True)
class Sysctl:
    key: str
    value: str
    optional: bool = False  # set only where the kernel has the key (e.g. br_netfilter's)

    @property
    def proc_path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


@dataclass(frozen=True, slots=True)
class Route:
    dst: str
    via: str
    node: str  # the node that owns dst, for comments


@dataclass(frozen=True, slots=True)
class PodNet:
    namespace: str
    name: str
    netns: str
    veth: str
    address: str  # ip/prefix
    gateway: str
    command: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    security: ProcessSecurity | None = None  # None: the command runs as root, as before

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True, slots=True)
class NetConf:
    node: str
    bridge: str
    bridge_address: str  # first address of the podCIDR, with prefix
    sysctls: tuple[Sysctl, ...]
    routes: tuple[Route, ...]
    pods: tuple[PodNet, ...]


def node_sysctls(cluster: Cluster) -> tuple[Sysctl, ...]:
    """The sysctls these rules need (kube-proxy and the bridge CNI set the same)."""
    out = [Sysctl("net.ipv4.ip_forward", "1")]
    if cluster.proxy.localhost_nodeports:
        out.append(Sysctl("net.ipv4.conf.all.route_localnet", "1"))
    out.append(Sysctl("net.bridge.bridge-nf-call-iptables", "1", optional=True))
    return tuple(out)


def node_netconf(cluster: Cluster, node: Node) -> NetConf:
    net = ipaddress.ip_network(node.pod_cidr)
    gateway = str(net.network_address + 1)
    routes = tuple(
        Route(other.pod_cidr, other.internal_ip, other.name) for other in cluster.nodes if other.name != node.name
    )
    pods = tuple(
        PodNet(
            namespace=p.namespace,
            name=p.name,
            netns=p.netns,
            veth=p.veth,
            address=f"{p.ip}/{net.prefixlen}",
            gateway=gateway,
            command=p.command,
            ports=tuple(sorted({cp.port for cp in p.ports})),
            security=p.security,
        )
        for p in cluster.pods
        if p.node_name == node.name and p.ip
    )
    return NetConf(
        node=node.name,
        bridge=cluster.bridge,
        bridge_address=f"{gateway}/{net.prefixlen}",
        sysctls=node_sysctls(cluster),
        routes=routes,
        pods=pods,
    )


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("svcnet.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env.get_template("netconf.sh.j2")


_TEMPLATE_LOCK = threading.Lock()  # nodes render in parallel threads: compile the template once


def render_script(conf: NetConf) -> str:
    """Idempotent sh script that brings a node's address config to `conf`."""
    with _TEMPLATE_LOCK:
        template = _template()
    return template.render(c=conf, pod_iface=POD_IFACE, alias=OWNER_ALIAS, proto=ROUTE_PROTO)


def state_lines(conf: NetConf) -> list[str]:
    """Stable one-line-per-fact form of the address config (for diffs and drift checks)."""
    lines = [f"sysctl {s.key} = {s.value}" + (" (if present)" if s.optional else "") for s in conf.sysctls]
    lines.append(f"bridge {conf.bridge} {conf.bridge_address}")
    lines.extend(f"route {r.dst} via {r.via}" for r in conf.routes)
    for p in conf.pods:
        lines.append(f"pod {p.namespace}/{p.name} netns {p.netns} veth {p.veth} {p.address} via {p.gateway}")
    return lines
