"""`svcnet render`: `--out DIR` (write_artifacts), `--canonical`, and a DIR it cannot write."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from fakegateway import Fleet
from labrun import REPO, SEED, svcnet

from svcnet.cli.tasks import registry
from svcnet.playbook.model import NETWORK, PREFLIGHT, RULES, VALIDATE, Play, Task
from svcnet.playbook.runner import Options, Runner
from svcnet.render.dump import canonical_sort
from svcnet.transport.inventory import load_inventory

NODES = ("node1", "node2")
FILES = ("health.json", "jumps.rules", "netconf.sh", "netconf.state", "rules.restore")
SENT = ("health.json", "jumps.rules", "netconf.sh", "rules.restore")  # what an apply request carries as files
GOLDEN = REPO / "tests" / "golden"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def applied(tmp_path: Path) -> Fleet:
    """A whole apply (validate, preflight, network, rules) of the seed to fake nodes: what it sends."""
    (tmp_path / "hosts.ini").write_text("\n".join(NODES) + "\n")
    tasks = tuple(Task(name=v, action=v, tags=frozenset({v})) for v in (VALIDATE, PREFLIGHT, NETWORK, RULES))
    fleet = Fleet(NODES)
    runner = Runner(load_inventory(tmp_path / "hosts.ini"), Options(), registry(), fleet.connect, out=io.StringIO())
    assert runner.run([Play("site", "all", (SEED,), tasks)]) == 0
    return fleet


def state_text(netconf: dict) -> str:
    """netconf.state as the apply's `netconf` payload describes the same address config."""
    lines = [f"sysctl {s['key']} = {s['value']}" + (" (if present)" if s["optional"] else "")
             for s in netconf["sysctls"]]
    lines.append(f"bridge {netconf['bridge']} {netconf['bridge_address']}")
    lines += [f"route {r['dst']} via {r['via']}" for r in netconf["routes"]]
    lines += [f"pod {p['namespace']}/{p['name']} netns {p['netns']} veth {p['veth']} {p['address']} via {p['gateway']}"
              for p in netconf["pods"]]
    return "\n".join(lines) + "\n"


def test_out_writes_each_nodes_files_as_apply_sends_them(tmp_path, umask_022):
    out = tmp_path / "out"
    run = svcnet("render", "-f", str(SEED), "--out", str(out))
    assert run.rc == 0, run.err
    assert run.out == "" and run.err == f"wrote 10 file(s) for 2 node(s) under {out}\n"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert written == sorted([*NODES, *(f"{n}/{f}" for n in NODES for f in FILES)])
    for n in NODES:
        for f in FILES:
            mode = (out / n / f).stat().st_mode
            assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644, (n, f, oct(mode))  # the umask's, no x bit

    fleet = applied(tmp_path)
    for n in NODES:
        (sent,) = fleet.sent(n, "apply")
        assert {f: (out / n / f).read_text() for f in SENT} == sent["artifacts"]
        assert (out / n / "netconf.state").read_text() == state_text(sent["netconf"])
    # from the seed's cluster.yaml: node1's bridge and its route to node2's pods
    state1 = (out / "node1" / "netconf.state").read_text().splitlines()
    assert "bridge cni0 10.244.1.1/24" in state1 and "route 10.244.2.0/24 via 192.168.56.12" in state1


def test_out_into_an_existing_tree_rewrites_the_files_and_leaves_others(tmp_path):
    out = tmp_path / "out"
    (out / "node1").mkdir(parents=True)
    (out / "node1" / "rules.restore").write_text("old\n")
    (out / "notes.txt").write_text("mine\n")
    assert svcnet("render", "-f", str(SEED), "--out", str(out)).rc == 0
    assert (out / "node1" / "rules.restore").read_text().startswith("*filter\n")
    assert (out / "notes.txt").read_text() == "mine\n"


def test_write_artifacts_returns_the_files_it_wrote(tmp_path):
    from svcnet.model.load import load_cluster
    from svcnet.render.artifacts import node_artifacts_all, write_artifacts

    paths = write_artifacts(node_artifacts_all(load_cluster([SEED]), ["node2"]), tmp_path)
    assert sorted(paths) == [tmp_path / "node2" / f for f in FILES]
    assert not (tmp_path / "node1").exists()


@pytest.mark.parametrize("name", ["multi-port-protocols", "loadbalancer-source-ranges"])
def test_canonical_is_the_canonical_sort_of_the_plain_output(name):
    description = GOLDEN / f"{name}.yaml"
    plain = svcnet("render", "-f", str(description), "--node", "node1")
    canonical = svcnet("render", "-f", str(description), "--node", "node1", "--canonical")
    assert plain.rc == canonical.rc == 0, plain.err + canonical.err
    assert plain.out == (GOLDEN / f"{name}.node1.rules").read_text()  # hand-written, not svcnet's
    assert canonical.out == canonical_sort(plain.out) != plain.out
    assert sorted(canonical.out.splitlines()) == sorted(plain.out.splitlines())  # the same lines, reordered


def _file_at_node_dir(out: Path) -> str:
    out.mkdir()
    (out / "node1").write_text("")  # a file where node1's directory goes
    return str(out / "node1")


