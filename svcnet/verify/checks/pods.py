"""Every pod's network namespace has its IP, and its process listens on its container ports."""

from __future__ import annotations

import json
import time

import pytest

from svcnet.model.types import TCP, UDP, Pod
from svcnet.render.netconf import POD_IFACE
from svcnet.verify.context import VerifyContext, VerifyError, netns_prefix
from svcnet.verify.procnet import listening_ports

PROC_NET = {TCP: "/proc/net/tcp /proc/net/tcp6", UDP: "/proc/net/udp /proc/net/udp6"}
START_GRACE = 5.0  # seconds a running (just started) pod gets to open its ports
POLL = 0.25


def label(pod: Pod) -> str:
    return f"{pod.node_name}: pod {pod.namespace}/{pod.name}"


def test_pod_has_its_ip(svcnet_context: VerifyContext, svcnet_pod: Pod) -> None:
    pod, netns = svcnet_pod, svcnet_pod.netns
    host = svcnet_context.host(pod.node_name)
    if not host.run("test -e /run/netns/%s", netns).succeeded:
        raise VerifyError(f"{label(pod)}: its network namespace {netns} does not exist")
    out = host.run("ip -n %s -j addr show dev %s", netns, POD_IFACE)
    if not out.succeeded:
        raise VerifyError(f"{label(pod)}: no interface {POD_IFACE} in {netns}: {out.stderr.strip()}")
    try:
        links = json.loads(out.stdout or "[]")
    except ValueError:
        raise VerifyError(f"{label(pod)}: cannot read `ip -j addr` output: {out.stdout[:200]!r}") from None
    addrs = [a.get("local") for link in links for a in link.get("addr_info", [])]
    missing = [ip for ip in pod.all_ips if ip not in addrs]  # one per family on a dual-stack node
    if missing:
        have = ", ".join(a for a in addrs if a) or "none"
        raise VerifyError(f"{label(pod)}: {netns} has no address {', '.join(missing)} on {POD_IFACE} (has: {have})")
    if links and "UP" not in links[0].get("flags", []):
        raise VerifyError(f"{label(pod)}: {POD_IFACE} in {netns} is down")


def missing_ports(ctx: VerifyContext, pod: Pod) -> list[str]:
    """Container ports of `pod` nothing listens on, as `PORT/PROTO`."""
    missing = []
    for proto in sorted({cp.protocol for cp in pod.ports} & set(PROC_NET)):
        res = ctx.run(pod.node_name, f"{netns_prefix(pod.netns)}cat {PROC_NET[proto]} 2>/dev/null")
        listening = listening_ports(res.stdout, udp=proto == UDP)
        missing += [f"{cp.port}/{proto}" for cp in pod.ports if cp.protocol == proto and cp.port not in listening]
    return missing


def test_pod_listens_on_its_ports(svcnet_context: VerifyContext, svcnet_pod: Pod) -> None:
    pod, ctx = svcnet_pod, svcnet_context
    if not pod.command:
        pytest.skip(f"{label(pod)} has no command: svcnet runs no process for it")
    if not pod.ports:
        pytest.skip(f"{label(pod)} declares no container ports")
    missing = missing_ports(ctx, pod)
    if not missing:
        return
    status = ctx.pod_status(pod.node_name).get(f"{pod.namespace}/{pod.name}")
    running = bool(status and status.running)
    deadline = time.monotonic() + START_GRACE
    while missing and running and time.monotonic() < deadline:  # a pod just (re)started gets a moment
        time.sleep(POLL)
        missing = missing_ports(ctx, pod)
    if missing:
        why = "" if running else " (svcnet's supervisor for it is not running; re-apply to restart it)"
        raise VerifyError(f"{label(pod)}: no process listens on {', '.join(missing)}{why}")
