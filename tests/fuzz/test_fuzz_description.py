"""Fuzzing cluster descriptions: random, mutated and garbled ones never crash svcnet.

(a) `check_paths` (what `svcnet validate` runs) returns located diagnostics or a valid model,
never raises, within the deadline; a few examples go through the real CLI process as well.
(b) Every description that validates renders for every node, and each node's restore input
is accepted by `iptables-restore --test --noflush` in a scratch network namespace
(`unshare --net`, never the host's), batched into one namespace per run.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fuzzgen import (
    MEMORY_GROWTH_KIB,
    assert_located,
    dump,
    encode,
    examples,
    fuzz_settings,
    mutate_object,
    mutate_text,
    peak_rss_kib,
)
from hypothesis import given
from hypothesis import strategies as st
from prereq import unavailable

from svcnet.inspect.get import get
from svcnet.model.load import check_paths
from svcnet.render.artifacts import node_artifacts_all

pytestmark = pytest.mark.slow  # tens of seconds; SVCNET_FUZZ_EXAMPLES scales them

REPO = Path(__file__).resolve().parents[2]
SEED_FILES = sorted(
    p
    for pattern in ("examples/*/*.yaml", "tests/validate/good/*.yaml", "tests/validate/bad/*.yaml",
                    "tests/verify/features/*.yaml", "tests/lab/cluster.yaml", "tests/playbook/fixtures/clusters/*.yaml")
    for p in REPO.glob(pattern)
)
SEED_TEXTS = [p.read_bytes().decode("utf-8", "replace") for p in SEED_FILES]
SVCNET = Path(sys.executable).with_name("svcnet")
# A CLI run under this address-space limit must still end with its own exit code.
CLI_MEMORY_LIMIT = 2 * 1024**3
# A process each (about a quarter of a second): a twentieth of the in-process examples.
CLI_EXAMPLES = 15


# ---------------------------------------------------------------- random descriptions

NAMES = ["web", "db", "a", "svc-1", "x" * 60, "dns", "api"]
NAMESPACES = ["default", "k8s-test", "ns1"]
NFACCT = ["ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"]
RANGES = {"30000-32767": 30000, "30000-30010": 30000, "20000-20005": 20000}


@st.composite
def cluster_doc(draw: Any) -> dict[str, Any]:
    svc_cidr = draw(st.sampled_from(["10.96.0.0/12", "10.0.0.0/24", "172.20.0.0/16", "10.96.0.0/29"]))
    clu_net = draw(st.sampled_from([("10.244.0.0/16", "10.244.{}.0/24"), ("10.128.0.0/9", "10.200.{}.0/26")]))
    n_nodes = draw(st.integers(1, 3))
    nodes = []
    for i in range(n_nodes):
        node: dict[str, Any] = {
            "name": f"node{i + 1}",
            "addresses": [f"192.168.56.{11 + i}", *draw(st.sampled_from([[], [f"10.1.0.{i + 1}"]]))],
            "podCIDR": clu_net[1].format(i + 1),
        }
        if draw(st.booleans()):
            node["facts"] = {
                "randomFully": draw(st.booleans()),
                "nfacctCounters": draw(st.lists(st.sampled_from(NFACCT), max_size=2, unique=True)),
                "tcpBeLiberal": draw(st.booleans()),
            }
        nodes.append(node)
    spec: dict[str, Any] = {"serviceCIDR": svc_cidr, "clusterCIDR": clu_net[0], "nodes": nodes}
    if draw(st.booleans()):
        spec["nodePortRange"] = draw(st.sampled_from(sorted(RANGES)))
    if draw(st.booleans()):
        spec["proxy"] = {
            "mode": "iptables",
            "detectLocalMode": draw(
                st.sampled_from(["ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix", "None"])
            ),
            "detectLocal": {"bridgeInterface": "cni0", "interfaceNamePrefix": draw(st.sampled_from(["veth", "cali"]))},
            "iptables": {
                "masqueradeBit": draw(st.integers(0, 31)),
                "masqueradeAll": draw(st.booleans()),
                "localhostNodePorts": draw(st.booleans()),
            },
            "nodePortAddresses": draw(
                st.lists(st.sampled_from(["192.168.56.0/24", "127.0.0.0/8", "10.1.0.0/16"]), max_size=2, unique=True)
            ),
        }
    return {"apiVersion": "svcnet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "fuzz"}, "spec": spec}


@st.composite
def service_doc(draw: Any, index: int, cluster: dict[str, Any]) -> dict[str, Any]:
    """A Service that mostly fits `cluster` (its CIDR, node-port range); `index` keeps names apart."""
    net = ipaddress.ip_network(cluster["spec"]["serviceCIDR"])
    first_node_port = RANGES.get(cluster["spec"].get("nodePortRange", ""), 30000)
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    n_ports = draw(st.integers(1, 3))
    ports = []
    for j in range(n_ports):
        port: dict[str, Any] = {"port": draw(st.sampled_from([53, 80, 443, 8080, 1, 65535])) - j}
        if n_ports > 1 or draw(st.booleans()):
            port["name"] = f"p{j}"
        if draw(st.booleans()):
            port["protocol"] = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
        if draw(st.booleans()):
            port["targetPort"] = draw(st.sampled_from([8080, 53, "http", "dns"]))
        if kind != "ClusterIP" and draw(st.booleans()):
            port["nodePort"] = first_node_port + draw(st.sampled_from([2 * index + j, 5]))
        ports.append(port)
    spec: dict[str, Any] = {"type": kind, "ports": ports}
    if draw(st.booleans()):
        spec["selector"] = {"app": draw(st.sampled_from(NAMES[:3]))}
    ip = draw(st.sampled_from([None, None, "None", "own", "own", "10.96.0.10"]))
    if ip == "own":  # one address of the service CIDR per service, from its top end
        ip = str(net.broadcast_address - 1 - index % max(1, net.num_addresses - 2))
    if ip:
        spec["clusterIP"] = ip
    if draw(st.booleans()):
        spec["sessionAffinity"] = draw(st.sampled_from(["None", "ClientIP"]))
        if spec["sessionAffinity"] == "ClientIP" and draw(st.booleans()):
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.sampled_from([1, 10800, 86400]))}}
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if draw(st.booleans()):
            spec[key] = draw(st.sampled_from(["Cluster", "Local"]))
    if draw(st.booleans()):
        spec["externalIPs"] = draw(st.lists(st.sampled_from(["192.168.99.22", "203.0.113.7", "192.168.56.11"]),
                                            max_size=2, unique=True))
    if kind == "LoadBalancer" and draw(st.booleans()):
        spec["loadBalancerSourceRanges"] = draw(
            st.lists(st.sampled_from(["203.0.113.0/25", "10.0.0.0/8", "192.168.1.1/32"]), max_size=2, unique=True))
    # Only where the API server takes one (a LoadBalancer with eTP Local): built to pass.
    if kind == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and draw(st.booleans()):
        spec["healthCheckNodePort"] = first_node_port + draw(st.sampled_from([2 * index + 1, 5]))
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{draw(st.sampled_from(NAMES))}-{index}", "namespace": draw(st.sampled_from(NAMESPACES))},
        "spec": spec,
    }
    if kind == "LoadBalancer" and draw(st.booleans()):
        doc["status"] = {"loadBalancer": {"ingress": [{"ip": draw(st.sampled_from(["5.6.7.8", "192.168.56.200"]))}]}}
    return doc


def _pod_spec(draw: Any, with_node: bool) -> dict[str, Any]:
    ports = [{"name": draw(st.sampled_from(["http", "dns", "web"])), "containerPort": draw(st.sampled_from([8080, 53])),
              "protocol": draw(st.sampled_from(["TCP", "UDP"]))} for _ in range(draw(st.integers(0, 2)))]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "ports": ports}]}
    if draw(st.booleans()):
        spec["containers"][0]["command"] = ["python3", "/var/lib/svcnet/podserver.py", "--port", "8080"]
    if with_node:
        spec["nodeName"] = draw(st.sampled_from(["node1", "node1", "node2", "node3"]))
    return spec


@st.composite
def workload_doc(draw: Any, index: int) -> dict[str, Any]:
    app = draw(st.sampled_from(NAMES[:3]))
    meta = {"name": f"w{index}", "namespace": draw(st.sampled_from(NAMESPACES))}
    if draw(st.booleans()):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "labels": {"app": app}},
                "spec": _pod_spec(draw, True)}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": draw(st.integers(0, 3)), "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}}, "spec": _pod_spec(draw, draw(st.booleans()))}},
    }


@st.composite
def slice_doc(draw: Any, index: int) -> dict[str, Any]:
    endpoints = [
        {"addresses": [draw(st.sampled_from(["203.0.113.10", "10.244.1.9", "192.168.56.12"]))],
         "conditions": {k: draw(st.sampled_from([True, False, None])) for k in ("ready", "serving", "terminating")},
         **({"nodeName": draw(st.sampled_from(["node1", "node2"]))} if draw(st.booleans()) else {})}
        for _ in range(draw(st.integers(0, 3)))
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"s{index}", "namespace": draw(st.sampled_from(NAMESPACES)),
                     "labels": {"kubernetes.io/service-name": f"{draw(st.sampled_from(NAMES))}-{index}"}},
        "addressType": "IPv4",
        "ports": [{"name": draw(st.sampled_from(["p0", "http", ""])), "port": draw(st.sampled_from([8080, 53])),
                   "protocol": draw(st.sampled_from(["TCP", "UDP"]))}],
        "endpoints": endpoints,
    }


@st.composite
def random_description(draw: Any) -> list[dict[str, Any]]:
    docs = [draw(cluster_doc())]
    docs += [draw(service_doc(i, docs[0])) for i in range(draw(st.integers(0, 4)))]
    docs += [draw(workload_doc(i)) for i in range(draw(st.integers(0, 3)))]
    docs += [draw(slice_doc(i)) for i in range(draw(st.integers(0, 2)))]
    return docs


# ---------------------------------------------------------------- inputs: files of a description


@st.composite
def description_files(draw: Any) -> list[bytes]:
    """The files of one description: random, mutated as objects, or mutated as text."""
    how = draw(st.sampled_from(["random", "random", "objects", "text", "seed-text"]))
    if how == "seed-text":
        texts = [mutate_text(draw, draw(st.sampled_from(SEED_TEXTS)))]
        if draw(st.booleans()):
            texts.insert(0, draw(st.sampled_from(SEED_TEXTS)))
        return [encode(draw, t) for t in texts]
    docs = draw(random_description())
    if how in ("objects", "text"):
        docs = mutate_object(draw, docs, max_ops=4 if how == "objects" else 1)
    if not isinstance(docs, list) or not docs:
        docs = [docs]
    cut = draw(st.integers(1, len(docs)))
    texts = [dump(part, draw) for part in (docs[:cut], docs[cut:]) if part]
    if how == "text":
        i = draw(st.integers(0, len(texts) - 1))
        texts[i] = mutate_text(draw, texts[i])
        return [encode(draw, t) for t in texts]
    return [t.encode() for t in texts]


def _write(directory: Path, files: list[bytes]) -> list[Path]:
    for old in directory.glob("*.yaml"):
        old.unlink()
    paths = []
    for i, data in enumerate(files):
        path = directory / f"{i}.yaml"
        path.write_bytes(data)
        paths.append(path)
    return paths


def check_description(paths: list[Path]) -> list[str] | None:
    """The property for one description; its rendered restore inputs when it is valid."""
    checked = check_paths(paths)
    assert_located([str(d) for d in checked.diagnostics])
    if not checked.ok:
        return None
    assert checked.build is not None
    cluster = checked.build.cluster
    artifacts = node_artifacts_all(cluster)
    assert set(artifacts) == {n.name for n in cluster.nodes}
    for resource in ("services", "pods", "endpoints", "nodes"):
        get(cluster, resource, None, "wide")
    for art in artifacts.values():
        files = art.files()
        assert files["rules.restore"].endswith("COMMIT\n")
    return [art.restore for art in artifacts.values()] + [art.files()["netconf.sh"] for art in artifacts.values()]


# ---------------------------------------------------------------- the properties


def test_descriptions_validate_or_report_and_what_validates_loads_into_iptables() -> None:
    restores: set[str] = set()
    scripts: set[str] = set()
    counts = {"examples": 0, "valid": 0}
    before = peak_rss_kib()
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-") as tmp:
        directory = Path(tmp)

        @fuzz_settings(200)
        @given(files=description_files())
        def prop(files: list[bytes]) -> None:
            counts["examples"] += 1
            rendered = check_description(_write(directory, files))
            if rendered is not None:
                counts["valid"] += 1
                half = len(rendered) // 2
                restores.update(rendered[:half])
                scripts.update(rendered[half:])

        prop()
    assert peak_rss_kib() - before < MEMORY_GROWTH_KIB
    print(f"fuzz: {counts['examples']} descriptions, {counts['valid']} valid; {len(restores)} distinct restore "
          f"inputs and {len(scripts)} netconf.sh checked")
    # Enough valid descriptions that part (b) means something: the random ones are built to pass.
    assert counts["valid"] >= counts["examples"] // 10, counts
    check_shell_syntax(sorted(scripts))
    check_restores_in_scratch_netns(sorted(restores))


def check_shell_syntax(scripts: list[str]) -> None:
    """Every rendered netconf.sh parses (`sh -n`): no description value broke its quoting."""
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-sh-") as tmp:
        for i, text in enumerate(scripts):
            (Path(tmp) / f"{i}.sh").write_text(text)
        proc = subprocess.run(
            ["sh", "-c", 'for f in "$1"/*.sh; do sh -n "$f" || echo "FAILED $f"; done', "sh", tmp],
            capture_output=True, text=True, timeout=120,
        )
        failed = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("FAILED ")]
        assert not failed, "\n\n".join(Path(f).read_text() for f in failed[:3]) + proc.stderr


def check_restores_in_scratch_netns(restores: list[str]) -> None:
    """`iptables-restore --test --noflush` of each input, all in one scratch namespace."""
    missing = [tool for tool in ("unshare", "iptables-restore") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        unavailable(f"iptables-restore --test needs root, unshare and iptables-restore (missing: {missing or 'root'})")
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-ipt-") as tmp:
        for i, text in enumerate(restores):
            (Path(tmp) / f"{i}.restore").write_text(text)
        # One namespace for the batch; `--test` commits nothing, so each input meets an empty one.
        script = 'for f in "$1"/*.restore; do iptables-restore --test --noflush < "$f" 2>&1 || echo "FAILED $f"; done'
        proc = subprocess.run(["unshare", "--net", "--", "sh", "-c", script, "sh", tmp],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        failed = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("FAILED ")]
        assert not failed, proc.stdout[-3000:] + "\n" + Path(failed[0]).read_text()[:5000]


def test_the_cli_reports_fuzzed_descriptions_without_a_traceback() -> None:
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-cli-") as tmp:
        directory = Path(tmp)

        @fuzz_settings(max(3, examples(CLI_EXAMPLES * 20) // 20))
        @given(files=description_files())
        def prop(files: list[bytes]) -> None:
            paths = _write(directory, files)
            code, stderr = run_cli(["validate", *map(str, paths)], directory)
            assert code in (0, 1), (code, stderr)
            assert "Traceback" not in stderr and "panicked" not in stderr, stderr
            assert_located([ln for ln in stderr.splitlines() if not ln.startswith(("invalid:", "valid:"))])

        prop()


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY_LIMIT, CLI_MEMORY_LIMIT))


def run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run([str(SVCNET), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          preexec_fn=_limit_memory)
    return proc.returncode, proc.stderr


def test_the_seed_files_are_there() -> None:
    # The mutations start from the repository's own descriptions: a move must not empty the pool.
    assert len(SEED_FILES) >= 40 and sum("kind: Cluster" in t for t in SEED_TEXTS) >= 5
