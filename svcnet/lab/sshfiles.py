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
# A ProxyCommand that never connects (the nodes of a lab with a bastion have no other way in).
NO_ROUTE_COMMAND = "false"


@dataclass(frozen=True)
class SshNode:
    """What the ssh files need to know about one node."""

    name: str
    ns: str
    addresses: tuple[str, ...]


def sshd_config(host_key: Path, authorized_keys: Path, bastion: bool = False) -> str:
    """Per-lab sshd_config (`bastion`: the jump host's); ListenAddress and PidFile are passed per node with -o.

    The bastion forwards to the nodes (ProxyJump) and logs each forwarded connection: DEBUG1 is
    the level of sshd's "server_request_direct_tcpip" line.
    """
    lines = [
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
        f"LogLevel {'DEBUG1' if bastion else 'ERROR'}",
        f"Subsystem sftp {SFTP_SERVER}",
    ]
    if bastion:
        lines.append("AllowTcpForwarding yes")
    return "\n".join(lines) + "\n"


def proxy_command(ip_bin: str, nc_bin: str, ns: str) -> str:
    """The only way into the lab from the host: nc run inside the node's namespace."""
    return f"{shlex.quote(ip_bin)} netns exec {shlex.quote(ns)} {shlex.quote(nc_bin)} %h %p"


def ssh_config(
    nodes: Sequence[SshNode],
    key: Path,
    known_hosts: Path,
    ip_bin: str,
    nc_bin: str,
    bastion: SshNode | None = None,
) -> str:
    """An ssh_config with one Host block per machine, matching its name and its addresses.

    With a `bastion`, the bastion is reached as the nodes otherwise are, and the nodes only
    through it (ProxyJump): their ProxyCommand, which OpenSSH ignores after a ProxyJump, fails,
    so a tool that does not know ProxyJump cannot connect from the host instead.
    """
    blocks = [] if bastion is None else [_host_block(bastion, key, known_hosts, [_proxy(ip_bin, nc_bin, bastion)])]
    for node in nodes:
        if bastion is None:
            route = [_proxy(ip_bin, nc_bin, node)]
        else:
            route = [
                f"  ProxyJump {bastion.name}",
                "  # Only through the bastion: OpenSSH ignores the next line (the ProxyJump comes first).",
                f"  ProxyCommand {NO_ROUTE_COMMAND}",
            ]
        blocks.append(_host_block(node, key, known_hosts, route))
    return "\n".join(blocks)


def _proxy(ip_bin: str, nc_bin: str, machine: SshNode) -> str:
    return f"  ProxyCommand {proxy_command(ip_bin, nc_bin, machine.ns)}"


def _host_block(machine: SshNode, key: Path, known_hosts: Path, route: Sequence[str]) -> str:
    return "\n".join(
        [
            f"Host {machine.name} {' '.join(machine.addresses)}",
            f"  HostName {machine.addresses[0]}",
            f"  Port {SSH_PORT}",
            f"  User {SSH_USER}",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  LogLevel ERROR",
            *route,
            "",
        ]
    )


def known_hosts(
    nodes: Sequence[SshNode], host_public_key: str, bastion: SshNode | None = None, bastion_public_key: str = ""
) -> str:
    """One line per machine naming it by hostname and by each address (the bastion has its own key)."""
    lines = [_known_host(n, host_public_key) for n in nodes]
    if bastion is not None:
        lines.append(_known_host(bastion, bastion_public_key))
    return "".join(lines)


def _known_host(machine: SshNode, public_key: str) -> str:
    key = " ".join(public_key.split()[:2])
    return f"{','.join((machine.name, *machine.addresses))} {key}\n"


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
