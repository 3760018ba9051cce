"""Derived pod names: whatever validates must apply (the agent's name checks), and no two pods
ever share a pod name, a network namespace or a veth."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from svcnet.agent import node as agent
from svcnet.model import names
from svcnet.model.load import check_paths, load_cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.transport.protocol import netconf_payload

REPO = Path(__file__).resolve().parents[2]
LONG_NAMES = REPO / "tests" / "apply" / "long-names"
BASE = REPO / "tests" / "validate" / "good" / "base-cluster.yaml"
WIDE = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: wide}
spec:
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.0.0/22}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.4.0/22}
"""
# kubectl's DNS-1123 subdomain, the API's limit for a pod name.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def deployment(name: str, replicas: int, namespace: str = "default") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c}}]}}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_the_agent_accepts_every_name_of_a_description_at_the_name_limits():
    """The issue's failure: validate and render succeeded, then the agent refused the netns name."""
    assert check_paths([LONG_NAMES]).ok
    cluster = load_cluster([LONG_NAMES])
    assert max(len(p.name) for p in cluster.pods) == 253 and max(len(p.namespace) for p in cluster.pods) == 63
    for art in node_artifacts_all(cluster).values():
        conf = agent.validate_netconf(netconf_payload(art.netconf))  # raises AgentError on a bad name
        assert len(conf["pods"]) == len(cluster.pods)


def test_the_issue_s_deployment_gets_netns_names_the_agent_accepts(tmp_path: Path):
    f = write(tmp_path, "d.yaml", deployment("checkout-frontend-web", 3, namespace="production-payments"))
    cluster = load_cluster([BASE, f])
    for pod in cluster.pods:
        assert agent.NAME_RE.fullmatch(pod.netns) and agent.IFNAME_RE.fullmatch(pod.veth), (pod.netns, pod.veth)


def test_the_limits_are_the_agent_s():
    assert agent.NAME_RE.fullmatch("a" * names.NETNS_MAX) and not agent.NAME_RE.fullmatch("a" * (names.NETNS_MAX + 1))
    assert agent.IFNAME_RE.fullmatch("a" * names.IFNAME_MAX)
    assert not agent.IFNAME_RE.fullmatch("a" * (names.IFNAME_MAX + 1))


def test_a_netns_name_is_readable_when_it_fits_and_shortened_with_a_hash_when_not():
    assert names.netns_name("k8s-test", "k8s-test-abc") == "svcnet_k8s-test_k8s-test-abc"
    fits = "p" * (names.NETNS_MAX - len("svcnet_ns_"))
    assert names.netns_name("ns", fits) == f"svcnet_ns_{fits}"
    long = names.netns_name("ns", fits + "q")
    assert len(long) == names.NETNS_MAX and long.startswith("svcnet_ns_ppp") and "__" in long
    assert long == names.netns_name("ns", fits + "q")  # deterministic


def _random_label(rng: random.Random, length: int) -> str:
    body = "".join(rng.choice("abcz09-") for _ in range(length))
    return "a" + body[1:-1].strip("-") + "z" if length > 1 else "a"


def test_no_two_pods_ever_share_a_netns_or_a_veth(monkeypatch: pytest.MonkeyPatch):
    rng = random.Random(9)
    ns_long = _random_label(rng, 63)
    shared = "x" * 200  # names that differ only after the part a shortened name keeps
    pods = {(ns_long, f"{shared}-{i}") for i in range(50)}
    pods |= {(_random_label(rng, rng.randint(1, 63)), _random_label(rng, rng.randint(1, 253))) for _ in range(300)}
    pods |= {("ns", "a"), ("ns-a", "b"), ("ns", "a-b")}  # readable names with shared prefixes
    # Every pod's n-th choice the same (the hash sees only the probe counter): only the probing
    # keeps the names apart.
    real = names._hex
    monkeypatch.setattr(names, "_hex", lambda text, length: real(text.partition("#")[2], length))
    got = names.pod_interfaces(pods, reserved=("cni0",))
    netns = [v[0] for v in got.values()]
    veths = [v[1] for v in got.values()]
    assert len(set(netns)) == len(pods) and len(set(veths)) == len(pods)
    assert all(agent.NAME_RE.fullmatch(n) for n in netns) and all(agent.IFNAME_RE.fullmatch(v) for v in veths)


