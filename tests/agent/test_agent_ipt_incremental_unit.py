"""When the agent restores partially (iptables mode), without a node: ipt_sync_plan's choice."""

from __future__ import annotations

import json
from pathlib import Path

from svcnet.agent import node

OLD = """*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-SEP-A1 - [0:0]
:KUBE-SVC-BBBB - [0:0]
:KUBE-SEP-B1 - [0:0]
-A KUBE-SERVICES -m comment --comment "ns/a:p cluster IP" -j KUBE-SVC-AAAA
-A KUBE-SERVICES -m comment --comment "ns/b:p cluster IP" -j KUBE-SVC-BBBB
-A KUBE-SVC-AAAA -j KUBE-SEP-A1
-A KUBE-SEP-A1 -j DNAT --to-destination 10.0.0.1:80
-A KUBE-SVC-BBBB -j KUBE-SEP-B1
-A KUBE-SEP-B1 -j DNAT --to-destination 10.0.0.2:80
COMMIT
"""
NEW = OLD.replace("10.0.0.2:80", "10.0.0.3:80")


def _plan(tmp_path: Path, record: object, mode: str = node.MODE_IPTABLES, live: str = "h", saved: object = "h"):
    paths = node.Paths(str(tmp_path / "etc"), str(tmp_path), str(tmp_path / "run"))
    if record is not None:
        (tmp_path / node.IPT_RECORD_FILE).write_text(json.dumps(record))
    return node.ipt_sync_plan(paths, mode, NEW, live, saved, node.ipt_record(NEW))


def test_partial_only_when_the_live_rules_are_the_recorded_ones(tmp_path: Path) -> None:
    good = {"for": "h", "services": node.ipt_record(OLD)}
    text, keep, sync = _plan(tmp_path, good)
    assert sync == node.SYNC_PARTIAL and keep == {"KUBE-SVC-AAAA", "KUBE-SEP-A1"}
    assert "KUBE-SEP-B1 -j DNAT --to-destination 10.0.0.3:80" in text and "KUBE-SEP-A1" not in text
    assert "-A KUBE-SERVICES" in text and "*filter" in text
    (tmp_path / node.IPT_RECORD_FILE).unlink()
    assert _plan(tmp_path, None) == (NEW, frozenset(), node.SYNC_FULL)  # a first apply, or after a failed one


def test_full_on_drift_a_first_apply_another_mode_or_a_record_of_another_state(tmp_path: Path) -> None:
    good = {"for": "h", "services": node.ipt_record(OLD)}
    full = (NEW, frozenset(), node.SYNC_FULL)
    assert _plan(tmp_path, good, live="drifted") == full
    assert _plan(tmp_path, good, saved=None) == full
    assert _plan(tmp_path, good, mode=node.MODE_NFTABLES) == full
    assert _plan(tmp_path, {"for": "other", "services": good["services"]}) == full
    assert _plan(tmp_path, {"for": "h", "services": {"ns/a": "not a record"}}) == full


def test_removed_services_chains_are_flushed_and_deleted(tmp_path: Path) -> None:
    gone = "".join(ln + "\n" for ln in NEW.splitlines() if "BBBB" not in ln and "B1" not in ln)
    text, keep = node.ipt_partial_restore(gone, node.ipt_record(OLD))
    assert keep == {"KUBE-SVC-AAAA", "KUBE-SEP-A1"}
    tail = text.splitlines()[-5:]
    assert set(tail[:2]) == {":KUBE-SVC-BBBB - [0:0]", ":KUBE-SEP-B1 - [0:0]"}
    assert set(tail[2:4]) == {"-X KUBE-SVC-BBBB", "-X KUBE-SEP-B1"} and tail[4] == "COMMIT"
