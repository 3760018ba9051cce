"""Which conntrack entries are stale (kube-proxy's CleanStaleEntries), and how the agent reads its request."""

from __future__ import annotations

import pytest

from svcnet.agent import node


def listed(orig_dst: str, dport: int, reply_src: str, sport: int, flags: str = "") -> str:
    """A line of `conntrack -L -p udp`: the original tuple, [flags], the reply tuple."""
    client = "192.168.56.254"
    return (f"udp      17 29 src={client} dst={orig_dst} sport={sport} dport={dport} {flags}"
            f"src={reply_src} dst={client} sport=8080 dport={sport} mark=0 use=1")


LISTING = "\n".join([
    listed("192.168.56.11", 30053, "10.244.2.9", 40053, "[ASSURED] "),
    listed("192.168.56.11", 30053, "10.244.1.5", 40054),
    listed("10.96.0.53", 53, "10.244.2.9", 5000, "[UNREPLIED] "),
    listed("10.96.0.53", 53, "10.244.1.5", 5001),
    listed("10.96.0.53", 53, "10.96.0.53", 5002),
    listed("10.96.0.53", 5353, "10.244.2.9", 5003),
    listed("203.0.113.7", 53, "10.244.2.9", 6000),
    listed("198.51.100.1", 53, "10.244.2.9", 6001),
    listed("192.168.56.11", 9999, "10.244.2.9", 6002),
]) + "\n"
# the resolver's UDP port: ClusterIP, an externalIP, an LB IP and a NodePort; one serving endpoint left
RESOLVER = {"protocol": "UDP", "port": 53, "vips": ["10.96.0.53", "203.0.113.7", "203.0.113.8"],
            "node_port": 30053, "endpoints": ["10.244.1.5"]}


def test_listing_gives_the_original_destination_and_the_reply_source():
    entries = node.parse_conntrack(LISTING + "conntrack v1.4.7 (conntrack-tools): 9 flow entries have been shown.\n")
    assert len(entries) == 9
    assert entries[0] == {"proto": "UDP", "orig_dst": "192.168.56.11", "orig_dport": "30053",
                          "reply_src": "10.244.2.9"}
    assert entries[2]["reply_src"] == "10.244.2.9"  # [UNREPLIED] between the tuples changes nothing


