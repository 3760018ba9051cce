"""A scratch node for agent tests: its own network namespace + a private mount namespace with /run on tmpfs.

The agent is run for real (python3 -c BOOTSTRAP with the protocol's stdin) inside the node via
nsenter, so pod namespaces (`ip netns add`) live under the node's private /run/netns and vanish with
it. Teardown kills every process in the node's or its pods' namespaces, whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prereq import unavailable

from svcnet.agent import node
from svcnet.transport import protocol

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
PODSERVER_IN_SEED = "/var/lib/svcnet/podserver.py"
# The seed's node1 reaches node2 (192.168.56.12) over its uplink: one end of a veth pair inside the node netns.
UPLINK = ("eth0", "192.168.56.11/24")
_counter = itertools.count()

_ANCHOR = """set -e
mount -t tmpfs -o mode=0755,size=32m svcnet-agt /run
mkdir -p /run/netns
ip link set lo up
ip link add {dev} type veth peer name {dev}p
ip link set {dev}p up
ip addr add {addr} dev {dev}
ip link set {dev} up
echo ready
exec sleep 900
"""


def _need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        unavailable("needs root, unshare and nsenter")


@dataclass
class ScratchNode:
    """One fake node; `agent(req)` runs an agent request inside it and returns the response."""

    ns: str
    anchor: subprocess.Popen
    root: Path
    calls: list[float] = field(default_factory=list)
    path_prefix: str = ""  # a directory put first on PATH (e.g. iptables -> iptables-legacy)

    @property
    def pid(self) -> int:
        return self.anchor.pid

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def paths(self) -> dict:
        return {"etc_dir": str(self.etc), "state_dir": str(self.state), "run_dir": "/run/svcnet"}

    def exec_argv(self, argv: list[str]) -> list[str]:
        # -r keeps the anchor's root directory (setns into a mount namespace would escape a chroot)
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-r", "--wd=/", "--", *argv]

    def sh(self, argv: list[str], stdin: str | bytes | None = None, timeout: float = 60,
           check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        env = {**os.environ, **(env or {})}
        if self.path_prefix:
            env["PATH"] = self.path_prefix + os.pathsep + env.get("PATH", "")
        proc = subprocess.run(self.exec_argv(argv), input=data, capture_output=True, timeout=timeout, check=False,
                              env=env)
        out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}): {out.stderr}")
        return out

    def agent_proc(self, req: dict, timeout: float = 120, env: dict[str, str] | None = None,
                   ) -> subprocess.CompletedProcess:
        """Run one agent request; the finished process (`env`: e.g. node.TEST_HOOK_ENV)."""
        full = {**self.paths(), **req}
        started = time.monotonic()
        proc = self.sh(["python3", "-c", protocol.BOOTSTRAP], protocol.build_stdin(full), timeout, check=False,
                       env=env)
        self.calls.append(time.monotonic() - started)
        assert "Traceback" not in proc.stdout
        return proc

    def agent(self, req: dict, timeout: float = 120, env: dict[str, str] | None = None) -> dict:
        return protocol.parse_response(self.agent_proc(req, timeout, env).stdout, self.ns)

    def agent_file(self, *args: str, timeout: float = 120) -> dict:
        """File mode: `python3 STATE/agent.py ARGS --etc-dir ...`."""
        argv = ["python3", str(self.state / "agent.py"), *args, "--etc-dir", str(self.etc),
                "--state-dir", str(self.state), "--run-dir", "/run/svcnet"]
        return protocol.parse_response(self.sh(argv, timeout=timeout, check=False).stdout, self.ns)

    def save(self, table: str, family: int = node.IPV4) -> str:
        """iptables-save (ip6tables-save for node.IPV6) of a table without comments or counters."""
        out = self.sh([node.IPT_COMMANDS[family][1], "-t", table]).stdout
        return "".join(re.sub(r"\[\d+:\d+\]", "", ln) + "\n" for ln in out.splitlines() if not ln.startswith("#"))

    def simulate_reboot(self) -> None:
        """As a reboot would: every node process dies, rules/pod netns/bridge/forwarding are gone; files stay."""
        _kill_namespace_processes(self.pid, self.ns)
        self.sh(["sh", "-c", "for c in iptables ip6tables; do for t in filter nat; do $c -t $t -F; $c -t $t -X; "
                 "done; done; "
                 "ip -all netns delete; ip link del cni0 2>/dev/null; sysctl -qw net.ipv4.ip_forward=0"])

    def pod_pids(self, netns: str) -> list[int]:
        return netns_pids(self.pid, netns)

    def netns_list(self) -> list[str]:
        return sorted(os.listdir(f"/proc/{self.pid}/root/run/netns"))


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pod_netns_inodes(pid: int) -> set[int]:
    netns_dir = f"/proc/{pid}/root/run/netns"
    try:
        names = os.listdir(netns_dir)
    except OSError:
        return set()
    return {i for i in (_ns_inode(os.path.join(netns_dir, n)) for n in names) if i}


def node_pids(pid: int, ns: str, extra_inodes: set[int] = frozenset()) -> list[int]:
    """Processes in the node's netns or mount namespace or in one of its pod netns (never the anchor)."""
    inodes = {i for i in (_ns_inode(f"/run/netns/{ns}"),) if i} | _pod_netns_inodes(pid) | set(extra_inodes)
    mnt = _ns_inode(f"/proc/{pid}/ns/mnt")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), pid):
            continue
        if _ns_inode(f"/proc/{entry}/ns/net") in inodes or (mnt and _ns_inode(f"/proc/{entry}/ns/mnt") == mnt):
            found.append(int(entry))
    return found


