"""Names and paths of everything a lab creates (pure; derived from the lab name)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

LAB_ROOT = Path("/var/lib/svcnet-lab")
LOCK_FILE = ".lock"
MOUNTPOINTS_FILE = ".created-mountpoints"
NS_PREFIX = "svlab-"
BRIDGE = "br0"
NODE_IF = "eth0"
CLIENT_PORT = "cl"
BASTION_PORT = "bj"
# Directories each node sees privately (bind-mounted from the lab dir); /run is a fresh tmpfs.
NODE_PRIVATE_DIRS = ("/etc/svcnet", "/var/lib/svcnet")
NODE_RUN_DIR = "/run"
NODE_HOME = "/root"  # root's home inside a node: a private tmpfs


def lab_id(name: str) -> str:
    """Short, stable id of a lab (6 hex chars) used in namespace names."""
    return hashlib.sha1(name.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class LabLayout:
    """File and namespace names of one lab."""

    name: str
    root: Path = LAB_ROOT

    @property
    def id(self) -> str:
        return lab_id(self.name)

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def bastion_host_key(self) -> Path:
        """The bastion's own host key (a jump host is another machine than the nodes)."""
        return self.dir / "ssh_host_ed25519_key.bastion"

    @property
    def bastion_sshd_config(self) -> Path:
        return self.dir / "sshd_config.bastion"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def switch_ns(self) -> str:
        return f"{NS_PREFIX}{self.id}-sw"

    @property
    def client_ns(self) -> str:
        return f"{NS_PREFIX}{self.id}-cl"

    @property
    def bastion_ns(self) -> str:
        return f"{NS_PREFIX}{self.id}-bj"

    def node_ns(self, index: int) -> str:
        return f"{NS_PREFIX}{self.id}-n{index}"

    @staticmethod
    def switch_port(index: int) -> str:
        """Name of node `index`'s veth end inside the switch namespace (<= 15 chars)."""
        return f"n{index}"

    def node_dir(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def node_private_dir(self, node: str, mountpoint: str) -> Path:
        """Host-side directory bind-mounted onto `mountpoint` inside the node."""
        return self.node_dir(node) / mountpoint.strip("/").replace("/", "_")
