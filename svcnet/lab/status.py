"""lab status and lookup: which labs exist, and whether their nodes answer."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from svcnet.lab import procs, sshfiles
from svcnet.lab.errors import LabError
from svcnet.lab.layout import LAB_ROOT
from svcnet.lab.prereq import require_root
from svcnet.lab.spec import validate_lab_name
from svcnet.lab.state import Lab, lab_names, lab_view, read_state


@dataclass(frozen=True)
class NodeStatus:
    """One row of `lab status`."""

    name: str
    ns: str
    address: str
    anchor_alive: bool
    sshd_alive: bool
    ssh_answers: bool


def load_lab(name: str | None = None, root: Path = LAB_ROOT) -> Lab:
    """The Lab called `name`, or the only lab when name is None."""
    return lab_view(read_state(resolve_name(name, root), root))


def resolve_name(name: str | None, root: Path = LAB_ROOT) -> str:
    """name itself, or the only existing lab's name."""
    if name:
        return validate_lab_name(name)
    names = lab_names(root)
    if len(names) == 1:
        return names[0]
    if not names:
        raise LabError("no lab exists: `svcnet lab up -f CLUSTER` first")
    raise LabError(f"several labs exist ({', '.join(names)}): choose one with --name")


def lab_status(name: str | None = None, root: Path = LAB_ROOT) -> list[NodeStatus]:
    """Per node: anchor and sshd alive, and whether sshd answers with an SSH banner."""
    require_root()
    state = read_state(resolve_name(name, root), root)
    ip, nc = state.tools.get("ip", "ip"), state.tools.get("nc", "nc")
    with ThreadPoolExecutor(max_workers=min(32, len(state.nodes))) as pool:
        answers = list(pool.map(lambda n: _ssh_banner(ip, nc, n.ns, n.addresses[0]), state.nodes))
    return [
        NodeStatus(
            name=n.name,
            ns=n.ns,
            address=n.addresses[0],
            anchor_alive=procs.is_alive(n.anchor_pid) and procs.ns_inode(n.anchor_pid, "uts") == n.anchor_uts,
            sshd_alive=procs.is_alive(n.sshd_pid) and procs.ns_inode(n.sshd_pid, "uts") == n.anchor_uts,
            ssh_answers=answered,
        )
        for n, answered in zip(state.nodes, answers, strict=True)
    ]


def _ssh_banner(ip: str, nc: str, ns: str, address: str) -> bool:
    """True if something on address:22 inside ns sends an SSH identification line."""
    if procs.netns_inode(ns) is None:
        return False
    proc = subprocess.Popen(
        [ip, "netns", "exec", ns, nc, "-w", "2", address, str(sshfiles.SSH_PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else b""
    finally:
        proc.kill()
        proc.communicate()
    return line.startswith(b"SSH-2.0-")