def netns_pids(pid: int, netns: str) -> list[int]:
    """Processes inside one of the node's pod network namespaces."""
    inode = _ns_inode(f"/proc/{pid}/root/run/netns/{netns}")
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and inode and _ns_inode(f"/proc/{e}/ns/net") == inode]


def _kill_namespace_processes(pid: int, ns: str, extra_inodes: set[int] = frozenset()) -> None:
    """SIGKILL every process in the node's net/mount namespaces or any of its pod netns; wait (bounded)."""
    victims = node_pids(pid, ns, extra_inodes)
    for v in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(v, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while victims and time.monotonic() < deadline:
        victims = [v for v in victims if os.path.exists(f"/proc/{v}") and not _zombie(v)]
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def legacy_bin(tmp_path: Path) -> str:
    """A directory whose iptables/iptables-save/iptables-restore are the legacy (x_tables) backend."""
    multi = shutil.which("xtables-legacy-multi")
    if not multi:
        unavailable("iptables-legacy is not installed")
    d = tmp_path / "legacy-bin"
    d.mkdir()
    for name in ("iptables", "iptables-save", "iptables-restore"):
        (d / name).symlink_to(multi)
    return str(d)


@contextlib.contextmanager
def scratch_node(tmp_path: Path, path_prefix: str = "") -> Iterator[ScratchNode]:
    _need_root()
    ns = f"agt{os.getpid()}x{next(_counter)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    anchor = None
    try:
        anchor = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", _ANCHOR.format(dev=UPLINK[0], addr=UPLINK[1])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert anchor.stdout is not None
        line = anchor.stdout.readline()  # bounded: the script either prints `ready` or exits
        if line.strip() != "ready":
            raise AssertionError(f"scratch node did not start: {anchor.stderr.read() if anchor.stderr else ''}")
        node = ScratchNode(ns, anchor, tmp_path, path_prefix=path_prefix)
        yield node
    finally:
        if anchor is not None and anchor.poll() is None:
            pod_inodes = _pod_netns_inodes(anchor.pid)
            with contextlib.suppress(Exception):
                node.agent({"op": "teardown", "run_id": "fixture", "lock_wait": 5}, timeout=60)
            _kill_namespace_processes(anchor.pid, ns, pod_inodes | _pod_netns_inodes(anchor.pid))
            anchor.kill()
            anchor.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def seed_artifacts(tmp_path: Path, replace: dict[str, str] | None = None, node: str = "node1"):
    """The real renderer's artifacts for the seed example (optionally with text replaced in its YAML)."""
    from svcnet.model.load import load_cluster
    from svcnet.render.artifacts import node_artifacts_all

    src = tmp_path / f"seed{next(_counter)}"
    src.mkdir()
    for f in sorted(SEED.glob("*.yaml")):
        text = f.read_text()
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        (src / f.name).write_text(text)
    return node_artifacts_all(load_cluster(sorted(src.glob("*.yaml"))), [node])[node]


def apply_req(node: ScratchNode, art, run_id: str, **kw) -> dict:
    """An apply request whose pod commands use the podserver copied into the node's state dir."""
    req = protocol.ApplyRequest(run_id, art, **kw).to_wire()
    text = json.dumps(req["netconf"]).replace(PODSERVER_IN_SEED, str(node.state / "podserver.py"))
    req["netconf"] = json.loads(text)
    return req


def unchanged(probe: dict, want: dict, parts: tuple[str, ...] = protocol.PARTS) -> bool:
    """The controller's reading of a probe answer: nothing of `parts` needs sending."""
    return protocol.ProbeAnswer.from_wire(probe).unchanged(want, parts)


def hook(**points: dict) -> dict[str, str]:
    """The environment of an agent with test hooks at these points (see node.fault_point)."""
    return {node.TEST_HOOK_ENV: json.dumps(points)}


def node_state(snode: ScratchNode) -> dict:
    """Everything an apply may change, as seen inside the node (its own mounts included)."""
    def sh(script: str, *args: str) -> str:
        return snode.sh(["sh", "-c", script, "sh", *args]).stdout

    return {
        "filter": snode.save("filter"),
        "nat": snode.save("nat"),
        "etc": sh('cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] && '
                  'echo "$f $(stat -c %a "$f") $(sha256sum < "$f")"; done; true', str(snode.etc)),
        # not MACs, carrier or IPv6 link-local addresses: they come and go on their own
        "links": sorted((ln["ifname"], "UP" in ln["flags"], ln.get("master", "")) for ln in
                        json.loads(sh("ip -j link"))),
        "addresses": sh("ip -o -4 addr | awk '{print $2, $4}'"),
        "routes": sh("ip route"),
        "netns": snode.netns_list(),
        "pods": sh("cd /run/svcnet/pods 2>/dev/null && ls *.pid; true").split(),  # supervised pods
        "forwarding": sh("sysctl -n net.ipv4.ip_forward"),
    }


class Events:
    """The FIFO that agents with "report"/"pause" hooks write to: (tag, point), in the order they happened."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path = str(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # read-write: never an end of file
        self.buf = b""

    def next(self, timeout: float = 60) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.fd], [], [], left)[0], f"no event within {timeout:g}s"
            self.buf += os.read(self.fd, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        tag, point = line.decode().split("\t")[:2]
        return tag, point

    def close(self) -> None:
        os.close(self.fd)


def release(fifo: Path) -> bool:
    """Let the agent paused on this FIFO go on; False when none waits on it."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: nobody waits on it
    except OSError:
        return False
    os.write(fd, b"go\n")
    os.close(fd)
    return True


def wait_until(pred, timeout: float, step: float = 0.1):  # type: ignore[no-untyped-def]
    """The first true value of pred() within `timeout` seconds, else pred()'s last value (an event, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()
