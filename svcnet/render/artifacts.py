"""A node's artifacts: its desired state (svcnet.desired) rendered into the files svcnet applies.

The rules come from a backend that renders the nodes' proxier settings, one IP family each:
today kube-proxy's iptables mode (`render/iptables.py` for the restore input, `render/jumps.py`
for the jump rules); the address config from `render/netconf.py`. The file names are the ones
the node agent expects under /etc/svcnet (svcnet/agent/node.py keeps copies; a test checks them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from svcnet.desired import HealthConf, NetConf, desired_nodes
from svcnet.model.types import Cluster, ProxierSettings
from svcnet.render.health import render_health
from svcnet.render.iptables import render_nodes
from svcnet.render.jumps import JumpRule, jump_rules, render_jump_rules
from svcnet.render.netconf import render_script, state_lines

# Artifact file names under `render --out DIR/<node>/` and on the node under /etc/svcnet.
RESTORE_FILE = "rules.restore"
JUMPS_FILE = "jumps.rules"
NETCONF_FILE = "netconf.sh"
NETSTATE_FILE = "netconf.state"
HEALTH_FILE = "health.json"  # the health-check server's configuration (part of the rules: endpoints)


@dataclass(frozen=True, slots=True)
class NodeArtifacts:
    node: str
    settings: ProxierSettings
    restore: str
    jump_rules: tuple[JumpRule, ...]
    netconf: NetConf
    health: HealthConf

    def files(self) -> dict[str, str]:
        """The artifacts as file name → text."""
        return {
            RESTORE_FILE: self.restore,
            JUMPS_FILE: render_jump_rules(list(self.jump_rules)),
            NETCONF_FILE: render_script(self.netconf),
            NETSTATE_FILE: "\n".join(state_lines(self.netconf)) + "\n",
            HEALTH_FILE: render_health(self.health),
        }


def node_artifacts_all(
    cluster: Cluster,
    nodes: Iterable[str] | None = None,
    stale_chains: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, NodeArtifacts]:
    """Artifacts for the named nodes (default: all), sharing render work between them."""
    desired = desired_nodes(cluster, nodes)
    restores = render_nodes({name: d.proxier for name, d in desired.items()}, cluster.service_ports,
                            stale_chains or {})
    return {
        name: NodeArtifacts(
            node=name,
            settings=d.proxier,
            restore=restores[name],
            jump_rules=tuple(jump_rules(d.proxier)),
            netconf=d.netconf,
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
