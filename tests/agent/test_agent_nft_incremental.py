"""nftables mode's incremental apply (node.nft_incremental): the difference between the recorded
rules.nft and the new one, as kube-proxy's partial sync writes it.

The pure tests read the statements; the kernel tests load scripts with the real `nft` into a fresh
network namespace of their own (`unshare -n`), never the host's, and compare `nft -s list table` in
the agent's normal form: a sequence of changes applied by difference must leave exactly the table a
full load of the last script makes. Scripts come from kube-proxy's vectors through svcnet's real path
(YAML → validate → model → render), so they are what the product sends.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import nftrealpath
import pytest
import yaml
from agentnode import apply_req, seed_artifacts
from nftscript import NODEPORT_CHANGE, nft_req, overall

from svcnet.agent import node
from svcnet.transport import protocol

HEAD = "add table ip kube-proxy\ndelete table ip kube-proxy\nadd table ip kube-proxy { comment \"x\" ; }\n"
BASE = HEAD + """add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy service-A
add chain ip kube-proxy endpoint-A1
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add element ip kube-proxy service-ips { 10.0.0.1 . tcp . 80 comment "ns/a:p" : goto service-A }
add rule ip kube-proxy nat-output ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy service-A goto endpoint-A1
add rule ip kube-proxy endpoint-A1 dnat to 10.1.0.1:80
"""

REPEATED = sorted((n for n in nftrealpath.names() if n.startswith("repeated-")),
                  key=lambda n: int(n.split("-")[1]))


def scripts(name: str, tmp_path: Path, edit=None) -> str:  # type: ignore[no-untyped-def]
    """The node's rules.nft for a kube-proxy vector through the real path (`edit` may change the vector)."""
    vec = nftrealpath.raw(name)
    for rewrite in nftrealpath.rewrites(vec):  # first: a rewrite names a service the edit may drop
        rewrite.apply(vec)
    if edit is not None:
        edit(vec)
    out = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    result = nftrealpath.run(vec, out, rewrite=False)
    assert result.errors == (), result.errors
    return result.script


# --------------------------------------------------------------------------- pure


def test_the_same_script_is_no_transaction():
    assert node.nft_incremental(BASE, BASE) == ""


def test_a_changed_endpoint_rewrites_its_chains_and_elements_only():
    new = (BASE.replace("endpoint-A1", "endpoint-A2").replace("10.1.0.1:80", "10.1.0.2:80")
           + "add element ip kube-proxy service-ips { 10.0.0.2 . tcp . 80 : goto service-A }\n")
    tx = node.nft_incremental(BASE, new)
    assert tx is not None
    assert tx.splitlines() == [
        "add chain ip kube-proxy endpoint-A2",
        "flush chain ip kube-proxy service-A",
        "flush chain ip kube-proxy endpoint-A1",
        "add element ip kube-proxy service-ips { 10.0.0.2 . tcp . 80 : goto service-A }",
        "add rule ip kube-proxy service-A goto endpoint-A2",
        "add rule ip kube-proxy endpoint-A2 dnat to 10.1.0.2:80",
        "delete chain ip kube-proxy endpoint-A1",
    ]


def test_a_map_element_whose_value_changes_is_deleted_by_key_then_added():
    new = BASE.replace('comment "ns/a:p" : goto service-A', 'comment "ns/a:p" : drop')
    assert node.nft_incremental(BASE, new) == (
        "delete element ip kube-proxy service-ips { 10.0.0.1 . tcp . 80 }\n"
        'add element ip kube-proxy service-ips { 10.0.0.1 . tcp . 80 comment "ns/a:p" : drop }\n')


@pytest.mark.parametrize("new", [
    BASE.replace("priority -100", "priority -99"),  # a base chain's hook
    BASE.replace('comment "x"', 'comment "y"'),  # the table's declaration
    BASE.replace("inet_service : verdict", "inet_service : verdict ; flags interval"),  # a map's type
    BASE + HEAD.replace(" ip ", " ip6 "),  # a family more
    BASE + "flush chain ip kube-proxy service-A\n",  # a verb the renderer does not write
    BASE + "add rule ip kube-proxy no-such-chain accept\n",  # a rule in an undeclared chain (nft says why)
    BASE + "add element ip kube-proxy no-such-set { 10.0.0.9 }\n",
])
def test_what_the_difference_cannot_express_is_the_full_transaction(new):
    assert node.nft_incremental(BASE, new) is None


def test_element_keys_ignore_comments_and_values():
    tables = node.nft_script_tables(HEAD + 'add map ip kube-proxy m { type ipv4_addr : verdict ; }\n'
                                    'add element ip kube-proxy m { 10.0.0.1 comment "a : b" : goto c, 10.0.0.2 }\n')
    assert tables is not None
    assert tables["ip"].elements == {("m", "10.0.0.1"): '10.0.0.1 comment "a : b" : goto c',
                                     ("m", "10.0.0.2"): "10.0.0.2"}


def test_kube_proxys_partial_syncs_write_small_transactions(tmp_path):
    """kube-proxy's TestSyncProxyRulesRepeated steps: each step after the first by difference."""
    steps = [scripts(n, tmp_path) for n in REPEATED]
    for before, after, name in zip(steps, steps[1:], REPEATED[1:], strict=False):
        tx = node.nft_incremental(before, after)
        assert tx is not None, name
        assert "table" not in tx, name  # never the table whole
        assert len(tx.splitlines()) < len(after.splitlines()) / 2, (name, tx)


