"""The lab switch's subnets and the client's address (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from svcnet.lab.errors import LabError
from svcnet.lab.spec import LabNode

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_PREFIX = {4: 24, 6: 64}


@dataclass(frozen=True)
class SwitchPlan:
    """One subnet per IP family on the switch, and the client's (and the bastion's) address in each.

    The client also gets a second address in each subnet, so that traffic can come from outside
    the cluster from two sources (one inside a service's loadBalancerSourceRanges, one not).
    """

    subnets: tuple[IPNetwork, ...]
    client_addresses: tuple[str, ...]
    bastion_addresses: tuple[str, ...] = ()
    client_second_addresses: tuple[str, ...] = ()

    def prefix_len(self, address: str) -> int:
        ip = ipaddress.ip_address(address)
        for net in self.subnets:
            if ip in net:
                return net.prefixlen
        raise LabError(f"{address} is outside the lab subnets")  # unreachable by construction


def smallest_subnet(addresses: Sequence[str], version: int) -> IPNetwork:
    """The /24 (v4) or /64 (v6) around the first address, widened until it holds them all."""
    ips = [ipaddress.ip_address(a) for a in addresses]
    net = ipaddress.ip_network(f"{ips[0]}/{_MAX_PREFIX[version]}", strict=False)
    while not all(ip in net for ip in ips):
        net = net.supernet()
    if version == 4 and net.prefixlen < 8:
        raise LabError("node addresses are too far apart to share one lab switch subnet")
    return net


def plan_switch(nodes: Sequence[LabNode], bastion: bool = False) -> SwitchPlan:
    """Subnets per family, and a free client address in each (the highest free host), then the bastion's,
    then the client's second one."""
    used = {str(ipaddress.ip_address(a)) for n in nodes for a in n.addresses}
    subnets: list[IPNetwork] = []
    clients: list[str] = []
    bastions: list[str] = []
    seconds: list[str] = []
    for version in (4, 6):
        family = [a for n in nodes for a in n.addresses if ipaddress.ip_address(a).version == version]
        if not family:
            continue
        net = smallest_subnet(family, version)
        clients.append(_free_address(net, used, "the lab client"))
        if bastion:
            bastions.append(_free_address(net, used | {clients[-1]}, "the lab bastion"))
        seconds.append(_free_address(net, used | {clients[-1], *bastions}, "the lab client's second address"))
        if any(ipaddress.ip_address(a) in (net.network_address, _broadcast(net)) for a in family):
            raise LabError(f"a node address is the network or broadcast address of the lab subnet {net}")
        subnets.append(net)
    return SwitchPlan(tuple(subnets), tuple(clients), tuple(bastions), tuple(seconds))


def _free_address(net: IPNetwork, used: set[str], what: str) -> str:
    for addr in (net.network_address + i for i in _candidate_offsets(net)):
        if str(addr) not in used:
            return str(addr)
    raise LabError(f"no free address left in {net} for {what}")


def _broadcast(net: IPNetwork) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return net.broadcast_address


def _candidate_offsets(net: IPNetwork) -> range:
    """Host offsets from the top of the subnet downwards (at most 1024 tries)."""
    top = net.num_addresses - 2
    return range(top, max(top - 1024, 0), -1)
