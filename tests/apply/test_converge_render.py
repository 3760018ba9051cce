"""The apply renders probed hosts together, at most `forks` at a time, and drops texts once used.

The expected texts do not come from the function the apply calls: each node's restore input is
its hand-written golden (tests/golden/), and its jump rules and address-config script are what
`svcnet render --node` prints for that node alone.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from svcnet.apply.converge import Converge, HostState
from svcnet.cli.main import cli
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import NodeArtifacts
from svcnet.transport.protocol import ProbeAnswer

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
DESCRIPTION = GOLDEN / "etp-local.yaml"  # two nodes whose rules differ (only node1 has the endpoint)
STALE = "KUBE-SVC-GONEGONEGONEGONE"
LAST_NAT_RULE = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports;'


def converge(hosts: list[str], stale: dict[str, list[str]]) -> Converge:
    c = Converge()
    for h in hosts:
        c.hosts[h] = HostState(probe=ProbeAnswer.from_wire({"ok": True, "stale_chains": stale.get(h, [])}))
    c.render_queue = list(hosts)
    return c


def rendered_alone(host: str, flag: str) -> str:
    result = CliRunner().invoke(cli, ["render", "-f", str(DESCRIPTION), "--node", host, flag])
    assert result.exit_code == 0, result.output
    return result.stdout


def golden_restore(host: str, stale: str | None = None) -> str:
    """The hand-written restore input; with `stale`, as kube-proxy deletes a stale chain: declared
    with the nat chains and `-X`ed after the service rules, before KUBE-SERVICES' last rule
    (proxier.go's loop over existing chains runs before that rule is written)."""
    text = (GOLDEN / f"etp-local.{host}.rules").read_text()
    if stale is None:
        return text
    head, nat = text.split("*nat\n")
    decls = [ln for ln in nat.splitlines() if ln.startswith(":")]
    nat = nat.replace(decls[-1] + "\n", f"{decls[-1]}\n:{stale} - [0:0]\n", 1)
    nat = nat.replace(LAST_NAT_RULE, f"-X {stale}\n{LAST_NAT_RULE}", 1)
    return f"{head}*nat\n{nat}"


def assert_is(art: NodeArtifacts, host: str, stale: str | None = None) -> None:
    files = art.files()
    assert files["rules.restore"] == golden_restore(host, stale)
    assert files["jumps.rules"] == rendered_alone(host, "--jumps")
    assert files["netconf.sh"] == rendered_alone(host, "--netconf")


def test_batches_follow_forks_and_match_rendering_one_host_at_a_time():
    cluster = load_cluster([DESCRIPTION])
    stale = {"node2": [STALE]}
    for forks, after_first in ((1, ["node2"]), (10, [])):
        c = converge(["node1", "node2"], stale)
        desired1, send1 = c.take_rendered("node1", cluster, forks)
        assert c.render_queue == after_first  # forks=1: node2 waits for its own pass
        assert desired1 == send1
        assert_is(desired1, "node1")
        desired2, send2 = c.take_rendered("node2", cluster, forks)
        assert_is(desired2, "node2")
        assert_is(send2, "node2", STALE)  # what is sent also deletes the stale chain
        assert c.hosts["node1"].rendered is None and c.hosts["node2"].rendered is None  # dropped once taken


def test_a_host_probed_only_now_renders_alone():
    cluster = load_cluster([DESCRIPTION])
    c = converge(["node1", "node2"], {})
    c.render_queue = []  # as with --tags rules: nothing was probed before the task
    desired, send = c.take_rendered("node2", cluster, 10)
    assert desired == send
    assert_is(desired, "node2")
    assert c.hosts["node1"].rendered is None  # not rendered with it
