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
    """`ansible_ssh_common_args` cannot be read (bad quoting, unreadable -F file)."""


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
            _set_first(options, key.strip(), val.strip())
        elif flag == "F":
            config_file = config_file or value
        elif flag in _FLAG_TO_OPTION:
            _set_first(options, _FLAG_TO_OPTION[flag], value)
    return SshArgs(options, config_file)


def split_ssh_args(text: str) -> list[str]:
    """shlex-split an `ansible_ssh_*_args` string; bad quoting is an SshArgsError."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise SshArgsError(f"cannot split ssh arguments: {exc}") from exc


def _lookup_config(path: str, alias: str, address: str) -> dict[str, Any]:
    """Look up `address` (what ssh does) then `alias` (fills gaps) in an ssh_config file.

    Memoised per file version: paramiko re-reads the file and resolves every token (down to the
    local FQDN, a resolver call) on each lookup, and every connection asks again.
    """
    file = Path(path).expanduser()
    try:
        st = file.stat()
    except OSError as exc:
        raise SshArgsError(f"cannot read ssh config {path}: {exc.strerror or exc}") from exc
    return copy.deepcopy(_lookup_config_version(str(file), st.st_mtime_ns, st.st_size, alias, address))


@lru_cache(maxsize=1024)
def _lookup_config_version(path: str, mtime_ns: int, size: int, alias: str, address: str) -> dict[str, Any]:
    try:
        config = paramiko.SSHConfig.from_path(path)
    except OSError as exc:
        raise SshArgsError(f"cannot read ssh config {path}: {exc.strerror or exc}") from exc
    by_address = config.lookup(address)
    by_alias = config.lookup(alias)
    merged: dict[str, Any] = {k: v for k, v in by_alias.items() if k != "hostname"}
    merged.update({k: v for k, v in by_address.items() if k != "hostname"})
    if by_address.get("hostname", address) != address:
        merged["hostname"] = by_address["hostname"]
    elif by_alias.get("hostname", alias) != alias:
        merged["hostname"] = by_alias["hostname"]
    return merged


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
        `port` is an int, `identityfile` a list of paths, others strings.
        """
        parsed = parse_ssh_args(self.ssh_common_args)
        found: dict[str, Any] = dict(parsed.options)
        if parsed.config_file:
            for key, value in _lookup_config(parsed.config_file, self.name, self.address).items():
                if key == "identityfile" and "identityfile" not in parsed.options:
                    found[key] = list(value)
                else:
                    found.setdefault(key, value)
        result: dict[str, Any] = {key: found.get(key) for key in SSH_OPTION_KEYS}
        if result["port"] is not None:
            try:
                result["port"] = int(result["port"])
            except ValueError as exc:
                raise SshArgsError(f"ssh Port {result['port']!r} is not a number") from exc
        if "proxycommand" in parsed.options:
            host, port, user = self._endpoint(result)
            result["proxycommand"] = _expand_tokens(parsed.options["proxycommand"], host, port, user, self.name)
        if isinstance(result["proxycommand"], str) and result["proxycommand"].lower() == "none":
            result["proxycommand"] = None
        return result

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

        A ProxyJump needs a second Connection; it is left to the caller (`ssh_options()['proxyjump']`).
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
