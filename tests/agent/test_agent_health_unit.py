"""The health-check server's answers and configuration, as pure functions (no server, no node)."""

from __future__ import annotations

import json
import textwrap

import pytest

from svcnet.agent import node

# kube-proxy's hcHandler.ServeHTTP (pkg/proxy/healthcheck/service_health.go): this template, filled
# with %q, %q, %d, %v, then dedent.Dedent and strings.Trim(..., "\n"). Reproduced step by step here.
GO_SERVICE_TEMPLATE = """
\t\t{
\t\t\t"service": {
\t\t\t\t"namespace": %q,
\t\t\t\t"name": %q
\t\t\t},
\t\t\t"localEndpoints": %d,
\t\t\t"serviceProxyHealthy": %v
\t\t}
\t\t"""


def go_service_body(namespace: str, name: str, count: int, healthy: bool) -> str:
    filled = (GO_SERVICE_TEMPLATE.replace("%q", json.dumps(namespace), 1).replace("%q", json.dumps(name), 1)
              .replace("%d", str(count)).replace("%v", "true" if healthy else "false"))
    return textwrap.dedent(filled).strip("\n")


@pytest.mark.parametrize(("count", "healthy", "status"), [(2, True, 200), (0, True, 503), (1, False, 503)])
def test_service_health_is_kube_proxys_status_and_body(count: int, healthy: bool, status: int) -> None:
    got = node.service_health_answer("shop", "web", count, healthy)
    assert got == (status, go_service_body("shop", "web", count, healthy))
    assert json.loads(got[1]) == {"service": {"namespace": "shop", "name": "web"}, "localEndpoints": count,
                                  "serviceProxyHealthy": healthy}


def test_go_time_is_gos_time_string_in_utc() -> None:
    assert node.go_time(None) == "0001-01-01 00:00:00 +0000 UTC"
    assert node.go_time(1_700_000_000 * 10**9) == "2023-11-14 22:13:20 +0000 UTC"
    assert node.go_time(1_700_000_000 * 10**9 + 120_000_000) == "2023-11-14 22:13:20.12 +0000 UTC"
    assert node.go_time(1_700_000_000 * 10**9 + 7) == "2023-11-14 22:13:20.000000007 +0000 UTC"


def test_healthz_and_livez_are_kube_proxys() -> None:
    now, last = 1_700_000_060 * 10**9, 1_700_000_000 * 10**9
    status, ctype, body = node.healthz_answer("/healthz", True, last, now)
    assert (status, ctype) == (200, "application/json")
    # healthy: lastUpdated is the current time, as kube-proxy shows it since it stopped tracking syncs
    assert body == ('{"lastUpdated": "2023-11-14 22:14:20 +0000 UTC","currentTime": "2023-11-14 22:14:20 +0000 UTC", '
                    '"nodeEligible": true}')
    assert node.healthz_answer("/healthz", False, last, now) == (503, "application/json", (
        '{"lastUpdated": "2023-11-14 22:13:20 +0000 UTC","currentTime": "2023-11-14 22:14:20 +0000 UTC", '
        '"nodeEligible": true}'))
    assert node.healthz_answer("/livez", False, None, now) == (503, "application/json", (
        '{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC","currentTime": "2023-11-14 22:14:20 +0000 UTC"}'))
    for path in ("/", "/healthz/", "/metrics"):  # Go's ServeMux: exact paths, else its 404
        assert node.healthz_answer(path, True, last, now) == (404, "text/plain; charset=utf-8", "404 page not found\n")


def test_the_proxy_is_healthy_while_its_rules_are_the_applied_ones() -> None:
    assert node.proxy_healthy("h1", "h1", None)
    assert not node.proxy_healthy("h1", "h2", None)  # broken by hand
    assert not node.proxy_healthy(None, "h2", None)  # never applied
    # an apply under way is kube-proxy's queued update: healthy until it is late
    assert node.proxy_healthy("h1", "h2", 5.0)
    assert not node.proxy_healthy("h1", "h2", node.HEALTH_TIMEOUT + 1)


CONF = {"healthz": "0.0.0.0:10256", "listen": ["192.168.56.11", "127.0.0.1"],
        "services": [{"namespace": "shop", "name": "web", "port": 30100, "localEndpoints": 1}]}


def test_listeners_of_a_configuration() -> None:
    assert node.parse_health(json.dumps(CONF)) == CONF
    assert node.health_listeners(CONF) == {
        ("0.0.0.0", 10256): ("healthz",),
        ("192.168.56.11", 30100): ("service", "shop", "web"),
        ("127.0.0.1", 30100): ("service", "shop", "web"),
    }
    assert node.health_listeners(node.parse_health("")) == {}  # no file: nothing to serve
    assert node.health_listeners({**CONF, "healthz": "", "services": []}) == {}


@pytest.mark.parametrize("change", [
    {"healthz": "0.0.0.0"}, {"healthz": "0.0.0.0:0"}, {"healthz": "999.0.0.1:10256"}, {"healthz": "x:1; rm"},
    {"listen": ["eth0"]}, {"extra": 1},
    {"services": [{"namespace": "shop", "name": "web", "port": 70000, "localEndpoints": 1}]},
    {"services": [{"namespace": "shop", "name": "we b", "port": 30100, "localEndpoints": 1}]},
    {"services": [{"namespace": "shop", "name": "web", "port": 30100, "localEndpoints": -1}]},
    {"services": [{"namespace": "shop", "name": "web", "port": 30100}]},
    {"services": [{"namespace": "shop", "name": "web", "port": True, "localEndpoints": 1}]},
])
def test_a_bad_configuration_is_refused(change: dict) -> None:
    with pytest.raises(node.AgentError, match=r"health\.json"):
        node.parse_health(json.dumps({**CONF, **change}))


def test_an_apply_with_a_bad_health_file_is_refused_before_anything_happens() -> None:
    answer = node.handle({"op": "apply", "artifacts": {"rules.restore": "", "health.json": "{"}})
    assert not answer["ok"] and "health.json: not JSON" in answer["msg"]


def test_a_health_server_that_does_not_serve_makes_the_rules_part_changed() -> None:
    from svcnet.transport import protocol

    probe = protocol.ProbeAnswer(True, "", applied_hash={"rules": "r", "network": "n"}, live_rules_hash="h",
                                 saved_rules_hash="h", netconf_ok=True)
    want = {"rules": "r", "network": "n"}
    assert probe.unchanged(want)
    stopped = protocol.ProbeAnswer.from_wire({"ok": True, "msg": "", "applied_hash": want, "live_rules_hash": "h",
                                              "saved_rules_hash": "h", "netconf_ok": True, "health_ok": False})
    assert not stopped.unchanged(want) and stopped.unchanged(want, ("network",))
