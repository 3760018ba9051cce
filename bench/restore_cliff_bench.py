"""The iptables-nft cliff: `iptables-restore --noflush` load time against rule lines, per backend.

Run (as root, from the repo):
    .venv/bin/python bench/restore_cliff_bench.py [--lines 5000,10000,25000,50000,75000] [--limit 300]

For each target size it renders render_bench's description (S services x 5 endpoints over 100
nodes, S chosen so node-000's rules.restore has about that many lines) with svcnet, and times
iptables-nft-restore and iptables-legacy-restore `--noflush` loading it into a fresh scratch
network namespace (created and deleted here), and for comparison `nft -f` loading the same
description's nftables-mode script (`proxy.mode: nftables`). Then it fits t = a * lines^b per backend (least
squares on the logarithms) and prints the fit: the constants of svcnet/apply/cliff.py come from it.
A load still running after `--limit` seconds is stopped, shown as "> N s (stopped)" and left out
of the fit.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from render_bench import generate, load_time  # noqa: E402

from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.render.artifacts import node_artifacts  # noqa: E402

LOADERS = {"nf_tables": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
LINES_PER_SERVICE = 21.0  # a first guess of node-000's lines per service; corrected after the first size


def rules_for(lines: int, per_service: float, workdir: Path) -> tuple[Path, int, int, str]:
    """(rules file, its lines, services, nftables-mode script) of the description closest to `lines` rule lines."""
    services = max(1, round(lines / per_service))
    desc = workdir / f"desc-{services}.yaml"
    generate(services, desc)
    text = node_artifacts(load_cluster([desc]), "node-000").restore
    rules = workdir / f"rules-{services}.restore"
    rules.write_text(text)
    desc.write_text(desc.read_text().replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1))
    return rules, text.count("\n"), services, node_artifacts(load_cluster([desc]), "node-000").nft


def nft_load(script: str, limit: float) -> float | None:
    """Seconds `nft -f` takes to load `script` into a fresh scratch netns; None if stopped after `limit`."""
    ns = f"svccliff{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t0 = time.perf_counter()
        try:
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script.encode(), check=True,
                           timeout=limit)
        except subprocess.TimeoutExpired:
            return None
        return time.perf_counter() - t0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """(a, b) of t = a * lines^b through the points, by least squares on log t against log lines."""
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - b * mx), b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", default="5000,10000,25000,50000,75000")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds before one load is stopped")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("restore_cliff_bench: run as root (the loaders need a scratch network namespace)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("restore_cliff_bench: terminated"))
    points: dict[str, list[tuple[int, float]]] = {b: [] for b in LOADERS}
    per_service = LINES_PER_SERVICE
    print(f"{'target':>7} {'services':>8} {'lines':>7} " + " ".join(f"{b:>18}" for b in LOADERS)
          + f" {'nft -f (nftables)':>18} {'nft lines':>9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="svcnet-cliff-") as tmp:
        for target in (int(s) for s in args.lines.split(",")):
            rules, lines, services, nft = rules_for(target, per_service, Path(tmp))
            per_service = lines / services
            cells = []
            for backend, loader in LOADERS.items():
                t = load_time(loader, rules, 1, args.limit)
                if t is None:
                    cells.append("n/a")
                elif t < 0:
                    cells.append(f"> {-t:.0f} s (stopped)")
                else:
                    points[backend].append((lines, t))
                    cells.append(f"{t:.2f} s")
            t_nft = nft_load(nft, args.limit)
            cells.append(f"> {args.limit:.0f} s (stopped)" if t_nft is None else f"{t_nft:.2f} s")
            cells.append(str(nft.count("\n")))
            print(f"{target:>7} {services:>8} {lines:>7} " + " ".join(f"{c:>18}" for c in cells), flush=True)
    for backend, pts in points.items():
        ab = fit(pts)
        if ab:
            a, b = ab
            print(f"{backend}: t = {a:.3e} * lines^{b:.2f}  (10k: {a * 1e4 ** b:.1f} s, 50k: {a * 5e4 ** b:.1f} s)")


if __name__ == "__main__":
    main()
