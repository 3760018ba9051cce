"""Time `nft -f` loading one node's nftables-mode script (svcnet's rules.nft) into a scratch netns.

    .venv/bin/python bench/nft_load_bench.py [--sizes 1000,10000] [--repeat 3]

The description is render_bench's (N services x 5 endpoints over 100 nodes) with
`proxy.mode: nftables`; prints per size the script's lines, the render of node-000 and the median
`nft -f` load. Needs root; creates only scratch network namespaces and removes them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_bench import generate, timed

from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts


def nft_load(script: str, repeat: int) -> float:
    samples = []
    for i in range(repeat):
        ns = f"svcnftb{os.getpid()}{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            t0 = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script.encode(), check=True)
            samples.append(time.perf_counter() - t0)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'services':>9} {'lines':>8} {'render node':>12} {'nft -f':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"bench-{n}.yaml"
            generate(n, path)
            path.write_text(path.read_text().replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1))
            cluster = load_cluster([path])
            script = node_artifacts(cluster, "node-000").nft
            render = timed(lambda c=cluster: node_artifacts(c, "node-000"), args.repeat)
            print(f"{n:>9} {script.count(chr(10)):>8} {render:>11.2f}s {nft_load(script, args.repeat):>7.2f}s",
                  flush=True)


if __name__ == "__main__":
    main()
