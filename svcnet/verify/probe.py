"""svcnet traffic probe: bounded HTTP requests and TCP connects, run on a node (stdlib, Python 3.9+).

Shipped over SSH like the agent: `python3 -c BOOTSTRAP` with {"probe": <this source>, "request":
{...}} on stdin prints one JSON line. Every request is a new TCP connection (so kube-proxy's
random endpoint choice applies to each), with a per-request timeout, an overall deadline and a
cap on timeouts: a probe never runs longer than `deadline` seconds.

Requests:
  {"op": "http", "host": IP, "port": N, "path": "/", "count": N, "timeout": S, "deadline": S,
   "max_timeouts": N, "retry_timeouts": N} -> {"ok", "sent", "answers": {pod: n}, "errors": {kind: n},
   "client_ips": [...], "stopped": reason or "", "retried": n, "seconds"}
  {"op": "connect", "host": IP, "port": N, "timeout": S} -> {"ok", "outcome", "seconds"}
Error kinds: refused, timeout, reset, unreachable, bad-response, other.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import time

MAX_COUNT = 5000
MAX_DEADLINE = 120.0
MAX_RESPONSE = 65536
UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH)


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


def http_get(host: str, port: int, path: str, timeout: float) -> tuple[str, dict]:
    """One GET over a new connection: ("ok", {"pod", "client_ip"?}) or (error kind, {})."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while len(data) < MAX_RESPONSE:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return classify(exc), {}
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        return "bad-response", {}
    text = body.decode(errors="replace").strip()
    if path.startswith("/whoami"):
        try:
            info = json.loads(text)
            return "ok", {"pod": str(info.get("pod", "")), "client_ip": str(info.get("client_ip", ""))}
        except ValueError:
            return "bad-response", {}
    return "ok", {"pod": text}


def op_http(req: dict) -> dict:
    host, port, path = str(req["host"]), int(req["port"]), str(req.get("path") or "/")
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
        kind, info = http_get(host, port, path, timeout)
        for _ in range(retries):  # a timed-out request is tried again on a new connection
            if kind != "timeout" or time.monotonic() + timeout > deadline:
                break
            retried += 1
            kind, info = http_get(host, port, path, timeout)
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


def op_connect(req: dict) -> dict:
    timeout = float(req.get("timeout", 3.0))
    t0 = time.monotonic()
    try:
        with socket.create_connection((str(req["host"]), int(req["port"])), timeout=timeout):
            outcome = "connected"
    except OSError as exc:
        outcome = classify(exc)
    return {"ok": True, "outcome": outcome, "seconds": round(time.monotonic() - t0, 4)}


OPS = {"http": op_http, "connect": op_connect}


def handle(req: object) -> dict:
    if not isinstance(req, dict) or req.get("op") not in OPS:
        return {"ok": False, "msg": "bad probe request"}
    try:
        return OPS[req["op"]](req)
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "msg": f"bad probe request: {type(exc).__name__}: {exc}"}


def main_request(req: object) -> None:
    sys.stdout.write(json.dumps(handle(req), sort_keys=True) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main_request(json.load(sys.stdin))
