"""SSH sessions to nodes with fabric, host keys verified against known_hosts.

fabric's `Connection` auto-accepts unknown host keys; svcnet replaces that policy with
paramiko's `RejectPolicy` (or, with `accept_new`, OpenSSH's `accept-new`: trust on first use,
recorded in the known_hosts file; a changed key is still refused). A ProxyJump is followed hop
by hop, each jump host's key checked the same way (fabric's own ProxyJump support does not
check jump hosts' keys).

Become (sudo) never mixes the password into the command's input: sudo asks with a prompt unique
to the command, and the wrapped command first prints a start line, also unique, to stderr. The
controller reads stderr until one of them shows up and sends the password only in answer to the
prompt, and the command's stdin only after the start line. Where sudo does not ask (NOPASSWD,
cached credentials) the password is never sent; a second prompt means it was wrong.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fabric
import invoke
import paramiko

from svcnet.transport.hostconfig import HostConfig, SecretStr

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
CHUNK = 65536
# Seconds sudo may take to run the command: it sleeps about 2 s after a wrong password (pam_unix)
# before asking again; a sudo that neither asks with our prompt nor starts the command in this
# time (another prompt, a PAM module waiting for something else) is an error, not a hang.
BECOME_TIMEOUT = 30.0
# Absolute: without sudoers' secure_path, sudo looks the command up in the login user's PATH.
BECOME_SHELL = "/bin/sh"
BECOME_TAG = "svcnet-become"


class SSHError(Exception):
    """A host could not be reached or refused us; `unreachable` as Ansible means it."""

    unreachable = True

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class BecomeError(SSHError):
    """sudo refused to run the command (wrong or missing password, not allowed): a failed host."""

    unreachable = False


# What a lost or broken connection raises inside paramiko calls (TimeoutError is an OSError).
LOST = (paramiko.SSHException, OSError, EOFError)
# What a failed connect raises (fabric runs a ProxyCommand through invoke).
CONNECT_ERRORS = (*LOST, invoke.exceptions.UnexpectedExit)


def lost(host: str, exc: BaseException) -> SSHError:
    return SSHError(host, f"connection lost: {exc or type(exc).__name__}")


@dataclass(frozen=True, slots=True)
class Become:
    """One command wrapped in sudo: the unique `prompt` sudo asks with (None when no password is
    set: sudo -n never asks) and the `started` line the command prints to stderr first."""

    command: str
    prompt: bytes | None
    started: bytes


def become_command(host: HostConfig, command: str, token: str | None = None) -> Become | None:
    """`command` wrapped in sudo when the inventory asks for become (None: run it as it is).

    The password is never in argv nor in the command's input: see `await_become`. `token` makes
    the prompt and start line unique (random by default).
    """
    if not host.become or host.user == host.become_user:
        return None
    tag = f"{BECOME_TAG}-{token or secrets.token_hex(8)}"
    started = f"{tag}-started"
    inner = f"echo {started} >&2\n{command}"
    user = shlex.quote(host.become_user)
    prompt = f"{tag}-password:" if host.become_password else None
    sudo = f"sudo -S -p {shlex.quote(prompt)}" if prompt else "sudo -n"
    return Become(f"{sudo} -u {user} -- {BECOME_SHELL} -c {shlex.quote(inner)}",
                  prompt.encode() if prompt else None, started.encode())


def await_become(chan: paramiko.Channel, become: Become, password: SecretStr | None, host: str,
                 timeout: float = BECOME_TIMEOUT) -> bytes:
    """Wait until sudo runs the command, answering its first prompt with `password`.

    Returns what the command wrote to stderr after its start line (its own stderr). BecomeError
    when sudo asks a second time (wrong password), ends without running the command, or takes
    longer than `timeout`.
    """
    seen = bytearray()
    answered = False
    deadline = time.monotonic() + timeout
    while True:
        start = seen.find(become.started + b"\n")
        if start >= 0:
            return bytes(seen[start + len(become.started) + 1:])
        asked = seen.count(become.prompt) if become.prompt else 0
        if asked > 1:
            raise BecomeError(host, f"become: sudo rejected the become password{_sudo_said(seen, become)}")
        if asked and not answered:
            if not password:
                raise BecomeError(host, "become: sudo asks for a password and none is set")
            chan.sendall(password.get_secret_value().encode() + b"\n")
            answered = True
        left = deadline - time.monotonic()
        if left <= 0:
            raise BecomeError(host, f"become: sudo did not run the command within {timeout:g}s"
                                    f"{_sudo_said(seen, become)}")
        chan.settimeout(min(left, 1.0))
        try:
            data = chan.recv_stderr(CHUNK)
        except TimeoutError:
            continue
        if not data:
            raise BecomeError(host, f"become: sudo did not run the command{_sudo_said(seen, become)}")
        seen += data


def _end(chan: paramiko.Channel, wait: float = 5.0) -> None:
    """End a command whose sudo failed: end its input (a sudo still asking gives up at once), let it
    exit (bounded), then close; closing under a running command races paramiko's own close."""
    with contextlib.suppress(*LOST):
        chan.shutdown_write()
        chan.status_event.wait(wait)
        chan.close()