def _dir_at_rules_file(out: Path) -> str:
    (out / "node2" / "rules.restore").mkdir(parents=True)  # a directory where a file goes
    return str(out / "node2" / "rules.restore")


def _under_a_file(out: Path) -> str:
    out.write_text("")  # --out DIR/sub where DIR is a file
    return str(out / "sub" / "node1")


@pytest.mark.parametrize("make", [_file_at_node_dir, _dir_at_rules_file, _under_a_file],
                         ids=["file-at-node-dir", "dir-at-rules-file", "under-a-file"])
def test_an_unwritable_out_is_a_located_error_without_traceback(tmp_path, make):
    out = tmp_path / "out"
    culprit = make(out)
    target = out / "sub" if make is _under_a_file else out
    run = svcnet("render", "-f", str(SEED), "--out", str(target))
    assert run.rc == 1, run.out + run.err
    assert "Traceback" not in run.err and run.out == ""
    (line,) = run.err.splitlines()
    assert line.startswith(f"svcnet: cannot write {culprit}: "), line


def test_out_naming_an_existing_file_is_a_usage_error(tmp_path):
    (tmp_path / "out").write_text("")
    run = svcnet("render", "-f", str(SEED), "--out", str(tmp_path / "out"))
    assert run.rc == 2 and "Traceback" not in run.err
    assert f"Directory '{tmp_path / 'out'}' is a file" in run.err


def test_family_4_prints_what_the_default_prints_for_a_single_stack_node():
    default = svcnet("render", "-f", str(SEED), "--node", "node1")
    v4 = svcnet("render", "-f", str(SEED), "--node", "node1", "--family", "4")
    assert default.rc == v4.rc == 0 and v4.out == default.out
    assert not default.out.startswith("#")  # one family: no header, as before


def test_family_6_on_a_node_without_ipv6_rules_says_so():
    run = svcnet("render", "-f", str(SEED), "--node", "node1", "--family", "6")
    assert run.rc == 1 and run.out == "" and "Traceback" not in run.err
    assert run.err == "svcnet: node node1 has no IPv6 rules (the description has no IPv6 serviceCIDR)\n"


@pytest.mark.parametrize("extra", [("--jumps",), ("--netconf",)])
def test_family_selects_the_restore_input_only(extra):
    run = svcnet("render", "-f", str(SEED), "--node", "node1", "--family", "4", *extra)
    assert run.rc == 2 and "Traceback" not in run.err and "--family" in run.err


def test_family_with_out_is_a_usage_error(tmp_path):
    run = svcnet("render", "-f", str(SEED), "--out", str(tmp_path / "out"), "--family", "6")
    assert run.rc == 2 and not (tmp_path / "out").exists()


def test_both_families_are_printed_apart_and_each_alone_on_request():
    """What `render --node` prints for a dual-stack node (the CLI refuses IPv6 until apply does it:
    the text comes from the function it prints, with the gate lifted)."""
    from svcnet.model.load import check_paths
    from svcnet.render.artifacts import FAMILY_HEADERS, node_artifacts, restore_text

    checked = check_paths([GOLDEN / "dual-stack.yaml"], ipv6=True)
    assert checked.build is not None
    art = node_artifacts(checked.build.cluster, "node1")
    v4, v6 = (GOLDEN / "dual-stack.node1.rules").read_text(), (GOLDEN / "dual-stack.node1.rules6").read_text()
    assert restore_text(art) == FAMILY_HEADERS[4] + v4 + FAMILY_HEADERS[6] + v6
    assert FAMILY_HEADERS == {4: "# IPv4: iptables-restore input\n", 6: "# IPv6: ip6tables-restore input\n"}
    assert (restore_text(art, 4), restore_text(art, 6)) == (v4, v6)
    assert restore_text(art, 6, canonical_sort) == canonical_sort(v6)
    assert art.files()["rules6.restore"] == v6


def test_render_out_writes_the_ipv6_restore_next_to_the_ipv4_one(tmp_path):
    from svcnet.model.load import check_paths
    from svcnet.render.artifacts import RESTORE6_FILE, node_artifacts_all, write_artifacts

    checked = check_paths([GOLDEN / "dual-stack.yaml"], ipv6=True)
    assert checked.build is not None
    write_artifacts(node_artifacts_all(checked.build.cluster), tmp_path)
    assert (tmp_path / "node1" / RESTORE6_FILE).read_text() == (GOLDEN / "dual-stack.node1.rules6").read_text()
    assert RESTORE6_FILE == "rules6.restore"


@pytest.mark.parametrize("flag", ["--canonical", "--jumps", "--netconf"])
def test_out_with_a_print_only_flag_is_a_usage_error_and_writes_nothing(tmp_path, flag):
    """These flags choose what --node prints; with --out they were silently ignored."""
    run = svcnet("render", "-f", str(SEED), "--out", str(tmp_path / "out"), flag)
    assert run.rc == 2 and "Traceback" not in run.err, run.out + run.err
    assert "--out writes every file as applied" in run.err
    assert not (tmp_path / "out").exists()
