"""lab down: remove every namespace, process and file of a lab, also after a crash."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from svcnet.lab import netplan, procs, sshfiles
from svcnet.lab.errors import LabError
from svcnet.lab.layout import LAB_ROOT, NS_PREFIX, LabLayout, lab_id
from svcnet.lab.prereq import require_root
from svcnet.lab.registry import locked, release_mountpoints
from svcnet.lab.spec import validate_lab_name
from svcnet.lab.state import LabState, NodeState, lab_names, read_state


def lab_down(name: str, root: Path = LAB_ROOT) -> None:
    """Remove every namespace, process and file of lab `name` (works after crashes too)."""
    require_root()
    validate_lab_name(name)
    layout = LabLayout(name, root)
    if not layout.state_path.exists():
        if not layout.dir.exists():
            raise LabError(f"no lab named {name!r}")
        _sweep_prefix(f"{NS_PREFIX}{layout.id}-")
        with locked(root):
            shutil.rmtree(layout.dir, ignore_errors=True)
            release_mountpoints(root)
        return
    teardown(read_state(name, root), root)


def lab_down_all(root: Path = LAB_ROOT) -> list[str]:
    """Remove all labs, then any lab namespace left without a lab; return the lab names removed."""
    require_root()
    names = lab_names(root)
    for name in names:
        lab_down(name, root)
    if root == LAB_ROOT:
        with locked(root):  # a lab registers (state first, namespaces after) under this lock
            known = {lab_id(n) for n in lab_names(root)}
            for ns in _lab_namespaces():
                if ns[len(NS_PREFIX) :].split("-", 1)[0] not in known:
                    _sweep_prefix(ns)
    return names


def teardown(state: LabState, root: Path) -> None:
    """Kill the lab's processes, delete its namespaces, inventory and directory."""
    ip = state.tools.get("ip", "ip")
    _kill_lab_processes(state)
    existing = [ns for ns in state.namespaces if procs.netns_inode(ns) is not None]
    if existing:
        procs.run([ip, "-force", "-batch", "-"], stdin=netplan.netns_batch("del", existing), check=False)
    _sweep_prefix(f"{NS_PREFIX}{state.id}-")
    inventory = Path(state.inventory_path)
    with contextlib.suppress(OSError):
        if inventory.read_text().startswith(sshfiles.INVENTORY_HEADER):
            inventory.unlink()
    if state.inventory_dir_created:
        with contextlib.suppress(OSError):
            inventory.parent.rmdir()
    with locked(root):
        shutil.rmtree(state.dir, ignore_errors=True)
        release_mountpoints(root)
    left = [ns for ns in state.namespaces if procs.netns_inode(ns) is not None]
    if left:
        raise LabError(f"could not delete namespaces {', '.join(left)}")


def _kill_lab_processes(state: LabState) -> None:
    """Kill every process in the lab's network namespaces or in a node's UTS/mount namespace."""
    net = {i for i in (procs.netns_inode(ns) for ns in state.namespaces) if i}
    uts_owner = {n.anchor_uts: n for n in state.machines if n.anchor_uts}
    mnt_owner = {n.anchor_mnt: n for n in state.machines if n.anchor_mnt}
    found = procs.pids_in_namespaces({"net": net, "uts": set(uts_owner), "mnt": set(mnt_owner)})
    verified: dict[int, bool] = {}
    victims = []
    for pid, (kind, inode) in found.items():
        if kind == "net":
            victims.append(pid)
            continue
        owner = (uts_owner if kind == "uts" else mnt_owner)[inode]
        if inode not in verified:
            verified[inode] = _namespace_is_nodes(pid, owner)
        if verified[inode]:
            victims.append(pid)
    survivors = procs.kill_and_wait(victims)
    if survivors:
        raise LabError(f"processes {survivors} of lab {state.name!r} survived SIGKILL")


def _namespace_is_nodes(pid: int, node: NodeState) -> bool:
    """Guard against namespace inode reuse: the node's own anchor, or a UTS namespace named after it."""
    if procs.is_alive(node.anchor_pid) and procs.ns_inode(node.anchor_pid, "uts") == node.anchor_uts:
        return True
    try:
        out = procs.run(["nsenter", "-t", str(pid), "-u", "hostname"], timeout=5)
    except LabError:
        return False
    return out.strip() == node.name


def _lab_namespaces() -> list[str]:
    try:
        return sorted(p for p in os.listdir("/run/netns") if p.startswith(NS_PREFIX))
    except FileNotFoundError:
        return []


def _sweep_prefix(prefix: str) -> None:
    """Kill processes in, and delete, named namespaces starting with prefix (crash leftovers)."""
    names = [ns for ns in _lab_namespaces() if ns.startswith(prefix)]
    if not names:
        return
    inodes = {i for i in (procs.netns_inode(ns) for ns in names) if i}
    procs.kill_and_wait(procs.pids_in_namespaces({"net": inodes}))
    procs.run(["ip", "-force", "-batch", "-"], stdin=netplan.netns_batch("del", names), check=False)
