"""Running commands on lab machines, and resetting a node as a reboot would."""

from __future__ import annotations

import json
from collections.abc import Sequence

from svcnet.lab import procs
from svcnet.lab.errors import LabError
from svcnet.lab.layout import NODE_IF
from svcnet.lab.netplan import enter_argv, host_batch
from svcnet.lab.spec import CLIENT_NAME
from svcnet.lab.state import Lab, NodeState

# A fresh netns's policy rules besides `0: lookup local`, per family.
RULE_DEFAULTS = {"-4": (("32766", "main"), ("32767", "default")), "-6": (("32766", "main"),)}
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
# Per-netns sysctls svcnet may change, with a fresh namespace's values.
REBOOT_SYSCTLS = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.route_localnet": "0",
    "net.ipv6.conf.all.forwarding": "0",
}
_FLUSH_SCRIPT = """
for cmd in iptables ip6tables; do
  command -v "$cmd" >/dev/null || continue
  for t in {tables}; do
    "$cmd" -w -t "$t" -F 2>/dev/null || continue
    "$cmd" -w -t "$t" -X
    for c in $("$cmd" -w -t "$t" -S | sed -n 's/^-P \\([^ ]*\\) .*/\\1/p'); do
      "$cmd" -w -t "$t" -P "$c" ACCEPT
    done
  done
done
command -v conntrack >/dev/null && conntrack -F >/dev/null 2>&1
ip -all netns delete 2>/dev/null
find /run -mindepth 1 -maxdepth 1 ! -name sshd ! -name netns ! -name lock -exec rm -rf {{}} +
true
""".format(tables=" ".join(IPTABLES_TABLES))


def node_exec_argv(lab: Lab, node: str, argv: Sequence[str]) -> list[str]:
    """Host-side argv running argv inside `node` or the bastion (net+mount+UTS namespaces), or in the client netns."""
    tools = lab.state.tools
    if node == CLIENT_NAME:
        if procs.netns_inode(lab.client_ns) is None:
            raise LabError(f"lab {lab.name!r}: the client namespace {lab.client_ns} is gone")
        return [tools.get("ip", "ip"), "netns", "exec", lab.client_ns, *argv]
    return enter_argv(tools.get("nsenter", "nsenter"), _live_anchor(lab, lab.state.machine(node)), argv)


def _live_anchor(lab: Lab, node: NodeState) -> int:
    if not procs.is_alive(node.anchor_pid) or procs.ns_inode(node.anchor_pid, "uts") != node.anchor_uts:
        raise LabError(
            f"node {node.name} of lab {lab.name!r} is not running (its anchor process is gone): "
            f"`svcnet lab down --name {lab.name}` and up again"
        )
    return node.anchor_pid


def simulate_reboot(lab: Lab, node: str) -> None:
    """Bring `node` back to its bare state as after a reboot, keeping /etc/svcnet and /var/lib/svcnet.

    Kills every node process but the lab's anchor and sshd, flushes iptables (all tables, v4+v6),
    flushes conntrack, empties /run, deletes the node's own network namespaces and every interface, address and
    route the lab did not create, and resets forwarding sysctls.
    """
    state = lab.state.node(node)
    anchor = _live_anchor(lab, state)
    keep = {anchor, state.sshd_pid}
    inodes = {"uts": {state.anchor_uts}, "net": {procs.netns_inode(state.ns) or 0}}
    procs.kill_and_wait(pid for pid in procs.pids_in_namespaces(inodes) if pid not in keep)
    run = _runner(lab, node)
    run(["sh", "-c", _FLUSH_SCRIPT])
    links = json.loads(run(["ip", "-j", "link", "show"]) or "[]")
    extra = [link["ifname"] for link in links if link["ifname"] not in ("lo", NODE_IF)]
    batch = [f"link del {name}" for name in extra] + [f"addr flush dev {NODE_IF}", "addr flush dev lo"]
    run(["ip", "-force", "-batch", "-"], stdin="\n".join(batch) + "\n", check=False)
    for family in ("-4", "-6"):
        run(["ip", family, "route", "flush", "table", "all"], check=False)
        run(["ip", family, "rule", "flush"], check=False)
        for pref, table in RULE_DEFAULTS[family]:
            run(["ip", family, "rule", "add", "pref", pref, "lookup", table], check=False)
    run(["ip", "-force", "-batch", "-"], stdin=_restore_batch(state), check=False)
    run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in REBOOT_SYSCTLS.items())], check=False)


def _restore_batch(state: NodeState) -> str:
    """The lab's own networking; cycling lo restores its addresses' local routes and ::1."""
    lines = ["link set lo down", "addr add 127.0.0.1/8 dev lo", "link set lo up"]
    lines += [line for line in host_batch(state.addresses, state.prefixes).splitlines() if "lo up" not in line]
    return "\n".join(lines) + "\n"


def _runner(lab: Lab, node: str):
    def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
        return procs.run(node_exec_argv(lab, node, argv), stdin=stdin, check=check)

    return run
