"""svcnet traffic probe: bounded HTTP, UDP and SCTP requests and connects, run on a node (stdlib, Python 3.9+).

Shipped over SSH like the agent: `python3 -c BOOTSTRAP` with {"probe": <this source>, "request":
{...}} on stdin prints one JSON line. Every request is a new connection or a new UDP socket (so
kube-proxy's random endpoint choice applies to each), with a per-request timeout, an overall
deadline and a cap on timeouts: a probe never runs longer than `deadline` seconds.

Requests (op "http" over TCP, "udp" one datagram each, "sctp" one association each):
  {"op": "http"|"udp"|"sctp", "host": IP, "port": N, "count": N, "timeout": S, "deadline": S,
   "max_timeouts": N, "retry_timeouts": N, "whoami": bool, "source": IP?, "path": "/"?}
   -> {"ok", "sent", "answers": {pod: n}, "errors": {kind: n}, "client_ips": [...],
       "stopped": reason or "", "retried": n, "seconds"}
  {"op": "connect", "protocol": "tcp"|"udp"|"sctp", "host": IP, "port": N, "timeout": S, "source": IP?}
   -> {"ok", "outcome", "seconds"}
"whoami" asks the pod for the client address it saw (HTTP path /whoami, else the message "whoami");
"source" sends from that local address. Where this kernel has no SCTP sockets an SCTP request
answers {"ok": true, "unsupported": reason} without sending anything.
Error kinds: refused, timeout, reset, unreachable, bad-response, other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import sys
import time

MAX_COUNT = 5000
MAX_DEADLINE = 120.0
MAX_RESPONSE = 65536
UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH)
NO_PROTOCOL = (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT)
IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
WHOAMI = b"whoami"
NAME = b"name"
UDP_RESEND = 0.5  # seconds between datagrams while waiting for a REJECT (ICMP errors are rate-limited)


class Unsupported(Exception):
    """This kernel cannot open the socket a request needs (no SCTP)."""


def classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in UNREACHABLE:
        return "unreachable"
    return "other"


def new_socket(host: str, kind: int, proto: int = 0, source: str = "") -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind, proto)
    except OSError as exc:
        if proto == IPPROTO_SCTP and exc.errno in NO_PROTOCOL:
            raise Unsupported(f"the kernel where the probe runs has no SCTP sockets ({exc.strerror})") from None
        raise
    if source:
        try:
            sock.bind((source, 0))
        except OSError:
            sock.close()
            raise
    return sock


def check_source(req: dict) -> None:
    """A "source" must be an address of this machine: else the request itself is wrong, not the path."""
    source = str(req.get("source") or "")
    if not source:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
    except OSError as exc:
        raise ValueError(f"cannot send from {source}: {exc.strerror}") from None


def parse_answer(text: str, whoami: bool) -> tuple[str, dict]:
    """("ok", {"pod", "client_ip"?}) from a pod's answer, or ("bad-response", {})."""
    if not whoami:
        return ("ok", {"pod": text}) if text else ("bad-response", {})
    try:
        info = json.loads(text)
        return "ok", {"pod": str(info.get("pod", "")), "client_ip": str(info.get("client_ip", ""))}
    except (ValueError, AttributeError):
        return "bad-response", {}


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < MAX_RESPONSE:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def ask_http(req: dict, timeout: float) -> tuple[str, dict]:
    """One GET over a new TCP connection: ("ok", {"pod", "client_ip"?}) or (error kind, {})."""
    host, path = str(req["host"]), "/whoami" if req.get("whoami") else str(req.get("path") or "/")
    source = (str(req["source"]), 0) if req.get("source") else None
    try:
        with socket.create_connection((host, int(req["port"])), timeout=timeout, source_address=source) as sock:
            sock.settimeout(timeout)
            name = f"[{host}]" if ":" in host else host  # an IPv6 literal in brackets (RFC 3986)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = read_all(sock)
    except OSError as exc:
        return classify(exc), {}
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        return "bad-response", {}
    return parse_answer(body.decode(errors="replace").strip(), path.startswith("/whoami"))


def send_datagram(sock: socket.socket, data: bytes) -> None:
    """Send; a packet this machine's own netfilter stops (EPERM) is not an error yet: after a REJECT
    in OUTPUT its ICMP error arrives for the next recv (ECONNREFUSED), after a DROP nothing does."""
    with contextlib.suppress(PermissionError):
        sock.send(data)


def ask_udp(req: dict, timeout: float) -> tuple[str, dict]:
    """One datagram from a new socket (a new source port: a new conntrack entry), one answer."""
    host = str(req["host"])
    try:
        with new_socket(host, socket.SOCK_DGRAM, source=str(req.get("source") or "")) as sock:
            sock.settimeout(timeout)
            sock.connect((host, int(req["port"])))  # connected: an ICMP error is reported as ECONNREFUSED
            send_datagram(sock, WHOAMI if req.get("whoami") else NAME)
            data = sock.recv(MAX_RESPONSE)
    except OSError as exc:
        return classify(exc), {}
    return parse_answer(data.decode(errors="replace").strip(), bool(req.get("whoami")))


