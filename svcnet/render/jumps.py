"""Jump rules from the built-in chains into svcnet's chains (kube-proxy `iptablesJumpChains`).

These rules are not part of the `iptables-restore` input: kube-proxy ensures each one with
`iptables -C` and, if missing, `iptables -I CHAIN 1` (EnsureRule(Prepend)), in list order.

Text artifact format (`render_jump_rules`): one rule per line, `-t TABLE -A CHAIN ARGS...`, with
multi-word arguments (comments) in double quotes exactly as in the restore text, so that
`shlex.split` yields the iptables argument list. Lines are in **kube-proxy's ensure order**: apply
them in file order, each with `-C` then `-I CHAIN 1` (`prepend_args`). Because each one is
inserted at the top, the final order inside a built-in chain on a fresh node is the reverse of
the file order, which is exactly what kube-proxy leaves behind.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from svcnet.desired import FAMILIES
from svcnet.model.types import ProxierSettings
from svcnet.render import chains as c

_CTSTATE_NEW = ("-m", "conntrack", "--ctstate", "NEW")

# (table, built-in chain, extra args, comment, target): proxier.go iptablesJumpChains, in order.
_JUMP_TABLE: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    (c.TABLE_FILTER, c.INPUT, _CTSTATE_NEW, "kubernetes externally-visible service portals",
     c.KUBE_EXTERNAL_SERVICES),
    (c.TABLE_FILTER, c.FORWARD, _CTSTATE_NEW, "kubernetes externally-visible service portals",
     c.KUBE_EXTERNAL_SERVICES),
    (c.TABLE_FILTER, c.INPUT, (), "kubernetes health check service ports", c.KUBE_NODEPORTS),
    (c.TABLE_FILTER, c.FORWARD, _CTSTATE_NEW, "kubernetes service portals", c.KUBE_SERVICES),
    (c.TABLE_FILTER, c.OUTPUT, _CTSTATE_NEW, "kubernetes service portals", c.KUBE_SERVICES),
    (c.TABLE_FILTER, c.FORWARD, (), "kubernetes forwarding rules", c.KUBE_FORWARD),
    (c.TABLE_FILTER, c.INPUT, _CTSTATE_NEW, "kubernetes load balancer firewall", c.KUBE_PROXY_FIREWALL),
    (c.TABLE_FILTER, c.OUTPUT, _CTSTATE_NEW, "kubernetes load balancer firewall", c.KUBE_PROXY_FIREWALL),
    (c.TABLE_FILTER, c.FORWARD, _CTSTATE_NEW, "kubernetes load balancer firewall", c.KUBE_PROXY_FIREWALL),
    (c.TABLE_NAT, c.OUTPUT, (), "kubernetes service portals", c.KUBE_SERVICES),
    (c.TABLE_NAT, c.PREROUTING, (), "kubernetes service portals", c.KUBE_SERVICES),
    (c.TABLE_NAT, c.POSTROUTING, (), "kubernetes postrouting rules", c.KUBE_POSTROUTING),
)

# iptablesKubeletJumpChains: no comment.
_KUBELET_JUMPS = ((c.TABLE_FILTER, c.INPUT), (c.TABLE_FILTER, c.OUTPUT))


@dataclass(frozen=True, slots=True)
class JumpRule:
    """One rule in a built-in chain; `args` is the iptables argument list after the chain."""

    table: str
    chain: str
    args: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.args[self.args.index("-j") + 1]

    def check_args(self) -> list[str]:
        """Arguments for `iptables` to test whether the rule exists."""
        return ["-t", self.table, "-C", self.chain, *self.args]

    def prepend_args(self) -> list[str]:
        """Arguments for `iptables` to insert the rule at the top of its chain."""
        return ["-t", self.table, "-I", self.chain, "1", *self.args]


def localhost_nodeports_enabled(settings: ProxierSettings) -> bool:
    """Effective localhost NodePorts: IPv4, enabled, and nodePortAddresses covers 127.0.0.0/8.

    kube-proxy's NewProxier turns the flag off when `--nodeport-addresses` has CIDRs of the
    proxier's family and none of them contains the loopback range (`ContainsIPv4Loopback`).
    """
    family = FAMILIES.get(settings.ip_family)
    if family is None or not family.localhost_nodeports or not settings.localhost_nodeports:
        return False
    mine = [cidr for cidr in settings.nodeport_addresses if family.owns(cidr)]
    if not mine:
        return True  # no CIDR of this family means every address of it
    loopback = ipaddress.ip_network(family.loopback_net)
    return any(_has_loopback(cidr, loopback) for cidr in mine)


def _has_loopback(cidr: str, loopback: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return net.network_address.is_loopback or loopback.network_address in net


def jump_rules(settings: ProxierSettings) -> list[JumpRule]:
    """kube-proxy's jump rules for this node, in its ensure order (see module docstring)."""
    rules = [
        JumpRule(table, chain, (*extra, "-m", "comment", "--comment", comment, "-j", target))
        for table, chain, extra, comment, target in _JUMP_TABLE
    ]
    if localhost_nodeports_enabled(settings):
        rules.extend(JumpRule(table, chain, ("-j", c.KUBE_FIREWALL)) for table, chain in _KUBELET_JUMPS)
    return rules


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(ch.isspace() for ch in arg) or not arg else arg


def render_jump_rules(rules: list[JumpRule]) -> str:
    """The text artifact: `-t TABLE -A CHAIN ARGS...`, one line per rule, in the given order."""
    return "".join(
        " ".join(("-t", r.table, "-A", r.chain, *(_quote(a) for a in r.args))) + "\n" for r in rules
    )
