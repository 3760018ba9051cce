"""Process helpers: run commands, spawn detached daemons, find and kill processes by namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from svcnet.lab.errors import LabError
from svcnet.lab.prereq import SBIN_PATH

PROC = Path("/proc")
NS_KINDS = ("uts", "mnt", "net")
TCP_LISTEN = "0A"
# Detach: a short-lived sh backgrounds the daemon (so it is not our child) and prints its pid.
_SPAWN_SCRIPT = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


def tool_env() -> dict[str, str]:
    """Our environment with the sbin directories on PATH (for tools run by name inside scripts)."""
    return {**os.environ, "PATH": f"{SBIN_PATH}:{os.environ.get('PATH', '')}".rstrip(":")}


def _popen(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(list(argv), env=tool_env(), **kwargs)
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc.strerror}") from None


def run(argv: Sequence[str], stdin: str | None = None, timeout: float = 30, check: bool = True) -> str:
    """Run argv (no shell); return stdout; LabError with stderr on failure."""
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=tool_env()
        )
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def run_all(commands: Sequence[tuple[Sequence[str], str | None]], timeout: float = 30) -> None:
    """Start all commands at once (argv, stdin text), wait for all; LabError on the first failure."""
    procs = []
    for argv, stdin in commands:
        proc = _popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((argv, proc, stdin))
    errors = []
    deadline = time.monotonic() + timeout
    for argv, proc, stdin in procs:
        try:
            _, err = proc.communicate(stdin, timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            errors.append(f"timed out: {' '.join(argv)}")
            continue
        if proc.returncode != 0:
            errors.append(f"failed ({proc.returncode}): {' '.join(argv)}: {err.strip()}")
    if errors:
        raise LabError("; ".join(errors[:3]))


def spawn_detached(commands: Sequence[tuple[Sequence[str], Path]], timeout: float = 20) -> list[int]:
    """Start each argv as a daemon in its own session, output appended to its log; return pids."""
    procs = [
        _popen(
            ["sh", "-c", _SPAWN_SCRIPT, "spawn", str(log), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for argv, log in commands
    ]
    pids = []
    for (argv, _), proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0 or not out.strip().isdigit():
            raise LabError(f"could not start {' '.join(argv)}: {err.strip()}")
        pids.append(int(out.strip()))
    return pids


def is_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        status = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def comm(pid: int) -> str | None:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def ns_inode(pid: int | str, kind: str) -> int | None:
    """Inode of a process's namespace of `kind`, or None if unreadable."""
    try:
        return os.stat(PROC / str(pid) / "ns" / kind).st_ino
    except OSError:
        return None


def netns_inode(ns_name: str) -> int | None:
    """Inode of a named network namespace (/run/netns/NAME), or None."""
    try:
        return os.stat(Path("/run/netns") / ns_name).st_ino
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def pids_in_namespaces(kind_inodes: dict[str, set[int]]) -> dict[int, tuple[str, int]]:
    """pid -> (kind, inode) for every live process in one of the given namespaces."""
    me = os.getpid()
    found: dict[int, tuple[str, int]] = {}
    for pid in all_pids():
        if pid == me:
            continue
        for kind, inodes in kind_inodes.items():
            if not inodes:
                continue
            inode = ns_inode(pid, kind)
            if inode in inodes:
                found[pid] = (kind, inode)
                break
    return found


def kill_and_wait(pids: Iterable[int], timeout: float = 4.0) -> list[int]:
    """SIGKILL the pids, wait until they are gone (zombies count as gone); return survivors."""
    pending = set(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if is_alive(pid)}
        if pending:
            time.sleep(0.02)
    return sorted(pending)


def tcp_listeners(pid: int, port: int) -> int:
    """How many TCP sockets listen on `port` in pid's network namespace (from /proc/PID/net)."""
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN and fields[1].endswith(f":{port:04X}"):
                count += 1
    return count
