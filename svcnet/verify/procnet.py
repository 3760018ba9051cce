"""Listening ports from /proc/net/{tcp,tcp6,udp,udp6} text (pure; read inside a pod's netns)."""

from __future__ import annotations

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def listening_ports(text: str, udp: bool = False) -> set[int]:
    """Local ports in LISTEN (TCP) or bound and unconnected (UDP) state."""
    want = UDP_UNCONNECTED if udp else TCP_LISTEN
    ports = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1] or fields[3] != want:
            continue
        try:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except ValueError:
            continue
    return ports
