"""kube-proxy's health checks on each node, end to end over SSH: a LoadBalancer service's
healthCheckNodePort answers 200 where the node has a local endpoint and 503 elsewhere, flips when
the endpoint moves without the port ever closing, and /healthz, /livez report broken rules."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from applylab import apply, svcnet
from labrun import verify

from svcnet.lab.node_ops import node_exec_argv
from svcnet.lab.pytest_fixtures import node_run

pytestmark = pytest.mark.lab

NODES = {"node1": "192.168.56.11", "node2": "192.168.56.12"}
HC_PORT, HEALTHZ_PORT = 30100, 10256
CLUSTER = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: health}
spec:
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.2.0/24}
"""
SERVICE = f"""\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: {HC_PORT}
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: 30080}}]
"""
POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers:
    - name: web
      command: [python3, /var/lib/svcnet/podserver.py, --port, "8080"]
      ports: [{{containerPort: 8080}}]
"""
# Run in the lab's client (the external load balancer's place): GET each target, as fast as it
# answers, until its stdin closes (bounded by argv[2] seconds); prints each target's answers as
# runs [[status or error, count], ...] in order.
POLLER = r"""
import http.client, json, select, sys, time
targets, deadline = json.loads(sys.argv[1]), time.monotonic() + float(sys.argv[2])
runs = {t: [] for t in targets}
def ask(t):
    host, port = t.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        c.request("GET", "/"); r = c.getresponse(); r.read(); return str(r.status)
    except OSError as e:
        return type(e).__name__
    finally:
        c.close()
print("polling", flush=True)
while time.monotonic() < deadline and not select.select([sys.stdin], [], [], 0.02)[0]:
    for t in targets:
        s, r = ask(t), runs[t]
        if r and r[-1][0] == s: r[-1][1] += 1
        else: r.append([s, 1])
print(json.dumps(runs), flush=True)
"""
POLL_LIMIT = 240  # seconds: more than an apply takes on a loaded 2-core machine


def write_description(directory: Path, pod_node: str) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in (("cluster.yaml", CLUSTER), ("service.yaml", SERVICE), ("pod.yaml", POD.format(node=pod_node))):
        (directory / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def health_lab(lab_factory, tmp_path_factory):
    description = write_description(tmp_path_factory.mktemp("health"), "node1")
    lab = lab_factory(description / "cluster.yaml")
    first = apply(lab, description)
    assert first.rc == 0, first.out + first.err
    return lab, description


def get(lab, node: str, port: int, path: str = "/") -> tuple[int, dict[str, str], str]:
    """One GET from the lab's client to the node's address: (status, headers, body); status 0: refused."""
    script = ("import http.client,json,sys\n"
              f"c=http.client.HTTPConnection({NODES[node]!r},{port},timeout=5)\n"
              "try:\n"
              f" c.request('GET',{path!r});r=c.getresponse()\n"
              " print(json.dumps([r.status,dict(r.getheaders()),r.read().decode()]))\n"
              "except ConnectionRefusedError:print(json.dumps([0,{},'']))\n")
    out = subprocess.run(node_exec_argv(lab, "client", ["python3", "-I", "-S", "-c", script]), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    status, headers, body = json.loads(out)
    return status, headers, body


def listener(lab, node: str, port: int) -> str:
    """The socket inode of what listens on 0.0.0.0:port in the node ('' for none): the same socket
    kept open across an apply keeps its inode."""
    for line in node_run(lab, node, "cat /proc/net/tcp").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"00000000:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    return ""


def service_body(count: int, healthy: bool = True) -> str:
    """kube-proxy's body for shop/web (see tests/agent/test_agent_health_unit.py for its derivation)."""
    return ('{\n\t"service": {\n\t\t"namespace": "shop",\n\t\t"name": "web"\n\t},\n'
            f'\t"localEndpoints": {count},\n\t"serviceProxyHealthy": {"true" if healthy else "false"}\n}}')


def wait_status(lab, node: str, port: int, path: str, want: int, seconds: float = 15) -> int:
    """The status once it is `want` (polled, bounded), else the last one seen."""
    deadline = time.monotonic() + seconds
    status = get(lab, node, port, path)[0]
    while status != want and time.monotonic() < deadline:
        time.sleep(0.2)
        status = get(lab, node, port, path)[0]
    return status


def test_the_node_with_the_local_endpoint_answers_200_and_the_other_503(health_lab):
    lab, _ = health_lab
    status, headers, body = get(lab, "node1", HC_PORT)
    assert (status, body) == (200, service_body(1))
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers
    assert get(lab, "node2", HC_PORT)[::2] == (503, service_body(0))


