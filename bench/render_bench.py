"""Render benchmark: svcnet's render in both proxy modes, and the node loading each mode's rules.

Run (as root, from the repo):  .venv/bin/python bench/render_bench.py [--sizes 1000,3000,10000]

For each size it generates a description of N services x 5 endpoints over 100 nodes
(every tenth service a NodePort; endpoints given as EndpointSlices, 2 documents per
service), then measures, in one run:
  - `svcnet render --node` as a whole process (load, validate, render, print);
  - the render step alone for one node and for all 100 nodes, in iptables mode and in
    nftables mode (the same settings with `proxy.mode: nftables`);
  - the node's load of that node's rules into a fresh scratch network namespace (created and
    deleted here; nothing touches the host): `nft -f` of the nftables script, and
    `iptables-restore --noflush` of the iptables input (what the agent runs) on iptables-nft
    (Debian's default backend) and on iptables-legacy.
Every render and load measurement has a wall-clock budget (`--budget`); one still running then is
stopped and printed as "> N s (stopped)". Ratios are against references measured in the same run: render
against iptables mode's, loads against `nft -f`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from generate import cluster_yaml, services_yaml  # noqa: E402

from svcnet.desired import proxier_settings  # noqa: E402
from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.model.types import MODE_NFTABLES, ProxierSettings, ServicePort  # noqa: E402
from svcnet.render import nftables  # noqa: E402
from svcnet.render.iptables import render_nodes  # noqa: E402

NODES = 100
ENDPOINTS = 5
# A measurement that ran out of budget: its value is STOPPED; the budget is printed beside it.
STOPPED = -1.0

# The node's loaders, in the table's column order: (label, argv reading the rules on stdin, rules kind).
LOADERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("nft -f", ("nft", "-f", "-"), "nft"),
    ("iptables-nft-restore --noflush", ("iptables-nft-restore", "--noflush"), "restore"),
    ("iptables-legacy-restore --noflush", ("iptables-legacy-restore", "--noflush"), "restore"),
)
REFERENCE_LOADER = "nft -f"


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


class OverBudget(Exception):
    """A measurement ran out of its budget (raised by SIGALRM inside it)."""


def timed(fn: Callable[[], object], repeat: int, budget: float | None = None) -> float:
    """Median wall time of `repeat` calls; STOPPED when the calls together exceed `budget` seconds
    (the one running is interrupted: it is pure computation, nothing to clean up)."""

    def stop(*_: object) -> None:
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, stop) if budget else None
    if budget:
        signal.setitimer(signal.ITIMER_REAL, budget)
    samples = []
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    except OverBudget:
        return STOPPED
    finally:
        if budget:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return statistics.median(samples)


def ratio(value: float | None, ref: float | None, budget: float) -> str:
    """`value / ref` as "2.50x"; "-" when either is missing or the reference was stopped; a lower
    bound ("> 3.0x") when value was stopped at the budget."""
    if value is None or ref is None or ref <= 0:
        return "-"
    return f"> {budget / ref:.1f}x" if value == STOPPED else f"{value / ref:.2f}x"


def show(value: float | None, budget: float) -> str:
    if value is None:
        return "n/a"
    return f"> {budget:.0f} s (stopped)" if value == STOPPED else f"{value:.3f} s"


def scratch_netns(tag: str) -> str:
    """A name for a scratch namespace that no other run (pid) or helper uses."""
    return f"svcbench{os.getpid()}{tag}"


def load_time(argv: Sequence[str], rules: Path, repeat: int, budget: float) -> float | None:
    """Median time of `argv` (reading `rules` on stdin) run in a fresh scratch netns; None if the
    tool is missing, STOPPED if one run was still going after `budget` seconds (it is killed,
    the namespace deleted)."""
    if subprocess.run(["which", argv[0]], capture_output=True).returncode:
        return None
    samples = []
    for i in range(repeat):
        ns = scratch_netns(str(i))
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            with rules.open("rb") as f:
                t0 = time.perf_counter()
                try:
                    subprocess.run(["ip", "netns", "exec", ns, *argv], stdin=f, check=True, timeout=budget)
                except subprocess.TimeoutExpired:
                    return STOPPED
                samples.append(time.perf_counter() - t0)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return statistics.median(samples)


def nft_settings(settings: dict[str, ProxierSettings]) -> dict[str, ProxierSettings]:
    return {name: dataclasses.replace(s, proxy_mode=MODE_NFTABLES) for name, s in settings.items()}


def render_nft(settings: dict[str, ProxierSettings], ports: Sequence[ServicePort]) -> dict[str, str]:
    """Each node's `nft -f` script, as `svcnet render --node` prints it in nftables mode."""
    return {name: nftables.script(name, buf.dump(), settings[name].ip_family)
            for name, buf in nftables.render_nodes(settings, ports).items()}


