"""Stale UDP conntrack entries: a flow whose endpoint is removed answers again right after the apply.

A resolver-like client sends from a fixed source port, so all its datagrams are one conntrack
flow, kept alive as long as it sends: from outside to a NodePort, and from a node to the ClusterIP
(both DNATed on node1, to the same pod). Before the agent deleted stale entries, every datagram
after the apply that removed the flow's endpoint went on to the removed pod (0 answers) until the
client went quiet for the conntrack timeout. An established TCP connection to the remaining
endpoint must live through the same apply untouched: it is masqueraded with a random source port,
so a deleted TCP entry would re-NAT it anew and break it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from applylab import apply

from svcnet.lab.node_ops import node_exec_argv
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab

DESCRIPTION = Path(__file__).parent / "stale-udp"
# Run as source text: a lab node's mount namespace need not show this checkout.
PYTHON_CODE = ("python3", "-I", "-S", "-c", (Path(__file__).parent / "flowclient.py").read_text())
UDP_NODE_PORT, TCP_NODE_PORT, SOURCE_PORT = 30053, 30080, 40053
CLUSTER_IP, UDP_PORT = "10.96.0.53", 53
FLOW_SECONDS = 120  # the client's own bound; it stops earlier when the test closes its stdin
READY_WAIT = 70  # the client's own first-answer wait (60 s: pods start after the apply) and its start-up
ANSWER_WITHIN = 1.0  # the bound: the flow answers again within a second of the apply's end
DELETED_RE = re.compile(r"\[node1\].*?(\d+) stale conntrack entries deleted")


class FlowClient:
    """flowclient.py on the lab's client: its output lines as they come (a reader thread)."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.strip())
                self.changed.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str | None:
        """The first line starting with `prefix`, waiting up to `timeout` seconds for it."""
        with self.changed:
            self.changed.wait_for(lambda: any(ln.startswith(prefix) for ln in self.lines), timeout)
            return next((ln for ln in self.lines if ln.startswith(prefix)), None)

    def answers(self, kind: str) -> list[tuple[float, str]]:
        with self.changed:
            return [(float(w[1]), " ".join(w[2:])) for w in (ln.split() for ln in self.lines) if w[0] == kind]

    def stop(self) -> None:
        """Close its stdin (it stops), and kill it if it does not (only the process this test started)."""
        with_stdin = self.proc.stdin
        if with_stdin is not None and not with_stdin.closed:
            with_stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def test_udp_flow_moves_to_the_remaining_endpoint_and_tcp_is_untouched(lab_factory, tmp_path):
    desc = tmp_path / "desc"
    shutil.copytree(DESCRIPTION, desc)
    lab = lab_factory(desc)
    first = apply(lab, desc)
    assert first.rc == 0, first.out + first.err
    pods = {p.name for p in load_cluster([desc]).pods}
    node1_ip = lab.nodes["node1"][1]

    client = FlowClient(node_exec_argv(lab, "client", [
        *PYTHON_CODE, node1_ip, str(UDP_NODE_PORT), str(TCP_NODE_PORT),
        str(SOURCE_PORT), str(FLOW_SECONDS)]))
    on_node: FlowClient | None = None
    try:
        ready = client.wait_for("ready", READY_WAIT)
        assert ready is not None, client.lines[-20:]
        gone = ready.split()[1]  # the pod the UDP flow uses; the TCP connection uses the other one
        remaining = (pods - {gone}).pop()
        on_node = FlowClient(node_exec_argv(lab, "node1", [  # a flow to the ClusterIP on the same pod
            *PYTHON_CODE, CLUSTER_IP, str(UDP_PORT), "0", str(SOURCE_PORT),
            str(FLOW_SECONDS), gone]))
        assert on_node.wait_for("ready", READY_WAIT) is not None, on_node.lines[-20:]
        (desc / f"pod-{gone.rsplit('-', 1)[1]}.yaml").unlink()

        second = apply(lab, desc, extra=("-v", "--skip-tags", "verify"))
        ended = time.time()
        assert second.rc == 0, second.out + second.err
        time.sleep(ANSWER_WITHIN + 0.5)  # the answer must be in by ended + 1 s; 0.5 s for the output to arrive
        udp = client.answers("udp")
        tcp = client.answers("tcp")
        via_cluster_ip = on_node.answers("udp")
    finally:
        client.stop()
        if on_node is not None:
            on_node.stop()

    after = [(t, name) for t, name in udp if t > ended - 30]
    back = [t for t, name in udp if name == remaining and t <= ended + ANSWER_WITHIN]
    assert back, f"no UDP answer from {remaining} within {ANSWER_WITHIN}s of the apply's end: {after[-10:]}"
    assert udp[-1][1] == remaining, udp[-10:]
    back = [t for t, name in via_cluster_ip if name == remaining and t <= ended + ANSWER_WITHIN]
    assert back, f"the ClusterIP flow did not answer within {ANSWER_WITHIN}s: {via_cluster_ip[-10:]}"
    assert via_cluster_ip[-1][1] == remaining, via_cluster_ip[-10:]
    assert tcp and all(name == remaining for _, name in tcp), [a for a in tcp if a[1] != remaining][:5]  # never broken
    assert tcp[-1][0] > ended, tcp[-5:]  # and still answering after the apply
    # -v reports what node1 (the NodePort's node, where the flow's entry is) deleted: at least the flow's
    deleted = [int(n) for n in DELETED_RE.findall(second.out)]
    assert deleted and max(deleted) >= 1, second.out
