"""lab up: build a lab of network-namespace machines, each with its own sshd."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from svcnet.lab import netplan, procs, sshfiles
from svcnet.lab.addressing import plan_switch
from svcnet.lab.down import teardown
from svcnet.lab.errors import LabError
from svcnet.lab.layout import BASTION_PORT, CLIENT_PORT, LAB_ROOT, NODE_PRIVATE_DIRS, LabLayout, lab_id
from svcnet.lab.prereq import Tools, require_all
from svcnet.lab.registry import ensure_mountpoints, locked
from svcnet.lab.spec import BASTION_NAME, LabNode, LabRoute, validate_lab_name, validate_nodes
from svcnet.lab.state import Lab, LabState, NodeState, lab_names, lab_view, read_state, write_state

READY_TIMEOUT = 15.0
POLL = 0.01


def lab_up(
    nodes: Sequence[LabNode],
    name: str,
    inventory_dir: str | Path = "inventory",
    root: Path = LAB_ROOT,
    bastion: bool = False,
    routes: Sequence[LabRoute] = (),
) -> Lab:
    """Create the lab `name` for `nodes`; on any failure remove what was created and raise.

    `bastion`: one more machine, the jump host, with its own sshd and host key; the nodes are
    then reachable over SSH only through it (the ssh_config's ProxyJump). `routes`: addresses
    the client sends to a node (see `LabRoute`).
    """
    tools = require_all()
    validate_lab_name(name)
    nodes = validate_nodes(nodes, bastion)
    plan = plan_switch(nodes, bastion)
    client_addresses = plan.client_addresses + plan.client_second_addresses
    layout = LabLayout(name, root)
    inventory_path = (Path(inventory_dir) / f"{name}.yaml").absolute()
    _check_inventory_is_ours(inventory_path)
    state = LabState(
        name=name,
        id=layout.id,
        dir=str(layout.dir),
        inventory_path=str(inventory_path),
        switch_ns=layout.switch_ns,
        client_ns=layout.client_ns,
        client_addresses=client_addresses,
        client_prefixes=tuple(plan.prefix_len(a) for a in client_addresses),
        client_routes=client_routes(routes, nodes, client_addresses),
        nodes=tuple(
            NodeState(
                name=n.name,
                ns=layout.node_ns(i),
                port=layout.switch_port(i),
                addresses=n.addresses,
                prefixes=tuple(plan.prefix_len(a) for a in n.addresses),
            )
            for i, n in enumerate(nodes)
        ),
        bastion=NodeState(
            name=BASTION_NAME,
            ns=layout.bastion_ns,
            port=BASTION_PORT,
            addresses=plan.bastion_addresses,
            prefixes=tuple(plan.prefix_len(a) for a in plan.bastion_addresses),
        )
        if bastion
        else None,
        tools=asdict(tools),
    )
    _register(state, layout, root)
    try:
        state = _build(state, layout, tools)
    except BaseException:
        teardown(_latest(state, root), root)
        raise
    return lab_view(state)


def client_routes(
    routes: Sequence[LabRoute], nodes: Sequence[LabNode], client_addresses: Sequence[str]
) -> tuple[tuple[str, str, str], ...]:
    """(destination, node, gateway) per route: the gateway is the node's first address of the family."""
    taken = {str(ipaddress.ip_address(a)) for a in client_addresses}
    taken |= {str(ipaddress.ip_address(a)) for n in nodes for a in n.addresses}
    out = []
    for route in routes:
        try:
            dest = ipaddress.ip_address(route.destination)
        except ValueError:
            raise LabError(f"route {route.destination!r}: not an IP address") from None
        if str(dest) in taken:
            raise LabError(f"route {dest}: the address is already a lab machine's")
        node = next((n for n in nodes if n.name == route.node), None)
        if node is None:
            raise LabError(f"route {dest}: no node {route.node!r}")
        gateway = next((a for a in node.addresses if ipaddress.ip_address(a).version == dest.version), None)
        if gateway is None:
            raise LabError(f"route {dest}: node {node.name} has no IPv{dest.version} address")
        taken.add(str(dest))
        out.append((str(dest), node.name, gateway))
    return tuple(out)


def _latest(state: LabState, root: Path) -> LabState:
    """The state as last written (it records pids as they start), else the initial one."""
    try:
        return read_state(state.name, root)
    except LabError:
        return state


def _register(state: LabState, layout: LabLayout, root: Path) -> None:
    """Claim the lab's name and id and write its state before creating anything."""
    with locked(root):
        if layout.dir.exists():
            raise LabError(f"lab {state.name!r} already exists: `svcnet lab down --name {state.name}` first")
        for other in lab_names(root):
            if lab_id(other) == state.id:
                raise LabError(f"lab {state.name!r} has the same short id as lab {other!r}; pick another name")
        stale = [ns for ns in state.namespaces if procs.netns_inode(ns) is not None]
        if stale:
            raise LabError(f"namespaces {', '.join(stale)} already exist: `svcnet lab down --all` to clean up")
        ensure_mountpoints()
        layout.dir.mkdir(mode=0o700, parents=True)
        write_state(state)


def _build(state: LabState, layout: LabLayout, tools: Tools) -> LabState:
    _write_keys_and_configs(state, layout, tools)
    procs.run([tools.ip, "-batch", "-"], stdin=netplan.netns_batch("add", state.namespaces))
    ports = [(n.port, n.ns) for n in state.machines] + [(CLIENT_PORT, state.client_ns)]
    procs.run([tools.ip, "-n", state.switch_ns, "-batch", "-"], stdin=netplan.switch_batch(ports))
    batches = [(n.ns, netplan.host_batch(n.addresses, n.prefixes)) for n in state.machines]
    gateways = [(dest, gateway) for dest, _, gateway in state.client_routes]
    client = netplan.host_batch(state.client_addresses, state.client_prefixes) + netplan.route_batch(gateways)
    batches.append((state.client_ns, client))
    procs.run_all([([tools.ip, "-n", ns, "-batch", "-"], batch) for ns, batch in batches])
    state = _start_anchors(state, layout, tools)
    state = _start_sshds(state, layout, tools)
    state = _write_inventory(state, layout)
    state = replace(state, phase="up")
    write_state(state)
    return state


def _write_keys_and_configs(state: LabState, layout: LabLayout, tools: Tools) -> None:
    comment = f"svcnet-lab-{state.name}"
    keygen = [tools.ssh_keygen, "-q", "-t", "ed25519", "-N", ""]
    keys = [(f"{comment}-host", layout.host_key), (comment, layout.client_key)]
    if state.bastion:
        keys.append((f"{comment}-bastion", layout.bastion_host_key))
    procs.run_all([([*keygen, "-C", text, "-f", str(path)], None) for text, path in keys])
    layout.authorized_keys.write_text(Path(f"{layout.client_key}.pub").read_text())
    layout.sshd_config.write_text(sshfiles.sshd_config(layout.host_key, layout.authorized_keys))
    ssh_nodes = [sshfiles.SshNode(n.name, n.ns, n.addresses) for n in state.nodes]
    bastion, bastion_pub = None, ""
    if state.bastion:
        layout.bastion_sshd_config.write_text(
            sshfiles.sshd_config(layout.bastion_host_key, layout.authorized_keys, bastion=True)
        )
        bastion = sshfiles.SshNode(state.bastion.name, state.bastion.ns, state.bastion.addresses)
        bastion_pub = Path(f"{layout.bastion_host_key}.pub").read_text()
    layout.ssh_config.write_text(
        sshfiles.ssh_config(ssh_nodes, layout.client_key, layout.known_hosts, tools.ip, tools.nc, bastion)
    )
    host_pub = Path(f"{layout.host_key}.pub").read_text()
    layout.known_hosts.write_text(sshfiles.known_hosts(ssh_nodes, host_pub, bastion, bastion_pub))
    for node in state.machines:
        for mountpoint in NODE_PRIVATE_DIRS:
            layout.node_private_dir(node.name, mountpoint).mkdir(mode=0o755, parents=True, exist_ok=True)


def _start_anchors(state: LabState, layout: LabLayout, tools: Tools) -> LabState:
    """Start every machine's anchor at once; wait until each has its own mount+UTS namespaces."""
    commands = []
    for node in state.machines:
        private = [(layout.node_private_dir(node.name, mp), mp) for mp in NODE_PRIVATE_DIRS]
        argv = netplan.anchor_argv(tools.ip, tools.unshare, node.ns, node.name, private)
        commands.append((argv, layout.node_dir(node.name) / "anchor.log"))
    pids = procs.spawn_detached(commands)
    nodes = tuple(replace(n, anchor_pid=pid) for n, pid in zip(state.machines, pids, strict=True))
    state = state.with_machines(nodes)
    write_state(state)
    my_uts = procs.ns_inode("self", "uts")
    _wait_all(
        nodes,
        lambda n: procs.comm(n.anchor_pid) == "sleep" and procs.ns_inode(n.anchor_pid, "uts") != my_uts,
        lambda n: procs.is_alive(n.anchor_pid),
        "anchor",
        layout,
    )
    nodes = tuple(
        replace(
            n,
            anchor_uts=procs.ns_inode(n.anchor_pid, "uts") or 0,
            anchor_mnt=procs.ns_inode(n.anchor_pid, "mnt") or 0,
        )
        for n in nodes
    )
    state = state.with_machines(nodes)
    write_state(state)
    return state


def _start_sshds(state: LabState, layout: LabLayout, tools: Tools) -> LabState:
    """Start every machine's sshd at once (inside it); wait until all listen."""
    commands = []
    for node in state.machines:
        node_dir = layout.node_dir(node.name)
        config = layout.bastion_sshd_config if node is state.bastion else layout.sshd_config
        sshd = netplan.sshd_argv(tools.sshd, config, node.addresses, node_dir / "sshd.pid", node_dir / "sshd.log")
        commands.append((netplan.enter_argv(tools.nsenter, node.anchor_pid, sshd), node_dir / "sshd.out"))
    pids = procs.spawn_detached(commands)
    nodes = tuple(replace(n, sshd_pid=pid) for n, pid in zip(state.machines, pids, strict=True))
    state = state.with_machines(nodes)
    write_state(state)
    _wait_all(
        nodes,
        lambda n: procs.tcp_listeners(n.sshd_pid, sshfiles.SSH_PORT) >= len(n.addresses),
        lambda n: procs.is_alive(n.sshd_pid),
        "sshd",
        layout,
    )
    return state


def _wait_all(nodes, ready, alive, what: str, layout: LabLayout) -> None:
    """Poll until ready(n) for every node; LabError naming the first node whose process died."""
    pending = list(nodes)
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        pending = [n for n in pending if not ready(n)]
        for node in pending:
            if not alive(node):
                raise LabError(f"node {node.name}: {what} exited during start: {_log_tail(layout, node.name)}")
        if pending and time.monotonic() > deadline:
            raise LabError(f"{what} not ready after {READY_TIMEOUT:.0f}s on {', '.join(n.name for n in pending)}")
        if pending:
            time.sleep(POLL)


def _log_tail(layout: LabLayout, node: str) -> str:
    texts = []
    for log in sorted(layout.node_dir(node).glob("*.log")) + sorted(layout.node_dir(node).glob("*.out")):
        with contextlib.suppress(OSError):
            texts.append(log.read_text().strip()[-400:])
    return " | ".join(t for t in texts if t) or "(no output)"


def _check_inventory_is_ours(path: Path) -> None:
    if path.exists() and not path.read_text().startswith(sshfiles.INVENTORY_HEADER):
        raise LabError(f"{path} exists and was not written by svcnet lab; move it away or use --inventory-dir")


def _write_inventory(state: LabState, layout: LabLayout) -> LabState:
    path = Path(state.inventory_path)
    if not path.parent.exists():
        state = replace(state, inventory_dir_created=True)
        write_state(state)
        path.parent.mkdir(parents=True)
    ssh_nodes = [sshfiles.SshNode(n.name, n.ns, n.addresses) for n in state.nodes]
    lab_vars = {
        "name": state.name,
        "dir": state.dir,
        "known_hosts": str(layout.known_hosts),
        "client_ns": state.client_ns,
        "client_ip": state.client_addresses[0],
        "client_addresses": list(state.client_addresses),
        "routes": {dest: node for dest, node, _ in state.client_routes},
    }
    path.write_text(sshfiles.inventory(ssh_nodes, layout.client_key, layout.ssh_config, lab_vars))
    return state
