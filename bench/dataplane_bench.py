"""Dataplane benchmark: new TCP connections per second, and connect latency, through one ClusterIP
with 10, 1k and 10k services loaded, in each proxy mode (issue 14: "Dataplane cost").

Run (as root, from the repo):
    .venv/bin/python bench/dataplane_bench.py [--sizes 10,1000,10000] [--rounds 3]

Per (mode, size) it builds three scratch network namespaces, as the lab wires its nodes (`ip -n NS
-batch`, veths created inside the namespaces, nothing in the host's root namespace):

    client 192.168.77.2 --veth-- 192.168.77.1 node 10.244.0.1 --veth-- 10.244.0.2-6 backend pod

The node namespace forwards and holds svcnet's rules for a one-node description of N services x 5
endpoints (every service's endpoints are the backend's five addresses, so any ClusterIP works),
rendered by svcnet's real renderer: in iptables mode the iptables-restore input plus the jump rules
(loaded with iptables-nft-restore or iptables-legacy-restore, without --noflush: the namespace is
fresh, so the end state is the agent's and the 10k iptables-nft load takes seconds, not the many
minutes --noflush takes), in nftables mode the `nft -f` script. The backend runs a tiny accept-
and-close server on :8080.

What is measured: the client connects to the ClusterIP of the service whose rule is LAST in
KUBE-SERVICES (the worst case of iptables' linear walk; nftables looks it up in a map). The SYN
enters the node from the client's veth, so it traverses the node's nat PREROUTING hook (the DNAT
to an endpoint: KUBE-SERVICES in iptables mode, the service-ips map in nftables mode), then filter
FORWARD and nat POSTROUTING (masquerade: the client is outside clusterCIDR). Only a connection's
first packet sees the nat rules; conntrack handles the rest. A connection is done when connect()
completes (SYN-ACK back at the client); the client then resets it (SO_LINGER 0: no TIME_WAIT).
  - latency: `--latency-conns` connects one at a time; median and 90th percentile.
  - rate: `--rate-conns` connects with `--window` in flight; completed connects per second.
  - failed connects, and the client's SYN retransmits (a lost SYN costs a 1 s retransmit: a low
    rate with retransmits is loss, without them it is the time the node takes per packet).
Every traffic loop is bounded by its count and by `--traffic-limit` seconds. Rounds interleave all
(mode, size) pairs so that load from other processes hits every pair alike; medians over rounds.
Reported per mode: the 10k / 10 cost ratio (rate at 10 / rate at 10k; latency 10k / latency 10);
the issue's target for nftables mode is <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from generate import cluster_yaml, services_yaml  # noqa: E402

from svcnet.lab.netplan import netns_batch  # noqa: E402
from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.render.artifacts import node_artifacts  # noqa: E402
from svcnet.render.jumps import render_jump_rules  # noqa: E402

ENDPOINTS = 5
NODE = "node-000"
CLIENT_NET = ("192.168.77.2", "192.168.77.1", 24)  # client, node side, prefix
POD_GATEWAY, POD_PREFIX = "10.244.0.1", 24
BACKENDS = tuple(f"10.244.0.{i + 2}" for i in range(ENDPOINTS))
SERVICE_PORT, TARGET_PORT = 80, 8080  # generate.services_yaml's
MODES: dict[str, tuple[str, ...]] = {  # mode -> the node's loader (reads the rules on stdin)
    "iptables-nft": ("iptables-nft-restore",),
    "iptables-legacy": ("iptables-legacy-restore",),
    "nftables": ("nft", "-f", "-"),
}
TARGET_NFTABLES_RATIO = 1.2

# The backend pod: accept and close, as fast as one Python loop goes (the handshake itself is the
# kernel's; the loop only keeps the accept queue from filling).
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {TARGET_PORT}))
s.listen(4096)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""

# The client: argv ip port latency_conns rate_conns window limit_s; prints one JSON line.
CLIENT = r"""
import json, selectors, socket, struct, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
n_lat, n_rate, window, limit = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
RESET = struct.pack("ii", 1, 0)
sel = selectors.DefaultSelector()

def syn_retransmits():
    # This namespace's counter (/proc/net is the reader's netns): lost SYNs or SYN-ACKs cost 1 s each.
    with open("/proc/net/netstat") as f:
        names, values = [line.split() for line in f if line.startswith("TcpExt:")][:2]
    return int(values[names.index("TCPSynRetrans")])

retrans0 = syn_retransmits()

def start():
    s = socket.socket()
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    t = time.perf_counter()
    s.connect_ex((ip, port))
    sel.register(s, selectors.EVENT_WRITE, t)
    return s

def finish(s):
    sel.unregister(s)
    ok = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    s.close()
    return ok

deadline = time.monotonic() + limit
lat, lat_fail = [], 0
while len(lat) + lat_fail < n_lat and time.monotonic() < deadline:
    s = start()
    ready = sel.select(1.0)
    if ready and finish(s):
        lat.append(time.perf_counter() - ready[0][0].data)
    else:
        lat_fail += 1
        if not ready:
            finish(s)