def test_moving_the_last_local_endpoint_flips_the_answers_without_closing_the_port(health_lab, tmp_path):
    lab, description = health_lab
    targets = [f"{NODES[n]}:{HC_PORT}" for n in NODES]
    sockets = {n: listener(lab, n, HC_PORT) for n in NODES}
    assert all(sockets.values()), sockets
    poller = subprocess.Popen(node_exec_argv(lab, "client", ["python3", "-I", "-S", "-c", POLLER,
                                                             json.dumps(targets), str(POLL_LIMIT)]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert poller.stdout is not None and poller.stdout.readline().strip() == "polling"
        moved = apply(lab, write_description(tmp_path / "moved", "node2"))
        out, _ = poller.communicate("", timeout=30)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    assert moved.rc == 0, moved.out + moved.err
    runs = json.loads(out)
    # every answer during the apply was an HTTP answer (the port never closed), and each node's
    # answer changed once, at its apply
    assert [s for s, _ in runs[targets[0]]] == ["200", "503"], runs
    assert [s for s, _ in runs[targets[1]]] == ["503", "200"], runs
    assert {n: listener(lab, n, HC_PORT) for n in NODES} == sockets  # not even closed and opened again
    assert get(lab, "node2", HC_PORT)[::2] == (200, service_body(1))
    assert get(lab, "node1", HC_PORT)[::2] == (503, service_body(0))
    back = apply(lab, description)
    assert back.rc == 0, back.out + back.err
    assert get(lab, "node1", HC_PORT)[0] == 200


def test_healthz_and_livez_report_rules_broken_by_hand(health_lab):
    lab, description = health_lab
    for node in NODES:
        for path in ("/healthz", "/livez"):
            status, headers, body = get(lab, node, HEALTHZ_PORT, path)
            assert status == 200 and headers["Content-Type"] == "application/json", (node, path, body)
            assert set(json.loads(body)) == ({"lastUpdated", "currentTime", "nodeEligible"} if path == "/healthz"
                                             else {"lastUpdated", "currentTime"})
    node_run(lab, "node1", "iptables -t nat -A KUBE-SERVICES -s 203.0.113.99/32 -j RETURN")
    # the server reads the live rules at most once a second
    assert wait_status(lab, "node1", HEALTHZ_PORT, "/healthz", 503) == 503
    assert get(lab, "node1", HEALTHZ_PORT, "/livez")[0] == 503
    assert get(lab, "node1", HC_PORT)[::2] == (503, service_body(1, healthy=False))
    assert get(lab, "node2", HEALTHZ_PORT, "/healthz")[0] == 200  # only node1's rules changed
    repaired = apply(lab, description)
    assert repaired.rc == 0, repaired.out + repaired.err
    assert get(lab, "node1", HEALTHZ_PORT, "/healthz")[0] == 200
    assert get(lab, "node1", HC_PORT)[::2] == (200, service_body(1))


def test_verify_checks_both_endpoints_and_apply_restarts_a_stopped_server(health_lab):
    lab, description = health_lab
    good = verify(lab, description, "-k", "health")
    assert good.rc == 0, good.out + good.err
    assert "test_proxy_healthz[node1] PASSED" in good.out and "test_service_health_checks[node2] PASSED" in good.out
    node_run(lab, "node2", r"""kill -9 -$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' /run/svcnet/health.pid)""")
    bad = verify(lab, description, "-k", "health")
    assert bad.rc != 0 and "node2: the proxy's healthz at http://192.168.56.12:10256/healthz does not answer" in bad.out
    again = apply(lab, description)
    assert again.rc == 0 and again.recap()["node2"]["changed"] == 1, again.out + again.err
    assert get(lab, "node2", HEALTHZ_PORT, "/healthz")[0] == 200


def test_teardown_closes_the_ports(health_lab):
    lab, _ = health_lab
    assert {get(lab, node, HC_PORT)[0] for node in NODES} == {200, 503}
    down = svcnet("playbook", "playbooks/teardown.yaml", "-i", str(lab.inventory_path))
    assert down.rc == 0, down.out + down.err
    for node in NODES:
        assert get(lab, node, HC_PORT)[0] == 0 and get(lab, node, HEALTHZ_PORT, "/healthz")[0] == 0
        assert "health" not in node_run(lab, node, "ls /run/svcnet /var/lib/svcnet /etc/svcnet").stdout
