"""Benchmark `svcnet lab up` / `down` at 20 and 50 nodes (needs root).

Run:  sudo .venv/bin/python bench/lab_bench.py [--nodes 20 50] [--rounds 3]

Targets (issue): up of 20 nodes <= 10 s, down <= 5 s, 50 nodes must work. After each up, one
command runs on every node (all sshds must answer) before the lab is taken down.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from svcnet.lab import LabError, LabNode, lab_down, lab_up
from svcnet.lab.pytest_fixtures import unique_lab_name

UP_TARGET_20 = 10.0
DOWN_TARGET = 5.0


def cluster(count: int) -> list[LabNode]:
    """count nodes in 192.168.56.0/24 (lab-internal addresses)."""
    return [LabNode(f"node{i + 1}", (f"192.168.56.{i + 10}",)) for i in range(count)]


def ssh_all(lab) -> int:
    """Run `hostname` over ssh on every node at once; return how many answered with their name."""

    def one(node: str) -> bool:
        out = subprocess.run(
            ["ssh", "-F", str(lab.ssh_config_path), node, "hostname"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return out.stdout.strip() == node

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(one, lab.nodes))


def one_round(count: int) -> tuple[float, float, int]:
    name = unique_lab_name("bench")
    with tempfile.TemporaryDirectory() as inventory:
        started = time.monotonic()
        try:
            lab = lab_up(cluster(count), name, inventory)
            up = time.monotonic() - started
            answered = ssh_all(lab)
        finally:
            started = time.monotonic()
            lab_down(name)
            down = time.monotonic() - started
    return up, down, answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ok = True
    print(f"{'nodes':>5} {'round':>5} {'up s':>7} {'down s':>7} {'ssh ok':>7}")
    for count in args.nodes:
        ups, downs = [], []
        for index in range(args.rounds):
            try:
                up, down, answered = one_round(count)
            except LabError as exc:
                print(f"{count:>5} {index + 1:>5} error: {exc}")
                return 2
            ups.append(up)
            downs.append(down)
            ok &= answered == count
            print(f"{count:>5} {index + 1:>5} {up:>7.2f} {down:>7.2f} {answered:>4}/{count}")
        print(f"{count:>5} {'median':>5} {statistics.median(ups):>7.2f} {statistics.median(downs):>7.2f}")
        if count <= 20:
            ok &= max(ups) <= UP_TARGET_20
        ok &= max(downs) <= DOWN_TARGET
    print("targets met" if ok else "TARGETS MISSED", f"(up 20 <= {UP_TARGET_20}s, down <= {DOWN_TARGET}s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
