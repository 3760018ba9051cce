"""Text of the lab's sshd_config, ssh_config, known_hosts and inventory (pure renderers)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

SSH_PORT = 22
SSH_USER = "root"
INVENTORY_HEADER = "# Written by `svcnet lab up`"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@dataclass(frozen=True)
class SshNode:
    """What the ssh files need to know about one node."""

    name: str
    ns: str
    addresses: tuple[str, ...]


def sshd_config(host_key: Path, authorized_keys: Path) -> str:
    """Per-lab sshd_config; ListenAddress and PidFile are passed per node with -o."""
    return "\n".join(
        [
            f"Port {SSH_PORT}",
            f"HostKey {host_key}",
            # root reads the lab's key file; a lab user (svcnet/lab/users.py) cannot (the lab
            # directory is root's only) and finds the key in its private home on the node.
            f"AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "X11Forwarding no",
            "MaxStartups 200:30:400",
            "MaxSessions 100",
            "LogLevel ERROR",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]
    )


def proxy_command(ip_bin: str, nc_bin: str, ns: str) -> str:
    """The only way into the lab from the host: nc run inside the node's namespace."""
    return f"{shlex.quote(ip_bin)} netns exec {shlex.quote(ns)} {shlex.quote(nc_bin)} %h %p"


def ssh_config(nodes: Sequence[SshNode], key: Path, known_hosts: Path, ip_bin: str, nc_bin: str) -> str:
    """An ssh_config with one Host block per node, matching its name and its addresses."""
    blocks = []
    for node in nodes:
        blocks.append(
            "\n".join(
                [
                    f"Host {node.name} {' '.join(node.addresses)}",
                    f"  HostName {node.addresses[0]}",
                    f"  Port {SSH_PORT}",
                    f"  User {SSH_USER}",
                    f"  IdentityFile {key}",
                    "  IdentitiesOnly yes",
                    f"  UserKnownHostsFile {known_hosts}",
                    "  GlobalKnownHostsFile /dev/null",
                    "  StrictHostKeyChecking yes",
                    "  BatchMode yes",
                    "  LogLevel ERROR",
                    f"  ProxyCommand {proxy_command(ip_bin, nc_bin, node.ns)}",
                    "",
                ]
            )
        )
    return "\n".join(blocks)


def known_hosts(nodes: Sequence[SshNode], host_public_key: str) -> str:
    """One line per node naming it by hostname and by each address."""
    key = " ".join(host_public_key.split()[:2])
    return "".join(f"{','.join((n.name, *n.addresses))} {key}\n" for n in nodes)


def inventory(nodes: Sequence[SshNode], key: Path, ssh_config_path: Path, lab_vars: Mapping[str, object]) -> str:
    """Ansible-style YAML inventory: all.hosts are the cluster nodes only; lab facts in all.vars."""
    hosts = {
        n.name: {
            "ansible_host": n.addresses[0],
            "ansible_port": SSH_PORT,
            "ansible_user": SSH_USER,
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": f"-F {shlex.quote(str(ssh_config_path))}",
        }
        for n in nodes
    }
    doc = {"all": {"hosts": hosts, "vars": {"svcnet_lab": lab_vars}}}
    header = f"{INVENTORY_HEADER}; removed by `svcnet lab down`.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
