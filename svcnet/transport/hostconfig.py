"""One resolved inventory host, and how to reach it (pure: nothing here opens a connection).

`HostConfig` is what the inventory resolves a host to from Ansible's connection
variables. `ssh_options()` reads the OpenSSH options hidden in `ansible_ssh_common_args`
(`-o ProxyCommand=...`, `-J`, `-F ssh_config`, ...) so fabric/paramiko, which do not
run the `ssh` binary, honour them too. Secrets are `SecretStr`: their repr/str is `***`.
"""

from __future__ import annotations

import copy
import getpass
import logging
import os
import pwd
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import paramiko

log = logging.getLogger(__name__)

MASK = "***"
DEFAULT_PORT = 22
DEFAULT_USER = "root"
DEFAULT_BECOME_USER = "root"
BECOME_SUDO = "sudo"
SUPPORTED_BECOME_METHODS = (BECOME_SUDO,)
DEFAULT_TIMEOUT = 10.0
BECOME_PROMPT = "BECOME password: "  # ansible-playbook -K asks with these words
# Where a become password may come from, first found wins.
BECOME_PASSWORD_ENV_VARS = ("SVCNET_BECOME_PASSWORD", "ANSIBLE_BECOME_PASS", "ANSIBLE_BECOME_PASSWORD")
# Inventory variables holding secrets: always wrapped in SecretStr.
SECRET_VARS = frozenset({"ansible_become_password", "ansible_become_pass", "ansible_password", "ansible_ssh_pass"})

# Keys of the normalized dict `HostConfig.ssh_options()` returns.
SSH_OPTION_KEYS = (
    "proxycommand",
    "proxyjump",
    "hostname",
    "port",
    "user",
    "identityfile",
    "userknownhostsfile",
    "stricthostkeychecking",
)
# ssh(1) flags that take an argument (so the argument is not read as a flag).
_SSH_FLAGS_WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")
_FLAG_TO_OPTION = {"J": "proxyjump", "p": "port", "l": "user", "i": "identityfile"}
# The two ways to reach a host indirectly: OpenSSH uses whichever it obtains first (`none` included).
PROXY_KEYS = ("proxycommand", "proxyjump")
NO_PROXY = "none"
# Hops a ProxyJump chain may have, counting hops that a first hop's own ProxyJump adds (a bound
# besides the loop check, for chains that only grow: OpenSSH spawns ssh after ssh).
MAX_JUMP_HOPS = 16
_SSH_URI = "ssh://"
# What a ProxyJump hop's host and user may be: names and addresses, never an option (`-...`) or
# anything a hop's ProxyCommand (`%h`, `%r`) would need quoted.
_HOP_HOST_RE = re.compile(r"^[A-Za-z0-9_.%:][A-Za-z0-9_.%:-]*$")
_HOP_USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]*$")
# A value that stays one value on an ssh_config line (no blanks, quotes or comment).
_CONFIG_VALUE_RE = re.compile(r"^[^\s\"'#]+$")
# HostConfig attribute an inventory variable set -> the ssh option it stands for.
_ENDPOINT_OPTIONS = (("address", "hostname"), ("port", "port"), ("user", "user"))


class SecretStr:
    """A string that never shows itself: `repr`, `str` and formatting give `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def become_password(
    environ: Mapping[str, str],
    *,
    ask: bool = False,
    prompt: Callable[[str], str] = getpass.getpass,
) -> SecretStr | None:
    """The become (sudo) password from the environment, else from a prompt when `ask`."""
    for name in BECOME_PASSWORD_ENV_VARS:
        if name in environ:
            log.debug("become password taken from $%s", name)
            return SecretStr(environ[name])
    if ask:
        return SecretStr(prompt(BECOME_PROMPT))
    return None


class SshArgsError(ValueError):
    """`ansible_ssh_common_args` cannot be read (bad quoting, unreadable -F file, bad ProxyJump)."""


@dataclass(frozen=True, slots=True)
class JumpHop:
    """One hop of a ProxyJump as written: `[user@]host[:port]` (user and port may be left to ssh_config)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}{f':{self.port}' if self.port else ''}"