def _sudo_said(seen: bytes | bytearray, become: Become) -> str:
    """sudo's own messages for an error, without our prompts."""
    text = bytes(seen).replace(become.prompt, b"\n") if become.prompt else bytes(seen)
    lines = [ln.strip() for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    return ": " + " / ".join(lines[-3:]) if lines else ""


@dataclass(frozen=True, slots=True)
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float


# Sessions opened in parallel record keys in the same known_hosts (all nodes behind one new
# jump host meet its key at once): one writer at a time, and each rereads what the others wrote.
_KNOWN_HOSTS_LOCK = threading.Lock()


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: record unknown keys, refuse changed ones."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _KNOWN_HOSTS_LOCK:
            recorded = paramiko.HostKeys(str(self.path)) if self.path.exists() else paramiko.HostKeys()
            known = (recorded.lookup(hostname) or {}).get(key.get_name())
            if known is not None and known != key:
                # another session recorded another key meanwhile: one of the two did not talk to the host
                raise paramiko.BadHostKeyException(hostname, key, known)
            if known is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def _greeted(client: paramiko.SSHClient) -> bool:
    """Whether an SSH server sent its greeting on this client's connection."""
    transport = client.get_transport()
    return transport is not None and bool(transport.remote_version)


def _why_not(exc: BaseException, client: paramiko.SSHClient, kwargs: dict[str, Any], known: Path) -> str:
    """What failed when connecting to `kwargs['host']`, in words for the user."""
    where = f"{kwargs['host']}:{kwargs['port']}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"host key for {exc.hostname} does not match {known}: refusing to connect "
                "(possible man-in-the-middle; fix known_hosts if the key changed)")
    if not isinstance(exc, paramiko.SSHException):
        return f"cannot connect to {where}: {exc}"
    if "not found in known_hosts" in str(exc):
        return (f"host key of {kwargs['host']} is not in {known}; add it (ssh-keyscan) or pass "
                "--accept-new-host-keys to trust it on first use")
    if not _greeted(client):  # paramiko's words ("No existing session") do not say so
        how = " through its ProxyCommand" if kwargs.get("gateway") else ""
        return f"cannot connect to {where}{how}: no SSH server answered ({exc})"
    return str(exc)


def known_hosts_path(host: HostConfig) -> Path:
    """The known_hosts file: ssh's UserKnownHostsFile option if given, else ~/.ssh/known_hosts."""
    opt = host.ssh_options().get("userknownhostsfile")
    first = opt.split()[0] if isinstance(opt, str) and opt.strip() else DEFAULT_KNOWN_HOSTS
    return Path(os.path.expanduser(first))


