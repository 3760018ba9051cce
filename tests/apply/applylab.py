"""Helpers for the apply integration tests: run the real `svcnet` command against a lab."""

from __future__ import annotations

import re
import shlex
import time

from labrun import DUAL_STACK, REPO, SEED, Run, applied_lab, apply, svcnet  # noqa: F401  (the apply tests' helpers)

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.state import Lab

# Bounds for every traffic probe: requests per target and seconds per request.
REQUESTS, REQUEST_TIMEOUT = 24, 2


def answers(lab: Lab, machine: str, url: str, netns: str | None = None) -> list[str]:
    """Pod names answering REQUESTS bounded HTTP requests to `url` from `machine` (or a pod netns on it).
    An IPv6 URL has its address in brackets (`http://[fd00:10:96::10]:8080/`): curl's -g keeps them."""
    prefix = f"ip netns exec {netns} " if netns else ""
    script = (f"for i in $(seq {REQUESTS}); do {prefix}curl -g -s --max-time {REQUEST_TIMEOUT} {shlex.quote(url)} "
              "|| echo FAIL; done")
    return node_run(lab, machine, script, check=False).stdout.split()


def settled_answers(lab: Lab, machine: str, url: str, netns: str | None = None, seconds: float = 20) -> list[str]:
    """`answers`, retried (bounded) until no request fails: pods take a moment to start listening."""
    deadline = time.monotonic() + seconds
    got = answers(lab, machine, url, netns)
    while "FAIL" in got and time.monotonic() < deadline:
        time.sleep(0.5)
        got = answers(lab, machine, url, netns)
    return got


def url(ip: str, port: int) -> str:
    """http://IP:PORT/, the address in brackets when it is IPv6."""
    return f"http://[{ip}]:{port}/" if ":" in ip else f"http://{ip}:{port}/"


def owned_rules(lab: Lab, node: str) -> str:
    """The node's KUBE-* chains and rules (counters stripped), as iptables-save prints them."""
    out = node_run(lab, node, "iptables-save -t filter; iptables-save -t nat").stdout
    return "\n".join(ln for ln in out.splitlines() if "KUBE-" in ln and not ln.startswith("#"))


def foreign_rules(lab: Lab, node: str) -> str:
    """Everything in iptables-save that is not svcnet's (no KUBE-*), without comments/counters."""
    out = node_run(lab, node, "iptables-save").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in out.splitlines()
                     if not ln.startswith("#") and "KUBE-" not in ln)
