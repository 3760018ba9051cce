"""A node's artifacts: its desired state (svcnet.desired) rendered into the files svcnet applies.

The rules come from a backend that renders the nodes' proxier settings, one IP family each, as
the node's proxy mode says: kube-proxy's iptables mode (`render/iptables.py` for the restore
input, `render/jumps.py` for the jump rules) or its nftables mode (`render/nftables.py`, one
`nft -f` script); the address config from `render/netconf.py`. The file names are the ones
the node agent expects under /etc/svcnet (svcnet/agent/node.py keeps copies; a test checks them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from svcnet.desired import ConntrackPort, HealthConf, NetConf, desired_nodes
from svcnet.model.family import IPV4, IPV6
from svcnet.model.types import MODE_NFTABLES, Cluster, ProxierSettings
from svcnet.render import nftables
from svcnet.render.health import render_health
from svcnet.render.iptables import render_nodes
from svcnet.render.jumps import JumpRule, jump_rules, render_jump_rules
from svcnet.render.netconf import render_script, state_lines

# Artifact file names under `render --out DIR/<node>/` and on the node under /etc/svcnet.
RESTORE_FILE = "rules.restore"  # iptables-restore input (IPv4)
RESTORE6_FILE = "rules6.restore"  # ip6tables-restore input, where the node has IPv6 Services
NFT_FILE = "rules.nft"  # nftables mode: the `nft -f` script replacing table ip kube-proxy
JUMPS_FILE = "jumps.rules"
JUMPS6_FILE = "jumps6.rules"  # the IPv6 proxier's jump rules, beside RESTORE6_FILE
NETCONF_FILE = "netconf.sh"
NETSTATE_FILE = "netconf.state"
HEALTH_FILE = "health.json"  # the health-check server's configuration (part of the rules: endpoints)


@dataclass(frozen=True, slots=True)
class NodeArtifacts:
    """One node's artifacts. In iptables mode `restore` and `jump_rules` hold its rules and `nft` is
    empty; in nftables mode `nft` holds them (kube-proxy's `nft -f` input) and the others are empty."""

    node: str
    settings: ProxierSettings
    restore: str  # IPv4
    jump_rules: tuple[JumpRule, ...]
    netconf: NetConf
    health: HealthConf
    conntrack: tuple[ConntrackPort, ...] = ()  # not a file: what the apply's conntrack cleanup is sent
    nft: str = ""
    nft_table: str = ""  # the table `nft` writes, without the script's preamble (`render --canonical`)
    restore6: str | None = None  # IPv6: the ip6tables-restore input, None where the node has no IPv6 proxier
    settings6: ProxierSettings | None = None
    jump_rules6: tuple[JumpRule, ...] = ()  # the IPv6 proxier's jump rules (with restore6)

    @property
    def nftables_mode(self) -> bool:
        return self.settings.proxy_mode == MODE_NFTABLES

    def restore_of(self, version: int) -> str | None:
        """The restore input of family `version` (4 or 6), or None if the node has none."""
        return self.restore if version == IPV4 else self.restore6 if version == IPV6 else None

    def files(self) -> dict[str, str]:
        """The artifacts as file name → text: the mode's rule files, then the address config."""
        rules = {NFT_FILE: self.nft} if self.nftables_mode else {
            RESTORE_FILE: self.restore,
            **({RESTORE6_FILE: self.restore6} if self.restore6 is not None else {}),
            JUMPS_FILE: render_jump_rules(list(self.jump_rules)),
            **({JUMPS6_FILE: render_jump_rules(list(self.jump_rules6))} if self.restore6 is not None else {}),
        }
        return {
            **rules,
            NETCONF_FILE: render_script(self.netconf),
            NETSTATE_FILE: "\n".join(state_lines(self.netconf)) + "\n",
            HEALTH_FILE: render_health(self.health),
        }


# The header of each family's part when `svcnet render` prints both (a comment to *-restore).
FAMILY_HEADERS = {IPV4: "# IPv4: iptables-restore input\n", IPV6: "# IPv6: ip6tables-restore input\n"}


def restore_text(art: NodeArtifacts, version: int | None = None,
                 transform: Callable[[str], str] = lambda text: text) -> str | None:
    """The restore input `svcnet render --node` prints: of one family (None if the node has none),
    or, with `version` None, every family the node has, each after its header when there are two."""
    if version is not None:
        text = art.restore_of(version)
        return None if text is None else transform(text)
    if art.restore6 is None:
        return transform(art.restore)
    return "".join(FAMILY_HEADERS[v] + transform(art.restore_of(v) or "") for v in (IPV4, IPV6))


def node_artifacts_all(
    cluster: Cluster,
    nodes: Iterable[str] | None = None,
    stale_chains: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, NodeArtifacts]:
    """Artifacts for the named nodes (default: all), sharing render work between them."""
    desired = desired_nodes(cluster, nodes)
    # Each node gets the rules of its own proxy mode.
    nft_nodes = {name: d.proxier for name, d in desired.items() if d.proxier.proxy_mode == MODE_NFTABLES}
    ipt_nodes = {name: d.proxier for name, d in desired.items() if name not in nft_nodes}
    restores = render_nodes(ipt_nodes, cluster.service_ports, stale_chains or {}) if ipt_nodes else {}
    tables = {name: buf.dump() for name, buf in
              nftables.render_nodes(nft_nodes, cluster.service_ports, stale_chains).items()} if nft_nodes else {}
    # The IPv6 proxier of each iptables-mode node, rendered apart as kube-proxy's is: its stale chains
    # are the node's ip6tables chains, which apply does not report yet (none).
    settings6 = {name: d.proxier6 for name, d in desired.items() if d.proxier6 is not None and name in ipt_nodes}
    restores6 = render_nodes(settings6, cluster.service_ports) if settings6 else {}
    return {
        name: NodeArtifacts(
            node=name,
            settings=d.proxier,
            restore=restores.get(name, ""),
            jump_rules=tuple(jump_rules(d.proxier)) if name in restores else (),
            netconf=d.netconf,
            conntrack=d.conntrack,
            nft=nftables.script(name, tables[name], d.proxier.ip_family) if name in tables else "",
            nft_table=tables.get(name, ""),
            restore6=restores6.get(name),
            settings6=d.proxier6 if name in settings6 else None,
            jump_rules6=tuple(jump_rules(d.proxier6)) if name in restores6 and d.proxier6 is not None else (),
            health=d.health,
        )
        for name, d in desired.items()
    }


def node_artifacts(cluster: Cluster, node_name: str, stale_chains: Iterable[str] = ()) -> NodeArtifacts:
    return node_artifacts_all(cluster, [node_name], {node_name: stale_chains})[node_name]


def write_artifacts(artifacts: Mapping[str, NodeArtifacts], out_dir: Path) -> list[Path]:
    """Write every node's artifacts under `out_dir/<node>/`; returns the files written."""
    written = []
    for name, art in artifacts.items():
        d = out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        for fname, text in art.files().items():
            (d / fname).write_text(text)
            written.append(d / fname)
    return written
