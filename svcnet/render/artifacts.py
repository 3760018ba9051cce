"""A node's artifacts: its desired state (svcnet.desired) rendered into the files svcnet applies.

The rules come from a backend that renders the nodes' proxier settings, one IP family each, as
the node's proxy mode says: kube-proxy's iptables mode (`render/iptables.py` for the restore
input, `render/jumps.py` for the jump rules) or its nftables mode (`render/nftables.py`, one
`nft -f` script); the address config from `render/netconf.py`. The file names are the ones
the node agent expects under /etc/svcnet (svcnet/agent/node.py keeps copies; a test checks them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from svcnet.desired import ConntrackPort, NetConf, desired_nodes
from svcnet.model.types import MODE_NFTABLES, Cluster, ProxierSettings
from svcnet.render import nftables
from svcnet.render.iptables import render_nodes
from svcnet.render.jumps import JumpRule, jump_rules, render_jump_rules
from svcnet.render.netconf import render_script, state_lines

# Artifact file names under `render --out DIR/<node>/` and on the node under /etc/svcnet.
RESTORE_FILE = "rules.restore"
NFT_FILE = "rules.nft"  # nftables mode: the `nft -f` script replacing table ip kube-proxy
JUMPS_FILE = "jumps.rules"
NETCONF_FILE = "netconf.sh"
NETSTATE_FILE = "netconf.state"


@dataclass(frozen=True, slots=True)
class NodeArtifacts:
    """One node's artifacts. In iptables mode `restore` and `jump_rules` hold its rules and `nft` is
    empty; in nftables mode `nft` holds them (kube-proxy's `nft -f` input) and the others are empty."""

    node: str
    settings: ProxierSettings
    restore: str
    jump_rules: tuple[JumpRule, ...]
    netconf: NetConf
    conntrack: tuple[ConntrackPort, ...] = ()  # not a file: what the apply's conntrack cleanup is sent
    nft: str = ""
    nft_table: str = ""  # the table `nft` writes, without the script's preamble (`render --canonical`)

    @property
    def nftables_mode(self) -> bool:
        return self.settings.proxy_mode == MODE_NFTABLES

    def files(self) -> dict[str, str]:
        """The artifacts as file name → text: the mode's rule files, then the address config."""
        rules = {NFT_FILE: self.nft} if self.nftables_mode else {
            RESTORE_FILE: self.restore,
            JUMPS_FILE: render_jump_rules(list(self.jump_rules)),
        }
        return {
            **rules,
            NETCONF_FILE: render_script(self.netconf),
            NETSTATE_FILE: "\n".join(state_lines(self.netconf)) + "\n",
        }


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
