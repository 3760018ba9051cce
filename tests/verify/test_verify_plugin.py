"""The pytest plugin seen by a user: plain `pytest` with svcnet's options, and inert without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"

USER_TESTS = '''
def test_plain():
    assert 1 + 1 == 2


def test_nodes(svcnet_node, svcnet_cluster, service_url):
    assert svcnet_node in {n.name for n in svcnet_cluster.nodes}
    assert service_url("service", "k8s-test") == "http://10.111.35.139:8080"
    assert service_url("service", "k8s-test", via="nodeport", node=svcnet_node).endswith(":30000")


def test_ports(svcnet_service_port):
    assert svcnet_service_port.port == 8080
'''
# `--opt=PATH`: pytest picks its rootdir before plugin options are known, so a separate PATH argument
# would be taken for a test path. Never connected to: these tests only use the parsed model.
INVENTORY = "all:\n  hosts:\n    node1: {ansible_host: 127.0.0.1}\n    node2: {ansible_host: 127.0.0.1}\n"


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_mine.py").write_text(USER_TESTS)
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_mine.py", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)


def test_fixtures_work_in_a_user_test_file(tmp_path):
    run = run_pytest(tmp_path, f"--svcnet-cluster={SEED}", "--svcnet-inventory=inv.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    for test_id in ("test_nodes[node1]", "test_nodes[node2]", "test_ports[k8s-test/service:http]"):
        assert f"test_mine.py::{test_id} PASSED" in run.stdout, run.stdout
    assert "4 passed" in run.stdout


def test_node_option_narrows_the_parameters(tmp_path):
    run = run_pytest(tmp_path, f"--svcnet-cluster={SEED}", "--svcnet-inventory=inv.yaml", "--svcnet-node=node2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_nodes[node2] PASSED" in run.stdout and "test_nodes[node1]" not in run.stdout


def test_plugin_is_inert_without_its_options(tmp_path):
    run = run_pytest(tmp_path)
    assert "test_mine.py::test_plain PASSED" in run.stdout
    assert "svcnet fixtures need --svcnet-cluster PATH and --svcnet-inventory PATH" in run.stdout
    assert run.returncode == 1


def test_bad_options_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999}]}\n")
    run = run_pytest(tmp_path, f"--svcnet-cluster={SEED}", f"--svcnet-cluster={bad}", "--svcnet-inventory=inv.yaml")
    assert run.returncode == 4 and "invalid cluster description" in run.stderr and f"{bad}:4:" in run.stderr
    alone = run_pytest(tmp_path, f"--svcnet-cluster={SEED}")
    assert alone.returncode == 4 and "must be given together" in alone.stderr
    assert "Traceback" not in run.stderr + alone.stderr
