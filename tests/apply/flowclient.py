"""A long-lived UDP flow and TCP connection to a service, run by tests/apply/test_apply_conntrack.py.

`python3 flowclient.py HOST UDP_PORT TCP_PORT SOURCE_PORT SECONDS [WANT]`, in a lab machine's netns:

* UDP: datagrams every SEND_PERIOD seconds from one FIXED source port (a resolver's client
  socket), so all of them are one conntrack flow; each answer prints `udp TIME POD`. The port is
  SOURCE_PORT, or with WANT the first from SOURCE_PORT on whose flow pod WANT answers.
* TCP (TCP_PORT 0: none): once the UDP flow has answered (from pod X), connections are opened (and
  closed) until one is answered by a pod other than X; that one connection is then kept and asked
  again every TCP_PERIOD seconds (HTTP keep-alive), each answer printing `tcp TIME POD`, a failure
  `tcp TIME FAIL reason` (and it stops asking). `ready X` is printed once both run.

Stops after SECONDS or when its stdin closes, whichever is first (every loop is bounded).
TIME is time.time(), the host's clock, as the test's.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

SEND_PERIOD = 0.05
TCP_PERIOD = 0.3
TCP_ATTEMPTS = 40  # connections until one lands on the other pod: all on X has p = 2**-40 with two pods
PORT_TRIES = 40  # source ports until a flow lands on WANT (likewise)
FIRST_WAIT = 60  # seconds for the first answer: the pods start listening after the apply, slower on a loaded machine
IO_TIMEOUT = 2.0
out_lock = threading.Lock()
stop = threading.Event()


def say(*words: object) -> None:
    with out_lock:
        print(*words, flush=True)


def http_get(sock: socket.socket) -> str:
    """One keep-alive GET on `sock`: the answering pod's name."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: flow\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        body += chunk
    return body.decode().strip()


def udp_socket(source_port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", source_port))
    sock.settimeout(SEND_PERIOD)
    return sock


def udp_flow(host: str, port: int, source_port: int, want: str, first: list[str], got_first: threading.Event) -> None:
    sport = source_port
    sock = udp_socket(sport)
    while not stop.is_set():
        sock.sendto(b"query", (host, port))
        try:
            data, _ = sock.recvfrom(2048)
        except TimeoutError:
            continue
        name = data.decode().strip()
        if not first and want and name != want:  # this flow went elsewhere: a new one from the next port
            sock.close()
            sport += 1
            if sport >= source_port + PORT_TRIES:
                say("udp", f"{time.time():.3f}", "FAIL", "no flow answered by", want)
                return
            sock = udp_socket(sport)
            continue
        say("udp", f"{time.time():.3f}", name)
        if not first:
            first.append(name)
            got_first.set()
        time.sleep(SEND_PERIOD)


def tcp_connection(host: str, port: int, avoid: str) -> None:
    for _ in range(TCP_ATTEMPTS):
        sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        name = http_get(sock)
        if name != avoid:
            break
        sock.close()
    else:
        say("tcp", f"{time.time():.3f}", "FAIL", "every connection went to", avoid)
        return
    say("ready", avoid)
    while not stop.is_set():
        try:
            say("tcp", f"{time.time():.3f}", http_get(sock))
        except OSError as exc:
            say("tcp", f"{time.time():.3f}", "FAIL", repr(exc))
            return
        stop.wait(TCP_PERIOD)


def main(argv: list[str]) -> int:
    host, udp_port, tcp_port, source_port, seconds = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4])
    want = argv[5] if len(argv) > 5 else ""
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    first: list[str] = []
    got_first = threading.Event()
    threads = [threading.Thread(target=udp_flow, args=(host, udp_port, source_port, want, first, got_first),
                                daemon=True)]
    threads[0].start()
    if got_first.wait(min(seconds, FIRST_WAIT)) and tcp_port:
        threads.append(threading.Thread(target=tcp_connection, args=(host, tcp_port, first[0]), daemon=True))
        threads[1].start()
    elif first:
        say("ready", first[0])
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(IO_TIMEOUT + 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
