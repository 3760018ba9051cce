"""Incremental apply in iptables mode: a one-change apply (partial restore) against a full apply.

    .venv/bin/python bench/ipt_incremental_bench.py [--sizes 1000,3000] [--backends nft,legacy]

Per backend (iptables-nft, iptables-legacy) and size N, on one scratch node of the agent tests
(its own network and mount namespaces, removed when done, also on failure), with the real agent
applying the rules part: N services x 5 endpoints (render_bench's description, node-000's rules),
times the first apply (full), then one service's endpoints changed (partial restore), then the same
change again after removing the agent's per-service record (the full restore an apply without
incremental apply makes), and, on the node, `iptables-save` alone (the drift check's read). Prints
one row per backend and size: seconds, and the lines each restore transaction had.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests" / "agent"), str(REPO / "tests")]

import render_bench  # noqa: E402
from agentnode import apply_req, legacy_bin, scratch_node  # noqa: E402

from svcnet.agent import node  # noqa: E402
from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.render.artifacts import node_artifacts  # noqa: E402

TIMEOUT = 3600.0  # a full restore of 3,000 services on iptables-nft takes minutes on a loaded VM


def artifacts(n: int, work: Path, changed: bool):  # type: ignore[no-untyped-def]
    desc = work / f"desc-{n}-{int(changed)}.yaml"
    render_bench.generate(n, desc)
    if changed:  # one endpoint of one service moves (svc-00001's first endpoint)
        text = desc.read_text()
        marker = "name: svc-00001-1\n"
        head, tail = text.split(marker, 1)
        ip = tail.split("addresses: [", 1)[1].split("]", 1)[0]
        desc.write_text(head + marker + tail.replace(f"addresses: [{ip}]", "addresses: [10.255.1.1]", 1))
    return node_artifacts(load_cluster([desc]), "node-000")


def apply(snode, art, run_id: str) -> tuple[float, str, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    answer = snode.agent(apply_req(snode, art, run_id, parts=(node.PART_RULES,)), timeout=TIMEOUT)
    took = time.perf_counter() - t0
    if not answer["ok"] or not answer["changed"]:
        raise SystemExit(f"apply {run_id} failed: {answer.get('msg')}")
    sync = json.loads((snode.state / node.STATE_FILE).read_text())[node.IPT_SYNC_KEY]
    return took, sync["mode"], sync["lines"]


def bench(n: int, backend: str, work: Path) -> dict[str, object]:
    base, changed = artifacts(n, work, False), artifacts(n, work, True)
    (work / "bin").mkdir()
    (work / "node").mkdir()
    prefix = legacy_bin(work / "bin") if backend == "legacy" else ""
    with scratch_node(work / "node", prefix) as snode:
        first = apply(snode, base, "first")
        one = apply(snode, changed, "one")
        t0 = time.perf_counter()
        snode.sh(["iptables-save"], timeout=TIMEOUT)
        save = time.perf_counter() - t0
        (snode.state / node.IPT_RECORD_FILE).unlink()  # as before incremental apply: a full restore
        full = apply(snode, base, "full")
    assert first[1] == full[1] == node.SYNC_FULL and one[1] == node.SYNC_PARTIAL, (first, one, full)
    return {"n": n, "backend": backend, "lines": base.restore.count("\n"), "first": first[0], "one": one[0],
            "one_lines": one[2], "full": full[0], "full_lines": full[2], "save": save}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000")
    ap.add_argument("--backends", default="nft,legacy")
    args = ap.parse_args()
    print("| backend | services | rules lines | first apply | one change, partial | one change, full "
          "| iptables-save | partial / full |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="svcnet-iptinc-") as tmp:
        for backend in args.backends.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                work = Path(tmp) / f"{backend}-{n}"
                work.mkdir()
                r = bench(n, backend, work)
                print(f"| iptables-{backend} | {n} | {r['lines']} | {r['first']:.1f} s | {r['one']:.1f} s "
                      f"({r['one_lines']} lines) | {r['full']:.1f} s ({r['full_lines']} lines) | {r['save']:.1f} s "
                      f"| {r['one'] / r['full']:.2f} |", flush=True)  # type: ignore[operator]


if __name__ == "__main__":
    main()
