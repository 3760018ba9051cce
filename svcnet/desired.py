"""Per-node desired state: what must be on each node, derived from the model.

This is the hinge of the pipeline: model → desired state → artifacts. Everything here
is pure; rendering work shared between nodes is done once (`render_nodes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from svcnet.model.types import (
    DETECT_BRIDGE,
    DETECT_CLUSTER_CIDR,
    DETECT_IFACE_PREFIX,
    DETECT_NODE_CIDR,
    Cluster,
    LocalDetector,
    Node,
    ProxierSettings,
)
from svcnet.render.iptables import render_nodes
from svcnet.render.jumps import JumpRule, jump_rules, render_jump_rules
from svcnet.render.netconf import NetConf, node_netconf, render_script, state_lines

# Artifact file names under `render --out DIR/<node>/` and on the node under /etc/svcnet.
RESTORE_FILE = "rules.restore"
JUMPS_FILE = "jumps.rules"
NETCONF_FILE = "netconf.sh"
NETSTATE_FILE = "netconf.state"


@dataclass(frozen=True, slots=True)
class NodeArtifacts:
    node: str
    settings: ProxierSettings
    restore: str
    jump_rules: tuple[JumpRule, ...]
    netconf: NetConf

    def files(self) -> dict[str, str]:
        """The artifacts as file name → text."""
        return {
            RESTORE_FILE: self.restore,
            JUMPS_FILE: render_jump_rules(list(self.jump_rules)),
            NETCONF_FILE: render_script(self.netconf),
            NETSTATE_FILE: "\n".join(state_lines(self.netconf)) + "\n",
        }


def local_detector(cluster: Cluster, node: Node) -> LocalDetector:
    """kube-proxy's local-traffic detector for this node (detectLocalMode)."""
    mode = cluster.proxy.detect_local_mode
    if mode == DETECT_CLUSTER_CIDR:
        return LocalDetector(mode, cidr=cluster.cluster_cidr)
    if mode == DETECT_NODE_CIDR:
        return LocalDetector(mode, cidr=node.pod_cidr)
    if mode == DETECT_BRIDGE:
        return LocalDetector(mode, interface=cluster.proxy.bridge_interface or cluster.bridge)
    if mode == DETECT_IFACE_PREFIX:
        return LocalDetector(mode, interface=cluster.proxy.interface_name_prefix or "veth")
    return LocalDetector(mode)


def proxier_settings(cluster: Cluster, node: Node) -> ProxierSettings:
    return ProxierSettings(
        node_name=node.name,
        node_ips=node.addresses,
        masquerade_mark=cluster.proxy.masquerade_mark,
        masquerade_all=cluster.proxy.masquerade_all,
        local_detector=local_detector(cluster, node),
        localhost_nodeports=cluster.proxy.localhost_nodeports,
        nodeport_addresses=cluster.proxy.nodeport_addresses,
        facts=node.facts,
    )


def node_artifacts_all(
    cluster: Cluster,
    nodes: Iterable[str] | None = None,
    stale_chains: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, NodeArtifacts]:
    """Artifacts for the named nodes (default: all), sharing render work between them."""
    wanted = [cluster.node(n) for n in nodes] if nodes is not None else list(cluster.nodes)
    settings = {n.name: proxier_settings(cluster, n) for n in wanted}
    restores = render_nodes(settings, cluster.service_ports, stale_chains or {})
    return {
        n.name: NodeArtifacts(
            node=n.name,
            settings=settings[n.name],
            restore=restores[n.name],
            jump_rules=tuple(jump_rules(settings[n.name])),
            netconf=node_netconf(cluster, n),
        )
        for n in wanted
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