def test_a_readable_netns_name_never_equals_a_shortened_one():
    """Shortened names hold `__`; a readable one cannot (namespaces and pod names have no `_`)."""
    rng = random.Random(7)
    pods = [(_random_label(rng, rng.randint(1, 63)), _random_label(rng, rng.randint(1, 253))) for _ in range(500)]
    for ns, pod in pods:
        readable = f"{names.NETNS_PREFIX}{ns}_{pod}"
        assert (names.netns_name(ns, pod) == readable) == (len(readable) <= names.NETNS_MAX)
        assert "__" not in readable
        assert all("__" in names.netns_name(ns, pod, attempt) for attempt in (1, 2))


def test_veth_names_never_take_the_bridge_s_name():
    bridge = names.veth_name("ns", "a")
    got = names.pod_interfaces([("ns", "a")], reserved=(bridge,))
    assert got[("ns", "a")][1] == names.veth_name("ns", "a", 1) != bridge


@pytest.mark.parametrize("replicas", [748, 1000])
def test_a_large_deployment_validates_with_unique_pod_names(tmp_path: Path, replicas: int):
    # With web-5 in default, replicas 34 and 447 had the same 5-character suffix: "duplicate pod".
    f = write(tmp_path, "d.yaml", deployment("web-5", replicas))
    checked = check_paths([write(tmp_path, "c.yaml", WIDE), f])
    assert checked.ok, "\n".join(map(str, checked.diagnostics[:5]))
    assert checked.build is not None
    pods = checked.build.cluster.pods
    assert len(pods) == replicas == len({p.name for p in pods})
    assert len({p.netns for p in pods}) == replicas and len({p.veth for p in pods}) == replicas


_NAMES_SCRIPT = """
import sys
from svcnet.model.load import load_cluster
for p in load_cluster(sys.argv[1:]).pods:
    print(p.namespace, p.name, p.netns, p.veth, p.ip)
"""


def test_pod_names_are_stable_across_runs_and_file_order(tmp_path: Path):
    cluster = write(tmp_path, "c.yaml", WIDE)
    a = write(tmp_path, "a.yaml", deployment("web-5", 748))
    b = write(tmp_path, "b.yaml", deployment("web-38", 200))

    def run(seed: str, *files: Path) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run([sys.executable, "-c", _NAMES_SCRIPT, *map(str, files)], env=env, check=True,
                              capture_output=True, text=True).stdout

    first = run("1", cluster, a, b)
    assert first == run("2", cluster, a, b) == run("3", cluster, b, a)
    assert len(first.splitlines()) == 948


def test_a_generated_pod_name_avoids_a_pod_named_by_hand(tmp_path: Path):
    taken_name = names.replica_pod_name("default", "web-5", _template_hash_of(tmp_path), 0, 0)
    pod = write(tmp_path, "p.yaml", f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {taken_name}}}\n"
                                    "spec: {nodeName: node1, containers: [{name: c}]}\n")
    checked = check_paths([write(tmp_path, "c.yaml", WIDE), write(tmp_path, "d.yaml", deployment("web-5", 3)), pod])
    assert checked.ok, "\n".join(map(str, checked.diagnostics))
    assert checked.build is not None
    by_name = {p.name: p for p in checked.build.cluster.pods}
    assert len(by_name) == 4 and by_name[taken_name].owner is None  # the hand-named pod keeps its name


def _template_hash_of(tmp_path: Path) -> str:
    cluster = load_cluster([write(tmp_path, "c.yaml", WIDE), write(tmp_path, "d.yaml", deployment("web-5", 1))])
    return dict(cluster.pods[0].labels)["pod-template-hash"]


def test_generated_pod_names_keep_kubernetes_length_limit():
    cluster = load_cluster([LONG_NAMES])
    generated = [p for p in cluster.pods if p.owner]
    assert len(generated) == 2
    for pod in generated:
        assert len(pod.name) == 63 and DNS_SUBDOMAIN.match(pod.name), pod.name
