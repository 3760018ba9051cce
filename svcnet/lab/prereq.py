"""Checks before touching the system: root, and the tools the lab needs (with Debian packages)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from svcnet.lab.errors import LabError

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# tool -> Debian package that ships it
TOOL_PACKAGES: dict[str, str] = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "nft": "nftables",  # nodes in kube-proxy's nftables mode (the lab's nodes share the host's programs)
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nc": "netcat-openbsd",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "sh": "dash",
}


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the tools the lab runs."""

    ip: str
    sshd: str
    ssh: str
    ssh_keygen: str
    nc: str
    unshare: str
    nsenter: str
    iptables: str


def find_tool(name: str) -> str | None:
    """Absolute path of a tool, searching the sbin directories too."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def missing_tools() -> dict[str, str]:
    """tool -> package for every required tool that is not installed."""
    return {tool: pkg for tool, pkg in TOOL_PACKAGES.items() if find_tool(tool) is None}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("svcnet lab needs root (network and mount namespaces): run it with sudo")


def require_tools() -> Tools:
    """Paths of the tools, or a LabError naming the Debian packages to install."""
    missing = missing_tools()
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise LabError(
            f"svcnet lab needs {', '.join(sorted(missing))}, which are missing: "
            f"install the Debian packages with: apt-get install {packages}"
        )
    path = {tool: find_tool(tool) or tool for tool in TOOL_PACKAGES}
    return Tools(
        ip=path["ip"],
        sshd=path["sshd"],
        ssh=path["ssh"],
        ssh_keygen=path["ssh-keygen"],
        nc=path["nc"],
        unshare=path["unshare"],
        nsenter=path["nsenter"],
        iptables=path["iptables"],
    )


def require_all() -> Tools:
    """Root first (clearer message), then tools."""
    require_root()
    return require_tools()