class Session:
    """One SSH connection to one node, reused for every command of a run."""

    def __init__(self, host: HostConfig, accept_new_host_keys: bool = False, timeout: float = 10.0):
        self.host = host
        self.timeout = timeout
        self.accept_new = accept_new_host_keys
        self.conn: fabric.Connection | None = None
        self.jumps: list[fabric.Connection] = []  # open connections to the jump hosts, first hop first

    def open(self) -> Session:
        """Connect (through each ProxyJump hop in turn); every host key verified the same way."""
        if self.conn is not None:
            return self  # already open: `with session` enters an opened session as it is
        route = self._route()
        try:
            sock: paramiko.Channel | None = None
            for (hop, kwargs), (_, next_kwargs) in itertools.pairwise(route):
                conn = self._connect(hop, kwargs, sock, f"jump host {hop.name}: ")
                self.jumps.append(conn)
                sock = self._forward(conn, hop, next_kwargs)
            host, kwargs = route[-1]
            self.conn = self._connect(host, kwargs, sock, "")
        except BaseException:
            self.close()
            raise
        return self

    def _route(self) -> list[tuple[HostConfig, dict[str, Any]]]:
        """(host, fabric kwargs) of each jump host, first hop first, then of the node itself."""
        try:
            return [(h, h.fabric_kwargs(self.timeout)) for h in (*self.host.jump_hosts(), self.host)]
        except ValueError as exc:
            raise SSHError(self.host.name, f"bad ssh arguments: {exc}") from exc

    def _forward(self, conn: fabric.Connection, hop: HostConfig, to: dict[str, Any]) -> paramiko.Channel:
        """A channel from `hop` to the next host's sshd (OpenSSH's `ssh -W`): the next connection's socket.

        Opened here rather than by fabric's `gateway=Connection`, which waits up to paramiko's
        default of an hour for a jump host that cannot reach the next one.
        """
        dest = (to["host"], to["port"])
        try:
            assert conn.transport is not None
            return conn.transport.open_channel("direct-tcpip", dest, ("", 0), timeout=self.timeout)
        except paramiko.ChannelException as exc:  # the jump host refused or could not connect
            reason = exc.text
        except LOST as exc:
            reason = str(exc) or type(exc).__name__
        raise SSHError(self.host.name, f"jump host {hop.name} cannot reach {dest[0]}:{dest[1]}: {reason}")

    def _connect(
        self, host: HostConfig, kwargs: dict[str, Any], sock: paramiko.Channel | None, where: str
    ) -> fabric.Connection:
        """An open connection to `host` (over `sock` when given); errors name the node, then `where`."""
        if sock is not None:
            kwargs = {**kwargs, "connect_kwargs": {**kwargs["connect_kwargs"], "sock": sock}}
        config = fabric.Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
        conn = fabric.Connection(config=config, **kwargs)
        known = known_hosts_path(host)
        client: paramiko.SSHClient = conn.client
        if known.exists():
            client.load_host_keys(str(known))
        policy = _AcceptNewPolicy(known) if self.accept_new else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        try:
            conn.open()
        except CONNECT_ERRORS as exc:
            why = _why_not(exc, client, kwargs, known)
            client.close()  # also ends a ProxyCommand, and the tunnel's channel
            raise SSHError(self.host.name, where + why) from exc
        return conn

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = 300.0) -> Result:
        """Run one command with `stdin` fed and closed; no PTY, nothing echoed or logged."""
        t0 = time.perf_counter()
        chan, early = self._exec(command, stdin, timeout)
        try:
            chan.shutdown_write()
            out, err = bytearray(), bytearray(early)
            while True:
                if chan.recv_ready():
                    out += chan.recv(CHUNK)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(CHUNK)
                elif chan.exit_status_ready():
                    break
                else:
                    data = chan.recv(CHUNK)  # blocks up to `timeout`
                    if not data and chan.exit_status_ready():
                        break
                    out += data
            while chan.recv_ready():
                out += chan.recv(CHUNK)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(CHUNK)
            rc = chan.recv_exit_status()
            chan.close()
        except LOST as exc:
            raise lost(self.host.name, exc) from exc
        return Result(rc, out.decode(errors="replace"), err.decode(errors="replace"), time.perf_counter() - t0)

    def start(self, command: str, stdin: bytes = b"") -> Stream:
        """Start one long-running command with `stdin` fed; talk to it line by line (`Stream`)."""
        chan, early = self._exec(command, stdin, None)
        stream = Stream(self.host.name, chan)
        stream.stderr += early
        return stream

    def _exec(self, command: str, stdin: bytes, timeout: float | None) -> tuple[paramiko.Channel, bytes]:
        """A new channel running `command` (wrapped for become), `stdin` sent, input left open.

        Also returns the command's stderr read while waiting for sudo.
        """
        become = become_command(self.host, command)
        if self.conn is None:
            self.open()
        assert self.conn is not None and self.conn.transport is not None
        early = b""
        try:
            chan = self.conn.transport.open_session(timeout=self.timeout)
            chan.exec_command(become.command if become else command)
            if become:
                try:
                    wait = BECOME_TIMEOUT if timeout is None else min(timeout, BECOME_TIMEOUT)
                    early = await_become(chan, become, self.host.become_password, self.host.name, wait)
                except BecomeError:
                    _end(chan)
                    raise
            chan.settimeout(timeout)
            if stdin:
                chan.sendall(stdin)
        except LOST as exc:
            raise lost(self.host.name, exc) from exc
        return chan, early

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        while self.jumps:  # the last hop first: each carries the next one's connection
            self.jumps.pop().close()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """A running remote command spoken to in lines: `send` one, `read_line` its one-line answer."""

    def __init__(self, host: str, chan: paramiko.Channel):
        self.host = host
        self.chan = chan
        self.buffer = bytearray()
        self.stderr = bytearray()

    def send(self, data: bytes) -> None:
        if self.chan.closed or self.chan.exit_status_ready():
            status = self.chan.recv_exit_status() if self.chan.exit_status_ready() else -1
            raise SSHError(self.host, f"the remote command has ended (exit {status})")
        try:
            self.chan.sendall(data)
        except LOST as exc:
            raise lost(self.host, exc) from exc

    def read_line(self, timeout: float | None = 300.0) -> str | None:
        """The next stdout line; None when the command ended first (its stderr is in `stderr`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while b"\n" not in self.buffer:
                self._drain_stderr()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SSHError(self.host, f"no answer within {timeout:g}s")
                    self.chan.settimeout(min(left, 1.0))
                try:
                    data = self.chan.recv(CHUNK)
                except TimeoutError:
                    continue  # stderr is looked at again, then the deadline
                if not data:
                    self._drain_stderr()
                    return None
                self.buffer += data
        except LOST as exc:
            raise lost(self.host, exc) from exc
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return line.decode(errors="replace")

    def _drain_stderr(self) -> None:
        while self.chan.recv_stderr_ready():
            self.stderr += self.chan.recv_stderr(CHUNK)

    def close(self) -> None:
        """End the command's input (it exits at end of input) and the channel."""
        try:
            self.chan.shutdown_write()
            self.chan.close()
        except LOST:
            pass
