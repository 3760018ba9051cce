"""The lab's record of what it created (state.json), and the public Lab view of it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from svcnet.lab.errors import LabError
from svcnet.lab.layout import LAB_ROOT, LabLayout

STATE_VERSION = 1


@dataclass(frozen=True)
class NodeState:
    """One node: namespace, switch port, addresses, and its two processes."""

    name: str
    ns: str
    port: str
    addresses: tuple[str, ...]
    prefixes: tuple[int, ...] = ()
    anchor_pid: int = 0
    anchor_uts: int = 0
    anchor_mnt: int = 0
    sshd_pid: int = 0


@dataclass(frozen=True)
class LabState:
    """Everything `lab down` needs to remove the lab, even after a crash."""

    name: str
    id: str
    dir: str
    inventory_path: str
    switch_ns: str
    client_ns: str
    client_addresses: tuple[str, ...]  # each family's first address, then each family's second
    client_prefixes: tuple[int, ...]
    nodes: tuple[NodeState, ...]
    client_routes: tuple[tuple[str, str, str], ...] = ()  # (destination, node, gateway)
    bastion: NodeState | None = None  # the jump host the nodes are reached through (`lab up --bastion`)
    phase: str = "creating"
    inventory_dir_created: bool = False
    tools: dict[str, str] = field(default_factory=dict)
    version: int = STATE_VERSION

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_ns, self.client_ns, *(n.ns for n in self.machines)]

    @property
    def machines(self) -> tuple[NodeState, ...]:
        """Every machine with an anchor and an sshd: the nodes, then the bastion if there is one."""
        return self.nodes + ((self.bastion,) if self.bastion else ())

    def with_machines(self, machines: tuple[NodeState, ...]) -> LabState:
        """This state with `machines` (as `machines` orders them) replacing the nodes and the bastion."""
        count = len(self.nodes)
        return replace(self, nodes=machines[:count], bastion=machines[count] if self.bastion else None)

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"lab {self.name!r} has no node {name!r} (nodes: {', '.join(self.node_names)})")

    def machine(self, name: str) -> NodeState:
        """A node, or the bastion by its name."""
        if self.bastion and name == self.bastion.name:
            return self.bastion
        return self.node(name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]


@dataclass(frozen=True)
class Lab:
    """A running lab as other code sees it."""

    name: str
    dir: Path
    inventory_path: Path
    ssh_config_path: Path
    known_hosts_path: Path
    key_path: Path
    nodes: dict[str, tuple[str, str]]  # node name -> (netns, primary address)
    client_ns: str
    client_ip: str
    state: LabState
    bastion: tuple[str, str] | None = None  # (netns, primary address) of the jump host, if any

    @property
    def node_names(self) -> list[str]:
        return list(self.nodes)


def write_state(state: LabState) -> None:
    """Atomically write state.json."""
    path = LabLayout(state.name, Path(state.dir).parent).state_path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, path)


def read_state(name: str, root: Path = LAB_ROOT) -> LabState:
    """Load state.json of lab `name`."""
    path = LabLayout(name, root).state_path
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} (no {path})") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: unreadable lab state: {exc}") from None
    nodes = tuple(_node_state(n) for n in raw.pop("nodes"))
    if raw.get("bastion"):
        raw["bastion"] = _node_state(raw["bastion"])
    raw["client_addresses"] = tuple(raw["client_addresses"])
    raw["client_prefixes"] = tuple(raw["client_prefixes"])
    raw["client_routes"] = tuple(tuple(r) for r in raw.get("client_routes", ()))
    return LabState(**raw, nodes=nodes)


def _node_state(raw: dict) -> NodeState:
    return NodeState(**{**raw, "addresses": tuple(raw["addresses"]), "prefixes": tuple(raw.get("prefixes", ()))})


def lab_view(state: LabState) -> Lab:
    """The public Lab for a state."""
    layout = LabLayout(state.name, Path(state.dir).parent)
    return Lab(
        name=state.name,
        dir=layout.dir,
        inventory_path=Path(state.inventory_path),
        ssh_config_path=layout.ssh_config,
        known_hosts_path=layout.known_hosts,
        key_path=layout.client_key,
        nodes={n.name: (n.ns, n.addresses[0]) for n in state.nodes},
        client_ns=state.client_ns,
        client_ip=state.client_addresses[0],
        state=state,
        bastion=(state.bastion.ns, state.bastion.addresses[0]) if state.bastion else None,
    )


def lab_names(root: Path = LAB_ROOT) -> list[str]:
    """Names of all labs with a state file."""
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json"))