def test_partial_syncs_are_no_larger_than_kube_proxys(tmp_path):
    """Each step's transaction against kube-proxy's own operation count for it (upstream_num_operations:
    its last transaction; kube-proxy deletes stale chains in one of their own, svcnet in the same one:
    those chains' flush and delete are left out of the count)."""
    steps = [(n, scripts(n, tmp_path)) for n in REPEATED]
    compared = 0
    for (_, before), (name, after) in itertools.pairwise(steps):
        upstream = (nftrealpath.raw(name).get("sync") or {}).get("upstream_num_operations")
        tx = (node.nft_incremental(before, after) or "").splitlines()
        deleted = {ln.split()[-1] for ln in tx if ln.startswith("delete chain ")}
        ops = [ln for ln in tx if not (ln.startswith(("flush chain ", "delete chain ")) and ln.split()[-1] in deleted)]
        if upstream is not None:
            assert len(ops) <= upstream, (name, tx)
            compared += 1
    assert compared >= 9


# --------------------------------------------------------------------------- the kernel

needs_nft = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="needs root, nft and unshare for a scratch network namespace")


def listing_after(*transactions: str) -> str:
    """The normal form of `ip kube-proxy` after loading `transactions` one by one into a fresh netns."""
    files = []
    try:
        for tx in transactions:
            fd, path = tempfile.mkstemp(suffix=".nft")
            with os.fdopen(fd, "w") as f:
                f.write(tx)
            files.append(path)
        cmd = " && ".join([*(f"nft -f {p}" for p in files), "nft -s list table ip kube-proxy"])
        proc = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        for path in files:
            os.unlink(path)
    assert proc.returncode == 0, proc.stderr
    return node.nft_normal(proc.stdout)


def applied_by_difference(first: str, later: list[str]) -> tuple[list[str], int]:
    """The transactions the agent writes for `first` and then each of `later`, and how many were partial."""
    out, partial = [first], 0
    for before, after in zip([first, *later], later, strict=False):
        tx = node.nft_incremental(before, after)
        partial += tx is not None
        out.append(after if tx is None else tx)
    return out, partial


@needs_nft
def test_kube_proxys_repeated_steps_by_difference_leave_the_full_table(tmp_path):
    steps = [scripts(n, tmp_path) for n in REPEATED]
    for n in range(1, len(steps)):
        txs, partial = applied_by_difference(steps[0], steps[1:n + 1])
        assert partial == n
        assert listing_after(*txs) == listing_after(steps[n]), REPEATED[n]


def _random_edit(rng: random.Random, vec: dict) -> None:
    """A random subset of the vector's services and EndpointSlices, some endpoints dropped or moved."""
    services = vec.get("services") or []
    vec["services"] = [s for s in services if rng.random() < 0.8] or services[:1]
    kept = {(s["namespace"], s["name"]) for s in vec["services"]}
    slices = []
    for sl in vec.get("endpoint_slices") or []:
        if (sl["namespace"], sl["service"]) not in kept or rng.random() < 0.15:
            continue
        sl = yaml.safe_load(yaml.safe_dump(sl))
        eps = sl.get("endpoints") or []
        if eps and rng.random() < 0.4:
            eps.pop(rng.randrange(len(eps)))
        slices.append(sl)
    vec["endpoint_slices"] = slices


@needs_nft
@pytest.mark.parametrize("seed", range(3))
def test_random_edits_by_difference_leave_the_table_a_full_apply_makes(tmp_path, seed):
    rng = random.Random(seed)
    names = ["overall", "overall", "load-balancer", "etp-local", "clusterip-general", "no-endpoints-reject"]
    seq = [scripts(rng.choice(names), tmp_path, lambda v: _random_edit(rng, v)) for _ in range(6)]
    txs, partial = applied_by_difference(seq[0], seq[1:])
    assert partial >= 2, "the edits must exercise the partial path"
    assert listing_after(*txs) == listing_after(seq[-1])


# --------------------------------------------------------------------------- the agent


def nft_apply_logged(snode, tmp_path, run_id: str, script: str) -> str:  # type: ignore[no-untyped-def]
    """Apply `script` with the real agent on the scratch node; its log (stderr)."""
    proc = snode.agent_proc(nft_req(apply_req(snode, seed_artifacts(tmp_path), run_id), script))
    answer = protocol.parse_response(proc.stdout, snode.ns)
    assert answer["ok"] and answer["changed"], answer
    return proc.stderr


@pytest.mark.lab
@needs_nft
def test_the_agent_applies_by_difference_unless_the_live_table_drifted(snode, tmp_path):
    def live() -> str:
        return node.nft_normal(snode.sh(["nft", "-s", "list", "table", "ip", node.NFT_TABLE]).stdout)

    assert "nft: full transaction" in nft_apply_logged(snode, tmp_path, "r1", overall())  # first apply
    assert "nft: incremental transaction" in nft_apply_logged(snode, tmp_path, "r2", overall(NODEPORT_CHANGE))
    assert live() == listing_after(overall(NODEPORT_CHANGE))
    # drift: someone adds a rule to svcnet's table; the difference would keep it, so the table goes whole
    snode.sh(["nft", "add", "rule", "ip", node.NFT_TABLE, "nat-output", "meta", "mark", "0x99", "accept"])
    log = nft_apply_logged(snode, tmp_path, "r3", overall())
    assert "nft: full transaction" in log and "incremental" not in log, log
    assert live() == listing_after(overall()) and "0x99" not in live()


def test_nft_commands_get_time_in_proportion_to_the_script():
    """A whole table at 10,000 services (204k lines) took 205 s to load: beyond the agent's CMD_TIMEOUT."""
    assert node.nft_timeout("add rule ip kube-proxy x accept\n") < node.CMD_TIMEOUT + 1
    assert node.nft_timeout("add rule ip kube-proxy x accept\n" * 204_050) > 3 * 205
    assert node.nft_timeout(None) > node.CMD_TIMEOUT  # a listing of such a table