deadline = time.monotonic() + limit
done = fail = started = 0
t0 = time.perf_counter()
while done + fail < n_rate and time.monotonic() < deadline:
    while started - done - fail < window and started < n_rate:
        start()
        started += 1
    for key, _ in sel.select(1.0):
        if finish(key.fileobj):
            done += 1
        else:
            fail += 1
elapsed = time.perf_counter() - t0
for key in list(sel.get_map().values()):
    finish(key.fileobj)
print(json.dumps({"lat": lat, "lat_fail": lat_fail, "done": done, "fail": fail, "elapsed": elapsed,
                  "syn_retrans": syn_retransmits() - retrans0}))
"""


def place(k: int) -> tuple[str, str]:
    """Endpoint k of the description: the backend's addresses in turn, all on the one node."""
    return BACKENDS[k % ENDPOINTS], NODE


def description(n_services: int, nftables: bool) -> str:
    """A one-node Cluster (address CLIENT_NET's node side, podCIDR 10.244.0.0/24) and n services."""
    text = cluster_yaml("dataplane", "10.244.0.0/16", [(NODE, CLIENT_NET[1], "10.244.0.0/24")])
    if nftables:
        text = text.replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1)
    return text + services_yaml(n_services, ENDPOINTS, place)


def last_service_ip(restore: str) -> str:
    """The ClusterIP of the last service rule in nat KUBE-SERVICES: the longest linear walk."""
    ips = re.findall(rf"^-A KUBE-SERVICES .*? -d (\d+\.\d+\.\d+\.\d+)(?:/32)? .*--dport {SERVICE_PORT}\b",
                     restore, re.M)
    if not ips:
        raise ValueError("no service rule in KUBE-SERVICES")
    return ips[-1]


def with_jumps(restore: str, jumps: str) -> str:
    """The restore input with the jump rules inserted as the agent does (`-I CHAIN 1`, in file
    order) in their table's section, so one iptables-restore loads the node's whole state."""
    by_table: dict[str, list[str]] = {}
    for line in jumps.splitlines():
        m = re.fullmatch(r"-t (\S+) -A (\S+) (.*)", line)
        if not m:
            raise ValueError(f"unexpected jump rule: {line!r}")
        by_table.setdefault(m[1], []).append(f"-I {m[2]} 1 {m[3]}")
    out, table = [], None
    for line in restore.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if line == "COMMIT" and table is not None:
            out += by_table.pop(table, [])
        out.append(line)
    if by_table:
        raise ValueError(f"jump rules for tables missing from the restore input: {sorted(by_table)}")
    return "\n".join(out) + "\n"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cost_ratio(small: float | None, large: float | None) -> float | None:
    """large / small: how much dearer a connection is with 10k services than with 10."""
    return None if not small or large is None else large / small


@dataclass
class Pair:
    """One (mode, size): its namespaces, target ClusterIP, server, and the samples of each round."""

    mode: str
    size: int
    tag: str
    target: str = ""
    load_s: float | None = None
    server: subprocess.Popen | None = None
    lat_p50: list[float] = field(default_factory=list)
    lat_p90: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    failures: int = 0
    syn_retrans: int = 0

    @property
    def ns(self) -> dict[str, str]:
        return {role: f"svcdp{os.getpid()}{self.tag}{role}" for role in ("c", "n", "b")}


def ip_batch(ns: str | None, text: str, force: bool = False) -> None:
    """`ip -batch`; with force it goes on past failed lines (teardown of a half-built set)."""
    subprocess.run(["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"],
                   input=text.encode(), check=not force)


def wire(pair: Pair) -> None:
    """client --veth-- node --veth-- backend; veths are made inside the node's namespace."""
    c, n, b = pair.ns["c"], pair.ns["n"], pair.ns["b"]
    client, node_side, prefix = CLIENT_NET
    ip_batch(n, f"link set lo up\nlink add vc type veth peer name eth0 netns {c}\n"
                f"link add vb type veth peer name eth0 netns {b}\naddr add {node_side}/{prefix} dev vc\n"
                f"addr add {POD_GATEWAY}/{POD_PREFIX} dev vb\nlink set vc up\nlink set vb up\n")
    ip_batch(c, f"link set lo up\naddr add {client}/{prefix} dev eth0\nlink set eth0 up\n"
                f"route add default via {node_side}\n")
    ip_batch(b, "link set lo up\n" + "".join(f"addr add {a}/{POD_PREFIX} dev eth0\n" for a in BACKENDS)
             + f"link set eth0 up\nroute add default via {POD_GATEWAY}\n")
    subprocess.run(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)


