"""Time `nft -f` loading one node's nftables-mode script (svcnet's rules.nft) into a scratch netns.

    .venv/bin/python bench/nft_load_bench.py [--sizes 1000,10000] [--repeat 3]

The description is render_bench's (N services x 5 endpoints over 100 nodes) with
`proxy.mode: nftables`; prints per size the script's lines, the render of node-000 and the median
`nft -f` load (stopped after `--budget` seconds). render_bench.py prints the same beside the
iptables loaders. Needs root; creates only scratch network namespaces and removes them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_bench import generate, load_time, show, timed

from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds before a load is stopped")
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
            rules = Path(tmp) / f"node-{n}.nft"
            rules.write_text(script)
            load = show(load_time(("nft", "-f", "-"), rules, args.repeat, args.budget), args.budget)
            print(f"{n:>9} {script.count(chr(10)):>8} {render:>11.2f}s {load:>8}", flush=True)


if __name__ == "__main__":
    main()
