"""Render benchmark: svcnet's render against iptables-restore loading the same rules.

Run (as root, from the repo):  .venv/bin/python bench/render_bench.py [--sizes 1000,10000]

For each size it generates a description of N services x 5 endpoints over 100 nodes
(every tenth service a NodePort; endpoints given as EndpointSlices, 2 documents per
service), then measures, in one run:
  - `svcnet render --node` as a whole process (load, validate, render, print);
  - the render step alone for one node, and for all 100 nodes;
  - iptables-nft-restore and iptables-legacy-restore loading that node's output into a
    fresh scratch network namespace (created and deleted here; nothing touches the host).
Ratios are against the faster loader measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from generate import cluster_yaml, services_yaml  # noqa: E402

from svcnet.desired import proxier_settings  # noqa: E402
from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.render.iptables import render_nodes  # noqa: E402

NODES = 100
ENDPOINTS = 5


def generate(n_services: int, path: Path) -> None:
    """Write a description of n_services x 5 endpoints over 100 nodes."""

    def node(i: int) -> str:
        return f"node-{i:03d}"

    def place(k: int) -> tuple[str, str]:
        i, host = k % NODES, k // NODES
        return f"10.{128 + i // 128}.{(i % 128) * 2 + host // 254}.{host % 254 + 2}", node(i)

    nodes = [(node(i), f"192.168.{i // 200}.{i % 200 + 10}", f"10.{128 + i // 128}.{(i % 128) * 2}.0/23")
             for i in range(NODES)]
    path.write_text(cluster_yaml("bench", "10.128.0.0/9", nodes) + services_yaml(n_services, ENDPOINTS, place))


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def load_time(loader: str, rules: Path, repeat: int, limit: float) -> float | None:
    """Median time of `loader --noflush` loading `rules` into a fresh scratch netns.

    A load still running after `limit` seconds is stopped and reported as -limit.
    """
    if subprocess.run(["which", loader], capture_output=True).returncode:
        return None
    samples = []
    for i in range(repeat):
        ns = f"svcbench{os.getpid()}{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            with rules.open("rb") as f:
                t0 = time.perf_counter()
                try:
                    subprocess.run(["ip", "netns", "exec", ns, loader, "--noflush"], stdin=f, check=True,
                                   timeout=limit)
                except subprocess.TimeoutExpired:
                    return -limit
                samples.append(time.perf_counter() - t0)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return statistics.median(samples)


def bench(n: int, workdir: Path, repeat: int, limit: float) -> dict[str, float | None]:
    desc = workdir / f"desc-{n}.yaml"
    generate(n, desc)
    svcnet = [sys.executable, "-m", "svcnet.cli.main"]
    rules = workdir / f"node-{n}.rules"

    def whole() -> None:
        with rules.open("w") as f:
            subprocess.run([*svcnet, "render", "-f", str(desc), "--node", "node-000"], stdout=f, check=True,
                           cwd=REPO)

    t_whole = timed(whole, repeat)
    t0 = time.perf_counter()
    cluster = load_cluster([desc])
    t_load = time.perf_counter() - t0
    node0 = cluster.nodes[0]
    one = {node0.name: proxier_settings(cluster, node0)}
    every = {n.name: proxier_settings(cluster, n) for n in cluster.nodes}
    t_one = timed(lambda: render_nodes(one, cluster.service_ports), repeat)
    t_all = timed(lambda: render_nodes(every, cluster.service_ports), max(1, repeat // 2))
    return {
        "size_mb": desc.stat().st_size / 1e6,
        "rules_lines": float(rules.read_text().count("\n")),
        "whole": t_whole,
        "load_validate_build": t_load,
        "render_one": t_one,
        "render_all": t_all,
        # Loads of large rulesets take minutes (nft): once each above 20k rules lines.
        "nft": load_time("iptables-nft-restore", rules, repeat if n < 5000 else 1, limit),
        "legacy": load_time("iptables-legacy-restore", rules, repeat if n < 5000 else 1, limit),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loader-limit", type=float, default=900.0, help="seconds before a loader run is stopped")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("render_bench: run as root (the loaders need a scratch network namespace)")
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the scratch namespace's `finally` removes it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("render_bench: terminated"))
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            r = bench(n, Path(tmp), args.repeat, args.loader_limit)
            loaders = [v for v in (r["nft"], r["legacy"]) if v and v > 0]
            ref = min(loaders) if loaders else None
            print(f"\n== {n} services x {ENDPOINTS} endpoints, {NODES} nodes: description "
                  f"{r['size_mb']:.1f} MB, node-000 rules {int(r['rules_lines'] or 0)} lines")
            for key, label in [
                ("whole", "svcnet render --node (whole process)"),
                ("load_validate_build", "  load + validate + build (in process)"),
                ("render_one", "  render step, 1 node"),
                ("render_all", f"  render step, all {NODES} nodes"),
                ("nft", "iptables-nft-restore load"),
                ("legacy", "iptables-legacy-restore load"),
            ]:
                v = r[key]
                if v is None:
                    print(f"  {label:44s}  n/a")
                    continue
                if v < 0:
                    print(f"  {label:44s}  > {-v:.0f} s (stopped)")
                    continue
                ratio = f"{v / ref:6.2f}x faster loader" if ref else ""
                print(f"  {label:44s} {v:8.3f} s   {ratio}")
            if r["render_one"]:
                print(f"  all nodes / one node: {r['render_all'] / r['render_one']:.2f}x")  # type: ignore[operator]


if __name__ == "__main__":
    main()
