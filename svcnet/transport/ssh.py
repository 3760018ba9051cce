"""SSH sessions to nodes with fabric, host keys verified against known_hosts.

fabric's `Connection` auto-accepts unknown host keys; svcnet replaces that policy with
paramiko's `RejectPolicy` (or, with `accept_new`, OpenSSH's `accept-new`: trust on first use,
recorded in the known_hosts file; a changed key is still refused).

Become (sudo) never mixes the password into the command's input: sudo asks with a prompt unique
to the command, and the wrapped command first prints a start line, also unique, to stderr. The
controller reads stderr until one of them shows up and sends the password only in answer to the
prompt, and the command's stdin only after the start line. Where sudo does not ask (NOPASSWD,
cached credentials) the password is never sent; a second prompt means it was wrong.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: record unknown keys, refuse changed ones."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


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

    def open(self) -> Session:
        host = self.host
        try:
            kwargs = host.fabric_kwargs(self.timeout)
        except ValueError as exc:
            raise SSHError(host.name, f"bad ssh arguments: {exc}") from exc
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
        except paramiko.BadHostKeyException as exc:
            raise SSHError(host.name, f"host key for {exc.hostname} does not match {known}: refusing to connect "
                                      "(possible man-in-the-middle; fix known_hosts if the key changed)") from exc
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                text = (f"host key of {kwargs['host']} is not in {known}; add it (ssh-keyscan) or pass "
                        "--accept-new-host-keys to trust it on first use")
            raise SSHError(host.name, text) from exc
        except (TimeoutError, OSError, EOFError, invoke.exceptions.UnexpectedExit) as exc:
            raise SSHError(host.name, f"cannot connect to {kwargs['host']}:{kwargs['port']}: {exc}") from exc
        self.conn = conn
        return self

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
