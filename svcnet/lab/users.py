"""Opt-in login users on a lab node (for tests of become): sudo with or without a password.

A node normally has only root. `add_users` gives one node more login users without changing the
host: it writes private copies of passwd, group, shadow and hosts (the node's own plus the users)
and a sudoers file under the lab's directory and bind-mounts them over /etc/... inside the node's
own mount namespace (private propagation: the host never sees them), and mounts a fresh tmpfs
on the node's /home. The users log in with the lab's key (from their private home's
.ssh/authorized_keys). Everything goes with the node at `lab down`.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from svcnet.lab import procs
from svcnet.lab.errors import LabError
from svcnet.lab.layout import LabLayout
from svcnet.lab.node_ops import node_exec_argv
from svcnet.lab.prereq import SBIN_PATH, find_tool
from svcnet.lab.state import Lab

SUDO_NONE, SUDO_NOPASSWD, SUDO_PASSWORD = "none", "nopasswd", "password"
SUDO_MODES = (SUDO_NONE, SUDO_NOPASSWD, SUDO_PASSWORD)
HOME = "/home"
SHELL = "/bin/sh"
USER_DIR = "users"  # in the node's lab directory
PRIVATE_FILES = ("passwd", "group", "shadow", "sudoers", "hosts")  # each mounted over /etc/NAME
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
MIN_UID, MAX_UID = 1000, 59999
# As Debian's sudoers (env_reset, secure_path), and nothing written outside the node's private
# /run: no lecture file (/var/lib/sudo) and no syslog.
SUDOERS_HEAD = f"""Defaults env_reset
Defaults secure_path="{SBIN_PATH}"
Defaults lecture=never, !syslog
root ALL=(ALL:ALL) ALL
"""


@dataclass(frozen=True)
class LabUser:
    """A login user: `sudo` is none, nopasswd, or password (then `password` is what sudo asks for)."""

    name: str
    uid: int
    sudo: str = SUDO_NOPASSWD
    password: str = ""

    @property
    def home(self) -> str:
        return f"{HOME}/{self.name}"


def add_users(lab: Lab, node: str, users: Sequence[LabUser]) -> None:
    """Give lab node `node` the login `users` (once per node; LabError if it cannot)."""
    _validate(users)
    for tool in ("sudo", "openssl"):
        if find_tool(tool) is None:
            raise LabError(f"lab users need {tool}: install the Debian package {tool} (scripts/bootstrap.sh does)")
    absent = [f"/etc/{name}" for name in PRIVATE_FILES if not Path("/etc", name).is_file()]
    if absent:  # a bind mount needs a file to cover; making one would change the host
        raise LabError(f"lab users need {', '.join(absent)} to mount over (sudo installs /etc/sudoers)")
    files = LabLayout(lab.name, lab.dir.parent).node_dir(node) / USER_DIR
    if files.exists():
        raise LabError(f"node {node} of lab {lab.name!r} already has lab users")
    files.mkdir(mode=0o700, parents=True)
    passwd = _node_file(lab, node, "/etc/passwd")
    taken = {int(f[2]) for f in (ln.split(":") for ln in passwd.splitlines()) if len(f) > 2 and f[2].isdigit()}
    clash = [u.name for u in users if u.uid in taken]
    if clash:
        raise LabError(f"uid of lab user(s) {', '.join(clash)} is taken on node {node}")
    contents = {
        "passwd": (passwd + "".join(f"{u.name}:x:{u.uid}:{u.uid}:svcnet lab user:{u.home}:{SHELL}\n"
                                    for u in users), 0o644),
        "group": (_node_file(lab, node, "/etc/group") + "".join(f"{u.name}:x:{u.uid}:\n" for u in users), 0o644),
        "shadow": (_shadow(users), 0o640),
        "sudoers": (_sudoers(users), 0o440),
        # the node's own name, so sudo finds it without asking DNS (which the lab cannot reach)
        "hosts": (_node_file(lab, node, "/etc/hosts") + f"127.0.1.1 {node}\n", 0o644),
    }
    for name, (text, mode) in contents.items():
        path = files / name
        path.write_text(text)
        path.chmod(mode)
    procs.run(node_exec_argv(lab, node, ["sh", "-c", _mount_script(files, lab.dir / "authorized_keys", users)]))


def _validate(users: Sequence[LabUser]) -> None:
    names = [u.name for u in users]
    for u in users:
        if not _NAME_RE.match(u.name) or u.name == "root":
            raise LabError(f"lab user {u.name!r}: a lowercase login name other than root")
        if not MIN_UID <= u.uid <= MAX_UID:
            raise LabError(f"lab user {u.name}: uid {u.uid} outside {MIN_UID}-{MAX_UID}")
        if u.sudo not in SUDO_MODES:
            raise LabError(f"lab user {u.name}: sudo must be one of {', '.join(SUDO_MODES)}")
        if (u.sudo == SUDO_PASSWORD) != bool(u.password) or "\n" in u.password:
            raise LabError(f"lab user {u.name}: a password (one line) goes with sudo {SUDO_PASSWORD} only")
    if len(set(names)) != len(names) or len({u.uid for u in users}) != len(users):
        raise LabError("lab users need distinct names and uids")


def _node_file(lab: Lab, node: str, path: str) -> str:
    """A file as the node sees it (the host's, unless the node has its own)."""
    text = procs.run(node_exec_argv(lab, node, ["cat", path]))
    return text if text.endswith("\n") or not text else text + "\n"


def _shadow(users: Sequence[LabUser]) -> str:
    """root and the users; "*" (no password, login by key still allowed) where sudo asks none."""
    today = int(time.time() // 86400)
    lines = [f"root:*:{today}:0:99999:7:::"]
    for u in users:
        secret = _hash(u.password) if u.password else "*"
        lines.append(f"{u.name}:{secret}:{today}:0:99999:7:::")
    return "\n".join(lines) + "\n"


def _hash(password: str) -> str:
    """A SHA-512 crypt hash as pam_unix reads it (the password goes on stdin, never argv)."""
    return procs.run(["openssl", "passwd", "-6", "-stdin"], stdin=password + "\n").strip()


def _sudoers(users: Sequence[LabUser]) -> str:
    lines = [SUDOERS_HEAD]
    for u in users:
        if u.sudo == SUDO_NOPASSWD:
            lines.append(f"{u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        elif u.sudo == SUDO_PASSWORD:
            # timestamp_timeout=0: sudo asks on every command, so every command exercises the prompt
            lines.append(f"{u.name} ALL=(ALL:ALL) ALL\nDefaults:{u.name} timestamp_timeout=0\n")
    return "".join(lines)


def _mount_script(files: Path, authorized_keys: Path, users: Sequence[LabUser]) -> str:
    """Run inside the node: mount the private files and /home, make each home with the lab key."""
    q = shlex.quote
    lines = ["set -e"]
    lines += [f"mount --bind {q(str(files / name))} /etc/{name}" for name in PRIVATE_FILES]
    lines.append(f"mount -t tmpfs -o mode=0755,size=16m svcnet-lab-home {HOME}")
    for u in users:
        owner = f"-o {u.uid} -g {u.uid}"
        lines += [f"install -d -m 0700 {owner} {q(u.home)} {q(u.home + '/.ssh')}",
                  f"install -m 0600 {owner} {q(str(authorized_keys))} {q(u.home + '/.ssh/authorized_keys')}"]
    return "\n".join(lines) + "\n"


def user_inventory(lab: Lab, user: str, path: Path, **host_vars: object) -> Path:
    """A copy of the lab's inventory at `path` that logs in as `user` and becomes root with sudo.

    `host_vars`: more variables for every host (e.g. ansible_python_interpreter).
    """
    doc = yaml.safe_load(lab.inventory_path.read_text())
    for host in doc["all"]["hosts"].values():
        host.update(ansible_user=user, ansible_become=True, **host_vars)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
