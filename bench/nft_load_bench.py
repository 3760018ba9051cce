"""Time `nft -f` loading one node's nftables-mode script (svcnet's rules.nft) into a scratch netns,
and the agent's nft work for a full apply and for a change of one service.

    .venv/bin/python bench/nft_load_bench.py [--sizes 1000,10000] [--repeat 3] [--budget 600]

The description is render_bench's (N services x 5 endpoints over 100 nodes) with
`proxy.mode: nftables`; prints per size the script's lines, the render of node-000 and the median
`nft -f` load (stopped after `--budget` seconds). Then, in one scratch netns, the agent's own
functions for the rules (what its apply runs under the lock, without SSH and the interpreter
start): a full apply into the empty netns, then
a change of one service (svc-00001 loses one of its 5 endpoints) applied by difference, each split
into the listing of the live table before (the drift check), the agent's script work (check, and
the difference), `nft --check`, `nft -f`, and the listing after (the recorded normal form).
Needs root; creates only scratch network namespaces and removes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_bench import generate, load_time, show, timed

from svcnet.agent import node as agent
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts

STEPS = ("list before", "script work", "nft --check", "nft -f", "list after")


def one_change(text: str) -> str:
    """The description with svc-00001's last endpoint removed (a change of one service)."""
    start = text.index("name: svc-00001-1")
    end = text.index("---", start)
    cut = text.rindex("  - addresses:", start, end)
    return text[:cut] + text[end:]


def node_steps(old: str, new: str) -> dict[str, float]:
    """In the current netns: the agent's nft work applying `new` over the table `old` made ("" : none),
    by difference where it can. Seconds per STEPS entry, and the transaction's statements."""
    times: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        out = fn()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    live = step("list before", agent.nft_snapshot)
    assert isinstance(live, dict)
    partial = step("script work", lambda: (agent.check_nft_script(new), agent.nft_incremental(old, new) if old
                                           else None)[1])
    tx = partial if isinstance(partial, str) else agent.nft_transaction(new, live)
    step("nft --check", lambda: agent.nft(["--check", "-f", "-"], stdin=tx))
    step("nft -f", lambda: agent.nft(["-f", "-"], stdin=tx))
    step("list after", lambda: agent.sha256(agent.rules_normal(agent.empty_snapshot(), agent.nft_snapshot())))
    return {**times, "statements": float(tx.count("\n")), "partial": float(partial is not None)}


def in_netns(ns: str, old: Path | None, new: Path) -> dict[str, float]:
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--node-steps",
                           str(old or ""), str(new)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"the node steps failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds before the `nft -f` load is stopped")
    ap.add_argument("--node-steps", nargs=2, help=argparse.SUPPRESS)  # the child in the scratch netns
    args = ap.parse_args()
    if args.node_steps:
        old, new = args.node_steps
        print(json.dumps(node_steps(Path(old).read_text() if old else "", Path(new).read_text())))
        return
    print(f"{'services':>9} {'lines':>8} {'render node':>12} {'nft -f':>8}  {'apply':<8} "
          + " ".join(f"{s:>11}" for s in STEPS) + f" {'total':>8} {'statements':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"bench-{n}.yaml"
            generate(n, path)
            text = path.read_text().replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1)
            path.write_text(text)
            cluster = load_cluster([path])
            script = node_artifacts(cluster, "node-000").nft
            render = timed(lambda c=cluster: node_artifacts(c, "node-000"), args.repeat)
            path.write_text(one_change(text))
            changed = node_artifacts(load_cluster([path]), "node-000").nft
            first, second = Path(tmp) / f"{n}.nft", Path(tmp) / f"{n}-changed.nft"
            first.write_text(script)
            second.write_text(changed)
            load = show(load_time(("nft", "-f", "-"), first, args.repeat, args.budget), args.budget)
            head = f"{n:>9} {script.count(chr(10)):>8} {render:>11.2f}s {load:>8}"
            if sys.stdout.isatty():  # the load alone is known minutes before the rest at 10k
                print(head, end="\r", flush=True)
            ns = f"svcnftc{os.getpid()}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            try:
                for label, old in (("full", None), ("1 change", first)):
                    t = in_netns(ns, old, second if old else first)
                    print(f"{head}  {label:<8} " + " ".join(f"{t[s]:>10.2f}s" for s in STEPS)
                          + f" {sum(t[s] for s in STEPS):>7.2f}s {int(t['statements']):>10}", flush=True)
                    head = " " * len(head)
            finally:
                subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