def load_rules(pair: Pair, rules: str, budget: float) -> None:
    """Load the node's rules; pair.load_s stays None if the load ran out of budget."""
    t0 = time.perf_counter()
    try:
        subprocess.run(["ip", "netns", "exec", pair.ns["n"], *MODES[pair.mode]], input=rules.encode(),
                       check=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return
    pair.load_s = time.perf_counter() - t0


def start_server(pair: Pair) -> None:
    pair.server = subprocess.Popen(["ip", "netns", "exec", pair.ns["b"], sys.executable, "-I", "-S", "-c", SERVER],
                                   stdout=subprocess.PIPE, text=True, cwd="/")
    assert pair.server.stdout is not None
    if pair.server.stdout.readline().strip() != "ready":
        raise RuntimeError(f"backend server of {pair.mode}/{pair.size} did not start")


def measure(pair: Pair, args: argparse.Namespace) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", pair.ns["c"], sys.executable, "-I", "-S", "-c", CLIENT, pair.target,
         str(SERVICE_PORT), str(args.latency_conns), str(args.rate_conns), str(args.window),
         str(args.traffic_limit)],
        capture_output=True, text=True, check=True, cwd="/", timeout=2 * args.traffic_limit + 30,
    )  # fmt: skip
    r = json.loads(out.stdout)
    pair.failures += r["lat_fail"] + r["fail"]
    pair.syn_retrans += r["syn_retrans"]
    if r["lat"]:
        pair.lat_p50.append(statistics.median(r["lat"]))
        pair.lat_p90.append(percentile(r["lat"], 0.9))
    if r["elapsed"] > 0:
        pair.rate.append(r["done"] / r["elapsed"])


@contextmanager
def namespaces(pairs: Sequence[Pair]) -> Iterator[None]:
    """Every pair's namespaces, removed (servers first) on any exit."""
    names = [ns for p in pairs for ns in p.ns.values()]
    try:
        ip_batch(None, netns_batch("add", names))
        yield
    finally:
        for p in pairs:
            if p.server is not None:
                p.server.kill()
                p.server.wait()
        ip_batch(None, netns_batch("delete", names), force=True)


def rules_for(mode: str, size: int, workdir: Path) -> tuple[str, str]:
    """(the node's rules as its loader reads them, the target ClusterIP)."""
    path = workdir / f"{mode}-{size}.yaml"
    path.write_text(description(size, nftables=False))
    art = node_artifacts(load_cluster([path]), NODE)
    target = last_service_ip(art.restore)
    if mode != "nftables":
        return with_jumps(art.restore, render_jump_rules(list(art.jump_rules))), target
    path.write_text(description(size, nftables=True))
    return node_artifacts(load_cluster([path]), NODE).nft, target


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(pairs: Sequence[Pair], sizes: Sequence[int]) -> None:
    print("\n| mode | services | load | connect p50 | connect p90 | new conns/s | failed | SYN retransmits |\n"
          + "|---" * 8 + "|")
    for p in pairs:
        loaded = f"{p.load_s:.2f} s" if p.load_s is not None else "stopped"
        print(f"| {p.mode} | {p.size} | {loaded} | {fmt(median(p.lat_p50) and median(p.lat_p50) * 1e6, '.0f')} us "
              f"| {fmt(median(p.lat_p90) and median(p.lat_p90) * 1e6, '.0f')} us | {fmt(median(p.rate), '.0f')} "
              f"| {p.failures} | {p.syn_retrans} |")
    small, large = min(sizes), max(sizes)
    print(f"\n| mode | conns/s: {small} / {large} | connect p50: {large} / {small} |\n|---|---|---|")
    for mode in MODES:
        by_size = {p.size: p for p in pairs if p.mode == mode}
        if small not in by_size or large not in by_size:
            continue
        s, g = by_size[small], by_size[large]
        rate = cost_ratio(median(g.rate), median(s.rate))  # the rate falls as the cost rises
        lat = cost_ratio(median(s.lat_p50), median(g.lat_p50))
        print(f"| {mode} | {fmt(rate, '.2f')}x | {fmt(lat, '.2f')}x |")
    print(f"(issue 14's target for nftables mode: <= {TARGET_NFTABLES_RATIO}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-conns", type=int, default=300)
    ap.add_argument("--rate-conns", type=int, default=2000)
    ap.add_argument("--window", type=int, default=16, help="connects in flight in the rate test")
    ap.add_argument("--traffic-limit", type=float, default=20.0, help="seconds per traffic loop at most")
    ap.add_argument("--load-budget", type=float, default=900.0, help="seconds before a rules load is stopped")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("dataplane_bench: run as root (it builds scratch network namespaces)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("dataplane_bench: terminated"))
    sizes = [int(s) for s in args.sizes.split(",")]
    pairs = [Pair(mode, size, f"{i}{j}") for i, mode in enumerate(args.modes.split(","))
             for j, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory(prefix="svcnet-dp-") as tmp, namespaces(pairs):
        for p in pairs:
            rules, p.target = rules_for(p.mode, p.size, Path(tmp))
            wire(p)
            load_rules(p, rules, args.load_budget)
            start_server(p)
            print(f"{p.mode:16s} {p.size:>6} services: target {p.target}, rules "
                  f"{rules.count(chr(10))} lines, load {fmt(p.load_s, '.2f')} s", flush=True)
        live = [p for p in pairs if p.load_s is not None]
        for r in range(args.rounds):
            for p in live:
                measure(p, args)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    report(pairs, sizes)


if __name__ == "__main__":
    main()