def bench(n: int, workdir: Path, repeat: int, budget: float) -> dict[str, float | None]:
    desc = workdir / f"desc-{n}.yaml"
    generate(n, desc)
    svcnet = [sys.executable, "-m", "svcnet.cli.main"]
    rules = workdir / f"node-{n}.rules"
    script = workdir / f"node-{n}.nft"

    def whole() -> None:
        with rules.open("w") as f:
            subprocess.run([*svcnet, "render", "-f", str(desc), "--node", "node-000"], stdout=f, check=True,
                           cwd=REPO)

    big = n >= 5000  # a 10k render takes tens of seconds and its loads minutes: once each
    t_whole = timed(whole, 1 if big else repeat)  # unbounded: the loads below need its output
    t0 = time.perf_counter()
    cluster = load_cluster([desc])
    t_load = time.perf_counter() - t0
    node0 = cluster.nodes[0]
    one = {node0.name: proxier_settings(cluster, node0)}
    every = {n.name: proxier_settings(cluster, n) for n in cluster.nodes}
    one_nft, every_nft = nft_settings(one), nft_settings(every)
    script.write_text(render_nft(one_nft, cluster.service_ports)[node0.name])
    files = {"restore": rules, "nft": script}
    out: dict[str, float | None] = {
        "size_mb": desc.stat().st_size / 1e6,
        "rules_lines": float(rules.read_text().count("\n")),
        "nft_lines": float(script.read_text().count("\n")),
        "whole": t_whole,
        "load_validate_build": t_load,
        "render_one": timed(lambda: render_nodes(one, cluster.service_ports), repeat, budget),
        "render_all": timed(lambda: render_nodes(every, cluster.service_ports), max(1, repeat // 2), budget),
        "nft_render_one": timed(lambda: render_nft(one_nft, cluster.service_ports), repeat, budget),
        "nft_render_all": timed(lambda: render_nft(every_nft, cluster.service_ports), max(1, repeat // 2), budget),
    }
    for label, argv, kind in LOADERS:
        out[label] = load_time(argv, files[kind], 1 if big else repeat, budget)
    return out


def report(n: int, r: dict[str, float | None], budget: float) -> None:
    """One size's block: description, render rows (ratio to iptables mode), load rows (ratio to nft -f)."""
    print(f"\n== {n} services x {ENDPOINTS} endpoints, {NODES} nodes: description {r['size_mb']:.1f} MB, "
          f"node-000: iptables-restore input {int(r['rules_lines'] or 0)} lines, "
          f"nft script {int(r['nft_lines'] or 0)} lines", flush=True)
    rows = [
        ("svcnet render --node (whole process, iptables)", "whole", None),
        ("  load + validate + build (in process)", "load_validate_build", None),
        ("  render step, 1 node, iptables mode", "render_one", "render_one"),
        ("  render step, 1 node, nftables mode", "nft_render_one", "render_one"),
        (f"  render step, all {NODES} nodes, iptables mode", "render_all", "render_all"),
        (f"  render step, all {NODES} nodes, nftables mode", "nft_render_all", "render_all"),
        *((f"node load: {label}", label, REFERENCE_LOADER) for label, _, _ in LOADERS),
    ]
    for label, key, ref in rows:
        rel = f"{ratio(r[key], r[ref], budget)} of {ref}" if ref else ""
        print(f"  {label:50s} {show(r[key], budget):>20s}   {rel}", flush=True)


def summary(results: dict[int, dict[str, float | None]], budget: float) -> None:
    """The one table of the run (markdown, as in bench/README.md)."""
    head = ["services", "render ipt (1 node)", "render nft (1 node)", "nft/ipt",
            *(label for label, _, _ in LOADERS), *(f"{label} / nft -f" for label, _, _ in LOADERS[1:])]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n, r in results.items():
        cells = [str(n), show(r["render_one"], budget), show(r["nft_render_one"], budget),
                 ratio(r["nft_render_one"], r["render_one"], budget),
                 *(show(r[label], budget) for label, _, _ in LOADERS),
                 *(ratio(r[label], r[REFERENCE_LOADER], budget) for label, _, _ in LOADERS[1:])]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds before a render or a load is stopped")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("render_bench: run as root (the loaders need a scratch network namespace)")
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the scratch namespace's `finally` removes it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("render_bench: terminated"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            results[n] = bench(n, Path(tmp), args.repeat, args.budget)
            report(n, results[n], args.budget)
    summary(results, args.budget)


if __name__ == "__main__":
    main()
