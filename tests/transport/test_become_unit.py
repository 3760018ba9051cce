"""Become (sudo): the command builder and the controller's side of sudo's prompt, against a fake
sudo on the other end of the channel (the lab tests in test_ssh_become.py use the real one)."""

from __future__ import annotations

import logging
import shlex
import threading
import time

import pytest

from svcnet.transport.hostconfig import HostConfig, SecretStr
from svcnet.transport.ssh import (
    BECOME_SHELL,
    BECOME_TIMEOUT,
    Become,
    BecomeError,
    Session,
    SSHError,
    await_become,
    become_command,
)

SECRET = "pw-never-in-stdin-5f1c"
REQUEST = b'{"agent": "...", "request": {"op": "status"}}\n'


class FakeSudo:
    """The remote end of one channel: sudo as `sudo -S`/`-n` behaves, then the wrapped command.

    `password`: what sudo asks for (None: NOPASSWD). Like sudo, it reads its password up to the
    newline; every other byte that reaches the remote end is what the command reads (`stdin`).
    """

    def __init__(self, password: str | None = None, tries: int = 3, starts: bool = True):
        self.password, self.tries, self.starts = password, tries, starts
        self.command = ""
        self.stdin = bytearray()  # what the wrapped command received
        self.answers: list[str] = []  # what sudo read at its prompts
        self.err = bytearray()
        self.state = "new"
        self.line = bytearray()
        self.status_event = threading.Event()
        self.closed = False

    # -- paramiko.Channel's surface used by Session ------------------------------------------
    def exec_command(self, command: str) -> None:
        self.command = command
        argv = shlex.split(command)
        self.prompt = argv[argv.index("-p") + 1] if "-p" in argv else None
        self.started = argv[-1].split("\n")[0].split()[1]  # `echo <started> >&2`
        if self.password is None:
            self._start()
        elif self.prompt is None:
            self._exit(b"sudo: a password is required\n")
        elif self.starts:
            self._ask()

    def sendall(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            if self.state != "asking":
                self.stdin += data[i:]
                return
            if byte != ord("\n"):
                self.line.append(byte)
                continue
            self.answers.append(self.line.decode())
            self.line.clear()
            if self.answers[-1] == self.password:
                self.err += b"\n"
                self._start()
            elif len(self.answers) >= self.tries:
                self._exit(b"sudo: 3 incorrect password attempts\n")
            else:
                self.err += b"Sorry, try again.\n"
                self._ask()

    def recv_stderr(self, n: int) -> bytes:
        if self.err:
            data, self.err = bytes(self.err[:n]), self.err[n:]
            return data
        if self.state == "exited":
            return b""
        raise TimeoutError  # nothing yet: a real channel blocks until its timeout

    def settimeout(self, timeout: float | None) -> None:
        pass

    def exit_status_ready(self) -> bool:
        return self.state == "exited"

    def shutdown_write(self) -> None:
        if self.state == "asking":
            self._exit(b"sudo: no password was provided\n")

    def close(self) -> None:
        self.closed = True

    # -- sudo ----------------------------------------------------------------------------------
    def _ask(self) -> None:
        self.state = "asking"
        self.err += self.prompt.encode()

    def _start(self) -> None:
        self.state = "running"
        self.err += self.started.encode() + b"\nthe command's own stderr\n"

    def _exit(self, message: bytes) -> None:
        self.state = "exited"
        self.err += message
        self.status_event.set()


class FakeConn:
    def __init__(self, chan: FakeSudo):
        self.transport = self
        self.chan = chan

    def open_session(self, timeout: float) -> FakeSudo:
        return self.chan

    def close(self) -> None:
        pass


def host(password: str | None = SECRET, **kw: object) -> HostConfig:
    kw = {"user": "ops", "become": True, **kw}
    return HostConfig(name="n1", address="192.0.2.1", become_password=SecretStr(password) if password else None,
                      **kw)  # type: ignore[arg-type]


def session(sudo: FakeSudo, cfg: HostConfig | None = None) -> Session:
    s = Session(cfg or host())
    s.conn = FakeConn(sudo)  # type: ignore[assignment]
    return s


def test_the_wrapped_command_has_a_unique_prompt_and_start_line_and_no_secret():
    a, b = become_command(host(), "cat"), become_command(host(), "cat")
    assert isinstance(a, Become) and isinstance(b, Become) and a.prompt != b.prompt and a.started != b.started
    argv = shlex.split(a.command)
    assert argv[:5] == ["sudo", "-S", "-p", a.prompt.decode(), "-u"] and argv[5:8] == ["root", "--", BECOME_SHELL]
    assert argv[8:] == ["-c", f"echo {a.started.decode()} >&2\ncat"]
    assert SECRET not in a.command
    fixed = become_command(host(), "cat", token="t0")
    assert fixed is not None and fixed.prompt == b"svcnet-become-t0-password:"
    assert fixed.started == b"svcnet-become-t0-started"
    nopw = become_command(host(None, become_user="app"), "id")
    assert nopw is not None and nopw.prompt is None
    assert shlex.split(nopw.command)[:4] == ["sudo", "-n", "-u", "app"]
    assert become_command(host(become=False), "id") is None
    assert become_command(host(user="root"), "id") is None  # already the become user


def test_sudo_that_does_not_ask_never_gets_the_password():
    sudo = FakeSudo(password=None)  # NOPASSWD, or credentials sudo still remembers: no prompt
    stream = session(sudo).start("python3 -I -S -c BOOTSTRAP", REQUEST)
    assert bytes(sudo.stdin) == REQUEST  # exactly the request: nothing in front of it
    assert SECRET.encode() not in bytes(sudo.stdin) and sudo.answers == []
    assert bytes(stream.stderr) == b"the command's own stderr\n"  # the start line is not the command's
    stream.send(b"more\n")
    assert bytes(sudo.stdin) == REQUEST + b"more\n"


def test_sudo_that_asks_gets_the_password_at_its_prompt_only():
    sudo = FakeSudo(password=SECRET)
    session(sudo).start("cat", REQUEST)
    assert sudo.answers == [SECRET] and bytes(sudo.stdin) == REQUEST


def test_a_wrong_password_fails_at_once_with_a_clear_error(caplog):
    sudo = FakeSudo(password="the-right-one")
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(BecomeError) as err:
        session(sudo).start("cat", REQUEST)
    # at once, not after the become timeout: half of it leaves a loaded machine room
    assert time.monotonic() - t0 < BECOME_TIMEOUT / 2
    assert err.value.message == "become: sudo rejected the become password: Sorry, try again."
    assert not err.value.unreachable and isinstance(err.value, SSHError)  # a failed host, as Ansible says
    assert sudo.answers == [SECRET] and bytes(sudo.stdin) == b""  # tried once; the command never ran
    assert sudo.closed and SECRET not in str(err.value) and SECRET not in caplog.text


def test_no_password_where_sudo_needs_one_is_a_clear_error():
    with pytest.raises(BecomeError, match=r"sudo did not run the command: sudo: a password is required"):
        session(FakeSudo(password="x"), host(None)).run("cat", REQUEST)


def test_a_sudo_that_neither_asks_nor_starts_is_an_error_not_a_hang():
    sudo = FakeSudo(password="x", starts=False)  # e.g. a PAM module asking with another prompt
    become = become_command(host(), "cat")
    assert become is not None
    sudo.exec_command(become.command)
    t0 = time.monotonic()
    with pytest.raises(BecomeError, match=r"did not run the command within 0.3s"):
        await_become(sudo, become, SecretStr(SECRET), "n1", timeout=0.3)  # type: ignore[arg-type]
    # within the 0.3 s asked for, not the default become timeout (half of which leaves room for load)
    assert time.monotonic() - t0 < BECOME_TIMEOUT / 2 and sudo.answers == []
