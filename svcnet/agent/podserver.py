"""Tiny pod server (stdlib only, runs on nodes): answers with the pod's name.

`python3 podserver.py --port 8080 [--udp] [--sctp]`: every HTTP request gets "<pod name>\\n" and
an `X-Pod-Name` header; `/whoami` returns JSON {pod, namespace, ip, client_ip, client_port} so
a verifier can check source-IP preservation. With --udp (--sctp), each datagram (SCTP association)
on the same port is answered the same way: "<pod name>\\n", or the JSON for the message "whoami".
Threaded with a bounded number of concurrent connections; no access log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_CONNECTIONS = 64
CONNECTION_TIMEOUT = 10.0
UDP_BUFFER = 2048
ACCEPT_BACKOFF = 0.1  # seconds
UDP_FLAG, SCTP_FLAG = "--udp", "--sctp"  # verify reads a pod's command for these
WHOAMI = b"whoami"
IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)


def pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def whoami(local_ip: str, client: tuple) -> dict:
    """POD_IP is the pod's first IP; a request over the other family reports the address it came to."""
    pod_ip = os.environ.get("POD_IP") or local_ip
    ip = pod_ip if family(pod_ip) == family(local_ip) else local_ip
    return {"pod": pod_name(), "namespace": os.environ.get("POD_NAMESPACE", ""),
            "ip": ip, "client_ip": client[0], "client_port": client[1]}


def reply(message: bytes, local_ip: str, client: tuple) -> bytes:
    """The answer to a datagram or SCTP message: the pod's name, or whoami's JSON."""
    if message.strip() == WHOAMI:
        return json.dumps(whoami(local_ip, client)).encode() + b"\n"
    return (pod_name() + "\n").encode()


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Handler(BaseHTTPRequestHandler):
    server_version = "svcnet-podserver/1"
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT

    def do_GET(self) -> None:
        name = pod_name()
        if self.path.split("?")[0] == "/whoami":
            body = json.dumps(whoami(self.connection.getsockname()[0], self.client_address)).encode() + b"\n"
            ctype = "application/json"
        else:
            body = (name + "\n").encode()
            ctype = "text/plain; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Pod-Name", name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_PUT = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:  # quiet: no access log
        pass


class BoundedServer(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS handler threads; further connections are closed at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type):
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's `socket.getfqdn()`: a pod may have no resolver, and a DNS
        lookup there stalls start-up (and would send traffic out of the pod's network)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        print(f"podserver: error serving {client_address}: {sys.exc_info()[1]}", file=sys.stderr)


def serve_udp(sock: socket.socket) -> None:
    local_ip = sock.getsockname()[0]
    while True:
        message, addr = sock.recvfrom(UDP_BUFFER)
        sock.sendto(reply(message, local_ip, addr), addr)


def answer_stream(conn: socket.socket, addr: tuple, slots: threading.BoundedSemaphore) -> None:
    """One SCTP association: read one message, answer it, close."""
    try:
        with conn:
            conn.settimeout(CONNECTION_TIMEOUT)
            conn.sendall(reply(conn.recv(UDP_BUFFER), conn.getsockname()[0], addr))
    except OSError as exc:
        print(f"podserver: error serving {addr}: {exc}", file=sys.stderr)
    finally:
        slots.release()


def serve_stream(sock: socket.socket) -> None:
    """Accept on a listening stream socket (SCTP one-to-one style); MAX_CONNECTIONS at a time."""
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        try:
            conn, addr = sock.accept()
        except OSError as exc:
            if sock.fileno() < 0:  # closed: the server is stopping
                return
            print(f"podserver: accept failed: {exc}", file=sys.stderr)
            time.sleep(ACCEPT_BACKOFF)  # e.g. out of file descriptors: do not spin
            continue
        if not slots.acquire(blocking=False):
            conn.close()
            continue
        threading.Thread(target=answer_stream, args=(conn, addr, slots), daemon=True).start()


class BoundedServer6(BoundedServer):
    """The IPv6 listener beside the IPv4 one, IPv6 only: no IPv4-mapped client addresses."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def listen(host: str, port: int, kind: int, proto: int = 0) -> socket.socket:
    sock = socket.socket(family(host), kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family(host) == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    return sock


def start_extra(host: str, port: int, udp: bool, sctp: bool) -> None:
    """UDP and SCTP listeners beside HTTP. A kernel without SCTP still gets HTTP and UDP served."""
    if udp:
        threading.Thread(target=serve_udp, args=(listen(host, port, socket.SOCK_DGRAM),), daemon=True).start()
    if sctp:
        try:
            sock = listen(host, port, socket.SOCK_STREAM, IPPROTO_SCTP)
        except OSError as exc:
            print(f"podserver: no SCTP on {host}:{port}: {exc}", file=sys.stderr, flush=True)
            return
        threading.Thread(target=serve_stream, args=(sock,), daemon=True).start()


ANY_IPV4, ANY_IPV6 = "0.0.0.0", "::"


def start_ipv6(port: int, udp: bool, sctp: bool) -> BoundedServer6 | None:
    """Serve IPv6 too (a dual-stack pod's IPv6 address); None where the pod has no IPv6."""
    try:
        server6 = BoundedServer6((ANY_IPV6, port), Handler)
    except OSError as exc:  # IPv6 disabled in the kernel or the pod's netns
        print(f"podserver: no IPv6: {exc}", file=sys.stderr, flush=True)
        return None
    start_extra(ANY_IPV6, server6.server_port, udp, sctp)
    threading.Thread(target=server6.serve_forever, daemon=True).start()
    return server6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="svcnet pod server: answers with the pod's name")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--host", default=ANY_IPV4, help="address to serve on (default: every IPv4 and IPv6 one)")
    ap.add_argument(UDP_FLAG, action="store_true", help="also answer UDP datagrams on the same port")
    ap.add_argument(SCTP_FLAG, action="store_true", help="also answer SCTP associations on the same port")
    args = ap.parse_args(argv)
    start_extra(args.host, args.port, args.udp, args.sctp)
    server = BoundedServer((args.host, args.port), Handler)
    if args.host == ANY_IPV4:
        start_ipv6(args.port, args.udp, args.sctp)
    print(f"podserver: {pod_name()} listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
