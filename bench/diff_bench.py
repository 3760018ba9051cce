"""`svcnet diff` benchmark: comparing two descriptions against rendering them.

Run (from the repo; no root needed):  .venv/bin/python bench/diff_bench.py [--services 1000,10000]
    [--nodes 10,100] [--local-every 101] [--repeat 1]

For each size it generates a description of S services x 5 endpoints over N nodes (every tenth
service a NodePort, every `--local-every`-th one with internalTrafficPolicy Local, so that the
nodes' rules differ; EndpointSlices) and a changed copy (one service's clusterIP changed, one
service added). It then times, as whole processes in one run:
  - `svcnet diff OLD NEW --stat` and `svcnet diff OLD NEW` (output to /dev/null);
  - two `svcnet render -f X --out DIR` (every node's artifacts, the work a diff also does) and two
    `svcnet render -f X --node NAME` (one node).
Prints per size the median wall and CPU seconds and the peak memory of one process, and the
ratios of CPU time (a shared machine's load inflates wall time, not CPU time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from generate import FIRST_CLUSTER_IP, cluster_yaml, services_yaml  # noqa: E402

ENDPOINTS = 5
SVCNET = [sys.executable, "-m", "svcnet.cli.main"]


def describe(n_services: int, n_nodes: int, local_every: int) -> str:
    """S services x 5 endpoints over N nodes; every `local_every`-th service has internalTrafficPolicy
    Local, so a node's rules depend on which of their endpoints it runs (with 101, all nodes differ)."""

    def node(i: int) -> str:
        return f"node-{i:03d}"

    def place(k: int) -> tuple[str, str]:
        i, host = k % n_nodes, k // n_nodes
        return f"10.{128 + i // 128}.{(i % 128) * 2 + host // 254}.{host % 254 + 2}", node(i)

    nodes = [(node(i), f"192.168.{i // 200}.{i % 200 + 10}", f"10.{128 + i // 128}.{(i % 128) * 2}.0/23")
             for i in range(n_nodes)]
    text = cluster_yaml("bench", "10.128.0.0/9", nodes) + services_yaml(n_services, ENDPOINTS, place)
    if local_every:
        for s in range(0, n_services, local_every):
            head = f"name: svc-{s:05d}\n  namespace: bench\nspec:\n"
            text = text.replace(head, head + "  internalTrafficPolicy: Local\n", 1)
    return text


def generate(n_services: int, n_nodes: int, local_every: int, workdir: Path) -> tuple[Path, Path]:
    """OLD, and NEW with one clusterIP changed and one service added (generated the same way)."""
    old, new = workdir / "old.yaml", workdir / "new.yaml"
    old.write_text(describe(n_services, n_nodes, local_every))
    changed = describe(n_services + 1, n_nodes, local_every)
    moved = n_services // 2
    ip = f"clusterIP: {FIRST_CLUSTER_IP + moved}\n"
    assert ip in changed
    new.write_text(changed.replace(ip, "clusterIP: 10.100.0.1\n", 1))
    return old, new


@dataclass
class Sample:
    wall: float = 0.0  # seconds
    cpu: float = 0.0  # user + system seconds: what a shared machine's load does not inflate
    peak_mib: float = 0.0  # the largest resident size of one process


def run(cmd: list[str], ok: tuple[int, ...] = (0,)) -> Sample:
    """One whole process (output to /dev/null): its wall time, CPU time and peak memory."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            err.seek(0)
            sys.exit(f"diff_bench: {' '.join(cmd[2:])} exited {proc.returncode}: {err.read().decode()[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def bench(n_services: int, n_nodes: int, local_every: int, repeat: int, workdir: Path
          ) -> tuple[float, dict[str, Sample]]:
    old, new = generate(n_services, n_nodes, local_every, workdir)
    stat = subprocess.run([*SVCNET, "diff", "--stat", str(old), str(new)], capture_output=True, text=True, cwd=REPO,
                          check=False)
    assert stat.returncode == 1, stat.stderr
    changed = stat.stdout.splitlines()[-1]
    assert "rules of 2 service ports" in changed, changed  # the moved clusterIP and the added service
    out = workdir / "out"
    results: dict[str, list[Sample]] = {}

    def sample(key: str, cmds: list[list[str]], ok: tuple[int, ...] = (0,)) -> None:
        total = Sample()
        for cmd in cmds:
            one = run(cmd, ok)
            total = Sample(total.wall + one.wall, total.cpu + one.cpu, max(total.peak_mib, one.peak_mib))
            shutil.rmtree(out, ignore_errors=True)
        results.setdefault(key, []).append(total)

    for _ in range(repeat):
        sample("diff_stat", [[*SVCNET, "diff", "--stat", str(old), str(new)]], ok=(1,))
        sample("diff", [[*SVCNET, "diff", str(old), str(new)]], ok=(1,))
        sample("render_out", [[*SVCNET, "render", "-f", str(d), "--out", str(out)] for d in (old, new)])
        sample("render_node", [[*SVCNET, "render", "-f", str(d), "--node", "node-000"] for d in (old, new)])
    medians = {k: Sample(statistics.median(x.wall for x in v), statistics.median(x.cpu for x in v),
                         max(x.peak_mib for x in v)) for k, v in results.items()}
    return old.stat().st_size / 1e6, medians


COLUMNS = [("diff_stat", "diff --stat"), ("diff", "diff"), ("render_out", "2x render --out"),
           ("render_node", "2x render --node")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", default="1000,10000")
    ap.add_argument("--nodes", default="10,100")
    ap.add_argument("--local-every", type=int, default=101, help="every Nth service has iTP Local (0: none)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print("wall seconds / CPU seconds / peak MiB of one process; ratios of CPU time")
    print(f"{'services':>8} {'nodes':>5} {'MB':>5}  " + "  ".join(f"{label:>22}" for _, label in COLUMNS)
          + f"  {'diff/2x render --out':>20}  {'diff/2x render --node':>21}")
    with tempfile.TemporaryDirectory(prefix="svcnet-diff-bench-") as tmp:
        for s in (int(x) for x in args.services.split(",")):
            for n in (int(x) for x in args.nodes.split(",")):
                size, r = bench(s, n, args.local_every, args.repeat, Path(tmp))
                cells = "  ".join(f"{r[k].wall:7.2f} {r[k].cpu:6.2f} {r[k].peak_mib:6.0f}" for k, _ in COLUMNS)
                print(f"{s:>8} {n:>5} {size:>5.1f}  {cells}  {r['diff'].cpu / r['render_out'].cpu:>19.2f}x"
                      f"  {r['diff'].cpu / r['render_node'].cpu:>20.2f}x", flush=True)

if __name__ == "__main__":
    main()
