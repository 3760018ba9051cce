"""Scale benchmark: `svcnet apply` of N services x 5 endpoints on a 5-node lab, per mode and backend.

Run (as root, from the repo):
    .venv/bin/python bench/scale_bench.py [--services 1000] [--modes iptables-nft,iptables-legacy,nftables]
                                          [--budget 600]

It generates a description of N services x 5 endpoints (EndpointSlices with nodeName: the
endpoints are spread over the 5 nodes, every tenth service a NodePort) and, per mode, on a fresh
5-node lab times three `svcnet apply` runs (no verify task, as apply_bench):
  - first apply on the fresh nodes (every host must report changed),
  - one-change apply: one service's EndpointSlice gets one endpoint address replaced,
  - unchanged re-run (every host must report changed=0).
Modes: iptables-nft (proxy.mode iptables, the host's default iptables, nf_tables backend),
iptables-legacy (the same, with each node's iptables switched to the legacy x_tables backend by a
bind mount of xtables-legacy-multi over xtables-nft-multi inside the node's own mount namespace:
nothing changes on the host), nftables (proxy.mode nftables).

Per run it prints wall seconds, the slowest node's apply of its rules (from svcnet's progress
lines), the controller's peak memory (ru_maxrss of the `svcnet apply` process, from wait4) and the
bytes per node on the node's loopback (the SSH connection arrives through the lab's ProxyCommand,
`nc` inside the node's netns, so its traffic is loopback traffic there; the counter holds both
directions, and an apply's traffic is almost all the request sent).
A run still going after --budget seconds is killed and shown as "> N s (stopped)"; the mode's
later runs are skipped then. Every lab is torn down on any exit (also on failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from apply_bench import parse_recap, sigterm_as_interrupt, svcnet_cmd  # noqa: E402
from generate import cluster_yaml, services_yaml  # noqa: E402

from svcnet.lab import LabNode  # noqa: E402
from svcnet.lab.pytest_fixtures import lab_unavailable_reason, node_run, running_lab, unique_lab_name  # noqa: E402
from svcnet.lab.state import Lab  # noqa: E402

NODES = 5
ENDPOINTS = 5
MODES = ("iptables-nft", "iptables-legacy", "nftables")
FIRST, CHANGE, RERUN = "first apply", "one-change apply", "unchanged re-run"
LEGACY_MULTI, NFT_MULTI = "/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi"
CHANGED_FROM = "addresses: [10.128.0.2]"  # svc-00000's first endpoint (place(0))
CHANGED_TO = "addresses: [10.128.250.250]"  # a pod address no other endpoint has
PROGRESS_END = re.compile(r"^\S+: \d+ rule lines applied in (\d+\.\d) s$", re.M)  # svcnet apply's progress line


class BenchError(Exception):
    """The lab or a run failed: stops the benchmark with a message."""


@dataclass(frozen=True)
class Run:
    """One `svcnet apply`: seconds (None: stopped at the budget), peak MiB, loopback bytes per node."""

    seconds: float | None
    maxrss_mib: float
    node_bytes: dict[str, int]
    recap: dict[str, dict[str, int]]
    slowest_node: float | None  # the longest per-node apply of rules svcnet's progress lines show (None: none shown)
    failure: str | None = None  # why a host failed (the mode's later runs are skipped)


def node_names() -> list[str]:
    return [f"node{i + 1}" for i in range(NODES)]


def generate(n_services: int, path: Path, mode: str) -> None:
    """n_services x 5 endpoints over the 5 nodes, each node a /16 podCIDR (10.128+i.0.0/16)."""
    names = node_names()

    def place(k: int) -> tuple[str, str]:
        i, host = k % NODES, k // NODES + 2
        return f"10.{128 + i}.{host // 256}.{host % 256}", names[i]

    if n_services * ENDPOINTS // NODES + 2 >= 250 * 256:
        raise BenchError("--services too large for the nodes' /16 podCIDRs")
    nodes = [(n, f"192.168.56.{i + 11}", f"10.{128 + i}.0.0/16") for i, n in enumerate(names)]
    text = cluster_yaml("scalebench", "10.128.0.0/9", nodes) + services_yaml(n_services, ENDPOINTS, place)
    if mode == "nftables":
        text = text.replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1)
    path.write_text(text)


def change_one(path: Path) -> None:
    """Replace one endpoint address of svc-00000's EndpointSlice."""
    text = path.read_text()
    if CHANGED_FROM not in text:
        raise BenchError(f"the description has no {CHANGED_FROM!r} to change")
    path.write_text(text.replace(CHANGED_FROM, CHANGED_TO, 1))


def loopback_bytes(lab: Lab) -> dict[str, int]:
    """rx bytes of each node's loopback (every packet on lo is received once)."""
    out = {}
    for node in node_names():
        text = node_run(lab, node, "cat /sys/class/net/lo/statistics/rx_bytes").stdout
        out[node] = int(text.strip())
    return out


def use_legacy(lab: Lab) -> None:
    """Each node's iptables becomes the legacy backend, in the node's private mount namespace only."""
    for node in node_names():
        node_run(lab, node, f"mount --bind {LEGACY_MULTI} {NFT_MULTI}")
        version = node_run(lab, node, "iptables --version").stdout
        if "legacy" not in version:
            raise BenchError(f"{node}: iptables is not the legacy backend after the bind mount: {version.strip()}")


