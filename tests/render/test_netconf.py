"""The address config: desired state per node and its idempotent, quoted script."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

from svcnet.agent import node
from svcnet.desired import node_netconf
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.render.netconf import OWNER_ALIAS, ROUTE_PROTO, render_script, state_lines

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_seed_node_netconf():
    c = load_cluster([SEED])
    conf = node_netconf(c, c.node("node1"))
    assert conf.bridge == "cni0" and conf.bridge_address == "10.244.1.1/24"
    assert [(r.dst, r.via) for r in conf.routes] == [("10.244.2.0/24", "192.168.56.12")]
    (pod,) = conf.pods
    assert pod.name == "k8s-test-vrr9srwrpk-zfftc"
    # README: a pod IP probes from a slot given by a hash of its own name; node1's podCIDR
    # 10.244.1.0/24 leaves .2-.254 (253 hosts: .1 is the bridge), and nothing else is taken.
    slot = int.from_bytes(hashlib.sha256(f"k8s-test/{pod.name}".encode()).digest()[:8], "big") % 253
    assert pod.address == f"10.244.1.{2 + slot}/24" == "10.244.1.240/24"
    assert pod.gateway == "10.244.1.1"
    assert len(pod.veth) <= 15
    assert pod.command[:2] == ("python3", "/var/lib/svcnet/podserver.py")
    assert {s.key for s in conf.sysctls} >= {"net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet"}


def test_script_lines_parse_as_shell_words_and_are_idempotent_forms():
    c = load_cluster([SEED])
    conf = node_netconf(c, c.node("node2"))
    script = render_script(conf)
    pod_ns = conf.pods[0].netns
    for line in script.splitlines():
        if line and not line.startswith("#"):
            shlex.split(line)  # every line is valid, fully quoted shell (or `ip -batch` input)
    batches = re.findall(r"^(ip (?:-n \S+ )?-batch -) <<'(\w+)'\n(.*?)^\2$", script, re.M | re.S)
    assert [b[0] for b in batches] == ["ip -batch -", "ip -batch -", f"ip -n {pod_ns} -batch -"]
    assert batches[0][2].splitlines() == ["addr replace 10.244.2.1/24 dev cni0", "link set dev cni0 up",
                                          "route replace 10.244.1.0/24 via 192.168.56.11 proto 115"]
    assert "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.route_localnet=1" in script
    # no bare "ip addr add" / "ip route add" that would fail on a second run
    assert "addr add" not in script and "route add" not in script


def test_state_lines_are_stable():
    c = load_cluster([SEED])
    a = state_lines(node_netconf(c, c.node("node1")))
    b = state_lines(node_netconf(load_cluster([SEED]), c.node("node1")))
    assert a == b and any(x.startswith("bridge cni0 ") for x in a)


def test_artifacts_for_every_node(tmp_path: Path):
    arts = node_artifacts_all(load_cluster([GOLDEN / "etp-local.yaml"]))
    assert set(arts) == {"node1", "node2"}
    for name, art in arts.items():
        files = art.files()
        assert set(files) == {"rules.restore", "jumps.rules", "netconf.sh", "netconf.state", "health.json"}
        assert files["rules.restore"] == (GOLDEN / f"etp-local.{name}.rules").read_text()  # written by hand
    assert arts["node1"].files()["netconf.state"] == (
        "sysctl net.ipv4.ip_forward = 1\n"
        "sysctl net.ipv4.conf.all.route_localnet = 1\n"
        "sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)\n"
        "bridge cni0 10.244.1.1/24\n"
        "route 10.244.2.0/24 via 192.168.56.12\n")


def test_the_agent_knows_the_marks_the_script_sets():
    # The agent is one stdlib-only file shipped as text: it holds its own copies of the marks.
    assert (node.OWNER_ALIAS, node.ROUTE_PROTO) == (OWNER_ALIAS, ROUTE_PROTO)


def test_the_script_marks_what_it_creates_and_only_that():
    c = load_cluster([SEED])
    conf = node_netconf(c, c.node("node1"))
    script = render_script(conf)
    # each link is created only where absent, and marked right after; `svcnet_owns` stops the script
    # at an existing link without the mark, so no existing link is adopted
    created = re.findall(r"^if ! svcnet_owns (\S+); then\s+ip link add \1 [^;\n]*[;\n]\s*"
                         r"ip link set dev \1 alias (\S+?);?\s+fi$", script, re.M)
    assert sorted(created) == sorted((dev, OWNER_ALIAS) for dev in [conf.bridge, *(p.veth for p in conf.pods)])
    assert len(re.findall(r"\balias " + re.escape(OWNER_ALIAS) + r"(;|$)", script, re.M)) == len(created)
    assert "ip link show dev" not in script
    routes = [ln for ln in script.splitlines() if ln.startswith("route replace") and " default " not in ln]
    assert routes and all(ln.endswith(f" proto {ROUTE_PROTO}") for ln in routes)
    assert f"*\'\"ifalias\":\"{OWNER_ALIAS}\"\'*) return 0 ;;" in script


DUAL_STACK = SEED.parent / "dual-stack"


def dual_stack_conf(name: str = "node1"):
    from svcnet.model.load import check_paths

    checked = check_paths([DUAL_STACK])
    assert checked.build is not None and checked.ok
    return node_netconf(checked.build.cluster, checked.build.cluster.node(name))


def test_dual_stack_node_gets_both_families():
    conf = dual_stack_conf()
    assert conf.bridge_addresses == ("10.244.1.1/24", "fd00:10:244:1::1/64")
    # host-gw per family: the other node's podCIDR of each family via its address of that family
    assert [(r.dst, r.via) for r in conf.routes] == [("10.244.2.0/24", "192.168.56.12"),
                                                   ("fd00:10:244:2::/64", "fd00:56::12")]
    (pod,) = conf.pods
    (v4, gw4), (v6, gw6) = pod.addresses
    assert v4.endswith("/24") and gw4 == "10.244.1.1"
    assert v6.startswith("fd00:10:244:1:") and v6.endswith("/64") and gw6 == "fd00:10:244:1::1"
    keys = [s.key for s in conf.sysctls]
    assert keys.index("net.ipv4.ip_forward") < keys.index("net.ipv6.conf.all.forwarding")
    assert "net.bridge.bridge-nf-call-ip6tables" in keys
    assert conf.ra_addresses == ("fd00:56::11",)


def test_dual_stack_script_adds_ipv6_without_dad_and_keeps_ras_before_forwarding():
    conf = dual_stack_conf()
    script = render_script(conf)
    (pod,) = conf.pods
    assert "addr replace fd00:10:244:1::1/64 dev cni0 nodad\n" in script
    assert "addr replace 10.244.1.1/24 dev cni0\n" in script  # IPv4 has no DAD: as before
    assert f"addr replace {pod.second_address} dev eth0 nodad\n" in script
    assert "route replace default via fd00:10:244:1::1\n" in script
    assert "route replace fd00:10:244:2::/64 via fd00:56::12 proto 115\n" in script
    # accept_ra=2 before forwarding: turning forwarding on deletes RA-learned default routes elsewhere
    assert script.index("svcnet_keep_ra fd00:56::11") < script.index("net.ipv6.conf.all.forwarding=1")
    lines = state_lines(conf)
    assert "bridge cni0 fd00:10:244:1::1/64" in lines
    assert sum(ln.startswith(f"pod k8s-test/{pod.name} ") for ln in lines) == 2


def test_single_stack_netconf_is_as_before_dual_stack():
    c = load_cluster([SEED])
    conf = node_netconf(c, c.node("node1"))
    commands = "\n".join(ln for ln in render_script(conf).splitlines() if not ln.lstrip().startswith("#"))
    assert conf.bridge_addresses == ("10.244.1.1/24",) and conf.ra_addresses == ()
    assert "nodad" not in commands and "accept_ra" not in commands and "ipv6" not in commands
