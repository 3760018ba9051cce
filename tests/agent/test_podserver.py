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