def test_stale_entries_are_those_toward_the_service_not_answered_by_a_serving_endpoint():
    filters = node.stale_conntrack_filters([RESOLVER], node.parse_conntrack(LISTING))
    assert filters == sorted([
        # the NodePort flow on the removed endpoint (the one from the issue)
        ("UDP", "--orig-port-dst", "30053", "--reply-src", "10.244.2.9"),
        # the ClusterIP flow DNATed to the removed endpoint
        ("UDP", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53", "--reply-src", "10.244.2.9"),
        # a flow from the time the port had no endpoints (REJECT): not DNATed, the VIP answers itself
        ("UDP", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53", "--reply-src", "10.96.0.53"),
        # the externalIP flow on the removed endpoint
        ("UDP", "--orig-dst", "203.0.113.7", "--orig-port-dst", "53", "--reply-src", "10.244.2.9"),
    ])
    # kept: flows on the serving endpoint, another port of the same VIP, addresses and ports of no service


def test_a_port_without_serving_endpoints_and_other_protocols_are_left_alone():
    entries = node.parse_conntrack(LISTING)
    assert node.stale_conntrack_filters([{**RESOLVER, "endpoints": []}], entries) == []
    assert node.stale_conntrack_filters([{**RESOLVER, "protocol": "SCTP"}], entries) == []
    tcp = node.parse_conntrack(LISTING.replace("udp      17", "tcp      6"))
    assert node.stale_conntrack_filters([RESOLVER], tcp) == []


def test_ports_sharing_a_vip_keep_each_others_flows():
    other = {"protocol": "UDP", "port": 5353, "vips": ["10.96.0.53"], "node_port": 0, "endpoints": ["10.244.2.9"]}
    filters = node.stale_conntrack_filters([RESOLVER, other], node.parse_conntrack(LISTING))
    assert not any("5353" in f for f in filters)  # 10.96.0.53:5353 answered by its own endpoint


def test_the_request_field_is_checked_and_canonical():
    got = node.as_conntrack("conntrack", [{**RESOLVER, "vips": ["fd00:0::1"], "endpoints": ["fd00::0:2"]}])
    assert got[0]["vips"] == ["fd00::1"] and got[0]["endpoints"] == ["fd00::2"]
    for bad in ({**RESOLVER, "protocol": "TCP"}, {**RESOLVER, "port": 0}, {**RESOLVER, "node_port": 70000},
                {**RESOLVER, "port": True}, {**RESOLVER, "vips": ["10.96.0.53; reboot"]},
                {**RESOLVER, "endpoints": ["-D"]}, {**RESOLVER, "extra": 1}, {"protocol": "UDP"}, "UDP"):
        with pytest.raises(node.AgentError, match="conntrack"):
            node.as_conntrack("conntrack", [bad])
    with pytest.raises(node.AgentError, match="conntrack"):
        node.as_conntrack("conntrack", RESOLVER)


def test_an_apply_request_carries_it_and_the_answer_reports_it():
    req = node.ApplyRequest.parse({"op": "apply", "artifacts": {node.RESTORE_FILE: ""}, "conntrack": [RESOLVER]})
    assert req.conntrack == [RESOLVER]
    assert node.ApplyRequest.parse({"op": "apply", "artifacts": {node.RESTORE_FILE: ""}}).conntrack is None
    wire = node.ChangeAnswer(True, True, "applied", conntrack_deleted=3).to_wire()
    assert wire["conntrack_deleted"] == 3 and "conntrack_error" not in wire
    assert "conntrack_deleted" not in node.ChangeAnswer(True, True, "applied").to_wire()


def test_the_cleanup_runs_conntrack_with_argv_and_counts_what_it_deleted(monkeypatch):
    calls: list[list[str]] = []

    def fake_run(argv, stdin=None, check=True, timeout=node.CMD_TIMEOUT, env=None):
        calls.append(argv)
        assert 0 < timeout <= node.CONNTRACK_BUDGET
        out = LISTING if argv[1] == "-L" else ""
        err = "conntrack v1.4.7 (conntrack-tools): {} flow entries have been {}.\n".format(
            1 if argv[1] == "-D" else 9, "deleted" if argv[1] == "-D" else "shown")
        return node.subprocess.CompletedProcess(argv, 0, out, err)

    monkeypatch.setattr(node, "run", fake_run)
    assert node.clean_conntrack([RESOLVER]) == (4, None)
    assert calls[0] == ["conntrack", "-L", "-f", "ipv4", "-p", "udp"]
    assert ["conntrack", "-D", "-f", "ipv4", "-p", "udp", "--orig-port-dst", "30053", "--reply-src",
            "10.244.2.9"] in calls


def test_a_failing_or_slow_cleanup_stops_and_says_why(monkeypatch):
    def failing(argv, stdin=None, check=True, timeout=node.CMD_TIMEOUT, env=None):
        if argv[1] == "-L":
            return node.subprocess.CompletedProcess(argv, 0, LISTING, "")
        return node.subprocess.CompletedProcess(argv, 1, "", "conntrack v1.4.7: Operation failed: invalid parameters")

    monkeypatch.setattr(node, "run", failing)
    deleted, error = node.clean_conntrack([RESOLVER])
    assert deleted == 0 and error is not None and "invalid parameters" in error
    monkeypatch.setattr(node, "run", lambda *a, **k: node.subprocess.CompletedProcess(a[0], 0, LISTING, ""))
    deleted, error = node.clean_conntrack([RESOLVER], budget=0)
    assert deleted == 0 and error is not None and "time" in error


def test_a_cleanup_that_stopped_short_is_recorded_for_the_probe_until_one_succeeds(monkeypatch, tmp_path):
    paths = node.Paths(str(tmp_path / "etc"), str(tmp_path / "state"), str(tmp_path / "run"))
    node.make_dir(paths.state)
    node.save_state(paths, {"applied_hash": {"rules": "r"}})
    req = node.ApplyRequest.parse({"op": "apply", "artifacts": {node.RESTORE_FILE: ""}, "conntrack": [RESOLVER],
                                   "etc_dir": paths.etc, "state_dir": paths.state, "run_dir": paths.run})
    plan = type("Plan", (), {"do_rules": True})()
    outcome = {"result": (1, "conntrack cleanup ran out of its time")}
    monkeypatch.setattr(node, "clean_conntrack", lambda ports: outcome["result"])

    assert node.conntrack_cleanup(req, plan) == {"conntrack_deleted": 1,
                                                 "conntrack_error": "conntrack cleanup ran out of its time"}
    assert node.load_state(paths) == {"applied_hash": {"rules": "r"}, node.CONNTRACK_PENDING_KEY: True}
    outcome["result"] = (2, None)
    assert node.conntrack_cleanup(req, plan) == {"conntrack_deleted": 2, "conntrack_error": None}
    assert node.load_state(paths) == {"applied_hash": {"rules": "r"}}  # retried: nothing pending any more

    assert node.conntrack_cleanup(req.replace(conntrack=None), plan) == {}
    assert node.conntrack_cleanup(req, type("Plan", (), {"do_rules": False})()) == {}  # a network-only apply


def test_the_cleanup_is_a_step_of_the_commit_before_the_confirmation_window_opens():
    steps = node.COMMIT_STEPS
    assert steps.index("record applied") < steps.index("conntrack") == steps.index("settle") - 1