def parse_proxy_jump(text: str) -> tuple[JumpHop, ...]:
    """OpenSSH's ProxyJump / `-J`: `none` (no hops), or hops separated by commas, first hop first.

    A hop is `[user@]host[:port]` or `ssh://[user@]host[:port]`; an IPv6 address in brackets.
    """
    text = text.strip()
    if text.lower() == NO_PROXY:
        return ()
    return tuple(_parse_hop(part) for part in text.split(","))


def _parse_hop(text: str) -> JumpHop:
    def bad(why: str) -> SshArgsError:
        return SshArgsError(f"ProxyJump hop {text!r}: {why}")

    rest = text
    if rest.lower().startswith(_SSH_URI):
        rest = rest[len(_SSH_URI) :].removesuffix("/")
        if "/" in rest:
            raise bad("an ssh:// hop cannot have a path")
    user, at, hostport = rest.rpartition("@")
    if hostport.startswith("["):
        host, closed, after = hostport[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise bad("expected [ADDRESS] or [ADDRESS]:PORT")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_or_empty = hostport.partition(":")
        if colon and ":" in port_text_or_empty:
            raise bad("an IPv6 address must be in brackets: [ADDRESS]:PORT")
        port_text = port_text_or_empty if colon else None
    if not _HOP_HOST_RE.match(host):
        raise bad("expected [USER@]HOST[:PORT] with a host name or address")
    if at and not _HOP_USER_RE.match(user):
        raise bad(f"{user!r} is not a user name")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise bad(f"port {port_text!r} is not a number in 1-65535")
        port = int(port_text)
    return JumpHop(host, user if at else None, port)


def local_user() -> str:
    """Who runs svcnet: OpenSSH's user for a jump host that neither its spec nor ssh_config names."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (some containers)
        return getpass.getuser()


@dataclass(frozen=True, slots=True)
class SshArgs:
    """What ssh command-line arguments say: `-o` options (first wins, keys lowercased) and `-F`."""

    options: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None


def _set_first(options: dict[str, Any], key: str, value: str) -> None:
    key = key.lower()
    if key == "identityfile":
        options.setdefault(key, []).append(value)
    else:
        options.setdefault(key, value)  # OpenSSH: the first value obtained is used


def parse_ssh_args(args: Sequence[str]) -> SshArgs:
    """Read ssh(1) arguments: `-o K=V`, `-oK=V`, `-o 'K V'`, `-F file`, `-J`, `-p`, `-l`, `-i`."""
    options: dict[str, Any] = {}
    config_file: str | None = None
    it = iter(args)
    for arg in it:
        if not arg.startswith("-") or len(arg) < 2:
            continue
        flag, rest = arg[1], arg[2:]
        if flag not in _SSH_FLAGS_WITH_ARG:
            continue
        value = rest if rest else next(it, None)
        if value is None:
            raise SshArgsError(f"ssh option -{flag} needs an argument")
        if flag == "o":
            key, sep, val = value.partition("=")
            if not sep:
                key, _, val = value.strip().partition(" ")
            if not key.strip() or not val.strip():
                raise SshArgsError(f"ssh option -o {value!r} is not KEY=VALUE")
            key, val = key.strip(), val.strip()
        elif flag == "F":
            config_file = config_file or value
            continue
        elif flag in _FLAG_TO_OPTION:
            key, val = _FLAG_TO_OPTION[flag], value
        else:
            continue
        if key.lower() == "proxyjump":
            parse_proxy_jump(val)  # a bad hop is an error here, where the inventory is read
        _set_first(options, key, val)
    return SshArgs(options, config_file)


def split_ssh_args(text: str) -> list[str]:
    """shlex-split an `ansible_ssh_*_args` string; bad quoting is an SshArgsError."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise SshArgsError(f"cannot split ssh arguments: {exc}") from exc


def _lookup_config(path: str, alias: str, address: str, fixed: Mapping[str, str]) -> dict[str, Any]:
    """Look up `address` (what ssh does) then `alias` (fills gaps) in an ssh_config file.

    `fixed`: HostName, Port, User given before the file (inventory, command line); they come
    first, as OpenSSH reads its command line first, so the file's `%h %p %r` tokens expand to
    what svcnet connects to. Memoised per file version: paramiko re-reads the file and resolves
    every token (down to the local FQDN, a resolver call) on each lookup, and every connection
    asks again.
    """
    file = Path(path).expanduser()
    try:
        st = file.stat()
    except OSError as exc:
        raise SshArgsError(f"cannot read ssh config {path}: {exc.strerror or exc}") from exc
    head = "".join(f"{key} {value}\n" for key, value in sorted(fixed.items()) if _CONFIG_VALUE_RE.match(value))
    return copy.deepcopy(_lookup_config_version(str(file), st.st_mtime_ns, st.st_size, alias, address, head))


@lru_cache(maxsize=1024)
def _lookup_config_version(path: str, mtime_ns: int, size: int, alias: str, address: str, head: str) -> dict[str, Any]:
    try:
        config = paramiko.SSHConfig.from_text(head + Path(path).read_text())  # `head`: global, so first
    except OSError as exc:
        raise SshArgsError(f"cannot read ssh config {path}: {exc.strerror or exc}") from exc
    except paramiko.ssh_exception.ConfigParseError as exc:
        raise SshArgsError(f"cannot read ssh config {path}: {exc}") from exc
    by_address = _first_proxy_only(config.lookup(address))
    by_alias = _first_proxy_only(config.lookup(alias))
    if any(k in by_address for k in PROXY_KEYS):
        by_alias = {k: v for k, v in by_alias.items() if k not in PROXY_KEYS}
    merged: dict[str, Any] = {k: v for k, v in by_alias.items() if k != "hostname"}
    merged.update({k: v for k, v in by_address.items() if k != "hostname"})
    if by_address.get("hostname", address) != address:
        merged["hostname"] = by_address["hostname"]
    elif by_alias.get("hostname", alias) != alias:
        merged["hostname"] = by_alias["hostname"]
    return merged


def _first_proxy_only(options: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ProxyCommand or ProxyJump obtained second: OpenSSH ignores it.

    paramiko's lookup adds each key when it is first obtained, so the dict's order is OpenSSH's.
    """
    winner = next((k for k in options if k in PROXY_KEYS), None)
    return {k: v for k, v in options.items() if k not in PROXY_KEYS or k == winner}


def _expand_tokens(command: str, host: str, port: int, user: str, alias: str) -> str:
    """OpenSSH's %h %p %r %n %% tokens in a ProxyCommand given on the command line."""
    table = {"h": host, "p": str(port), "r": user, "n": alias, "%": "%"}
    out, i = [], 0
    while i < len(command):
        ch = command[i]
        if ch == "%" and i + 1 < len(command) and command[i + 1] in table:
            out.append(table[command[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class HostConfig:
    """How to reach and act on one inventory host (names are the cluster's node names)."""

    name: str
    address: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    key_file: str | None = None
    ssh_common_args: tuple[str, ...] = ()
    become: bool = False
    become_user: str = DEFAULT_BECOME_USER
    become_method: str = BECOME_SUDO
    become_password: SecretStr | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    # Which of address/port/user/key_file the inventory set (they then beat ssh_config).
    explicit: frozenset[str] = frozenset()

    def ssh_options(self) -> dict[str, Any]:
        """Options from `ssh_common_args` (command line first, then `-F` file), normalized.

        Keys: SSH_OPTION_KEYS; a value is None when the arguments say nothing about it.
        `port` is an int, `identityfile` a list of paths, others strings. At most one of
        `proxycommand` and `proxyjump` is set: the one obtained first, as in OpenSSH, and
        neither when that one is `none`.
        """
        parsed = parse_ssh_args(self.ssh_common_args)
        found: dict[str, Any] = dict(parsed.options)
        if parsed.config_file:
            fixed = {
                key: str(getattr(self, attr) if attr in self.explicit else parsed.options[key])
                for attr, key in _ENDPOINT_OPTIONS
                if attr in self.explicit or key in parsed.options
            }
            for key, value in _lookup_config(parsed.config_file, self.name, self.address, fixed).items():
                if key == "identityfile" and "identityfile" not in parsed.options:
                    found[key] = list(value)
                else:
                    found.setdefault(key, value)
        found = _first_proxy_only(found)  # the command line's comes first: it beats the file's
        for key in PROXY_KEYS:
            if isinstance(found.get(key), str) and found[key].strip().lower() == NO_PROXY:
                found[key] = None
        result: dict[str, Any] = {key: found.get(key) for key in SSH_OPTION_KEYS}
        if result["port"] is not None:
            try:
                result["port"] = int(result["port"])
            except ValueError as exc:
                raise SshArgsError(f"ssh Port {result['port']!r} is not a number") from exc
        if result["proxycommand"] and "proxycommand" in parsed.options:
            host, port, user = self._endpoint(result)
            result["proxycommand"] = _expand_tokens(parsed.options["proxycommand"], host, port, user, self.name)
        if result["proxyjump"]:
            parse_proxy_jump(result["proxyjump"])  # ssh_config's value: checked as the command line's
        return result

    def jump_hosts(self) -> tuple[HostConfig, ...]:
        """The jump hosts on the way to this host, the first to connect to first (none without ProxyJump).

        As OpenSSH's `ProxyJump a,b`: b is reached through a, and this host through b. Each hop is
        looked up in the same `-F` ssh_config under its own name (HostName, User, Port,
        IdentityFile, UserKnownHostsFile); the hop's user and port, when written in the ProxyJump,
        beat the file's. Only the first hop's own ProxyCommand or ProxyJump applies (OpenSSH gives
        the later hops theirs on the command line); `-o` options do not carry over to hops.
        """
        path: list[HostConfig] = []
        seen = {self.name}
        hop = self._jump_host()
        while hop is not None:
            if hop.name in seen:
                raise SshArgsError(f"ProxyJump loop: jump host {hop.name} on the way to {self.name} "
                                   f"(after {', '.join(h.name for h in path) or 'no other hop'})")
            if len(path) == MAX_JUMP_HOPS:
                raise SshArgsError(f"ProxyJump: more than {MAX_JUMP_HOPS} jump hosts on the way to {self.name}")
            seen.add(hop.name)
            path.insert(0, hop)
            hop = hop._jump_host()
        return tuple(path)

    def _jump_host(self) -> HostConfig | None:
        """The last hop before this host, as OpenSSH's `ssh [-l U] [-p P] [-J REST] [-F FILE] -W %h:%p LAST`."""
        spec = self.ssh_options()["proxyjump"]
        hops = parse_proxy_jump(spec) if spec else ()
        if not hops:
            return None
        last, rest = hops[-1], hops[:-1]
        args: list[str] = []
        if last.user:
            args += ["-l", last.user]
        if last.port:
            args += ["-p", str(last.port)]
        if rest:
            args += ["-J", ",".join(str(h) for h in rest)]
        config_file = parse_ssh_args(self.ssh_common_args).config_file
        if config_file:
            args += ["-F", config_file]
        return HostConfig(name=last.host, address=last.host, user=local_user(), ssh_common_args=tuple(args))

    def _endpoint(self, opts: Mapping[str, Any]) -> tuple[str, int, str]:
        """Final (host, port, user): inventory values when set, else ssh options, else defaults."""
        host = self.address if "address" in self.explicit else (opts.get("hostname") or self.address)
        port = self.port if "port" in self.explicit else (opts.get("port") or self.port)
        user = self.user if "user" in self.explicit else (opts.get("user") or self.user)
        return host, int(port), user

    def connect_kwargs(self, timeout: float = DEFAULT_TIMEOUT, opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """paramiko `connect()` keyword arguments (fabric's `connect_kwargs`).

        The TCP connect timeout is fabric's own `connect_timeout` (fabric refuses both).
        `opts`: `ssh_options()` when the caller has them already.
        """
        kwargs: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
        if opts is None:
            opts = self.ssh_options()
        keys = [self.key_file] if self.key_file else (opts.get("identityfile") or [])
        if keys:
            kwargs["key_filename"] = [str(Path(k).expanduser()) for k in keys]
        return kwargs

    def fabric_kwargs(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """`fabric.Connection(**kwargs)` arguments; a ProxyCommand becomes the `gateway` string.

        A ProxyJump needs a connection per hop: the caller makes them (`jump_hosts()`).
        """
        opts = self.ssh_options()
        host, port, user = self._endpoint(opts)
        kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "connect_timeout": timeout,
            "connect_kwargs": self.connect_kwargs(timeout, opts),
        }
        if opts["proxycommand"]:
            kwargs["gateway"] = opts["proxycommand"]
        return kwargs
