"""`svcnet verify` on the applied seed lab: passes; fails naming node and object after each breakage."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import pytest
from verifylab import SEED, applied_lab, apply, svcnet, verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster
from svcnet.render.chains import endpoint_chain_name, service_chain_names

pytestmark = pytest.mark.lab

CLUSTER = load_cluster([SEED])
SP = CLUSTER.service_ports[0]
SVC_CHAIN = service_chain_names(SP)[0]
POD = next(p for p in CLUSTER.pods if p.node_name == "node1")
OTHER = next(p for p in CLUSTER.pods if p.node_name == "node2")
OTHER_SEP = endpoint_chain_name(SP, next(ep for ep in SP.endpoints if ep.ip == OTHER.ip))
NETNS = POD.netns
WAIT_GONE = "for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done"
# Connections verify made while the rules were broken left conntrack entries that were not NATed (or
# NATed to a wrong port): SYN_SENT lives 120 s, and a new connection that reuses a source port follows
# the old entry, as it would under kube-proxy. The repair drops them with the breakage (rc 1 = none).
FORGET_BROKEN_FLOWS = (f"for f in '--orig-dst {SP.cluster_ip}' '-p tcp --orig-port-dst {SP.node_port}'; do "
                       "conntrack -D $f >/dev/null 2>&1; [ $? -le 1 ] || exit 1; done")


@pytest.fixture(scope="module")
def seed_lab(lab_factory):
    return applied_lab(lab_factory, SEED)


def test_verify_passes_on_the_applied_lab(seed_lab, tmp_path):
    report = tmp_path / "verify.xml"
    run = verify(seed_lab, SEED, "--junitxml", str(report))
    assert run.rc == 0, run.out + run.err
    for test_id in ("test_service_rules_match_rendered[node1-k8s-test/service:http]",
                    "test_jump_rules_present[node2]", f"test_pod_has_its_ip[node1-k8s-test/{POD.name}]",
                    "test_cluster_ip_answers[node2-k8s-test/service:http]",
                    f"test_cluster_ip_answers[node1/{POD.name}-k8s-test/service:http]",
                    "test_endpoints_share_traffic_evenly[node1-k8s-test/service:http]",
                    "test_node_port_answers[node2-k8s-test/service:http]"):
        assert f"{test_id} PASSED" in run.out, run.out
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", 0)) >= 20 and suite.get("failures") == "0"
    print(f"svcnet verify on the seed lab: {run.seconds:.1f}s", file=sys.stderr)


BREAKAGES = {
    "flushed KUBE-SVC chain": (
        f"iptables -t nat -F {SVC_CHAIN}",
        ["test_service_rules_match_rendered[node1-k8s-test/service:http] FAILED",
         f"node1: nat chain {SVC_CHAIN} (k8s-test/service:http) differs from the rendered rules"]),
    "deleted pod address": (
        f"ip -n {NETNS} addr del {POD.ip}/24 dev eth0",
        [f"test_pod_has_its_ip[node1-k8s-test/{POD.name}] FAILED",
         f"node1: pod k8s-test/{POD.name}: {NETNS} has no address {POD.ip} on eth0"]),
    "stopped pod process": (
        f"p=$(cat /run/svcnet/pods/{NETNS}.pid); kill -TERM $p; {WAIT_GONE}",
        [f"test_pod_listens_on_its_ports[node1-k8s-test/{POD.name}] FAILED",
         f"node1: pod k8s-test/{POD.name}: no process listens on 8080/TCP"]),
    "rule edited by hand": (
        f"iptables-save -t nat | sed 's/--to-destination {OTHER.ip}:8080/--to-destination {OTHER.ip}:8081/' "
        "| iptables-restore -T nat",
        ["test_service_rules_match_rendered[node1-k8s-test/service:http] FAILED",
         f"node1: nat chain {OTHER_SEP} (k8s-test/service:http) differs from the rendered rules",
         f"--to-destination {OTHER.ip}:8081"]),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_verify_fails_after_a_breakage_and_passes_after_reapply(seed_lab, breakage):
    command, expected = BREAKAGES[breakage]
    node_run(seed_lab, "node1", command)
    try:
        broken = verify(seed_lab, SEED)
        assert broken.rc == 1, broken.out + broken.err
        for text in expected:
            assert text in broken.out, f"{breakage}: {text!r} not in\n{broken.out}"
        assert "[node2-" not in "".join(ln for ln in broken.out.splitlines() if "rules.py" in ln and "FAILED" in ln)
    finally:
        # Repair also when an assertion above failed: the module's lab is shared by the next breakage.
        node_run(seed_lab, "node1", FORGET_BROKEN_FLOWS)
        fixed = apply(seed_lab, SEED)
    assert fixed.rc == 0, fixed.out + fixed.err
    again = verify(seed_lab, SEED)
    assert again.rc == 0, again.out + again.err


def test_user_testinfra_file_runs_with_plain_pytest(seed_lab, tmp_path):
    # The request is retried (bounded): one of at most 2 s could time out on a loaded machine.
    (tmp_path / "test_mine.py").write_text(
        "def test_rules_on_node(svcnet_host):\n"
        "    assert svcnet_host.file('/etc/svcnet/rules.restore').exists\n"
        "    assert 'KUBE-SERVICES' in svcnet_host.check_output('iptables-save -t nat')\n\n"
        "def test_all_hosts(svcnet_hosts, service_url):\n"
        "    assert sorted(svcnet_hosts) == ['node1', 'node2']\n"
        "    url = service_url('service', 'k8s-test')\n"
        "    out = svcnet_hosts['node2'].check_output('curl -s --max-time 10 --retry 5 --retry-all-errors %s', url)\n"
        "    assert out.startswith('k8s-test-')\n")
    import subprocess

    p = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_mine.py",
                        f"--svcnet-cluster={SEED}", f"--svcnet-inventory={seed_lab.inventory_path}"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "test_rules_on_node[node1] PASSED" in p.stdout and "test_rules_on_node[node2] PASSED" in p.stdout


def test_unknown_host_keys_are_refused(seed_lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = seed_lab.ssh_config_path.read_text().replace(str(seed_lab.known_hosts_path), str(empty))
    assert str(empty) in config
    (tmp_path / "ssh_config").write_text(config)
    inv = seed_lab.inventory_path.read_text().replace(str(seed_lab.ssh_config_path), str(tmp_path / "ssh_config"))
    (tmp_path / "inv.yaml").write_text(inv)
    run = svcnet("verify", "-f", str(SEED), "-i", str(tmp_path / "inv.yaml"), "-k", "jump_rules")
    assert run.rc == 1, run.out + run.err
    assert "node1: unreachable" in run.out and "known_hosts" in run.out


def test_playbook_verify_task(seed_lab, tmp_path):
    book = tmp_path / "verify.yaml"
    book.write_text(f"- name: verify\n  hosts: all\n  cluster: {SEED}\n  tasks:\n    - verify:\n")
    run = svcnet("playbook", str(book), "-i", str(seed_lab.inventory_path), "-v")
    assert run.rc == 0, run.out + run.err
    assert "ok: [node1]" in run.out and "ok: [node2]" in run.out and "checks passed" in run.out
    node_run(seed_lab, "node2", f"iptables -t nat -F {SVC_CHAIN}")
    try:
        bad = svcnet("playbook", str(book), "-i", str(seed_lab.inventory_path))
        assert bad.rc == 2, bad.out + bad.err
        assert "fatal: [node2]" in bad.out and f"node2: nat chain {SVC_CHAIN}" in bad.out
        assert "ok: [node1]" in bad.out
    finally:
        assert apply(seed_lab, SEED).rc == 0
