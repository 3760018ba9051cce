"""The node's health checks answer as kube-proxy's: the proxy's /healthz and /livez (healthy: the
live rules are the applied ones), and each LoadBalancer service's healthCheckNodePort (200 with the
node's local endpoint count where it has local ready endpoints, else 503)."""

from __future__ import annotations

import json

import pytest

from svcnet.desired import FAMILIES, HealthConf, desired_nodes
from svcnet.verify.context import VerifyContext, VerifyError

# Run on the node with the URLs on stdin: one bounded GET each, the answers as one JSON line.
FETCH = (
    "import sys,json,http.client,urllib.parse\n"
    "out=[]\n"
    "for u in json.load(sys.stdin):\n"
    " p=urllib.parse.urlsplit(u);c=http.client.HTTPConnection(p.hostname,p.port,timeout=5)\n"
    " try:\n"
    "  c.request('GET',p.path);r=c.getresponse()\n"
    "  out.append({'url':u,'status':r.status,'type':r.getheader('Content-Type'),"
    "'body':r.read(65536).decode('utf-8','replace')})\n"
    " except OSError as e:out.append({'url':u,'error':str(e) or type(e).__name__})\n"
    " finally:c.close()\n"
    "print(json.dumps(out))\n"
)
JSON_TYPE = "application/json"


def health_conf(ctx: VerifyContext, node: str) -> HealthConf:
    return desired_nodes(ctx.cluster, [node])[node].health


def asked_ip(ctx: VerifyContext, node: str, ip: str) -> str:
    """Where to ask a server listening on `ip`: the node's InternalIP when it listens on every address."""
    return ctx.cluster.node(node).internal_ip if ip in (f.any_ip for f in FAMILIES.values()) else ip


def url(host: str, port: int, path: str = "/") -> str:
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def fetch(ctx: VerifyContext, node: str, urls: list[str]) -> list[dict]:
    """GET each URL from the node itself (one remote command)."""
    result = ctx.run(node, ctx.gateway(node).python_command(FETCH), json.dumps(urls).encode())
    try:
        return list(json.loads(result.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise VerifyError(f"{node}: could not ask its health checks: {result.stderr.strip()[-300:]}") from None


def reached(node: str, answer: dict, what: str) -> dict:
    if "error" in answer:
        raise VerifyError(f"{node}: {what} at {answer['url']} does not answer: {answer['error']} "
                          "(is svcnet's health-check server running? re-apply to start it)")
    if answer.get("type") != JSON_TYPE:
        raise VerifyError(f"{node}: {what} at {answer['url']} answered {answer.get('status')} with "
                          f"Content-Type {answer.get('type')!r}, not {JSON_TYPE}")
    try:
        body = json.loads(answer["body"])
    except ValueError:
        raise VerifyError(f"{node}: {what} at {answer['url']}: the body is not JSON: "
                          f"{answer['body'][:200]!r}") from None
    return body if isinstance(body, dict) else {}


def test_proxy_healthz(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    conf = health_conf(svcnet_context, svcnet_node)
    if not conf.healthz:
        pytest.skip(f"{svcnet_node}: healthzBindAddress is empty: no proxy health endpoint")
    bind, _, port = conf.healthz.rpartition(":")
    ip = asked_ip(svcnet_context, svcnet_node, bind.strip("[]"))
    urls = [url(ip, int(port), path) for path in ("/healthz", "/livez")]
    for answer in fetch(svcnet_context, svcnet_node, urls):
        what = "the proxy's " + answer["url"].rsplit("/", 1)[-1]
        body = reached(svcnet_node, answer, what)
        if answer["status"] != 200 or not {"lastUpdated", "currentTime"} <= set(body):
            raise VerifyError(f"{svcnet_node}: {what} at {answer['url']} answered {answer['status']} "
                              f"{answer['body']!r}: the node's rules are not the applied ones (see the rules check)")


def test_service_health_checks(svcnet_context: VerifyContext, svcnet_node: str) -> None:
    conf = health_conf(svcnet_context, svcnet_node)
    if not conf.services:
        pytest.skip(f"{svcnet_node}: no LoadBalancer service with externalTrafficPolicy Local")
    if not conf.listen_ips:
        pytest.skip(f"{svcnet_node}: no node address inside nodePortAddresses: health checks listen nowhere")
    ip = asked_ip(svcnet_context, svcnet_node, conf.listen_ips[0])
    answers = fetch(svcnet_context, svcnet_node, [url(ip, s.port) for s in conf.services])
    wrong = []
    for s, answer in zip(conf.services, answers, strict=True):
        what = f"the health check of {s.namespace}/{s.name}"
        body = reached(svcnet_node, answer, what)
        want_status = 200 if s.local_endpoints else 503
        want = {"service": {"namespace": s.namespace, "name": s.name}, "localEndpoints": s.local_endpoints,
                "serviceProxyHealthy": True}
        if answer["status"] != want_status or body != want:
            wrong.append(f"{what} on port {s.port}: answered {answer['status']} {json.dumps(body)}, "
                         f"expected {want_status} {json.dumps(want)}")
    if wrong:
        raise VerifyError(f"{svcnet_node}: " + "; ".join(wrong))
