"""Commands that build a lab's network and node processes (pure: they only return text/argv)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from svcnet.lab.layout import BRIDGE, NODE_HOME, NODE_IF, NODE_RUN_DIR

# $1 = hostname, then (host dir, mountpoint) pairs. Runs inside the node's fresh mount+UTS namespaces.
ANCHOR_SCRIPT = f"""set -e
host=$1; shift
mount -t tmpfs -o mode=0755,size=64m svcnet-lab-run {NODE_RUN_DIR}
mkdir -p {NODE_RUN_DIR}/netns {NODE_RUN_DIR}/sshd {NODE_RUN_DIR}/lock
# A home of its own, as on a fresh machine: no dotfiles (shell rc, pyenv, ...) of the lab's host.
mount -t tmpfs -o mode=0700,size=16m svcnet-lab-home {NODE_HOME}
while [ $# -gt 1 ]; do mount --bind "$1" "$2"; shift 2; done
hostname "$host"
exec sleep infinity
"""


def netns_batch(action: str, namespaces: Sequence[str]) -> str:
    """`ip -batch` text adding or deleting named network namespaces."""
    return "".join(f"netns {action} {ns}\n" for ns in namespaces)


def switch_batch(ports: Sequence[tuple[str, str]]) -> str:
    """`ip -n SWITCH -batch` text: a bridge, and per (port, peer netns) a veth whose peer is eth0."""
    lines = ["link set lo up", f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"]
    for port, peer_ns in ports:
        lines += [
            f"link add {port} type veth peer name {NODE_IF} netns {peer_ns}",
            f"link set {port} master {BRIDGE}",
            f"link set {port} up",
        ]
    return "\n".join(lines) + "\n"


def host_batch(addresses: Sequence[str], prefixes: Sequence[int]) -> str:
    """`ip -n NODE -batch` text: lo up, addresses on eth0, on-link default route per family."""
    lines = ["link set lo up"]
    families = set()
    for address, prefix in zip(addresses, prefixes, strict=True):
        version = ipaddress.ip_address(address).version
        families.add(version)
        lines.append(f"addr add {address}/{prefix} dev {NODE_IF}" + (" nodad" if version == 6 else ""))
    lines.append(f"link set {NODE_IF} up")
    for version in sorted(families):
        lines.append(f"route add {'0.0.0.0/0' if version == 4 else '::/0'} dev {NODE_IF}")
    return "\n".join(lines) + "\n"


def route_batch(routes: Sequence[tuple[str, str]]) -> str:
    """`ip -n CLIENT -batch` text: a host route per (destination, gateway on the switch)."""
    return "".join(f"route add {dest} via {gateway} dev {NODE_IF}\n" for dest, gateway in routes)


def anchor_argv(
    ip_bin: str, unshare_bin: str, ns: str, hostname: str, private_dirs: Sequence[tuple[Path, str]]
) -> list[str]:
    """argv of a node's anchor: inside its netns, new mount+UTS namespaces, private dirs, sleep."""
    pairs = [str(part) for src, dst in private_dirs for part in (src, dst)]
    return [
        ip_bin,
        "netns",
        "exec",
        ns,
        unshare_bin,
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        ANCHOR_SCRIPT,
        "anchor",
        hostname,
        *pairs,
    ]


def enter_argv(nsenter_bin: str, anchor_pid: int, argv: Sequence[str]) -> list[str]:
    """argv running `argv` inside a node's net, mount and UTS namespaces (via its anchor)."""
    # -r: keep the anchor's root directory (setns into a mount namespace would reset it, escaping a chroot)
    return [nsenter_bin, "-t", str(anchor_pid), "-n", "-m", "-u", "-r", "--wd=/", "--", *argv]


def sshd_argv(sshd_bin: str, config: Path, addresses: Sequence[str], pid_file: Path, log: Path) -> list[str]:
    """argv of a node's sshd in the foreground, listening only on the node's addresses."""
    argv = [sshd_bin, "-D", "-f", str(config), "-E", str(log), "-o", f"PidFile={pid_file}"]
    for address in addresses:
        argv += ["-o", f"ListenAddress={address}"]
    return argv