def ask_sctp(req: dict, timeout: float, proto: int = IPPROTO_SCTP) -> tuple[str, dict]:
    """One message over a new SCTP association (one-to-one style), read until the pod closes it."""
    host = str(req["host"])
    try:
        with new_socket(host, socket.SOCK_STREAM, proto, str(req.get("source") or "")) as sock:
            sock.settimeout(timeout)
            sock.connect((host, int(req["port"])))
            sock.sendall(WHOAMI if req.get("whoami") else NAME)
            data = read_all(sock)
    except OSError as exc:
        return classify(exc), {}
    return parse_answer(data.decode(errors="replace").strip(), bool(req.get("whoami")))


ASK = {"http": ask_http, "udp": ask_udp, "sctp": ask_sctp}


def op_requests(req: dict) -> dict:
    ask = ASK[req["op"]]
    check_source(req)
    count = max(1, min(int(req.get("count", 1)), MAX_COUNT))
    timeout = float(req.get("timeout", 1.0))
    deadline = time.monotonic() + min(float(req.get("deadline", 10.0)), MAX_DEADLINE)
    max_timeouts = int(req.get("max_timeouts", 3))
    retries = max(0, min(int(req.get("retry_timeouts", 0)), 3))
    answers: dict = {}
    errors: dict = {}
    client_ips: list = []
    sent, retried, stopped = 0, 0, ""
    t0 = time.monotonic()
    while sent < count:
        if time.monotonic() >= deadline:
            stopped = "deadline"
            break
        sent += 1
        kind, info = ask(req, timeout)
        for _ in range(retries):  # a timed-out request is tried again on a new connection
            if kind != "timeout" or time.monotonic() + timeout > deadline:
                break
            retried += 1
            kind, info = ask(req, timeout)
        if kind == "ok":
            answers[info["pod"]] = answers.get(info["pod"], 0) + 1
            if info.get("client_ip") and info["client_ip"] not in client_ips:
                client_ips.append(info["client_ip"])
            continue
        errors[kind] = errors.get(kind, 0) + 1
        if errors.get("timeout", 0) >= max_timeouts:
            stopped = "{} timeouts".format(errors["timeout"])
            break
    return {"ok": True, "sent": sent, "answers": answers, "errors": errors, "client_ips": client_ips,
            "stopped": stopped, "retried": retried, "seconds": round(time.monotonic() - t0, 4)}


def udp_outcome(host: str, port: int, timeout: float, source: str) -> str:
    """Datagrams until one is refused (ICMP port unreachable) or answered, or `timeout` passes.

    Sent again every UDP_RESEND seconds: the kernel rate-limits ICMP errors, and unlike a TCP SYN a
    datagram is never retransmitted, so one refusal may come only for a later datagram.
    """
    end = time.monotonic() + timeout
    with new_socket(host, socket.SOCK_DGRAM, source=source) as sock:
        sock.connect((host, port))
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return "timeout"
            sock.settimeout(min(UDP_RESEND, left))
            try:
                send_datagram(sock, NAME)
                sock.recv(MAX_RESPONSE)
                return "answered"
            except (socket.timeout, TimeoutError):  # noqa: UP041  (distinct classes on a node's Python 3.9)
                continue


def op_connect(req: dict) -> dict:
    host, port = str(req["host"]), int(req["port"])
    timeout, source = float(req.get("timeout", 3.0)), str(req.get("source") or "")
    protocol = str(req.get("protocol") or "tcp")
    check_source(req)
    t0 = time.monotonic()
    try:
        if protocol == "udp":
            outcome = udp_outcome(host, port, timeout, source)
        else:
            proto = IPPROTO_SCTP if protocol == "sctp" else 0
            with new_socket(host, socket.SOCK_STREAM, proto, source) as sock:
                sock.settimeout(timeout)
                sock.connect((host, port))
                outcome = "connected"
    except OSError as exc:
        outcome = classify(exc)
    return {"ok": True, "outcome": outcome, "seconds": round(time.monotonic() - t0, 4)}


OPS = {"http": op_requests, "udp": op_requests, "sctp": op_requests, "connect": op_connect}


def handle(req: object) -> dict:
    if not isinstance(req, dict) or req.get("op") not in OPS:
        return {"ok": False, "msg": "bad probe request"}
    try:
        return OPS[req["op"]](req)
    except Unsupported as exc:
        return {"ok": True, "unsupported": str(exc)}
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "msg": f"bad probe request: {type(exc).__name__}: {exc}"}


def main_request(req: object) -> None:
    sys.stdout.write(json.dumps(handle(req), sort_keys=True) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main_request(json.load(sys.stdin))
