"""Tiny pod server (stdlib only, runs on nodes): answers with the pod's name.

`python3 podserver.py --port 8080 [--udp]`: every HTTP request gets "<pod name>\\n" and an
`X-Pod-Name` header; `/whoami` returns JSON {pod, namespace, ip, client_ip, client_port} so
a verifier can check source-IP preservation. With --udp, datagrams on the same port are answered
with the pod name. Threaded with a bounded number of concurrent connections; no access log.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_CONNECTIONS = 64
CONNECTION_TIMEOUT = 10.0
UDP_BUFFER = 2048


def pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    server_version = "svcnet-podserver/1"
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT

    def do_GET(self) -> None:
        name = pod_name()
        if self.path.split("?")[0] == "/whoami":
            body = json.dumps({
                "pod": name,
                "namespace": os.environ.get("POD_NAMESPACE", ""),
                "ip": os.environ.get("POD_IP") or self.connection.getsockname()[0],
                "client_ip": self.client_address[0],
                "client_port": self.client_address[1],
            }).encode() + b"\n"
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


def serve_udp(host: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    reply = (pod_name() + "\n").encode()
    while True:
        _, addr = sock.recvfrom(UDP_BUFFER)
        sock.sendto(reply, addr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="svcnet pod server: answers with the pod's name")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--udp", action="store_true", help="also answer UDP datagrams on the same port")
    args = ap.parse_args(argv)
    if args.udp:
        threading.Thread(target=serve_udp, args=(args.host, args.port), daemon=True).start()
    server = BoundedServer((args.host, args.port), Handler)
    print(f"podserver: {pod_name()} listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