def timed_apply(argv: Sequence[str], lab: Lab, budget: float, log: Path) -> Run:
    """Run one apply with a time budget; its wall time, peak memory (wait4) and loopback bytes per node."""
    before = loopback_bytes(lab)
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            proc.kill()

        timer = threading.Timer(budget, stop)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    after = loopback_bytes(lab)
    text = log.read_text()
    # 2: a host failed, 4: unreachable (an answer later than the controller waits): both recorded by `check`
    if not stopped.is_set() and proc.returncode not in (0, 2, 4):
        raise BenchError(f"svcnet apply exit {proc.returncode}:\n{text[-3000:]}")
    node_times = [float(t) for t in PROGRESS_END.findall(text)]
    return Run(None if stopped.is_set() else seconds, usage.ru_maxrss / 1024,
               {n: after[n] - before[n] for n in after}, parse_recap(text), max(node_times, default=None))


def check(run: Run, case: str, log: Path) -> Run:
    """The run, with `failure` set if a host failed; BenchError if the recap is not what the case needs."""
    if run.seconds is None:
        return run
    text = log.read_text()
    hosts = node_names()
    if sorted(run.recap) != hosts:
        raise BenchError(f"{case}: the recap names {sorted(run.recap)}\n{text[-3000:]}")
    failed = [h for h, c in run.recap.items() if c.get("failed") or c.get("unreachable")]
    if failed:
        why = re.search(r'(?:FAILED|UNREACHABLE)! => \{"msg": "([^;"]*)', text)
        return replace(run, failure=f"{len(failed)} host(s) failed: {why[1] if why else 'see the log'}")
    for host, c in run.recap.items():
        if case == RERUN and c.get("changed"):
            raise BenchError(f"{case}: {host} changed={c['changed']} on an unchanged re-run")
        if case != RERUN and not c.get("changed"):
            raise BenchError(f"{case}: {host} reported changed=0")
    return run


def bench_mode(mode: str, n_services: int, budget: float, work: Path, logs: Path | None) -> dict[str, Run | None]:
    desc = work / f"desc-{mode}.yaml"
    generate(n_services, desc, mode)
    runs: dict[str, Run | None] = {FIRST: None, CHANGE: None, RERUN: None}
    nodes = [LabNode(n, (f"192.168.56.{i + 11}",)) for i, n in enumerate(node_names())]
    name = unique_lab_name("sb")
    with running_lab(nodes, name, work / f"inv-{name}") as lab:
        if mode == "iptables-legacy":
            use_legacy(lab)
        argv = svcnet_cmd("apply", "-f", str(desc), "-i", str(lab.inventory_path), "--forks", str(NODES),
                          "--skip-tags", "verify")
        for case in (FIRST, CHANGE, RERUN):
            if case == CHANGE:
                change_one(desc)
            log = work / f"{mode}-{case.replace(' ', '-')}.log"
            try:
                run = timed_apply(argv, lab, budget, log)
            finally:
                if logs:
                    shutil.copy(log, logs / f"{n_services}-{log.name}")
            run = check(run, case, log)
            runs[case] = run
            slowest = "" if run.slowest_node is None else f", slowest node's apply {run.slowest_node:.1f} s"
            failed = f"; FAILED: {run.failure}" if run.failure else ""
            print(f"  {mode}: {case}: {fmt_seconds(run.seconds, budget)}, {run.maxrss_mib:.0f} MiB, "
                  f"{fmt_bytes(run.node_bytes)} per node{slowest}{failed}", flush=True)
            if run.seconds is None or run.failure:
                break  # the node is mid-restore or rolled back: the later cases would measure that
    return runs


def fmt_seconds(seconds: float | None, budget: float) -> str:
    return f"> {budget:.0f} s (stopped)" if seconds is None else f"{seconds:.1f} s"


def fmt_bytes(per_node: dict[str, int]) -> str:
    return f"{statistics.median(per_node.values()) / 1e6:.2f} MB" if per_node else "-"


def table(results: dict[str, dict[str, Run | None]], budget: float) -> str:
    rows = ["| mode | " + " | ".join(f"{c} (s / MiB / MB per node)" for c in (FIRST, CHANGE, RERUN)) + " |",
            "|---|---|---|---|"]
    for mode, runs in results.items():
        cells = []
        for case in (FIRST, CHANGE, RERUN):
            run = runs.get(case)
            if run is None:
                cells.append("not run")
                continue
            failed = f" FAILED ({run.failure})" if run.failure else ""
            size = f"{run.maxrss_mib:.0f} / {fmt_bytes(run.node_bytes)}"
            cells.append(f"{fmt_seconds(run.seconds, budget)}{failed} / {size}")
        rows.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--budget", type=float, default=600.0, help="seconds before one apply run is stopped")
    ap.add_argument("--logs", type=Path, help="keep each run's `svcnet apply` output in this directory")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    reason = lab_unavailable_reason() or next((f"unknown mode {m!r}" for m in modes if m not in MODES), None)
    if reason:
        print(f"scale_bench: {reason}", file=sys.stderr)
        return 2
    if "iptables-legacy" in modes and not Path(LEGACY_MULTI).exists():
        print("scale_bench: iptables-legacy is not installed: that mode is left out", file=sys.stderr)
        modes.remove("iptables-legacy")
    results: dict[str, dict[str, Run | None]] = {}
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="svcnet-scalebench-") as tmp:
            print(f"{args.services} services x {ENDPOINTS} endpoints, {NODES} nodes, budget {args.budget:.0f} s "
                  "per run", flush=True)
            for mode in modes:
                results[mode] = bench_mode(mode, args.services, args.budget, Path(tmp), args.logs)
    except BenchError as exc:
        print(f"scale_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scale_bench: interrupted; labs torn down", file=sys.stderr)
        return 130
    print("\n" + table(results, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
