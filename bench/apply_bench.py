"""Apply benchmark: `svcnet apply` against `ansible-playbook` pushing the same rules to a lab.

Run (as root, from the repo):
    .venv/bin/python bench/apply_bench.py [--nodes 10] [--services 100] [--repeat 3]

It generates a description of S services x 5 endpoints (EndpointSlices with nodeName, every
tenth service a NodePort) over N nodes (192.168.56.11.., podCIDRs 10.244.K.0/24), renders it
with `svcnet render --out`, then per repeat and per tool brings up a fresh N-node lab and times:
  - first apply on the fresh nodes, and
  - an unchanged re-run (must report changed=0 on every host, else the run fails).
svcnet: `svcnet apply -f DESC -i INVENTORY` (also converges the address config: svcnet does
more). Ansible: bench/ansible/apply.yml (copy rules.restore and jumps.rules, iptables-restore
--noflush when changed, jump rules with -C / -I) with bench/ansible/ansible.cfg: forks 10,
pipelining, no facts, strict host keys, default ControlPersist. ansible-core is installed on
first run into its own venv (VENV below), never into the project's.

Prints the rules line count per node, each run's times, medians, and ansible/svcnet ratios
against the 5x target. Every lab is torn down, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from generate import cluster_yaml, services_yaml  # noqa: E402

from svcnet.lab import LabNode  # noqa: E402
from svcnet.lab.pytest_fixtures import lab_unavailable_reason, node_run, running_lab, unique_lab_name  # noqa: E402
from svcnet.lab.state import Lab  # noqa: E402

ENDPOINTS = 5
TARGET = 5.0
RUN_LIMIT = 900.0  # seconds before one apply run is stopped
VENV = Path("/var/tmp/svcnet-bench-ansible-venv")
ANSIBLE_DIR = Path(__file__).resolve().parent / "ansible"
PLAYBOOK = ANSIBLE_DIR / "apply.yml"
ANSIBLE_CFG = ANSIBLE_DIR / "ansible.cfg"
RESTORE_FILE = "rules.restore"
SVCNET, ANSIBLE = "svcnet", "ansible"
FIRST, RERUN = "first apply", "unchanged re-run"
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counters>(?:\w+=\d+\s*)+)$")


class BenchError(Exception):
    """A run failed or did not report what it must: stops the benchmark with a message."""


@dataclass(frozen=True)
class RunResult:
    seconds: float
    recap: dict[str, dict[str, int]]


def node_names(count: int) -> list[str]:
    return [f"node{i + 1}" for i in range(count)]


def node_address(index: int) -> str:
    return f"192.168.56.{index + 11}"


def generate(n_nodes: int, n_services: int, path: Path) -> None:
    """Write a description of n_services x 5 endpoints (EndpointSlices) over n_nodes."""
    if not 1 <= n_nodes <= 200:
        raise BenchError("--nodes must be 1..200 (addresses 192.168.56.11.. and podCIDRs 10.244.K.0/24)")
    if not 1 <= n_services <= 4000:
        raise BenchError("--services must be 1..4000 (clusterIPs 10.96.0.10.. inside 10.96.0.0/12)")
    names = node_names(n_nodes)

    def place(k: int) -> tuple[str, str]:
        i, host = k % n_nodes, k // n_nodes + 2  # host part 2..254 of the node's /24
        if host > 254:
            raise BenchError("too many endpoints per node for a /24 podCIDR")
        return f"10.244.{i + 1}.{host}", names[i]

    nodes = [(n, node_address(i), f"10.244.{i + 1}.0/24") for i, n in enumerate(names)]
    path.write_text(cluster_yaml("applybench", "10.244.0.0/16", nodes) + services_yaml(n_services, ENDPOINTS, place))


def svcnet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "svcnet.cli.main", *args]


def render(desc: Path, out: Path) -> dict[str, int]:
    """`svcnet render --out`; returns the rules.restore line count per node."""
    subprocess.run(
        svcnet_cmd("render", "-f", str(desc), "--out", str(out)),
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=RUN_LIMIT,
    )
    return {
        d.name: (d / RESTORE_FILE).read_text().count("\n")
        for d in sorted(out.iterdir(), key=lambda d: int(d.name.removeprefix("node")))
    }


def ensure_ansible() -> Path:
    """ansible-playbook from the benchmark's own venv, created on first use."""
    exe = VENV / "bin" / "ansible-playbook"
    if not exe.exists():
        print(f"installing ansible-core into {VENV} ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "ansible-core"], check=True)
    return exe


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counters per host (Ansible's text, also printed by svcnet)."""
    _, sep, tail = text.rpartition("PLAY RECAP")
    if not sep:
        return {}
    recap = {}
    for line in tail.splitlines()[1:]:
        m = RECAP_LINE.match(line.strip())
        if m:
            recap[m["host"]] = {k: int(v) for k, v in (c.split("=") for c in m["counters"].split())}
    return recap


def timed_run(argv: list[str], env: dict[str, str] | None, what: str) -> RunResult:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: still running after {RUN_LIMIT:.0f}s, stopped") from exc
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise BenchError(f"{what}: exit {proc.returncode}\n{tail}")
    return RunResult(seconds, parse_recap(proc.stdout))


def check_recap(result: RunResult, hosts: list[str], what: str, first: bool) -> None:
    """Every host ran without failure; a first apply changed it, a re-run changed nothing."""
    if sorted(result.recap) != sorted(hosts):
        raise BenchError(f"{what}: PLAY RECAP names {sorted(result.recap)}, expected {sorted(hosts)}")
    for host, c in result.recap.items():
        if c.get("failed", 0) or c.get("unreachable", 0):
            raise BenchError(f"{what}: {host} failed or unreachable: {c}")
        if first and not c.get("changed"):
            raise BenchError(f"{what}: {host} reported changed=0 on a fresh node")
        if not first and c.get("changed"):
            raise BenchError(f"{what}: {host} reported changed={c['changed']} on an unchanged re-run")


def live_rules(lab: Lab, node: str) -> tuple[int, str]:
    """(count, short sha256) of the `-A` lines, in order, of the node's live iptables-save."""
    rules = [ln for ln in node_run(lab, node, "iptables-save").stdout.splitlines() if ln.startswith("-A ")]
    return len(rules), hashlib.sha256("\n".join(rules).encode()).hexdigest()[:12]


class Bench:
    """Runs one tool's first apply and re-run on fresh labs."""

    def __init__(self, n_nodes: int, desc: Path, render_dir: Path, work: Path, ansible: Path):
        self.n_nodes = n_nodes
        self.desc = desc
        self.render_dir = render_dir
        self.work = work
        self.ansible = ansible

    def lab_nodes(self) -> list[LabNode]:
        return [LabNode(name, (node_address(i),)) for i, name in enumerate(node_names(self.n_nodes))]

    def argv_env(self, tool: str, inventory: Path, control_dir: Path) -> tuple[list[str], dict[str, str] | None]:
        if tool == SVCNET:
            # the same work as the Ansible side: no verify (traffic checks) in the timing
            return svcnet_cmd("apply", "-f", str(self.desc), "-i", str(inventory), "--forks", str(self.n_nodes),
                              "--skip-tags", "verify"), None
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ANSIBLE_CFG),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
            ANSIBLE_LOCAL_TEMP=str(control_dir / "tmp"),
            ANSIBLE_FORKS=str(max(10, self.n_nodes)),
        )
        argv = [str(self.ansible), "-i", str(inventory), "-e", f"render_dir={self.render_dir}", str(PLAYBOOK)]
        return argv, env

    def round(self, tool: str, index: int) -> tuple[float, float, tuple[int, str]]:
        """(first apply s, re-run s, live_rules of the first node after the re-run) on a fresh lab."""
        name = unique_lab_name(f"ab{tool[0]}")
        inv_dir = self.work / f"inv-{name}"
        control_dir = self.work / f"cp-{name}"
        control_dir.mkdir(parents=True)
        with running_lab(self.lab_nodes(), name, inv_dir) as lab:
            argv, env = self.argv_env(tool, Path(lab.inventory_path), control_dir)
            hosts = node_names(self.n_nodes)
            first = timed_run(argv, env, f"{tool} {FIRST} (round {index})")
            check_recap(first, hosts, f"{tool} {FIRST}", first=True)
            again = timed_run(argv, env, f"{tool} {RERUN} (round {index})")
            check_recap(again, hosts, f"{tool} {RERUN}", first=False)
            rules = live_rules(lab, hosts[0])
        return first.seconds, again.seconds, rules


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the labs' `finally` teardown runs."""

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def report(times: dict[tuple[str, str], list[float]]) -> bool:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'case':18s} {'svcnet s':>9s} {'ansible s':>10s} {'ansible/svcnet':>15s}  target >= {TARGET:g}x")
    ok = True
    for case in (FIRST, RERUN):
        s, a = med[(SVCNET, case)], med[(ANSIBLE, case)]
        ratio = a / s
        ok &= ratio >= TARGET
        print(f"{case:18s} {s:9.2f} {a:10.2f} {ratio:14.1f}x  {'met' if ratio >= TARGET else 'MISSED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    reason = lab_unavailable_reason()
    if reason:
        print(f"apply_bench: {reason}", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("apply_bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="svcnet-applybench-") as tmp:
            work = Path(tmp)
            desc = work / "desc.yaml"
            generate(args.nodes, args.services, desc)
            lines = render(desc, work / "render")
            ansible = ensure_ansible()
            print(
                f"{args.services} services x {ENDPOINTS} endpoints, {args.nodes} nodes; "
                f"description {desc.stat().st_size / 1e3:.0f} kB"
            )
            print("rules.restore lines per node: " + ", ".join(f"{n}={c}" for n, c in lines.items()))
            bench = Bench(args.nodes, desc, work / "render", work, ansible)
            times: dict[tuple[str, str], list[float]] = {}
            live: dict[str, set[tuple[int, str]]] = {SVCNET: set(), ANSIBLE: set()}
            header = f"{'round':>5s} {'tool':8s} {FIRST + ' s':>14s} {RERUN + ' s':>20s}"
            print(f"\n{header} {'node1 live -A rules (sha256)':>30s}")
            for index in range(1, args.repeat + 1):
                for tool in (SVCNET, ANSIBLE):
                    first, again, rules = bench.round(tool, index)
                    times.setdefault((tool, FIRST), []).append(first)
                    times.setdefault((tool, RERUN), []).append(again)
                    live[tool].add(rules)
                    print(f"{index:>5d} {tool:8s} {first:14.2f} {again:20.2f} {rules[0]:15d} ({rules[1]})", flush=True)
            if len(live[SVCNET] | live[ANSIBLE]) != 1:
                raise BenchError(
                    f"live rules on node1 differ: svcnet {sorted(live[SVCNET])}, ansible {sorted(live[ANSIBLE])}"
                )
            print(f"node1's live rules are identical after every run: {rules[0]} -A lines ({rules[1]})")
            ok = report(times)
    except BenchError as exc:
        print(f"apply_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apply_bench: interrupted; labs torn down", file=sys.stderr)
        return 130
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
