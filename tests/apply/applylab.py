"""Helpers for the apply integration tests: run the real `svcnet` command against a lab."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.state import Lab

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
# Bounds for every traffic probe: requests per target and seconds per request.
REQUESTS, REQUEST_TIMEOUT = 24, 2


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def recap(self) -> dict[str, dict[str, int]]:
        return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
                for m in RECAP.finditer(self.out)}


def svcnet(*args: str, timeout: float = 180) -> Run:
    """The real `svcnet` command in a subprocess (no terminal)."""
    p = subprocess.run([sys.executable, "-m", "svcnet.cli.main", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr)


def apply(lab: Lab, *paths: Path | str, extra: tuple[str, ...] = ()) -> Run:
    args = ["apply", "-i", str(lab.inventory_path), "--confirm-timeout", "15", *extra]
    for p in paths:
        args += ["-f", str(p)]
    return svcnet(*args)


def answers(lab: Lab, machine: str, url: str, netns: str | None = None) -> list[str]:
    """Pod names answering REQUESTS bounded HTTP requests to `url` from `machine` (or a pod netns on it)."""
    prefix = f"ip netns exec {netns} " if netns else ""
    script = (f"for i in $(seq {REQUESTS}); do {prefix}curl -s --max-time {REQUEST_TIMEOUT} {url} || echo FAIL; "
              "done")
    return node_run(lab, machine, script, check=False).stdout.split()


def settled_answers(lab: Lab, machine: str, url: str, netns: str | None = None, seconds: float = 20) -> list[str]:
    """`answers`, retried (bounded) until no request fails: pods take a moment to start listening."""
    deadline = time.monotonic() + seconds
    got = answers(lab, machine, url, netns)
    while "FAIL" in got and time.monotonic() < deadline:
        time.sleep(0.5)
        got = answers(lab, machine, url, netns)
    return got


def owned_rules(lab: Lab, node: str) -> str:
    """The node's KUBE-* chains and rules (counters stripped), as iptables-save prints them."""
    out = node_run(lab, node, "iptables-save -t filter; iptables-save -t nat").stdout
    return "\n".join(ln for ln in out.splitlines() if "KUBE-" in ln and not ln.startswith("#"))


def foreign_rules(lab: Lab, node: str) -> str:
    """Everything in iptables-save that is not svcnet's (no KUBE-*), without comments/counters."""
    out = node_run(lab, node, "iptables-save").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in out.splitlines()
                     if not ln.startswith("#") and "KUBE-" not in ln)
