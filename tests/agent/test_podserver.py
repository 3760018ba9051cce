"""The pod server starts without any DNS lookup (pods may have no reachable resolver)."""

from __future__ import annotations

import socket

import pytest

from svcnet.agent import podserver


def test_bind_makes_no_dns_lookup(monkeypatch: pytest.MonkeyPatch):
    def no_dns(*args: object) -> str:
        raise AssertionError("the pod server must not resolve names")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    monkeypatch.setattr(socket, "gethostbyaddr", no_dns)
    server = podserver.BoundedServer(("127.0.0.1", 0), podserver.Handler)
    try:
        assert server.server_name == "127.0.0.1" and server.server_port > 0
    finally:
        server.server_close()


def test_ipv6_listener_answers_beside_ipv4_and_reports_its_own_family(monkeypatch: pytest.MonkeyPatch):
    """A dual-stack pod is reached over both families: the IPv6 listener (IPv6 only, so IPv4
    clients keep plain addresses) answers, and whoami names the pod's IPv6 address, not POD_IP."""
    import http.client
    import json

    monkeypatch.setenv("POD_IP", "10.244.1.5")
    server6 = podserver.start_ipv6(0, udp=False, sctp=False)
    if server6 is None:
        pytest.skip("no IPv6 here")
    try:
        assert server6.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        conn = http.client.HTTPConnection("::1", server6.server_port, timeout=5)
        conn.request("GET", "/whoami")
        doc = json.loads(conn.getresponse().read())
        conn.close()
        assert doc["ip"] == "::1" and doc["client_ip"] == "::1"
    finally:
        server6.shutdown()
        server6.server_close()
