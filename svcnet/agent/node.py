"""svcnet node agent: applies, checks, rolls back and tears down svcnet's state on one node.

Why one stdlib-only file: the controller sends it as text on the SSH session's stdin, and the node
runs it with ``python3 -I -S -c BOOTSTRAP`` from ``/``. -I and -S keep every directory a user could
write (the current one, the login user's home, site-packages) off sys.path, so nothing installed or
planted on the node is imported as root: the agent can use only the standard library and itself.
One file is one text to send and one hash to cache its compiled form under (BOOTSTRAP); there is
no install step, and each request runs the very agent of the controller that sends it (the boot
unit and the pod supervisors run the copy the last apply wrote to state_dir). Python 3.9+.

Two ways to run it:

* over SSH, source and request on stdin (see svcnet/transport/protocol.py): the bootstrap execs this
  source with ``__name__ == "svcnet_agent"`` and calls ``main_request(request)``;
* as a file: ``python3 -I -S /var/lib/svcnet/agent.py boot|confirm RUN_ID|rollback RUN_ID|teardown|
  status|probe|request`` (``request`` reads a JSON request on stdin).

Either way exactly one JSON answer line goes to stdout (logs go to stderr). Each op's request and
answer is a record (see "the wire" below); a malformed request or any failure becomes
``{"ok": false, "msg": ...}``, never a traceback on stdout. Everything svcnet owns: iptables
chains named ``KUBE-*`` in filter/nat, the jump rules into them from built-in chains, the address
config of its netconf that it created and marked (links with the alias OWNER_ALIAS, routes with the
protocol ROUTE_PROTO, pod netns recorded in state.json; and sysctls it set), pod supervisors, files
in etc_dir/state_dir/run_dir and (on systemd machines only) svcnet.service; and, after an apply, the
conntrack entries of UDP flows to its service ports that no serving endpoint answers (see "stale
conntrack entries"). Nothing else is touched: an existing link, route or netns of a name the netconf
uses is refused, never adopted.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping

DEFAULT_ETC_DIR = "/etc/svcnet"
DEFAULT_STATE_DIR = "/var/lib/svcnet"
DEFAULT_RUN_DIR = "/run/svcnet"
NETNS_DIR = "/run/netns"
SYSTEMD_RUN = "/run/systemd/system"
SYSTEMD_UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "svcnet.service"

OWNED_PREFIX = "KUBE-"
TABLES = ("filter", "nat")
# The IP families of svcnet's iptables rules, each with its own commands (kube-proxy's dual-stack mode
# is one proxier per family): svcnet's chains carry the same owned prefix in both.
IPV4, IPV6 = 4, 6
IPT_COMMANDS = {IPV4: ("iptables", "iptables-save", "iptables-restore"),
                IPV6: ("ip6tables", "ip6tables-save", "ip6tables-restore")}
BUILTIN_CHAINS = frozenset({"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"})
STALE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

RESTORE_FILE = "rules.restore"
JUMPS_FILE = "jumps.rules"
NFT_FILE = "rules.nft"  # nftables mode: one `nft -f` script replacing svcnet's tables (see "nftables mode")
NETCONF_SH = "netconf.sh"
NETCONF_JSON = "netconf.json"
SECOND_BRIDGE_ADDRESS = "second_bridge_address"  # netconf's key of a dual-stack bridge's other address
HEALTH_FILE = "health.json"  # the health-check server's configuration (see "health checks")
RESTORE6_FILE = "rules6.restore"  # ip6tables-restore input (see "IPv6 rules"); empty: no IPv6 Services
JUMPS6_FILE = "jumps6.rules"  # the IPv6 jump rules (kube-proxy's IPv6 proxier ensures its own)
ARTIFACT_FILES = (RESTORE_FILE, JUMPS_FILE, NFT_FILE, NETCONF_SH, HEALTH_FILE, RESTORE6_FILE, JUMPS6_FILE)
# What an apply may change, and which artifact files belong to each part (the health checks follow
# the endpoints, and the proxy's health the rules: they are the rules' part).
PART_NETWORK, PART_RULES = "network", "rules"
PARTS = (PART_NETWORK, PART_RULES)
PART_FILES = {PART_RULES: (RESTORE_FILE, JUMPS_FILE, NFT_FILE, HEALTH_FILE, RESTORE6_FILE, JUMPS6_FILE),
              PART_NETWORK: (NETCONF_SH,)}
AGENT_FILE = "agent.py"
PODSERVER_FILE = "podserver.py"
STATE_FILE = "state.json"
PENDING_FILE = "pending.json"
LOCK_FILE = "lock"
SAVED_FILE = "rules.saved"
NFT_BACKUP = "nft.json"  # in the backup: svcnet's nft tables before the change (absent: not known)
RULES6_BACKUP = "rules6.json"  # in the backup: svcnet's ip6tables rules before the change (absent: none)
BACKUP_DIR = "backup"
STAGING_DIR = "staging"  # the artifacts of the apply in progress, recorded in etc_dir once it succeeded
LAST_ROLLBACK_FILE = "last-rollback.json"
LOGS_DIR = "logs"
PODS_DIR = "pods"
# Files that show a pod's command (its spec, its log, netconf.json) and their directories: root's only.
PRIVATE_FILE_MODE, PRIVATE_DIR_MODE = 0o600, 0o700

# The marks of what svcnet created (see ownership below): svcnet/render/netconf.py's OWNER_ALIAS and
# ROUTE_PROTO, which the rendered netconf.sh sets (tests/render/test_netconf.py checks they agree).
OWNER_ALIAS = "svcnet:owned"
ROUTE_PROTO = 0x73
OWNED_NETNS_KEY = "owned_netns"  # state.json: the pod netns svcnet created
MARKS_KEY = "marks"  # state.json: the applied address config was created by an svcnet that marks it

CMD_TIMEOUT = 120.0
POD_STOP_WAIT = 5.0
IPTABLES_WAIT = "5"
# Commands the agent needs, with the Debian package that provides each.
REQUIRED_COMMANDS = {
    "iptables": "iptables",
    "iptables-save": "iptables",
    "iptables-restore": "iptables",
    "ip": "iproute2",
    "sysctl": "procps",
    "conntrack": "conntrack",
    "unshare": "util-linux",
    "setpriv": "util-linux",  # a pod's user, groups and capabilities (securityContext)
    "mount": "mount",  # a pod's read-only filesystems (readOnlyRootFilesystem)
}
# Kernel features kube-proxy's rules use: (name, table, rule); each is loaded into a scratch netns.
FEATURE_RULES = (
    ("comment", "filter", '-A INPUT -m comment --comment "svcnet preflight" -j ACCEPT'),
    ("conntrack", "filter", "-A INPUT -m conntrack --ctstate INVALID -j DROP"),
    ("mark", "nat", "-A POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN"),
    ("mark_target", "nat", "-A POSTROUTING -j MARK --xor-mark 0x00004000"),
    ("statistic", "nat", "-A PREROUTING -m statistic --mode random --probability 0.5 -j RETURN"),
    ("dnat", "nat", "-A PREROUTING -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:80"),
    ("masquerade", "nat", "-A POSTROUTING -j MASQUERADE"),
    ("addrtype", "nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j RETURN"),
    ("recent", "nat", "-A PREROUTING -m recent --name KUBE-SEP-PREFLIGHT --rcheck --seconds 10800 --reap "
                      "-j RETURN"),
    ("random_fully", "nat", "-A POSTROUTING -j MASQUERADE --random-fully"),
)
# Whole-value patterns: always used with fullmatch (`re.match` with `$` accepts a trailing newline).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
SYSCTL_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SYSCTL_VALUE_RE = re.compile(r"[A-Za-z0-9 ._-]*")
CODE_CACHE_RE = re.compile(r"agent-[0-9a-f]+-[0-9a-f]+\.code")  # BOOTSTRAP's cache, in run_dir
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")
PREFIX_RE = re.compile(r"[A-Z][A-Z0-9-]{1,15}")
COUNTERS_RE = re.compile(r"^\[\d+:\d+\]\s+")
# Directories svcnet creates (etc, state, run and theirs): set explicitly, whatever the umask.
DIR_MODE = 0o755
# How every Python svcnet starts on a node runs (the agent over SSH, its scratch-netns re-run, pod
# supervisors, the boot unit), always with the current directory "/": -I (isolated) keeps the
# current and the script's directory off sys.path and ignores PYTHON* variables and the user's
# site-packages, so no module a user planted (a json.py in the login user's home, the current
# directory of an SSH command) is imported as root; -S: no site-packages either (stdlib only).
PYTHON_FLAGS = ("-I", "-S")
# A pod's securityContext as the controller sends it (svcnet.model.security computes it).
# Every Linux capability by its Kubernetes name, in kernel order (the same list as the model's).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
MAX_ID = 2147483647  # the largest user/group ID Kubernetes accepts
MAX_GROUPS = 4096  # supplementary groups: one setpriv argument stays far below the kernel's 128 KiB
SECURITY_FIELDS = ("uid", "gid", "groups", "capabilities", "ambient", "no_new_privs", "read_only_root")
# Mounts a read-only pod keeps writable, as a container runtime gives them: device nodes, /dev/shm, /proc.
WRITABLE_MOUNTS = ("/dev", "/proc")
# `python3 -I -S -c BOOTSTRAP` with the line {"agent": <this source>, "request": {...}} on stdin runs one
# request; with "session": true in that line it then answers one request per further stdin line
# (one JSON response line each) until end of input, so one process serves a connection's calls.
# Only double quotes inside, so it can be single-quoted for a remote shell as is.
# The compiled agent is cached in the request's run_dir (tmpfs) under the hash of its source and
# the interpreter's exact version, and used only when that file and directory are the caller's own
# and writable by nobody else: compiling this file costs more than a whole probe's Python work.
BOOTSTRAP = """import sys,json,os,marshal,hashlib
d=json.loads(sys.stdin.readline());s=d["agent"];q=d.get("request")
r=str((q.get("run_dir") if isinstance(q,dict) else None) or "/run/svcnet")
p=os.path.join(r,"agent-%s-%x.code"%(hashlib.sha256(s.encode()).hexdigest()[:32],sys.hexversion))
def mine(st):return st.st_uid==os.geteuid() and not st.st_mode&0o022
c=None
try:
 with open(p,"rb") as f:
  if mine(os.fstat(f.fileno())) and mine(os.stat(r)):c=marshal.loads(f.read())
except (OSError,ValueError,EOFError,TypeError):c=None
if c is None:
 c=compile(s,"svcnet-agent","exec")
 try:
  os.makedirs(r,0o755,exist_ok=True)
  if mine(os.stat(r)):
   t="%s.%d"%(p,os.getpid());f=os.fdopen(os.open(t,os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o644),"wb");marshal.dump(c,f);f.close();os.replace(t,p)
 except OSError:pass
g={"__name__":"svcnet_agent","AGENT_SOURCE":s};exec(c,g);g["main_request"](q)
while d.get("session"):
 l=sys.stdin.readline()
 if not l:break
 try:q=json.loads(l)
 except ValueError:q=None
 g["main_request"](q)"""


class AgentError(Exception):
    """A failure with a message meant for the operator."""


TEST_HOOK_ENV = "SVCNET_AGENT_TEST_HOOK"


def fault_point(point: str, detail: str = "-") -> None:
    """A named point where a test, and only a test, kills, fails or pauses this agent.

    The hooks come from the environment variable SVCNET_AGENT_TEST_HOOK, which only the agent
    tests' harness sets: nothing in a description reaches the agent's environment, svcnet never
    sets it and sshd does not forward it. Its value is JSON {point: {"do": ACTION, ...}}, ACTION one
    of "kill" (SIGKILL, as a crash), "fail" (an AgentError), "report" (a line TAG, POINT, DETAIL,
    PID, tab-separated, on the FIFO "events") and "pause" (report, then wait for a line on the FIFO "release").
    """
    raw = os.environ.get(TEST_HOOK_ENV)
    hook = json.loads(raw).get(point) if raw else None
    if not hook:
        return
    action = hook.get("do")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail":
        raise AgentError(f"injected failure at {point}")
    release = None
    if action == "pause":  # opened before the report: read-write, so it is open at once and waits for data
        release = os.open(hook["release"], os.O_RDWR)
    events = os.open(hook["events"], os.O_WRONLY | os.O_NONBLOCK)
    os.write(events, f"{hook.get('tag', '-')}\t{point}\t{detail}\t{os.getpid()}\n".encode())
    os.close(events)
    if release is not None:
        os.read(release, 64)
        os.close(release)


def log(msg: str) -> None:
    print("svcnet-agent: " + msg, file=sys.stderr, flush=True)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- records
# Requests, answers and plans are records: frozen, slotted classes whose fields are their annotated
# class attributes (a base's first), made by keyword or in field order, a default being the class
# attribute or a `field(...)`. The type checker sees them as dataclasses(frozen=True, slots=True)
# (dataclass_transform); the agent does not use `dataclasses` itself because it starts once per
# request, and importing it (it pulls in `inspect`) and building twenty dataclasses took about as
# much CPU again as the rest of the agent's start-up.

TYPE_CHECKING = False  # True for the type checker only: typing is imported nowhere else
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar, dataclass_transform

    R = TypeVar("R", bound="Request")
    T = TypeVar("T", bound="Record")
else:
    def dataclass_transform(**_: object) -> Callable[[type], type]:
        return lambda cls: cls

MISSING = object()  # a field without a default


class Field:
    """A record field's default (or factory), and the metadata of its kind (see the wire)."""

    __slots__ = ("default", "factory", "meta")

    def __init__(self, default: object = MISSING, factory: Callable[[], object] | None = None,
                 meta: Mapping[str, Any] | None = None):
        self.default, self.factory, self.meta = default, factory, dict(meta or {})

    def value(self, name: str) -> object:
        if self.factory is not None:
            return self.factory()
        if self.default is MISSING:
            raise TypeError(f"missing field {name!r}")
        return self.default


def field(*, default: object = MISSING, default_factory: Callable[[], object] | None = None,
          meta: Mapping[str, Any] | None = None) -> Any:
    return Field(default, default_factory, meta)


class RecordType(type):
    """Makes a record class: its fields (FIELDS) and their slots, from the annotations of its body."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> RecordType:
        fields = {k: v for base in reversed(bases) for k, v in getattr(base, "FIELDS", {}).items()}
        own = [n for n, kind in ns.get("__annotations__", {}).items() if not str(kind).startswith("ClassVar")]
        for n in own:
            given = ns.pop(n, MISSING)
            fields[n] = given if isinstance(given, Field) else Field(given)
        ns["__slots__"] = tuple(n for n in own if not any(n in getattr(b, "FIELDS", {}) for b in bases))
        ns["FIELDS"] = fields
        return super().__new__(mcs, name, bases, ns)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record(metaclass=RecordType):
    """A record (see above): subclass it, annotate its fields."""

    __slots__ = ()
    FIELDS: ClassVar[dict[str, Field]]

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = type(self).FIELDS
        given = {name: args[n] for n, name in enumerate(fields) if n < len(args)}
        if len(args) > len(fields) or given.keys() & kwargs.keys() or not kwargs.keys() <= fields.keys():
            raise TypeError(f"{type(self).__name__}: bad arguments {args!r:.100}, {sorted(kwargs)}")
        given.update(kwargs)
        for name, spec in fields.items():
            object.__setattr__(self, name, given[name] if name in given else spec.value(name))
        self.__post_init__()

    def __post_init__(self) -> None:
        """Checks of a record's fields together (none by default)."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name}")

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self: T, **changes: object) -> T:
        return type(self)(**{**self.values(), **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self.values() == other.values()

    def __repr__(self) -> str:
        return "{}({})".format(type(self).__name__, ", ".join(f"{k}={v!r}" for k, v in self.values().items()))


# --------------------------------------------------------------------------- paths and files


class Paths(Record):
    """Where the agent keeps things on this node."""

    etc: str = DEFAULT_ETC_DIR
    state: str = DEFAULT_STATE_DIR
    run: str = DEFAULT_RUN_DIR

    def etc_file(self, name: str) -> str:
        return os.path.join(self.etc, name)

    def state_file(self, name: str) -> str:
        return os.path.join(self.state, name)

    @property
    def pods_dir(self) -> str:
        return os.path.join(self.run, PODS_DIR)

    @property
    def backup(self) -> str:
        return os.path.join(self.state, BACKUP_DIR)

    @property
    def staging(self) -> str:
        return os.path.join(self.state, STAGING_DIR)

    def cli_args(self) -> list[str]:
        return ["--etc-dir", self.etc, "--state-dir", self.state, "--run-dir", self.run]


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_json(path: str) -> dict | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def make_dir(path: str, mode: int = DIR_MODE) -> None:
    """mkdir -p with `mode` on every directory it creates (os.makedirs masks it with the umask)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        make_dir(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return  # made meanwhile by another process, with its own mode
    os.chmod(path, mode)


def fsync_dir(path: str) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """Make every file and directory under root durable."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def write_text(path: str, text: str, mode: int = 0o644, durable: bool = True) -> None:
    """Atomic write (temp file + rename): a crash leaves the old file or the new one, never half a file.

    durable: also on disk before returning (fsync of the file, and of the directory after the rename),
    so that a power loss cannot undo it or reorder it with a later write.
    """
    folder = os.path.dirname(path)
    make_dir(folder)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(folder)


def write_if_changed(path: str, text: str, mode: int = 0o644) -> bool:
    """write_text unless the file already holds `text` with `mode` (no write, so no space needed)."""
    try:
        same = read_text(path) == text and os.stat(path).st_mode & 0o7777 == mode
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        write_text(path, text, mode)
    return not same


def json_text(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_json(path: str, data: dict, mode: int = 0o644, durable: bool = True) -> None:
    write_text(path, json_text(data), mode, durable=durable)


def private_dir(path: str) -> str:
    """`path` as a directory only its owner, this agent's user, can enter: 0700 whatever the umask."""
    os.makedirs(path, PRIVATE_DIR_MODE, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise AgentError(f"{path} is not a directory owned by uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def remove(path: str) -> bool:
    if not os.path.lexists(path):  # (unlink on a read-only filesystem fails with EROFS even then)
        return False
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def load_state(paths: Paths) -> dict:
    return read_json(paths.state_file(STATE_FILE)) or {}


def save_state(paths: Paths, state: dict) -> None:
    write_json(paths.state_file(STATE_FILE), state)


# --------------------------------------------------------------------------- commands


def run(argv: list[str], stdin: str | None = None, check: bool = True, timeout: float = CMD_TIMEOUT,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run argv (never a shell string); AgentError with stderr when it fails and `check`."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                              check=False, env=env, cwd="/")
    except FileNotFoundError:
        raise AgentError("command not found: " + argv[0]) from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()[-2000:]
        raise AgentError(f"{' '.join(argv[:4])} failed (exit {proc.returncode}): {err}")
    return proc


def ok(cmd: list[str]) -> bool:
    try:
        return run(cmd, check=False).returncode == 0
    except AgentError:
        return False


# --------------------------------------------------------------------------- iptables state


def parse_save(text: str, table: str, prefix: str = OWNED_PREFIX) -> dict:
    """Owned part of one table's `iptables-save` output.

    Returns {"chains": [owned chain names], "rules": {chain: ["-A CHAIN ..." lines]},
    "jumps": [[builtin chain, 1-based position, line]], "counts": {builtin chain: rule count}}.
    """
    chains: list[str] = []
    rules: dict[str, list[str]] = {}
    jumps: list[list] = []
    counts: dict[str, int] = {}
    in_table = False
    for raw in text.splitlines():
        line = COUNTERS_RE.sub("", raw.strip())
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            in_table = line[1:] == table
            continue
        if not in_table or line == "COMMIT":
            continue
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(prefix):
                chains.append(name)
                rules.setdefault(name, [])
            continue
        if not line.startswith("-A "):
            continue
        chain = line.split()[1]
        if chain.startswith(prefix):
            rules.setdefault(chain, []).append(line)
            continue
        counts[chain] = counts.get(chain, 0) + 1
        if chain in BUILTIN_CHAINS and (rule_target(line) or "").startswith(prefix):
            jumps.append([chain, counts[chain], line])
    return {"chains": chains, "rules": rules, "jumps": jumps, "counts": counts}


def rule_target(line: str) -> str | None:
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    for flag in ("-j", "-g", "--jump", "--goto"):
        if flag in words[:-1]:
            return words[words.index(flag) + 1]
    return None


def snapshot(prefix: str = OWNED_PREFIX, family: int = IPV4) -> dict:
    """The live owned rules of filter and nat (of ip6tables for IPV6: none where the node has no
    ip6tables, so a node without IPv6 support keeps working for IPv4 rules)."""
    if family == IPV6 and not ip6tables_usable():
        return empty_snapshot()
    text = run([IPT_COMMANDS[family][1]]).stdout  # every table in one process; a table not listed has no rules
    return {t: parse_save(text, t, prefix) for t in TABLES}


def empty_snapshot() -> dict:
    return {t: {"chains": [], "rules": {}, "jumps": [], "counts": {}} for t in TABLES}


def normal_form(snap: dict) -> str:
    """Order-independent text of owned chains + jump rules (counters stripped)."""
    out = []
    for table in TABLES:
        st = snap[table]
        out.append("*" + table)
        out.extend(":" + c for c in sorted(st["chains"]))
        for chain in sorted({j[0] for j in st["jumps"]}):
            out.extend(j[2] for j in st["jumps"] if j[0] == chain)
        for chain in sorted(st["chains"]):
            out.extend(st["rules"].get(chain, []))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def stale_chains(snap: dict) -> list[str]:
    return sorted(c for c in snap["nat"]["chains"] if c.startswith(STALE_PREFIXES))


def transition_text(live: dict, target: dict) -> str:
    """One `iptables-restore --noflush` transaction taking live owned state to `target` (rollback).

    Deletes live jump rules, flushes/creates every owned chain of either side,
    deletes owned chains `target` lacks, writes target's rules and inserts target's jump rules at
    their recorded positions (clamped to the chain's current length).
    """
    out = []
    for table in TABLES:
        lv, tg = live[table], target[table]
        if not (lv["chains"] or lv["jumps"] or tg["chains"] or tg["jumps"]):
            continue
        out.append("*" + table)
        counts = dict(lv["counts"])
        deletes, inserts = [j[2] for j in lv["jumps"]], list(tg["jumps"])
        for line in deletes:
            chain = line.split()[1]
            out.append("-D " + line[3:])
            counts[chain] = counts.get(chain, 0) - 1
        chains = list(tg["chains"]) + [c for c in lv["chains"] if c not in tg["chains"]]
        out.extend(f":{c} - [0:0]" for c in chains)
        out.extend("-X " + c for c in lv["chains"] if c not in tg["chains"])
        for c in tg["chains"]:
            out.extend(tg["rules"].get(c, []))
        for chain, pos, line in sorted(inserts, key=lambda j: (j[0], j[1])):
            where = max(1, min(int(pos), counts.get(chain, 0) + 1))
            out.append(f"-I {chain} {where} {line[len('-A ' + chain) + 1:]}")
            counts[chain] = counts.get(chain, 0) + 1
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def restore_proc(text: str, test: bool = False, scratch: bool = False,
                 save_after: bool = False, family: int = IPV4) -> subprocess.CompletedProcess:
    """`iptables-restore [--test] -w 5 --noflush` of text (retried without -w where unsupported);
    `ip6tables-restore` for IPV6.

    scratch: in a fresh, empty network namespace (`unshare --net`); save_after: then print that
    namespace's `iptables-save` (the kernel's normal form of what was loaded).
    """
    _, save, restore = IPT_COMMANDS[family]

    def attempt(wait: list[str]) -> subprocess.CompletedProcess:
        args = [*(["--test"] if test else []), *wait, "--noflush"]
        if not scratch:
            return run([restore, *args], stdin=text, check=False)
        script = f'{restore} "$@" && exec {save}' if save_after else f'exec {restore} "$@"'
        return run(["unshare", "--net", "--", "sh", "-c", script, "sh", *args], stdin=text, check=False)

    proc = attempt(["-w", IPTABLES_WAIT])
    if proc.returncode != 0 and re.search(r"unrecognized option|invalid option|unknown option", proc.stderr):
        proc = attempt([])
    return proc


def iptables_restore(text: str, test: bool = False, scratch: bool = False, save_after: bool = False,
                     family: int = IPV4) -> str:
    """restore_proc, raising AgentError with iptables' own message on failure; returns stdout."""
    proc = restore_proc(text, test, scratch, save_after, family)
    if proc.returncode != 0:
        raise AgentError("{}{}{} failed: {}".format(IPT_COMMANDS[family][2], " --test" if test else "",
                                                    " (scratch netns)" if scratch else "", proc.stderr.strip()[-3000:]))
    return proc.stdout


def restore_word(word: str) -> str:
    """One argument as iptables-restore's tokenizer reads it (it knows double quotes only)."""
    if re.fullmatch(r"[A-Za-z0-9_./:,!+=%@-]+", word):
        return word
    if '"' in word or "\\" in word or "'" in word:
        raise AgentError(f"jumps.rules: argument {word!r} cannot be written for iptables-restore")
    return '"' + word + '"'


def parse_jumps(text: str, prefix: str = OWNED_PREFIX, name: str = JUMPS_FILE) -> list[tuple[str, str, list[str]]]:
    """`-t TABLE -A CHAIN ARGS...` lines (svcnet/render/jumps.py) → (table, chain, args); `name`: the file's."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise AgentError(f"{name} line {n}: {exc}") from None
        if len(words) < 6 or words[0] != "-t" or words[2] != "-A" or words[1] not in TABLES:
            raise AgentError(f"{name} line {n}: expected '-t filter|nat -A CHAIN ARGS... -j TARGET'")
        args = words[4:]
        target = args[args.index("-j") + 1] if "-j" in args[:-1] else ""
        if words[3] not in BUILTIN_CHAINS or not target.startswith(prefix):
            raise AgentError(f"{name} line {n}: only jumps from built-in chains to {prefix}* chains "
                             "are allowed")
        out.append((words[1], words[3], args))
    return out


def ensure_jumps(text: str, prefix: str = OWNED_PREFIX, family: int = IPV4) -> int:
    """kube-proxy's EnsureRule(Prepend) for each jump rule, in file order; returns how many were added."""
    added = 0
    cmd = IPT_COMMANDS[family][0]
    for table, chain, args in parse_jumps(text, prefix, FAMILY_FILES[family][1]):
        if run([cmd, "-w", IPTABLES_WAIT, "-t", table, "-C", chain, *args], check=False).returncode == 0:
            continue
        run([cmd, "-w", IPTABLES_WAIT, "-t", table, "-I", chain, "1", *args])
        added += 1
    return added


def canonical_jumps(text: str, prefix: str = OWNED_PREFIX, family: int = IPV4) -> dict:
    """The jump rules as iptables-save prints them, per table: [(chain, "-A CHAIN ...")] in file order.

    They are loaded into a scratch netns (with empty target chains) and read back, so the node's own
    iptables decides the canonical form; one short-lived process chain, no rules touched on the node.
    """
    jumps = parse_jumps(text, prefix, FAMILY_FILES[family][1])
    out: dict = {t: [] for t in TABLES}
    if not jumps:
        return out
    lines = []
    for table in TABLES:
        mine = [(chain, args) for t, chain, args in jumps if t == table]
        if not mine:
            continue
        lines.append("*" + table)
        targets = dict.fromkeys(args[args.index("-j") + 1] for _, args in mine)
        lines.extend(f":{t} - [0:0]" for t in targets)
        lines.extend("-A {} {}".format(chain, " ".join(restore_word(w) for w in args)) for chain, args in mine)
        lines.append("COMMIT")
    saved = iptables_restore("\n".join(lines) + "\n", scratch=True, save_after=True, family=family)
    for table in TABLES:
        got = parse_save(saved, table, prefix)["jumps"]
        by_chain: dict = {}
        for chain, _, line in got:
            by_chain.setdefault(chain, []).append(line)
        for t, chain, _args in jumps:
            if t == table:
                if not by_chain.get(chain):
                    raise AgentError(f"jump rule from {chain} was not read back from iptables-save")
                out[table].append((chain, by_chain[chain].pop(0)))
    return out


def rules_transaction(restore: str, jumps: dict, live: dict, keep: frozenset[str] = frozenset()) -> str:
    """The rendered restore text extended, per table, to a full transaction from the live state.

    Adds, before each table's COMMIT: kube-proxy's EnsureRule(Prepend) for the jump rules not yet
    present (`-I CHAIN 1`, in file order), `-D` for other owned jump rules, and flush + `-X` for owned
    chains the restore neither writes nor deletes nor `keep`s (a partial restore's untouched chains).
    Foreign rules are never named.
    """
    written = restore_chains(restore)
    extra: dict = {}
    for t in TABLES:
        want = [line for _, line in jumps[t]]
        have = [j[2] for j in live[t]["jumps"]]
        ops = ["-D " + line[3:] for line in multiset_minus(have, want)]
        for chain, line in jumps[t]:
            if line not in have:
                ops.append(f"-I {chain} 1 {line[len('-A ' + chain) + 1:]}")
        declared, deleted = written[t]
        stale = [c for c in live[t]["chains"] if c not in declared and c not in deleted and c not in keep]
        ops.extend(f":{c} - [0:0]" for c in stale)
        ops.extend("-X " + c for c in stale)
        if ops:
            extra[t] = ops
    out, table = [], ""
    for line in restore.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        if line.strip() == "COMMIT" and table in extra:
            out.extend(extra.pop(table))
        out.append(line)
    for t, ops in extra.items():  # a table the restore text does not write
        out.extend(["*" + t, *ops, "COMMIT"])
    return "\n".join(out) + "\n"


def multiset_minus(items: list[str], remove: list[str]) -> list[str]:
    """items without one occurrence of each element of remove (duplicates of a wanted rule are extra)."""
    left = list(items)
    for x in remove:
        if x in left:
            left.remove(x)
    return left


# The options that name an iptables command or table: a restore line holds one command, its first word
# (iptables refuses a second one as well; refused here too, so that no such line reaches it).
COMMAND_FLAGS = frozenset({
    "-A", "-C", "-D", "-E", "-F", "-I", "-L", "-N", "-P", "-R", "-S", "-X", "-Z", "-t", "--append", "--check",
    "--delete", "--delete-chain", "--flush", "--insert", "--list", "--list-rules", "--new-chain", "--policy",
    "--rename-chain", "--replace", "--table", "--zero",
})
RESTORE_TOKEN_RE = re.compile(r'"[^"]*"|\S+')  # iptables-restore's tokenizer knows double quotes only


def check_restore(text: str, prefix: str = OWNED_PREFIX, name: str = RESTORE_FILE) -> None:
    """Refuse a rules.restore that names anything but svcnet's own chains of filter and nat.

    Only the lines the renderer writes pass: `*filter`/`*nat`, `COMMIT`, `:CHAIN - [n:n]`,
    `-A CHAIN ...` and `-X CHAIN` with CHAIN under the owned prefix. A built-in chain (rule, flush,
    policy), a foreign chain or another table is refused, so a wrong or hostile controller cannot
    reach them through the restore: the jump rules from built-in chains come from jumps.rules.
    """
    table = ""
    for n, raw in enumerate(text.split("\n"), 1):  # lines as iptables-restore splits them
        line = raw.strip(" \t")
        where = f"{name} line {n}"
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line):
            raise AgentError(f"{where}: control character")
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if table or line[1:] not in TABLES:
                raise AgentError(f"{where}: table {line[1:]!r} (only filter and nat, each closed by COMMIT)")
            table = line[1:]
            continue
        if not table:
            raise AgentError(f"{where}: outside a table")
        if line == "COMMIT":
            table = ""
            continue
        words = RESTORE_TOKEN_RE.findall(line)
        if line.startswith(":"):
            chain = words[0][1:]
            well_formed = re.fullmatch(r":\S+ - \[\d+:\d+\]", line) is not None
        else:
            chain = words[1] if len(words) > 1 else ""
            well_formed = (words[0] == "-A" and len(words) > 2) or (words[0] == "-X" and len(words) == 2)
            well_formed = well_formed and not COMMAND_FLAGS.intersection(words[2:])
        if not well_formed:
            raise AgentError(f"{where}: only ':CHAIN - [0:0]', '-A CHAIN ...' and '-X CHAIN' lines are allowed")
        if not chain.startswith(prefix) or chain in BUILTIN_CHAINS:
            raise AgentError(f"{where}: chain {chain!r} is not svcnet's (only {prefix}* chains)")
    if table:
        raise AgentError(f"{name}: table {table!r} has no COMMIT")


def restore_chains(restore: str) -> dict:
    """Per table of a restore text: (chains it declares with `:NAME`, chains it deletes with `-X`)."""
    out: dict = {t: (set(), set()) for t in TABLES}
    table = ""
    for line in restore.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table in out and line.startswith(":"):
            out[table][0].add(line[1:].split()[0])
        elif table in out and line.startswith("-X "):
            out[table][1].add(line.split()[1])
    return out


def rules_mismatch(final: dict, restore: str, jumps: dict, keep: frozenset[str] = frozenset()) -> str:
    """Why the live owned state is not what the transaction wrote ("" when it is); `keep`: the chains
    a partial restore left untouched."""
    written = restore_chains(restore)
    for t in TABLES:
        declared, deleted = written[t]
        chains, want_chains = set(final[t]["chains"]), (declared - deleted) | (keep if t == "nat" else set())
        if chains != want_chains:
            return "{}: owned chains differ (unexpected: {}; missing: {})".format(
                t, ", ".join(sorted(chains - want_chains)) or "-", ", ".join(sorted(want_chains - chains)) or "-")
        have = [j[2] for j in final[t]["jumps"]]
        want = [line for _, line in jumps[t]]
        if sorted(have) != sorted(want):
            return f"{t}: jump rules differ (live {len(have)}, desired {len(want)})"
    return ""


def set_owned_rules(target: dict, prefix: str = OWNED_PREFIX, family: int = IPV4) -> bool:
    """Make the live owned rules exactly `target` (one transaction); True if anything changed."""
    live = snapshot(prefix, family)
    if normal_form(live) == normal_form(target):
        return False
    text = transition_text(live, target)
    if text:
        iptables_restore(text, family=family)
    return True


# --------------------------------------------------------------------------- incremental apply (iptables mode)
# kube-proxy's MinimizeIPTablesRestore (KEP-3453; pkg/proxy/iptables/proxier.go, `tryPartialSync`):
# iptables-restore --noflush leaves every chain it does not declare alone, so when the node's live rules
# are exactly what svcnet last applied, a restore needs only the chains of the services whose rules
# changed, the fixed chains in full (the filter table, KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING,
# KUBE-MARK-MASQ: what kube-proxy always writes) and `:C` + `-X C` for the chains of removed services.
# What was applied is kept per service (IPT_RECORD_FILE: a hash of each service's nat chains and their
# names), so the change is found without reading the node's table. A service's chains are found from
# the rendered text alone: KUBE-SVC/SVL/EXT/FW-h of one service port share the hash h, a KUBE-SEP
# chain belongs to the SVC/SVL chain that jumps to it, and the port belongs to the Service its
# KUBE-SERVICES/KUBE-NODEPORTS rules name in their comments (`ns/name:port ...`). Grouping only
# decides how much is rewritten: a group whose text differs in any way is written whole, so a
# partial restore leaves the node as a full one would, whatever the grouping.

IPT_RECORD_FILE = "iptables-applied.json"  # state_dir: per service, the hash and chains last applied
IPT_SYNC_KEY = "rules_sync"  # state.json: how the last rules restore was made ("full" or "partial")
SYNC_FULL, SYNC_PARTIAL = "full", "partial"
IPT_COMMENT_RE = re.compile(r'--comment (?:"([^"]*)"|(\S+))')
IPT_TARGET_RE = re.compile(r" -[jg] (\S+)")


def ipt_parse_restore(text: str) -> dict[str, tuple[dict[str, list[str]], list[str]]]:
    """Per table of a restore text: ({chain: its `-A` lines, in declaration order}, chains deleted by `-X`)."""
    out: dict[str, tuple[dict[str, list[str]], list[str]]] = {}
    chains: dict[str, list[str]] = {}
    deleted: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            chains, deleted = {}, []
            out[line[1:].strip()] = (chains, deleted)
        elif line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chains.setdefault(line.split(None, 2)[1], []).append(line)
        elif line.startswith("-X "):
            deleted.append(line.split()[1])
    return out


def is_service_chain(name: str) -> bool:
    return name.startswith(STALE_PREFIXES)


def ipt_comment_service(line: str) -> str | None:
    """The `ns/name` a rule's comment starts with (kube-proxy's servicePortName, then ' ' or ':')."""
    m = IPT_COMMENT_RE.search(line)
    if not m:
        return None
    word = re.split(r"[ :]", m.group(1) if m.group(1) is not None else m.group(2), maxsplit=1)[0]
    return word if word.count("/") == 1 else None


def ipt_service_groups(chains: dict[str, list[str]]) -> dict[str, str]:
    """Each service chain of a nat table ({chain: rules}) → the key of the service it belongs to."""
    def port_of(name: str) -> str:
        return name.split("-", 2)[2]  # KUBE-SVC-h, KUBE-SVL-h, KUBE-EXT-h and KUBE-FW-h share h

    owner: dict[str, str] = {}  # chain -> service-port hash
    for name, rules in chains.items():
        if not is_service_chain(name) or name.startswith("KUBE-SEP-"):
            continue
        owner[name] = port_of(name)
        for line in rules:
            m = IPT_TARGET_RE.search(line)
            if m and m.group(1).startswith("KUBE-SEP-"):
                owner.setdefault(m.group(1), port_of(name))
    service: dict[str, str] = {}  # service-port hash -> ns/name, from the top-level rules' comments
    for name, rules in chains.items():
        if is_service_chain(name):
            continue
        for line in rules:
            m = IPT_TARGET_RE.search(line)
            found = ipt_comment_service(line) if m and is_service_chain(m.group(1)) else None
            if found:
                service.setdefault(port_of(m.group(1)), found)  # type: ignore[union-attr]
    out = {}
    for name in chains:
        if is_service_chain(name):
            port = owner.get(name, name)  # an unreferenced SEP chain: a group of its own
            out[name] = service.get(port, "port " + port)
    return out


def ipt_record(restore: str) -> dict[str, list]:
    """What a restore leaves in the nat table, per service: {key: [hash of its chains' text, [chains]]}."""
    chains, deleted = ipt_parse_restore(restore).get("nat", ({}, []))
    gone = set(deleted)
    kept = {name: rules for name, rules in chains.items() if name not in gone}
    members: dict[str, list[str]] = {}
    for name, key in ipt_service_groups(kept).items():
        members.setdefault(key, []).append(name)
    return {key: [sha256("".join(f":{n}\n" + "".join(r + "\n" for r in kept[n]) for n in sorted(names))),
                  sorted(names)] for key, names in members.items()}


def ipt_partial_restore(restore: str, applied: dict[str, list],
                        record: dict[str, list] | None = None) -> tuple[str, frozenset[str]]:
    """The restore that takes a node holding `applied` (ipt_record of the last restore) to `restore`'s
    state, and the service chains it leaves untouched.

    Written: the filter table and the nat chains that are not service chains, in full; every chain
    of a service whose record differs (or is new); `:C` + `-X C` for each chain of `applied` that
    `restore` does not keep, and what `restore` itself deletes. Lines keep `restore`'s order.
    `record`: ipt_record(restore), when the caller has it.
    """
    record = ipt_record(restore) if record is None else record
    keep = frozenset(c for key, (digest, names) in record.items() if applied.get(key, [None])[0] == digest
                     for c in names)
    wanted = {c for _digest, names in record.values() for c in names}
    own_deletes = set(ipt_parse_restore(restore).get("nat", ({}, []))[1])
    removed = [c for _digest, names in applied.values() for c in names if c not in wanted and c not in own_deletes]
    skip = keep - own_deletes  # (sets: this runs once per line of a ruleset of 100,000 lines)
    out: list[str] = []
    table = ""
    for line in restore.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line == "COMMIT":
            out.extend(f":{c} - [0:0]" for c in removed)
            out.extend(f"-X {c}" for c in removed)
        elif table == "nat" and line.startswith((":", "-A ")):
            name = line[1:].split(None, 1)[0] if line[0] == ":" else line.split(None, 2)[1]
            if name in skip:
                continue
        out.append(line)
    return "\n".join(out) + "\n", keep


def ipt_sync_plan(paths: Paths, mode: str, restore: str, live_hash: str, saved_hash: object,
                  record: dict[str, list]) -> tuple[str, frozenset[str], str]:
    """The restore an apply writes, the chains it keeps, and SYNC_FULL or SYNC_PARTIAL.

    Partial only in iptables mode and when the node's live rules (`live_hash`, of rules_normal) are
    what the last apply recorded (`saved_hash`) and that apply left its per-service record for the
    same state; otherwise (drift, a first apply, a failed apply or a rollback since, a mode switch)
    the full restore. `record`: ipt_record(restore).
    """
    full: tuple[str, frozenset[str], str] = (restore, frozenset(), SYNC_FULL)
    if mode != MODE_IPTABLES or live_hash != saved_hash or "*nat" not in restore.splitlines():
        return full
    applied = read_json(paths.state_file(IPT_RECORD_FILE)) or {}
    services = applied.get("services")
    if applied.get("for") != live_hash or not isinstance(services, dict):
        return full
    if not all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list)
               and all(isinstance(c, str) for c in v[1]) for v in services.values()):
        return full  # not a record this agent wrote
    text, keep = ipt_partial_restore(restore, services, record)
    return text, keep, SYNC_PARTIAL


def ipt_record_applied(paths: Paths, mode: str, record: dict[str, list], final_hash: str) -> None:
    """After an apply: the per-service record of what it left (iptables mode), for the state `final_hash`."""
    if mode != MODE_IPTABLES:
        remove(paths.state_file(IPT_RECORD_FILE))
        return
    write_json(paths.state_file(IPT_RECORD_FILE), {"for": final_hash, "services": record})


# --------------------------------------------------------------------------- IPv6 rules
# A dual-stack description has the node's IPv6 proxier's rules in rules6.restore and jumps6.rules,
# applied with ip6tables beside the IPv4 ones in the same guarded apply (Commit): both transactions
# are tested before either is applied, and the backup, rollback, boot, teardown and the rules hash
# cover both. Where neither the description nor the node has any of svcnet's IPv6 chains, ip6tables
# is never written (only read, where it is there), and those files are not kept in etc_dir.
FAMILY_FILES = {IPV4: (RESTORE_FILE, JUMPS_FILE), IPV6: (RESTORE6_FILE, JUMPS6_FILE)}
IPV6_FILES = FAMILY_FILES[IPV6]
IPV6_RULES_HEADER = "# IPv6 (ip6tables)\n"  # before the IPv6 chains in rules_normal (so in a rules diff)


def ip6tables_usable() -> bool:
    """Can this node list ip6tables rules (the command, and a kernel with IPv6)?"""
    return shutil.which(IPT_COMMANDS[IPV6][1]) is not None and os.path.exists("/proc/net/if_inet6")


def has_owned(snap: dict) -> bool:
    """Does the snapshot hold any of svcnet's chains or jump rules?"""
    return any(snap[t]["chains"] or snap[t]["jumps"] for t in TABLES)


def no_jumps() -> dict:
    """canonical_jumps of no jump rules."""
    return {t: [] for t in TABLES}


def wants_ipv6(arts: dict[str, str]) -> bool:
    """Does an apply of these artifacts write IPv6 rules?"""
    return any(arts.get(name) for name in IPV6_FILES)


# --------------------------------------------------------------------------- scratch namespace


def agent_source() -> str:
    src = globals().get("AGENT_SOURCE")
    if isinstance(src, str) and src:
        return src
    with open(os.path.abspath(__file__)) as f:  # file mode
        return f.read()


def in_scratch_netns(request: dict) -> dict:
    """Run this agent with `request` inside a fresh, empty network namespace (`unshare --net`)."""
    payload = json.dumps({"agent": agent_source(), "request": request})
    python = [sys.executable or "python3", *PYTHON_FLAGS]
    proc = run(["unshare", "--net", "--", *python, "-c", BOOTSTRAP], stdin=payload, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise AgentError("scratch network namespace failed (unshare --net): " + proc.stderr.strip()[-1000:])
    resp = json.loads(lines[-1])
    if not resp.get("ok"):
        raise AgentError(resp.get("msg", "scratch namespace step failed"))
    return resp


def is_scratch_netns() -> bool:
    """Is this process in a network namespace of its own (not its parent's) with only loopback and no rules?

    in_scratch_netns's `unshare --net` makes exactly that; the node's namespace has its links and
    is its parent's (sshd, a shell).
    """
    try:
        with open("/proc/self/net/dev") as f:  # the calling task's own namespace, whatever /sys shows
            links = {ln.split(":")[0].strip() for ln in f.read().splitlines()[2:] if ":" in ln}
        own = os.stat("/proc/self/ns/net").st_ino != os.stat(f"/proc/{os.getppid()}/ns/net").st_ino
    except OSError:
        return False
    if links != {"lo"} or not own:
        return False
    saved = run(["iptables-save"], check=False).stdout
    return not any(ln.startswith("-A ") or (ln.startswith(":") and ln[1:].split()[0] not in BUILTIN_CHAINS)
                   for ln in saved.splitlines())


def op_scratch_normalize(req: ScratchRequest) -> ScratchAnswer:
    """Inside a scratch netns: load the restore text + jump rules, return the kernel's normal form.

    Refused anywhere else: it loads rules without lock, backup or ownership checks.
    """
    if not is_scratch_netns():
        raise AgentError("_scratch_normalize runs only in a fresh network namespace of its own "
                         "(in_scratch_netns), not on the node")
    iptables_restore(req.restore, family=req.family)
    ensure_jumps(req.jumps, req.owned_prefix, req.family)
    snap = snapshot(req.owned_prefix, req.family)
    return ScratchAnswer(True, False, "", snapshot=snap, normal=normal_form(snap))


def scratch_features() -> dict:
    """Which rule features the kernel + iptables accept, each rule loaded into a scratch netns.

    All at once first (one process on a capable node); one by one only when that fails.
    """
    def text(rules: tuple) -> str:
        return "".join("*{}\n{}\nCOMMIT\n".format(t, "\n".join(r for _, tt, r in rules if tt == t))
                       for t in TABLES if any(tt == t for _, tt, _ in rules))

    if restore_proc(text(FEATURE_RULES), scratch=True).returncode == 0:
        return {name: True for name, _, _ in FEATURE_RULES}
    probe = run(["unshare", "--net", "--", "true"], check=False)
    if probe.returncode != 0:
        raise AgentError("scratch network namespace failed (unshare --net): " + probe.stderr.strip()[-1000:])
    return {name: restore_proc(text(((name, table, rule),)), scratch=True).returncode == 0
            for name, table, rule in FEATURE_RULES}


def desired_snapshot(artifacts: dict, prefix: str, family: int = IPV4) -> tuple[dict, str]:
    restore, jumps = FAMILY_FILES[family]
    resp = in_scratch_netns({"op": "_scratch_normalize", "restore": artifacts[restore],
                             "jumps": artifacts.get(jumps, ""), "owned_prefix": prefix, "family": family})
    return resp["snapshot"], resp["normal"]


# --------------------------------------------------------------------------- facts


def iptables_version() -> tuple[str, str]:
    out = run(["iptables", "--version"], check=False).stdout
    m = re.search(r"v(\d+(?:\.\d+)*)", out)
    backend = "nf_tables" if "nf_tables" in out else "legacy"
    return (m.group(1) if m else ""), backend


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def nfacct_counters() -> list[str]:
    if not shutil.which("nfacct"):
        return []
    out = run(["nfacct", "list"], check=False).stdout
    return sorted(set(re.findall(r"=\s*([A-Za-z0-9_.-]+)\s*;", out)))


def gather_facts(scratch: bool = True, features: dict | None = None) -> dict:
    """What kube-proxy would detect; `features` (from a scratch-netns check already made) saves a second one."""
    version, backend = iptables_version()
    random_fully = version_tuple(version) >= (1, 6, 2)
    if features:
        random_fully = bool(features.get("random_fully"))
    elif scratch and shutil.which("unshare"):
        try:
            feats = scratch_features()
            random_fully = bool(feats.get("random_fully"))
        except AgentError as exc:
            log(f"random-fully probe failed, using the iptables version: {exc}")
    liberal = (read_text("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal") or "0").strip() == "1"
    return {
        "random_fully": random_fully,
        "nfacct_counters": nfacct_counters(),
        "tcp_be_liberal": liberal,
        "iptables_version": version,
        "iptables_backend": backend,
        "nft_version": nft_version(),  # "" without nft (nftables mode's preflight needs NFT_MIN_VERSION)
        "systemd": os.path.isdir(SYSTEMD_RUN),
        "hostname": os.uname().nodename,
        "python": ".".join(str(x) for x in sys.version_info[:3]),
    }


# --------------------------------------------------------------------------- nftables mode
# kube-proxy's nftables mode keeps its rules in tables of its own, `ip kube-proxy` and `ip6 kube-proxy`
# (pkg/proxy/nftables/proxier.go, `kubeProxyTable`): svcnet owns exactly those two tables and nothing
# else of the nftables ruleset. The controller sends one self-contained `nft -f` script per node
# (rules.nft) that replaces each table it writes in one transaction (`add table`, `delete table`, then
# the whole table); the agent refuses any statement about anything else (check_nft_script), checks it
# with `nft --check`, and applies it with one `nft -f`.

MODE_IPTABLES, MODE_NFTABLES = "iptables", "nftables"  # kube-proxy's --proxy-mode values svcnet applies
PROXY_MODES = (MODE_IPTABLES, MODE_NFTABLES)
NFT_TABLE = "kube-proxy"
NFT_FAMILIES = ("ip", "ip6")
NFT_VERBS = frozenset({"add", "create", "insert", "replace", "delete", "flush"})
NFT_OBJECTS = frozenset({"table", "chain", "set", "map", "rule", "element"})
NFT_BANNED_WORDS = frozenset({"include", "define", "redefine", "undefine"})
# knftables runs `nft --version` and refuses nft older than 1.0.1 (sigs.k8s.io/knftables, `New`).
NFT_MIN_VERSION = (1, 0, 1)
NFT_PACKAGE = "nftables"


def as_mode(key: str, value: object) -> str:
    if value not in PROXY_MODES:
        raise _refuse(key, " or ".join(PROXY_MODES), value)
    return str(value)


# The rules part's files that belong to one proxy mode (the health checks' file serves both).
MODE_RULE_FILES = (RESTORE_FILE, JUMPS_FILE, NFT_FILE, RESTORE6_FILE, JUMPS6_FILE)


def mode_files(mode: str) -> tuple[str, ...]:
    """The rules part's files a proxy mode applies (the other mode's are removed from etc_dir)."""
    return (NFT_FILE,) if mode == MODE_NFTABLES else (RESTORE_FILE, JUMPS_FILE, RESTORE6_FILE, JUMPS6_FILE)


def other_mode_file(name: str, mode: str) -> bool:
    """`name` is a rules file of the proxy mode other than `mode`."""
    return name in MODE_RULE_FILES and name not in mode_files(mode)


def not_kept(name: str, mode: str) -> bool:
    """An empty `name` is not kept in etc_dir: another mode's rules file, or an IPv6 one (IPv6_FILES)."""
    return other_mode_file(name, mode) or name in IPV6_FILES


# nft's lexemes as far as the statement split needs them: a string, a comment, a brace, a statement end,
# or a run of anything else; what a run may not hold is NFT_BAD_CHAR_RE's.
NFT_LEXEME_RE = re.compile(r'"[^"\n]*"|"[^"\n]*|#[^\n]*|[{}]|[;\n]|[^"#{};\n]+')
NFT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anywhere, strings and comments too
NFT_BAD_CHAR_RE = re.compile(r"[$'\\]")  # outside strings and comments


def nft_statements(text: str) -> list[tuple[int, str]]:
    """The top-level statements of an nft script as (line, text with comments dropped).

    nft ends a statement at a newline or `;` outside braces and quotes; a block `{ ... }` may span
    lines. What could make nft read anything but this text, or expand text it does not show, is
    refused by check_nft_script.
    """
    out: list[tuple[int, str]] = []
    cur: list[str] = []
    depth, line, start = 0, 1, 1
    for lexeme in NFT_LEXEME_RE.findall(text + "\n"):
        first = lexeme[0]
        if first == "#":
            continue
        if first == '"' and (len(lexeme) < 2 or lexeme[-1] != '"'):
            raise AgentError(f"{NFT_FILE} line {line}: unterminated string")
        if first == "{":
            depth += 1
        elif first == "}":
            depth -= 1
            if depth < 0:
                raise AgentError(f"{NFT_FILE} line {line}: '}}' without '{{'")
        if depth == 0 and first in "\n;":
            stmt = "".join(cur).strip()
            if stmt:
                out.append((start, stmt))
            cur, start = [], line + (first == "\n")
        else:
            cur.append(" " if first == "\n" else lexeme)
        line += first == "\n"
    if depth:
        raise AgentError(f"{NFT_FILE}: '{{' at line {start} is never closed")
    return out


# On a script without its strings and comments: words that read other files or rewrite the text, and
# a base chain policy other than accept (each a whole word, as nft's scanner reads one).
NFT_BANNED_RE = re.compile(r"(?:include|define|redefine|undefine)(?=[\s{};]|$)")
NFT_POLICY_RE = re.compile(r"policy\s+(?!accept(?:[\s;}]|$))")
NFT_WORD_START = frozenset(" \t\n{};")  # what may stand before a word of nft's (so not x-include's "include")
NFT_STRING_OR_COMMENT_RE = re.compile(r'"[^"\n]*"|#[^\n]*')
NFT_HEAD_SPLIT_RE = re.compile(r"[\s{]+")


@functools.lru_cache(maxsize=2)  # a request's script is checked at parse, and read again by the apply
def check_nft_script(text: str) -> tuple[str, ...]:
    """Refuse a rules.nft that names anything but svcnet's tables; the families it writes, in order.

    Each statement must be `add|create|insert|replace|delete|flush table|chain|set|map|rule|element
    ip|ip6 kube-proxy ...` (family and table always written out); no `include`/`define` anywhere
    (they read other files or rewrite the text); a base chain's policy only `accept` (as kube-proxy
    writes them: a drop policy is a policy on the whole hook); and each table it writes must be
    replaced whole: its first two statements `add table F kube-proxy` then `delete table F
    kube-proxy`, so the script means the same whatever the table held before (and a scratch netns
    shows what it makes).
    """
    bare = NFT_STRING_OR_COMMENT_RE.sub(lambda m: '""' if m.group()[0] == '"' else "", text)
    for pattern, subject, why in (
            (NFT_CONTROL_RE, text, "character {!r} is not allowed"),
            (NFT_BAD_CHAR_RE, bare, "character {!r} is not allowed"),
            (NFT_BANNED_RE, bare, "{!r} is not allowed"),
            (NFT_POLICY_RE, bare, "a base chain's policy must be accept (a drop policy would drop what svcnet's "
                                  "rules do not name, as a policy on a built-in chain would)")):
        for found in pattern.finditer(subject):
            if found.group()[0].isalpha() and found.start() and subject[found.start() - 1] not in NFT_WORD_START:
                continue  # part of a longer word
            line = subject.count("\n", 0, found.start()) + 1
            raise AgentError(f"{NFT_FILE} line {line}: " + why.format(found.group().split()[0]
                                                                       if found.group().strip() else found.group()))
    statements = nft_statements(text)
    seen: dict[str, int] = {}
    for line, stmt in statements:
        where = f"{NFT_FILE} line {line}"
        words = NFT_HEAD_SPLIT_RE.split(stmt, maxsplit=4)
        verb, what, family, table = [*words[:4], "", "", "", ""][:4]
        if verb not in NFT_VERBS or what not in NFT_OBJECTS:
            raise AgentError("{}: only '{} {} ...' statements are allowed, not {!r}".format(
                where, "|".join(sorted(NFT_VERBS)), "|".join(sorted(NFT_OBJECTS)), " ".join(words[:2])[:80]))
        if family not in NFT_FAMILIES or table != NFT_TABLE:
            raise AgentError(f"{where}: table {family} {table} is not svcnet's "
                             f"(only {' and '.join(f + ' ' + NFT_TABLE for f in NFT_FAMILIES)})")
        n = seen[family] = seen.get(family, 0) + 1
        if n <= 2 and (what != "table" or verb != ("add", "delete")[n - 1] or (len(words) > 4 and n == 2)):
            raise AgentError(f"{where}: the script must replace table {family} {NFT_TABLE} whole: its first "
                             f"statements must be 'add table {family} {NFT_TABLE}' and 'delete table {family} "
                             f"{NFT_TABLE}'")
    return tuple(seen)


def check_nft_request(artifacts: dict[str, str]) -> None:
    """An nftables-mode apply sends rules.nft, writing at least one of svcnet's tables, and no iptables files."""
    if not check_nft_script(artifacts.get(NFT_FILE, "")):
        raise AgentError(f"proxy_mode {MODE_NFTABLES} needs artifacts with a {NFT_FILE} that writes "
                         f"table ip {NFT_TABLE} or ip6 {NFT_TABLE}")
    other = [name for name in mode_files(MODE_IPTABLES) if artifacts.get(name)]
    if other:
        raise AgentError(f"{', '.join(other)}: not applied in proxy_mode {MODE_NFTABLES} (send them empty)")


# nft's time grows with svcnet's table: measured on a shared 2-core VM, `nft -f` of a whole table took
# 205 s at 10,000 services (204k lines) and `nft --check` as long, beyond CMD_TIMEOUT. A script's
# commands get time in proportion to its lines (5x that rate); a listing, whose table size is not
# known before, a fixed bound that covers a 10,000-service table's listing on a loaded machine.
NFT_SECONDS_PER_LINE = 0.005
NFT_LIST_TIMEOUT = 900.0


def nft_timeout(stdin: str | None) -> float:
    return CMD_TIMEOUT + NFT_SECONDS_PER_LINE * stdin.count("\n") if stdin else NFT_LIST_TIMEOUT


def nft(args: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = run(["nft", *args], stdin=stdin, check=False, timeout=nft_timeout(stdin))
    if check and proc.returncode != 0:
        raise AgentError("nft {} failed: {}".format(" ".join(args), proc.stderr.strip()[-3000:]))
    return proc


def nft_version() -> str:
    """nft's version ("" when nft is not installed or says none)."""
    if not shutil.which("nft"):
        return ""
    m = re.search(r"v(\d+(?:\.\d+)+)", run(["nft", "--version"], check=False).stdout)
    return m.group(1) if m else ""


def nft_tables(listing: str) -> dict[str, str]:
    """Per family, svcnet's table in an `nft list` listing (top-level `table F NAME {` ... `}` blocks)."""
    out: dict[str, str] = {}
    family = ""
    current: list[str] = []
    for line in listing.splitlines():
        if line.startswith("table "):
            words = line.split()
            family = words[1] if len(words) >= 3 and words[1] in NFT_FAMILIES and words[2] == NFT_TABLE else ""
            current = []
        if family:
            current.append(line)
            if line == "}":
                out[family] = "\n".join(current) + "\n"
                family = ""
    return out


def nft_snapshot() -> dict[str, str]:
    """svcnet's live tables, per family, in normal form (nft_normal); {} where nft is not installed.

    Each table is listed by name (`nft list tables` first would cost as much as a small table's listing:
    nft fills its cache with the whole ruleset); an absent one is nft's "No such file or directory".
    """
    if not shutil.which("nft"):
        return {}
    out = {}
    for family in NFT_FAMILIES:
        proc = nft(["-s", "list", "table", family, NFT_TABLE], check=False)
        if proc.returncode == 0:
            out[family] = nft_normal(proc.stdout)
        elif "No such file or directory" not in proc.stderr:
            raise AgentError(f"nft list table {family} {NFT_TABLE} failed: {proc.stderr.strip()[-2000:]}")
    return out


def _close_depth(text: str, depth: int) -> int:
    """The brace depth after `text` (quoted strings skipped)."""
    for part in re.findall(r'"[^"]*"|[{}]', text):
        depth += {"{": 1, "}": -1}.get(part, 0)
    return depth


def _split_elements(body: str) -> list[str]:
    """The elements of a listing's `elements = { ... }` body, split on commas outside quotes and braces."""
    items, cur, depth = [], "", 0
    for part in re.findall(r'"[^"]*"|[{},]|[^"{},]+', body):
        if part == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(part, 0)
        cur += part
    if cur.strip():
        items.append(cur.strip())
    return items


def nft_normal(listing: str) -> str:
    """A table's `nft -s list table` listing in normal form: what svcnet compares, backs up and diffs.

    Set and map elements one per line and sorted (a hash set lists them in an order of its own);
    the elements of dynamic sets (session affinity's client records) dropped: they are traffic's
    state, not svcnet's rules. The result is valid `nft -f` input again.
    """
    out: list[str] = []
    lines = listing.splitlines()
    dynamic, i = False, 0
    while i < len(lines):
        line, text = lines[i], lines[i].strip()
        i += 1
        if text.startswith(("set ", "map ")):
            dynamic = False
        elif text.startswith("flags ") and "dynamic" in re.split(r"[\s,]+", text):
            dynamic = True
        if not text.startswith("elements = {"):
            out.append(line)
            continue
        body, depth = text[len("elements = {"):], _close_depth(text, 0)
        while depth > 0 and i < len(lines):
            body += " " + lines[i].strip()
            depth = _close_depth(lines[i], depth)
            i += 1
        if dynamic:
            continue
        indent = line[:len(line) - len(line.lstrip())]
        items = sorted(_split_elements(body.rstrip()[:-1]))
        out.append(indent + "elements = {")
        out.extend(f"{indent}\t{item}," for item in items[:-1])
        out.extend(f"{indent}\t{item}" for item in items[-1:])
        out.append(indent + "}")
    return "\n".join(nft_sorted_blocks(out)) + "\n" if out else ""


NFT_BLOCK_ORDER = {"set": 0, "map": 0, "chain": 1}  # sets and maps first, as nft lists them


def nft_sorted_blocks(lines: list[str]) -> list[str]:
    """A listing's lines with each table's blocks (sets, maps, chains) sorted by kind and name.

    nft lists a table's objects in the order they were created: an incremental apply (which adds a
    new service's chains last) and a full apply of the same rules would list differently.
    """
    out: list[str] = []
    blocks: list[tuple[tuple[int, str], list[str]]] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith("\t") and not line.startswith("\t\t") and line.endswith("{") and current is None:
            words = line.split()
            current = [line]
            blocks.append(((NFT_BLOCK_ORDER.get(words[0], 2), words[1] if len(words) > 2 else ""), current))
        elif current is not None:
            current.append(line)
            if line == "\t}":
                current = None
        elif line == "}" and blocks:  # the table's end: its blocks, sorted, blank-line separated
            for n, (_, block) in enumerate(sorted(blocks, key=lambda b: b[0])):
                out.extend(([""] if n else []) + block)
            blocks = []
            out.append(line)
        elif line or not blocks:
            out.append(line)
    return out


def rules_normal(snap: dict, tables: dict[str, str], snap6: dict | None = None) -> str:
    """svcnet's rules on the node in normal form: its iptables chains and jumps, its ip6tables ones
    (after IPV6_RULES_HEADER, where it has any), then its nft tables.

    Without nft tables and IPv6 chains the text is normal_form's alone, so a node in iptables mode
    with IPv4 rules only keeps its hashes.
    """
    v6 = IPV6_RULES_HEADER + normal_form(snap6) if snap6 is not None and has_owned(snap6) else ""
    return normal_form(snap) + v6 + "".join(tables[f] for f in NFT_FAMILIES if f in tables)


def live_rules_hash(prefix: str) -> str:
    """The hash of svcnet's live rules in both proxy modes and both families: what saved_rules_hash
    is compared with."""
    return sha256(rules_normal(snapshot(prefix), nft_snapshot(), snapshot(prefix, IPV6)))


# A rules diff's hunk header names the nft blocks open at the hunk's first line (as git names a
# function), "@@ -a,b +c,d @@ table ip kube-proxy > chain X": a drifted rule deep in a long chain
# is then attributed to its chain (verify's drift per service) without the whole table as context.
NFT_CONTEXT_SEP = " > "
NFT_HUNK_RE = re.compile(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def nft_heads_step(heads: list[str], line: str) -> list[str]:
    """The nft blocks open after `line`, given those open before it (a table's block starts the
    nesting, so iptables lines never open one)."""
    text = line.strip()
    if text.endswith("{") and (heads or line.startswith("table ")):
        return [*heads, text[:-1].strip()]
    if text == "}" and heads:
        return heads[:-1]
    return heads


def nft_hunk_context(diff: str, old: list[str]) -> str:
    """`diff` (a unified diff of `old`) with each hunk header naming the nft blocks open before it."""
    starts: dict[str, int] = {}
    for m in NFT_HUNK_RE.finditer(diff):
        first, count = int(m.group(1)), m.group(2)
        starts[m.group()] = first if count == "0" else first - 1  # lines of `old` before the hunk
    if not starts:
        return diff
    before: dict[int, list[str]] = {n: [] for n in starts.values()}
    heads: list[str] = []
    for n, line in enumerate(old[:max(before)]):
        heads = nft_heads_step(heads, line)
        if n + 1 in before:
            before[n + 1] = heads
    out = []
    for line in diff.splitlines(keepends=True):
        head = NFT_HUNK_RE.match(line)
        if head and before.get(starts[head.group()]):
            line = head.group() + " " + NFT_CONTEXT_SEP.join(before[starts[head.group()]]) + "\n"
        out.append(line)
    return "".join(out)


def nft_transaction(script: str, live: dict[str, str]) -> str:
    """The script, plus the deletion of svcnet's live tables it does not write (its other family,
    or every one when the node leaves nftables mode): one `nft -f` transaction."""
    written = check_nft_script(script) if script else ()
    drop = "".join(f"delete table {f} {NFT_TABLE}\n" for f in NFT_FAMILIES if f in live and f not in written)
    if not script and not drop:
        return ""
    return script + ("" if not script or script.endswith("\n") else "\n") + drop


def nft_mismatch(tables: dict[str, str], script: str) -> str:
    """Why svcnet's live nft tables are not those the script writes ("" when they are)."""
    want = set(check_nft_script(script)) if script else set()
    if set(tables) != want:
        return "nft tables differ (live: {}; desired: {})".format(
            ", ".join(f"{f} {NFT_TABLE}" for f in sorted(tables)) or "-",
            ", ".join(f"{f} {NFT_TABLE}" for f in sorted(want)) or "-")
    return ""


def set_nft_tables(target: dict[str, str]) -> bool:
    """Make svcnet's live tables exactly `target` (per family, normal form) in one transaction."""
    live = nft_snapshot()
    if live == target:
        return False
    script = "".join(f"add table {f} {NFT_TABLE}\ndelete table {f} {NFT_TABLE}\n{target[f]}"
                     for f in NFT_FAMILIES if f in target)
    script += "".join(f"delete table {f} {NFT_TABLE}\n" for f in NFT_FAMILIES if f in live and f not in target)
    nft(["-f", "-"], stdin=script)
    return True


def boot_nft(script: str) -> None:
    """At boot: the applied rules.nft again, checked as an apply checks it (etc_dir is root's, but
    the script must still name nothing but svcnet's tables), in one transaction."""
    check_nft_script(script)
    nft(["-f", "-"], stdin=script)


def scratch_nft_tables(script: str) -> dict[str, str]:
    """The tables `script` makes, in normal form: loaded into a fresh network namespace, never the node's."""
    families = check_nft_script(script)
    listing = " ".join(f"&& nft -s list table {f} {NFT_TABLE}" for f in families)
    proc = run(["unshare", "--net", "--", "sh", "-c", f"nft -f - {listing}"], stdin=script, check=False)
    if proc.returncode != 0:
        raise AgentError("nft -f (scratch netns) failed: " + proc.stderr.strip()[-3000:])
    return {f: nft_normal(t) for f, t in nft_tables(proc.stdout).items()}


# --------------------------------------------------------------------------- nftables mode: incremental apply
# As kube-proxy's nftables proxier after its first sync: when svcnet's live tables are what the node's
# recorded rules.nft made (the saved rules hash still matches), the transaction carries only the
# difference between that script and the new one: new chains, sets and maps added; changed chains
# flushed and rewritten; set and map elements deleted and added by difference; removed chains, sets
# and maps deleted. A change of one service then writes a few dozen statements, not the whole table.
# Anything the difference cannot express (a changed base chain, set type, table, a family added or
# dropped) or a script of another shape than the renderer's makes it the full transaction as before.
NFT_ELEMENT_KEY_RE = re.compile(r'(.*?)(?:\s+comment\s+"[^"]*")?(?:\s+:\s+.*)?')


class NftTableScript:
    """One family's table as a rules.nft writes it: its declarations and contents by name."""

    def __init__(self) -> None:
        self.table: list[str] = []  # `add table` statements after the preamble
        self.decls: dict[tuple[str, str], str] = {}  # (chain|set|map, name): statement
        self.elements: dict[tuple[str, str], str] = {}  # (set, key): element text
        self.rules: dict[str, list[str]] = {}  # chain: its `add rule` statements in order


NFT_PLAIN_LINE_RE = re.compile(r'[^{};#"]*')


def nft_line_statements(text: str) -> list[str]:
    """nft_statements' texts, faster for a script of one statement per line (what the renderer writes:
    its scripts are parsed twice per apply, and at 10,000 services they have 200,000 lines)."""
    out: list[str] = []
    try:
        for line in text.splitlines():
            if NFT_PLAIN_LINE_RE.fullmatch(line):
                if line.strip():
                    out.append(line.strip())
            else:  # braces, strings, `;` or a comment: read as nft does, a block open past the line fails
                out.extend(stmt for _, stmt in nft_statements(line))
    except AgentError:
        return [stmt for _, stmt in nft_statements(text)]
    return out


def nft_script_tables(text: str) -> dict[str, NftTableScript] | None:
    """A checked rules.nft per family; None when it holds a statement the difference cannot take
    (anything but the preamble and `add` of a table, chain, set, map, element or rule)."""
    out: dict[str, NftTableScript] = {}
    preamble: dict[str, int] = {}
    for stmt in nft_line_statements(text):
        words = stmt.split(None, 4)  # (check_nft_script made sure of verb, object, family and table)
        verb, what, family = words[0], words[1], words[2]
        if what == "table" and preamble.get(family, 0) < 2:  # the `add table`/`delete table` pair
            if verb != ("add", "delete")[preamble.get(family, 0)]:
                return None
            preamble[family] = preamble.get(family, 0) + 1
            out.setdefault(family, NftTableScript())
            continue
        if verb != "add" or family not in out:
            return None
        t = out[family]
        name = words[4] if len(words) > 4 else ""
        if what == "table":
            t.table.append(stmt)
        elif what in ("chain", "set", "map"):
            if (what, name.split()[0] if name else "") in t.decls:
                return None
            t.decls[(what, name.split()[0] if name else "")] = stmt
        elif what == "rule":
            t.rules.setdefault(name.split()[0], []).append(stmt)
        elif what == "element":
            set_name, _, body = name.partition(" ")
            body = body.strip()
            if not (body.startswith("{") and body.endswith("}")):
                return None
            for item in _split_elements(body[1:-1]):
                m = NFT_ELEMENT_KEY_RE.fullmatch(item)
                t.elements[(set_name, m.group(1) if m else item)] = item
        else:
            return None
    return out


def nft_table_difference(family: str, old: NftTableScript, new: NftTableScript) -> list[str] | None:
    """The statements that turn `old`'s table into `new`'s, in an order nft takes in one transaction
    (what a statement names exists, what a deletion frees is no longer referenced); None when the
    difference changes a declaration."""
    if old.table != new.table or any(old.decls[k] != new.decls[k] for k in old.decls.keys() & new.decls.keys()):
        return None
    named = {name for _, name in new.decls}
    if any(("chain", c) not in new.decls for c in new.rules) or any(s not in named for s, _ in new.elements):
        return None  # what the script writes into something it does not declare: nft --check of it whole says why
    head = f"{family} {NFT_TABLE}"
    added = [k for k in new.decls if k not in old.decls]
    removed = [k for k in old.decls if k not in new.decls]
    rewritten = [c for (kind, c) in new.decls if kind == "chain"
                 and ((kind, c) in added or old.rules.get(c, []) != new.rules.get(c, []))]
    gone_elements = [k for k, item in old.elements.items() if new.elements.get(k) != item]
    new_elements = [k for k, item in new.elements.items() if old.elements.get(k) != item]
    return [
        *(new.decls[k] for k in added),
        *(f"delete element {head} {s} {{ {key} }}" for s, key in gone_elements),
        *(f"flush chain {head} {c}" for c in rewritten if ("chain", c) not in added),
        *(f"flush chain {head} {c}" for kind, c in removed if kind == "chain"),
        *(f"add element {head} {s} {{ {new.elements[(s, key)]} }}" for s, key in new_elements),
        *(rule for c in rewritten for rule in new.rules.get(c, [])),
        *(f"delete {kind} {head} {name}" for kind, name in removed),
    ]


def nft_incremental(applied: str, script: str) -> str | None:
    """The transaction that turns the tables `applied` made into those `script` makes, by difference
    (kube-proxy's partial sync); None when only the full transaction will do."""
    old, new = nft_script_tables(applied), nft_script_tables(script)
    if old is None or new is None or list(old) != list(new):
        return None
    out = []
    for family in new:
        stmts = nft_table_difference(family, old[family], new[family])
        if stmts is None:
            return None
        out += stmts
    return "".join(s + "\n" for s in out)


# What preflight loads with `nft --check` (the kernel checks the whole transaction and keeps none of
# it): every kind of object and statement the renderer writes, per feature; a table of its own name.
NFT_PROBE_TABLE = "svcnet-preflight"
NFT_PROBE_BASE = (
    "add table ip {t}\n"
    "add chain ip {t} nat-pre {{ type nat hook prerouting priority -100 ; }}\n"
    "add chain ip {t} nat-post {{ type nat hook postrouting priority 100 ; }}\n"
    "add chain ip {t} filter-fwd {{ type filter hook forward priority 0 ; }}\n"
    "add chain ip {t} svc\n"
)
NFT_FEATURES = (
    ("nft_verdict_map", "add map ip {t} m {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}\n"
                        "add element ip {t} m {{ 10.0.0.1 . tcp . 80 : goto svc }}\n"
                        "add rule ip {t} nat-pre ip daddr . meta l4proto . th dport vmap @m"),
    ("nft_numgen", "add rule ip {t} nat-pre numgen random mod 2 vmap {{ 0 : goto svc , 1 : goto svc }}"),
    ("nft_dnat", "add rule ip {t} svc meta l4proto tcp dnat to 10.0.0.1:80"),
    ("nft_masquerade", "add rule ip {t} nat-post meta mark & 0x4000 == 0x4000 masquerade fully-random"),
    ("nft_mark", "add rule ip {t} svc meta mark set meta mark | 0x4000"),
    ("nft_fib", "add rule ip {t} nat-pre fib daddr type local jump svc"),
    ("nft_ct", "add rule ip {t} filter-fwd ct state new ct state invalid drop"),
    ("nft_reject", "add rule ip {t} filter-fwd reject"),
    ("nft_affinity", "add set ip {t} a {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}\n"
                     "add rule ip {t} svc update @a {{ ip saddr }}\n"
                     "add rule ip {t} svc ip saddr @a goto svc"),
)


def nft_features() -> dict[str, bool]:
    """Which of NFT_FEATURES the kernel accepts (`nft --check`: nothing is loaded). All at once first."""
    def probe(features: tuple) -> bool:
        text = NFT_PROBE_BASE + "".join(rule + "\n" for _, rule in features)
        return nft(["--check", "-f", "-"], stdin=text.format(t=NFT_PROBE_TABLE), check=False).returncode == 0

    if probe(NFT_FEATURES):
        return {name: True for name, _ in NFT_FEATURES}
    return {name: probe(((name, rule),)) for name, rule in NFT_FEATURES}


def nft_preflight() -> tuple[list[dict], dict[str, bool], str]:
    """nftables mode's needs: (missing commands, kernel features, what is wrong)."""
    if not shutil.which("nft"):
        return [{"command": "nft", "package": NFT_PACKAGE}], {}, ""
    version = nft_version()
    if version_tuple(version) < NFT_MIN_VERSION:
        return [], {}, "nft {} is too old: kube-proxy's nftables mode needs nft >= {}".format(
            version or "(unknown version)", ".".join(map(str, NFT_MIN_VERSION)))
    features = nft_features()
    bad = sorted(k for k, v in features.items() if not v)
    return [], features, ("kernel/nft lack: " + ", ".join(bad)) if bad else ""


# --------------------------------------------------------------------------- netconf


def empty_netconf() -> dict:
    return {"bridge": "", "bridge_address": "", "sysctls": [], "routes": [], "pods": []}


def validate_netconf(conf: object) -> dict:
    """Check the structured address config; AgentError naming the bad field."""
    if not isinstance(conf, dict):
        raise AgentError("netconf must be an object")
    out = empty_netconf()
    out.update({k: conf.get(k, v) for k, v in out.items()})

    def need(cond: bool, where: str, value: object) -> None:
        if not cond:
            raise AgentError(f"netconf.{where}: invalid value {value!r}")

    need(out["bridge"] == "" or bool(IFNAME_RE.fullmatch(str(out["bridge"]))), "bridge", out["bridge"])
    if out["bridge_address"]:
        need(_is_iface(str(out["bridge_address"])), "bridge_address", out["bridge_address"])
    if conf.get(SECOND_BRIDGE_ADDRESS):  # a dual-stack node's other family (absent: as before dual-stack)
        out[SECOND_BRIDGE_ADDRESS] = conf[SECOND_BRIDGE_ADDRESS]
        need(_is_iface(str(out[SECOND_BRIDGE_ADDRESS])), SECOND_BRIDGE_ADDRESS, out[SECOND_BRIDGE_ADDRESS])
    for i, s in enumerate(out["sysctls"]):
        need(isinstance(s, dict) and bool(SYSCTL_KEY_RE.fullmatch(str(s.get("key", "")))), f"sysctls[{i}].key", s)
        need(bool(SYSCTL_VALUE_RE.fullmatch(str(s.get("value", "")))), f"sysctls[{i}].value", s)
    for i, r in enumerate(out["routes"]):
        need(isinstance(r, dict) and _is_net(str(r.get("dst", ""))), f"routes[{i}].dst", r)
        need(_is_ip(str(r.get("via", ""))), f"routes[{i}].via", r)
    for i, p in enumerate(out["pods"]):
        where = f"pods[{i}]"
        need(isinstance(p, dict), where, p)
        need(bool(NAME_RE.fullmatch(str(p.get("netns", "")))), where + ".netns", p.get("netns"))
        need(bool(IFNAME_RE.fullmatch(str(p.get("veth", "")))), where + ".veth", p.get("veth"))
        need(_is_iface(str(p.get("address", ""))), where + ".address", p.get("address"))
        need(_is_ip(str(p.get("gateway", ""))), where + ".gateway", p.get("gateway"))
        if p.get("second_address") is not None or p.get("second_gateway") is not None:
            need(_is_iface(str(p.get("second_address", ""))), where + ".second_address", p.get("second_address"))
            need(_is_ip(str(p.get("second_gateway", ""))), where + ".second_gateway", p.get("second_gateway"))
        cmd = p.get("command") or []
        need(isinstance(cmd, list) and all(isinstance(a, str) for a in cmd), where + ".command", cmd)
        ports = p.get("ports") or []
        need(isinstance(ports, list) and all(isinstance(x, int) for x in ports), where + ".ports", ports)
        if p.get("security") is not None:
            validate_security(p["security"], where + ".security")
    return out


def _is_id(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ID


def validate_security(sec: object, where: str) -> None:
    """A pod's security must hold exactly the known fields with values setpriv can take as they are."""
    def need(cond: bool, field: str, value: object) -> None:
        if not cond:
            raise AgentError(f"netconf.{where}{field}: invalid value {value!r}")

    need(isinstance(sec, dict) and sorted(sec) == sorted(SECURITY_FIELDS), "", sec)
    assert isinstance(sec, dict)
    need(_is_id(sec["uid"]), ".uid", sec["uid"])
    need(_is_id(sec["gid"]), ".gid", sec["gid"])
    groups = sec["groups"]
    need(isinstance(groups, list) and 0 < len(groups) <= MAX_GROUPS and all(_is_id(g) for g in groups),
         ".groups", groups)
    caps, ambient = sec["capabilities"], sec["ambient"]
    need(caps is None or (isinstance(caps, list) and all(c in CAPABILITIES for c in caps)), ".capabilities", caps)
    need(isinstance(ambient, list) and all(c in (CAPABILITIES if caps is None else caps) for c in ambient),
         ".ambient", ambient)
    for flag in ("no_new_privs", "read_only_root"):
        need(isinstance(sec[flag], bool), "." + flag, sec[flag])


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return False


def _is_net(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
        return True
    except ValueError:
        return False


def _is_iface(v: str) -> bool:
    try:
        ipaddress.ip_interface(v)
        return "/" in v
    except ValueError:
        return False


def sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read_sysctl(key: str) -> str | None:
    text = read_text(sysctl_path(key))
    return None if text is None else " ".join(text.split())


def pod_label(p: dict) -> str:
    return "{}/{}".format(p.get("namespace", ""), p.get("name", ""))


def pod_spec(p: dict) -> dict:
    """What a pod process depends on: restarted when this changes."""
    spec = {"netns": p["netns"], "namespace": p.get("namespace", ""), "name": p.get("name", ""),
            "ip": p["address"].split("/")[0], "command": list(p.get("command") or []),
            "ports": sorted(p.get("ports") or [])}
    if p.get("security") is not None:  # absent, not null: a pod without one keeps its hash (no restart)
        spec["security"] = p["security"]
    return spec


def spec_hash(spec: dict) -> str:
    return sha256(json.dumps(spec, sort_keys=True))[:16]


def pod_process_line(p: dict, running: bool) -> str:
    sec = p.get("security")
    who = " as " + json.dumps(sec, sort_keys=True) if sec else ""
    return "pod {} runs {} ports {}{} ({})".format(pod_label(p), json.dumps(list(p.get("command") or [])),
                                              sorted(p.get("ports") or []), who, "running" if running else "stopped")


def bridge_addresses(conf: dict) -> list[str]:
    """The bridge's addresses: the first podCIDR's, and the other family's on a dual-stack node."""
    return [a for a in (conf["bridge_address"], conf.get(SECOND_BRIDGE_ADDRESS)) if a]


def pod_addresses(p: dict) -> list[tuple[str, str]]:
    """A pod's (ip/prefix, gateway) per family, the first family's first."""
    second = [(p["second_address"], p["second_gateway"])] if p.get("second_address") else []
    return [(p["address"], p["gateway"]), *second]


def desired_lines(conf: dict) -> list[str]:
    """The address config as one line per fact (optional sysctls only where the kernel has them)."""
    lines = ["sysctl {} = {}".format(s["key"], s["value"]) for s in conf["sysctls"]
             if not s.get("optional") or os.path.exists(sysctl_path(s["key"]))]
    if conf["bridge"]:
        lines.extend("bridge {} {} up".format(conf["bridge"], a) for a in bridge_addresses(conf))
    lines.extend("route {} via {}".format(_net(r["dst"]), r["via"]) for r in conf["routes"])
    for p in conf["pods"]:
        lines.extend("pod {} netns {} veth {} {} via {}".format(pod_label(p), p["netns"], p["veth"], address, gateway)
                     for address, gateway in pod_addresses(p))
        if p.get("command"):
            lines.append(pod_process_line(p, True))
    return lines


def _net(v: str) -> str:
    return str(ipaddress.ip_network(v, strict=False))


def ip_json(argv: list[str]) -> list:
    proc = run(argv, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def main_routes(versions: set[int]) -> dict[str, list[dict]]:
    """The main table's routes of the IP versions asked for, by normalised destination (one `ip` each).

    Each as `ip -j -N` prints it: "protocol" a number, and absent for boot (iproute2 omits it)."""
    out: dict[str, list[dict]] = {}
    for v in sorted(versions):
        for r in ip_json(["ip", "-j", "-N", f"-{v}", "route", "show"]):  # -N: protocols as numbers
            dst = str(r.get("dst", ""))
            try:
                key = _net(("0.0.0.0/0" if v == 4 else "::/0") if dst == "default" else dst)
            except ValueError:
                continue
            out.setdefault(key, []).append(r)
    return out


def link_addresses(argv_prefix: list[str], dev: str) -> tuple[bool, bool, list[str]]:
    """(exists, up, addresses with prefix) of a link: IPv4, and IPv6 but link-local (every IPv6 link has one)."""
    data = ip_json([*argv_prefix, "-j", "addr", "show", "dev", dev])
    if not data:
        return False, False, []
    link = data[0]
    addrs = ["{}/{}".format(a["local"], a["prefixlen"]) for a in link.get("addr_info", [])
             if a.get("family") == "inet" or (a.get("family") == "inet6" and a.get("scope") != "link")]
    return True, "UP" in link.get("flags", []), addrs


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def link_exists(dev: str) -> bool:
    return os.path.exists("/sys/class/net/" + dev) or ok(["ip", "link", "show", "dev", dev])


# --------------------------------------------------------------------------- ownership
# svcnet changes and deletes only the links, routes and netns it created. netconf.sh marks a link
# it creates with the alias OWNER_ALIAS and a route with the protocol ROUTE_PROTO; the agent records
# a pod netns before netconf.sh creates it (state.json's OWNED_NETNS_KEY). Before netconf.sh runs,
# any link, route or netns it names must be absent or so marked (`refuse_foreign`); only marked ones
# are deleted (`delete_link`, `delete_route`, `remove_netconf_extras`).
#
# Migration: an svcnet from before the marks left an unmarked bridge, veths, netns and routes, named
# in its own netconf.json. Those are svcnet's: `legacy_claims` names them while the state says the
# address config was applied without marks (no MARKS_KEY). They are taken as svcnet's that once: the
# next network apply marks them (and sets MARKS_KEY), a teardown deletes them.


def legacy_claims(applied: bool, marked: bool, recorded: dict) -> frozenset[str]:
    """The objects of `recorded` (the applied netconf) an unmarking svcnet created, as "link X",
    "route DST", "netns X"; none once the node's state says the marks are in place."""
    if marked or not applied:
        return frozenset()
    out = {"route " + _net(r["dst"]) for r in recorded["routes"]}
    if recorded["bridge"]:
        out.add("link " + recorded["bridge"])
    for p in recorded["pods"]:
        out.update(("link " + p["veth"], "netns " + p["netns"]))
    return frozenset(out)


def state_claims(paths: Paths, recorded: dict) -> frozenset[str]:
    """`legacy_claims` of the netconf recorded in etc_dir, by the node's state.json."""
    state = load_state(paths)
    return legacy_claims(bool(state.get("applied_hash")), bool(state.get(MARKS_KEY)), recorded)


def owned_netns(paths: Paths) -> set[str]:
    return {str(n) for n in load_state(paths).get(OWNED_NETNS_KEY) or []}


def route_is_ours(r: dict) -> bool:
    """Is a route (as `main_routes` lists it) one svcnet added?"""
    return str(r.get("protocol", "")) == str(ROUTE_PROTO)


def route_text(dst: str, r: dict) -> str:
    """A live route as `ip route` shows it, for messages."""
    words = [dst]
    for key, word in (("gateway", "via"), ("dev", "dev"), ("metric", "metric")):
        if r.get(key) not in (None, ""):
            words += [word, str(r[key])]
    return " ".join([*words, "proto", str(r.get("protocol", "boot"))])


def foreign_objects(paths: Paths, conf: dict, trusted: frozenset[str] = frozenset()) -> list[str]:
    """The links, routes and netns `conf` names that exist and are not svcnet's (unmarked, not in
    `trusted`): what netconf.sh would otherwise adopt or overwrite. One `ip` per kind."""
    out = []
    aliases = {str(x.get("ifname")): str(x.get("ifalias", "")) for x in ip_json(["ip", "-j", "link", "show"])}

    def link(dev: str, what: str) -> None:
        if dev in aliases and aliases[dev] != OWNER_ALIAS and "link " + dev not in trusted:
            out.append(f"{what}: link {dev} exists and was not created by svcnet (it has no alias {OWNER_ALIAS})")

    if conf["bridge"]:
        link(conf["bridge"], "bridge " + conf["bridge"])
    dsts = [_net(r["dst"]) for r in conf["routes"]]
    table = main_routes({ipaddress.ip_network(d).version for d in dsts})
    for dst in dsts:
        foreign = [r for r in table.get(dst, []) if not route_is_ours(r)] if "route " + dst not in trusted else []
        out.extend(f"route {dst}: route {route_text(dst, r)} was not added by svcnet (its routes have protocol "
                   f"{ROUTE_PROTO})" for r in foreign)
    mine = owned_netns(paths)
    for p in conf["pods"]:
        link(p["veth"], "pod " + pod_label(p))
        if netns_exists(p["netns"]) and p["netns"] not in mine and "netns " + p["netns"] not in trusted:
            out.append("pod {}: network namespace {} exists and was not created by svcnet".format(
                pod_label(p), p["netns"]))
    return out


def refusal(foreign: list[str]) -> str:
    return ("refusing to change what svcnet did not create: " + "; ".join(foreign)
            + " (rename the bridge, pods or node podCIDRs in the description, or remove them from the node)")


def refuse_foreign(paths: Paths, conf: dict, trusted: frozenset[str] = frozenset()) -> None:
    foreign = foreign_objects(paths, conf, trusted)
    if foreign:
        raise AgentError(refusal(foreign))


def adopt_claims(paths: Paths, conf: dict, trusted: frozenset[str]) -> None:
    """Mark the links and record the netns of `conf` that are svcnet's by `trusted` (migration), and
    record the netns netconf.sh is about to create (absent now) as svcnet's."""
    for dev in [conf["bridge"], *(p["veth"] for p in conf["pods"])]:
        if dev and "link " + dev in trusted and link_alias(dev) not in (None, OWNER_ALIAS):
            run(["ip", "link", "set", "dev", dev, "alias", OWNER_ALIAS])
    claim = {p["netns"] for p in conf["pods"] if "netns " + p["netns"] in trusted or not netns_exists(p["netns"])}
    set_owned_netns(paths, owned_netns(paths) | claim)


def set_owned_netns(paths: Paths, names: set[str]) -> None:
    state = load_state(paths)
    if set(state.get(OWNED_NETNS_KEY) or []) != names:
        state[OWNED_NETNS_KEY] = sorted(names)
        save_state(paths, state)


def link_alias(dev: str) -> str | None:
    """The alias of link `dev` ("" when it has none); None when there is no such link."""
    data = ip_json(["ip", "-j", "link", "show", "dev", dev])
    return str(data[0].get("ifalias", "")) if data else None


def delete_link(dev: str, trusted: frozenset[str]) -> bool:
    """Delete link `dev` if it is svcnet's; True if it was deleted."""
    alias = link_alias(dev)
    if alias is None or (alias != OWNER_ALIAS and "link " + dev not in trusted):
        return False
    run(["ip", "link", "del", dev], check=False)
    return True


def delete_route(dst: str, via: str, trusted: frozenset[str]) -> bool:
    """Delete svcnet's route to `dst` (by its protocol; by `via` when trusted unmarked); True if deleted."""
    proto = ["proto", str(ROUTE_PROTO)]
    family = f"-{ipaddress.ip_network(dst, strict=False).version}"  # `show` lists IPv4 unless told
    if ip_json(["ip", family, "-j", "route", "show", "exact", dst, *proto]):
        run(["ip", "route", "del", dst, *proto], check=False)
        return True
    if "route " + dst in trusted and ip_json(["ip", family, "-j", "route", "show", "exact", dst, "via", via]):
        run(["ip", "route", "del", dst, "via", via], check=False)
        return True
    return False


def live_lines(confs: list[dict], paths: Paths) -> list[str]:
    """Live facts for everything any of `confs` mentions, in `desired_lines` form."""
    lines = []
    keys: list[str] = []
    for c in confs:
        keys.extend(s["key"] for s in c["sysctls"] if s["key"] not in keys)
    for key in keys:
        value = read_sysctl(key)
        if value is not None:
            lines.append(f"sysctl {key} = {value}")
    for bridge in dict.fromkeys(c["bridge"] for c in confs if c["bridge"]):
        exists, up, addrs = link_addresses(["ip"], bridge)
        if exists:
            lines.extend("bridge {} {} {}".format(bridge, a, "up" if up else "down") for a in addrs or ["(no address)"])
    dsts = list(dict.fromkeys(_net(r["dst"]) for c in confs for r in c["routes"]))
    table = main_routes({ipaddress.ip_network(d).version for d in dsts})
    for dst in dsts:
        for r in table.get(dst, []):
            lines.append("route {} via {}".format(dst, r.get("gateway", "(dev {})".format(r.get("dev", "?")))))
    seen = set()
    for c in confs:
        for p in c["pods"]:
            if p["netns"] in seen:
                continue
            seen.add(p["netns"])
            lines.extend(live_pod_lines(p, paths))
    return lines


def live_pod_lines(p: dict, paths: Paths) -> list[str]:
    out = []
    if netns_exists(p["netns"]):
        veth = p["veth"] if link_exists(p["veth"]) else "(no veth)"
        _, _, addrs = link_addresses(["ip", "-n", p["netns"]], "eth0")
        gws = {}
        for v in (4, 6) if any(":" in a for a in addrs) else (4,):
            routes = ip_json(["ip", "-n", p["netns"], f"-{v}", "-j", "route", "show", "default"])
            gws[v] = routes[0].get("gateway", "?") if routes else "(no default route)"
        for a in addrs or ["(no address)"]:
            gw = gws[6 if ":" in a else 4]
            out.append("pod {} netns {} veth {} {} via {}".format(pod_label(p), p["netns"], veth, a, gw))
    running = running_pod(paths, p["netns"])
    if running is not None:
        out.append(pod_process_line(running, True))
    return out


def text_diff(old: list[str], new: list[str], what: str) -> str:
    import difflib  # only for diffs: every agent run pays for its imports

    return "".join(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new],
                                        "live " + what, "desired " + what))


def record_sysctl_origins(paths: Paths, conf: dict) -> None:
    """Remember each sysctl's value before svcnet first sets it (restored on teardown)."""
    state = load_state(paths)
    orig = state.setdefault("sysctl_orig", {})
    changed = False
    for s in conf["sysctls"]:
        if s["key"] not in orig:
            value = read_sysctl(s["key"])
            if value is not None:
                orig[s["key"]] = value
                changed = True
    if changed:
        save_state(paths, state)


def restore_sysctls(paths: Paths, keys: list[str]) -> None:
    orig = load_state(paths).get("sysctl_orig", {})
    for key in keys:
        if key in orig and read_sysctl(key) not in (None, orig[key]):
            run(["sysctl", "-qw", f"{key}={orig[key]}"], check=False)


def run_netconf_script(path: str, paths: Paths, conf: dict, trusted: frozenset[str] = frozenset()) -> None:
    """Run the netconf.sh written for `conf`, refused while a link, route or netns it names is not
    svcnet's; `trusted`: unmarked objects that are svcnet's all the same (`legacy_claims`)."""
    if read_text(path) is None:
        return
    refuse_foreign(paths, conf, trusted)
    adopt_claims(paths, conf, trusted)
    try:
        run(["sh", path])
    finally:  # forget the claimed netns the script did not get to create
        set_owned_netns(paths, {n for n in owned_netns(paths) if netns_exists(n)})


def remove_netconf_extras(paths: Paths, old: dict, new: dict, actions: list[str] | None = None,
                          trusted: frozenset[str] = frozenset()) -> bool:
    """Remove what `old` had and `new` does not: pods (processes, netns, veth), routes, bridge, sysctls.

    Only what is svcnet's (marked, or in `trusted`): a link, route or netns of that name that
    svcnet did not create is left alone. Stopped pods are appended to `actions` as "stopped NETNS".
    """
    changed = False
    keep_ns = {p["netns"] for p in new["pods"]}
    mine = owned_netns(paths)
    for p in old["pods"]:
        if p["netns"] in keep_ns:
            continue
        if stop_pod(paths, p["netns"]):
            changed = True
            if actions is not None:
                actions.append("stopped " + p["netns"])
        if netns_exists(p["netns"]) and (p["netns"] in mine or "netns " + p["netns"] in trusted):
            kill_netns_processes(p["netns"])
            run(["ip", "netns", "del", p["netns"]], check=False)
            changed = True
        changed |= delete_link(p["veth"], trusted)
    set_owned_netns(paths, {n for n in mine if n in keep_ns or netns_exists(n)})
    keep_routes = {_net(r["dst"]) for r in new["routes"]}
    for r in old["routes"]:
        dst = _net(r["dst"])
        if dst not in keep_routes:
            changed |= delete_route(dst, r["via"], trusted)
    if old["bridge"] and old["bridge"] != new["bridge"]:
        changed |= delete_link(old["bridge"], trusted)
    keep_keys = {s["key"] for s in new["sysctls"]}
    restore_sysctls(paths, [s["key"] for s in old["sysctls"] if s["key"] not in keep_keys])
    return changed


# --------------------------------------------------------------------------- pod supervisors


def pod_file(paths: Paths, netns: str, ext: str) -> str:
    return os.path.join(paths.pods_dir, netns + ext)


def proc_start(pid: int) -> str | None:
    """The start time (clock ticks since boot) of a live, non-zombie process; None when gone.

    With the pid it names one process for good: a reused pid has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") or len(fields) < 20 else fields[19]


def pid_alive(pid: int, marker: str) -> bool:
    """Is `pid` alive (not a zombie) and its command line contains `marker`?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except (OSError, IndexError):
        return False


def read_pid(path: str) -> int | None:
    text = (read_text(path) or "").strip()
    return int(text) if text.isdigit() else None


def running_pod(paths: Paths, netns: str) -> dict | None:
    """The spec of the pod's running supervisor, or None."""
    pid = read_pid(pod_file(paths, netns, ".pid"))
    if pid is None or not pid_alive(pid, netns):
        return None
    spec = read_json(pod_file(paths, netns, ".json"))
    if spec is None:
        return None
    return {"netns": netns, "namespace": spec.get("namespace", ""), "name": spec.get("name", ""),
            "command": spec.get("command", []), "ports": spec.get("ports", []), "security": spec.get("security"),
            "pid": pid, "spec_hash": spec_hash(spec)}


def spawn_daemon(target: list[str] | Callable[[], int], log_path: str) -> int:
    """Start target fully detached (double fork, setsid, own process group); return its pid.

    Returns once the daemon itself runs, detached, with its log open: it reports its own pid
    through a pipe, so a caller that goes on (or is killed) afterwards leaves a running daemon.
    A list is exec'd; a function runs in the forked copy of this process, so it starts with no
    interpreter start-up, and its return value is the exit code.
    """
    private_dir(os.path.dirname(log_path))  # a pod's log shows its command
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setsid()
            if os.fork() > 0:
                os._exit(0)
            os.setpgid(0, 0)
            devnull = os.open("/dev/null", os.O_RDONLY)
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
            os.fchmod(out, PRIVATE_FILE_MODE)  # also a log an older agent made readable by all
            os.dup2(devnull, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.write(w, str(os.getpid()).encode())
            os.closerange(3, 65536)
            os.chdir("/")
            if callable(target):
                code = 1
                try:
                    code = target()
                except BaseException:
                    import traceback

                    traceback.print_exc()  # into the daemon's log
                os._exit(code)
            os.execv(target[0], target)
        finally:
            os._exit(127)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data.strip().isdigit():
        what = " ".join(target[:4]) if isinstance(target, list) else getattr(target, "__name__", "daemon")
        raise AgentError("could not start " + what)
    return int(data)


def agent_argv(paths: Paths, *args: str) -> list[str]:
    return [sys.executable or "/usr/bin/python3", *PYTHON_FLAGS, paths.state_file(AGENT_FILE), *args,
            *paths.cli_args()]


def start_pod(paths: Paths, p: dict) -> int:
    """Start the pod's supervisor; its files hold the command, so only root reads them (0700 dir, 0600 files)."""
    spec = pod_spec(p)
    private_dir(paths.pods_dir)
    write_json(pod_file(paths, p["netns"], ".json"), spec, mode=PRIVATE_FILE_MODE)
    write_text(pod_file(paths, p["netns"], ".spec"), spec_hash(spec) + "\n", PRIVATE_FILE_MODE)
    log_path = os.path.join(paths.state, LOGS_DIR, p["netns"] + ".log")
    pid = spawn_daemon(agent_argv(paths, "supervise", p["netns"]), log_path)
    write_text(pod_file(paths, p["netns"], ".pid"), f"{pid}\n", PRIVATE_FILE_MODE)
    return pid


def kill_group(pid: int, marker: str, wait: float = POD_STOP_WAIT, alive: Callable[[], bool] | None = None) -> None:
    """SIGTERM the process group led by pid, SIGKILL after `wait` seconds.

    Done when `alive()` (default: pid_alive(pid, marker)) says the leader is gone.
    """
    alive = alive or (lambda: pid_alive(pid, marker))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive():
                return
            time.sleep(0.01)


def kill_netns_processes(netns: str) -> None:
    """SIGKILL whatever still runs inside a pod's network namespace (e.g. orphans of a dead supervisor)."""
    for word in run(["ip", "netns", "pids", netns], check=False).stdout.split():
        if word.isdigit() and int(word) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(word), signal.SIGKILL)


def stop_pod(paths: Paths, netns: str) -> bool:
    pid = read_pid(pod_file(paths, netns, ".pid"))
    alive = False
    if pid is not None and pid_alive(pid, netns):
        kill_group(pid, netns)
        alive = True
    for ext in (".pid", ".spec", ".json"):
        remove(pod_file(paths, netns, ext))
    return alive


def reconcile_pods(paths: Paths, conf: dict) -> list[str]:
    """Start/restart/stop pod supervisors so exactly conf's pods with a command run; returns actions."""
    actions = []
    wanted = {p["netns"]: p for p in conf["pods"] if p.get("command")}
    known = set()
    if os.path.isdir(paths.pods_dir):
        private_dir(paths.pods_dir)  # also the directory an older agent left readable by all
        known = {f[:-4] for f in os.listdir(paths.pods_dir) if f.endswith(".pid")}
    for netns in sorted(known - set(wanted)):
        if stop_pod(paths, netns):
            actions.append("stopped " + netns)
    for netns, p in wanted.items():
        running = running_pod(paths, netns)
        want = spec_hash(pod_spec(p))
        if running is not None and running["spec_hash"] == want:
            continue
        if running is not None:
            stop_pod(paths, netns)
        start_pod(paths, p)
        actions.append(("restarted " if running else "started ") + netns)
    return actions


def supervise(paths: Paths, netns: str) -> int:
    """Keep the pod's command running inside its netns (restart with backoff) until SIGTERM."""
    spec = read_json(pod_file(paths, netns, ".json"))
    if not spec or not spec.get("command"):
        log("no pod spec for " + netns)
        return 1
    stopping: list[int] = []
    child: list[subprocess.Popen] = []

    def on_term(signum: int, frame: object) -> None:
        stopping.append(signum)
        for c in child:
            if c.poll() is None:
                c.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "POD_NAME": spec["name"],
           "POD_NAMESPACE": spec["namespace"], "POD_IP": spec["ip"], "PYTHONUNBUFFERED": "1",
           "HOME": "/", "LANG": "C.UTF-8"}
    backoff = 0.5
    while not stopping:
        started = time.monotonic()
        log("starting {} in {}: {}".format(spec["name"], netns, spec["command"]))
        try:
            proc = subprocess.Popen(pod_argv(paths, spec), env=env, stdin=subprocess.DEVNULL, cwd="/")
        except (OSError, AgentError) as exc:
            log(f"cannot start: {exc}")
            proc = None
        if proc is not None:
            child[:] = [proc]
            code = proc.wait()
            log("{} exited with {}".format(spec["name"], code))
        if stopping:
            break
        backoff = 0.5 if time.monotonic() - started > 10 else min(backoff * 2, 30.0)
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    return 0


def cap_changes(names: list[str]) -> str:
    """setpriv's form of "exactly these capabilities": `-all,+net_bind_service`."""
    return ",".join(["-all", *("+" + name.lower() for name in names)])


def setpriv_argv(sec: dict) -> list[str]:
    """setpriv with the user, groups, capabilities and no_new_privs of a pod's `security`.

    The bounding set keeps the pod's capabilities (what root gets at exec); the ambient (and so
    inheritable) set keeps the ones its container adds, so a non-root user has those too.
    """
    validate_security(sec, "security")  # no value reaches argv unchecked
    argv = ["setpriv", "--reuid={}".format(sec["uid"]), "--regid={}".format(sec["gid"]),
            "--groups=" + ",".join(str(g) for g in sec["groups"])]
    if sec["capabilities"] is not None:  # None: privileged, every capability
        argv += ["--bounding-set=" + cap_changes(sec["capabilities"]), "--inh-caps=" + cap_changes(sec["ambient"]),
                 "--ambient-caps=" + cap_changes(sec["ambient"])]
    if sec["no_new_privs"]:
        argv.append("--no-new-privs")
    return argv


def pod_argv(paths: Paths, spec: dict) -> list[str]:
    """How a supervisor starts its pod's command: in the pod's netns, with what its securityContext leaves it.

    Without a securityContext, as root (as always). With readOnlyRootFilesystem the agent runs
    first (`pod-exec`) in the private mount namespace `ip netns exec` makes, to remount it.
    """
    netns, sec = spec["netns"], spec.get("security")
    if sec is None:
        return ["ip", "netns", "exec", netns, *spec["command"]]
    if sec.get("read_only_root"):
        return ["ip", "netns", "exec", netns, *agent_argv(paths, "pod-exec", netns)]
    return ["ip", "netns", "exec", netns, *setpriv_argv(sec), "--", *spec["command"]]


def mount_points(mountinfo: bytes) -> list[str]:
    """Every mount point of a /proc/PID/mountinfo text, its octal escapes (`\\040`) decoded, once each."""
    raw = [line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4]
    unescape = re.compile(rb"\\([0-7]{3})")
    return list(dict.fromkeys(os.fsdecode(unescape.sub(lambda m: bytes([int(m.group(1), 8)]), p)) for p in raw))


def make_read_only() -> None:
    """Remount every mount of this mount namespace read-only but /dev and /proc (as a runtime leaves them).

    Only per-mount flags change (remount,bind): the filesystems stay writable elsewhere. Refuses
    to run in its parent's mount namespace, which would make the node itself read-only.
    """
    if os.readlink("/proc/self/ns/mnt") == os.readlink(f"/proc/{os.getppid()}/ns/mnt"):
        raise AgentError("not in a mount namespace of its own: refusing to remount")
    with open("/proc/self/mountinfo", "rb") as f:
        points = mount_points(f.read())
    for point in points:
        if any(point == w or point.startswith(w + "/") for w in WRITABLE_MOUNTS):
            continue
        if os.path.lexists(point):  # else hidden under a later mount, out of the pod's reach
            run(["mount", "-o", "remount,bind,ro", "--", point])
    if not os.statvfs("/").f_flag & os.ST_RDONLY:
        raise AgentError("/ is still writable after the remount")


def pod_exec(paths: Paths, netns: str) -> int:
    """In a pod's mount namespace: make its mounts read-only, then become its command (via setpriv)."""
    spec = read_json(pod_file(paths, netns, ".json"))
    if not spec or not spec.get("command") or not spec.get("security"):
        log("no pod spec with a security context for " + netns)
        return 1
    try:
        argv = [*setpriv_argv(spec["security"]), "--", *spec["command"]]
        make_read_only()
    except AgentError as exc:
        log(f"{netns}: {exc}")
        return 1
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        log(f"{netns}: cannot run {argv[0]}: {exc}")
    return 127


# --------------------------------------------------------------------------- health checks
# kube-proxy serves two kinds of health check on each node, and so does svcnet, from one supervised
# process (health_supervise, which runs and restarts health_serve; forks of the agent that starts it):
# * the proxy's own /healthz and /livez on healthzBindAddress (ProxyHealthServer);
# * for each LoadBalancer service with externalTrafficPolicy Local, its healthCheckNodePort
#   (ServiceHealthServer): 200 while the node has local ready endpoints, else 503, so an external
#   load balancer sends traffic only to nodes that serve it locally.
# Bodies and headers are kube-proxy's, as of kubernetes/kubernetes pkg/proxy/healthcheck/
# service_health.go at commit 025f2834 and proxy_health.go at commit 0645f0e. The server reads
# etc_dir/HEALTH_FILE (written atomically by an apply, a rollback or a boot, like every artifact)
# and state.json's saved_rules_hash, and reloads on SIGHUP: listeners whose address stays are kept,
# so an apply changes the answers without closing a port. It acknowledges each configuration it
# loaded in run_dir/HEALTH_ACK, which the agent waits for. It exits when HEALTH_FILE is gone.

HEALTH_PID, HEALTH_ACK, HEALTH_LOG = "health.pid", "health.ack", "health.log"
# kube-proxy's healthTimeout (2 x iptables.syncPeriod, 30 s by default): an update queued longer than
# this without being synced makes the proxy unhealthy. Here: an apply under way (its pending marker
# in phase "applying") keeps the node healthy for that long while its rules change.
HEALTH_TIMEOUT = 60.0
HEALTH_RECHECK = 1.0  # seconds a reading of the live rules is reused: one iptables-save a second at most
HEALTH_ACK_WAIT = 10.0  # seconds the agent waits for the server to load a configuration
HEALTH_POLL = 1.0  # seconds between the server's checks of its file (besides SIGHUP)
HEALTH_MAX_CONNECTIONS = 32
HEALTH_CONN_TIMEOUT = 5.0
HEALTH_MAX_BODY = 65536  # request body bytes read and dropped (a health check sends none)
HOSTPORT_RE = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")
GO_ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"  # Go's time.Time{}.String()


def parse_hostport(text: str) -> tuple[str, int]:
    """`ip:port` (`[ip]:port` for IPv6) as (ip, port); AgentError when it is not one."""
    m = HOSTPORT_RE.fullmatch(text)
    if not m or not _is_ip(m.group(1).strip("[]")) or not 0 < int(m.group(2)) < 65536:
        raise AgentError(f"{HEALTH_FILE}: healthz {text!r} is not 'ip:port'")
    return m.group(1).strip("[]"), int(m.group(2))


def parse_health(text: str) -> dict:
    """The health server's configuration from HEALTH_FILE's text ('' : nothing to serve); every
    value checked, since each reaches a socket or a response."""
    if not text.strip():
        return {"healthz": "", "listen": [], "services": []}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AgentError(f"{HEALTH_FILE}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or sorted(doc) != ["healthz", "listen", "services"]:
        raise AgentError(f"{HEALTH_FILE}: expected an object of healthz, listen and services")
    healthz, listen, services = doc["healthz"], doc["listen"], doc["services"]
    if not isinstance(healthz, str) or (healthz and not parse_hostport(healthz)):
        raise AgentError(f"{HEALTH_FILE}: healthz must be 'ip:port' or ''")
    if not isinstance(listen, list) or not all(isinstance(ip, str) and _is_ip(ip) for ip in listen):
        raise AgentError(f"{HEALTH_FILE}: listen must be a list of IP addresses")
    if not isinstance(services, list):
        raise AgentError(f"{HEALTH_FILE}: services must be a list")
    for i, s in enumerate(services):
        good = (isinstance(s, dict) and sorted(s) == ["localEndpoints", "name", "namespace", "port"]
                and all(isinstance(s[k], str) and NAME_RE.fullmatch(s[k]) for k in ("namespace", "name"))
                and _is_count(s["port"]) and 0 < s["port"] < 65536 and _is_count(s["localEndpoints"]))
        if not good:
            raise AgentError(f"{HEALTH_FILE}: services[{i}]: invalid value {s!r:.200}")
    return doc


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def health_listeners(conf: dict) -> dict[tuple[str, int], tuple[str, ...]]:
    """(ip, port) -> what it serves: ("healthz",) or ("service", namespace, name); the first one
    named wins an address (kube-proxy's later listener would fail to bind it)."""
    out: dict[tuple[str, int], tuple[str, ...]] = {}
    if conf["healthz"]:
        out[parse_hostport(conf["healthz"])] = ("healthz",)
    for s in conf["services"]:
        for ip in conf["listen"]:
            out.setdefault((ip, s["port"]), ("service", s["namespace"], s["name"]))
    return out


def go_time(ns: int | None) -> str:
    """A time as Go's time.Time.String() prints it in UTC (no monotonic part): what kube-proxy's
    healthz body holds."""
    if ns is None:
        return GO_ZERO_TIME
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + " +0000 UTC"


def proxy_healthy(saved_hash: object, live_hash: str, applying_for: float | None) -> bool:
    """kube-proxy's isHealthy: the rules are synced (the live rules are those the last apply
    recorded), or an update is queued (an apply under way) for less than HEALTH_TIMEOUT."""
    if saved_hash and saved_hash == live_hash:
        return True
    return applying_for is not None and applying_for < HEALTH_TIMEOUT


def service_health_answer(namespace: str, name: str, count: int, healthy: bool) -> tuple[int, str]:
    """kube-proxy's hcHandler.ServeHTTP: status and body (its dedented template, no final newline)."""
    body = ('{{\n\t"service": {{\n\t\t"namespace": {},\n\t\t"name": {}\n\t}},\n\t"localEndpoints": {},\n'
            '\t"serviceProxyHealthy": {}\n}}').format(json.dumps(namespace), json.dumps(name), count,
                                                     "true" if healthy else "false")
    return (200 if count and healthy else 503), body


def healthz_answer(path: str, healthy: bool, last_updated: int | None, now: int) -> tuple[int, str, str]:
    """kube-proxy's ProxyHealthServer mux: /healthz and /livez (status, content type, body), else
    Go's 404. The node is always eligible: svcnet has no node taints or deletion."""
    if path not in ("/healthz", "/livez"):
        return 404, "text/plain; charset=utf-8", "404 page not found\n"
    shown = go_time(now if healthy else last_updated)
    if path == "/healthz":
        body = f'{{"lastUpdated": "{shown}","currentTime": "{go_time(now)}", "nodeEligible": true}}'
    else:
        body = f'{{"lastUpdated": "{shown}","currentTime": "{go_time(now)}"}}'
    return (200 if healthy else 503), "application/json", body


class ProxyHealth:
    """The proxy's health as the server sees it, the live rules read at most once per HEALTH_RECHECK
    (and again whenever state.json changes, so an apply's record counts at once)."""

    def __init__(self, paths: Paths, prefix: str):
        self.paths, self.prefix = paths, prefix
        self.cached: tuple[object, float, str] | None = None  # (state.json identity, when, live hash)

    def live_hash(self) -> str:
        try:
            st = os.stat(self.paths.state_file(STATE_FILE))
            key: object = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        now = time.monotonic()
        if self.cached is None or self.cached[0] != key or now - self.cached[1] >= HEALTH_RECHECK:
            self.cached = (key, now, live_rules_hash(self.prefix))
        return self.cached[2]

    def check(self) -> tuple[bool, int | None]:
        """(healthy, when the rules were last applied in ns since the epoch, None if never)."""
        live = self.live_hash()
        state = load_state(self.paths)
        marker = pending_marker(self.paths) or {}
        applying_for = None
        if marker.get("phase") == PHASE_APPLYING:
            with contextlib.suppress(OSError):
                applying_for = time.time() - os.stat(self.paths.state_file(PENDING_FILE)).st_mtime
        at = state.get("applied_at")
        last = int(at * 1e9) if isinstance(at, (int, float)) else None
        return proxy_healthy(state.get("saved_rules_hash"), live, applying_for), last


def health_serve(paths: Paths, prefix: str) -> int:
    """The health server: serve HEALTH_FILE's listeners until it is gone or SIGTERM (see above)."""
    import selectors
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from socketserver import TCPServer, ThreadingMixIn

    health = ProxyHealth(paths, prefix)
    lock = threading.Lock()  # one reading of the rules at a time
    slots = threading.BoundedSemaphore(HEALTH_MAX_CONNECTIONS)
    conf: dict = {"services": []}

    def answer(target: tuple[str, ...], path: str) -> tuple[int, str, str]:
        with lock:
            healthy, last = health.check()
        if target[0] == "healthz":
            return healthz_answer(path.split("?")[0], healthy, last, time.time_ns())
        count = next((s["localEndpoints"] for s in conf["services"]
                      if (s["namespace"], s["name"]) == target[1:]), 0)
        status, body = service_health_answer(target[1], target[2], count, healthy)
        return status, "application/json", body

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Go's server
        timeout = HEALTH_CONN_TIMEOUT

        def handle_one_request(self) -> None:
            """Any method and (on a health check port) any path, as kube-proxy's handlers; a body is
            read and dropped, so the connection can stay open for the next request."""
            try:
                self.raw_requestline = self.rfile.readline(65537)
            except OSError:  # the client went quiet (timeout) or away
                self.close_connection = True
                return
            if not self.raw_requestline or len(self.raw_requestline) > 65536 or not self.parse_request():
                self.close_connection = True
                return
            length = self.headers.get("Content-Length") or "0"
            size = int(length) if length.isdigit() else HEALTH_MAX_BODY + 1
            if size > HEALTH_MAX_BODY or self.headers.get("Transfer-Encoding"):
                self.close_connection = True
            elif size:
                self.rfile.read(size)
            status, ctype, body = answer(self.server.target, self.path)  # type: ignore[attr-defined]
            data = body.encode()
            self.send_response_only(status)  # no Server header: Go sends none, and its headers sorted
            for key, value in (("Content-Length", str(len(data))), ("Content-Type", ctype),
                               ("Date", self.date_time_string()), ("X-Content-Type-Options", "nosniff")):
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:  # no access log
            pass

    class Listener(ThreadingMixIn, HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128  # Go listens with the kernel's somaxconn; socketserver's 5 drops bursts

        def server_bind(self) -> None:
            """TCPServer's bind: HTTPServer's also asks DNS for the host's name (socket.getfqdn), which
            took 12 s on a node without a reachable resolver, and nothing here needs the name."""
            TCPServer.server_bind(self)
            self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        target: tuple[str, ...] = ()

        def process_request(self, request: Any, client_address: Any) -> None:
            if not slots.acquire(blocking=False):  # bounded: a flood cannot exhaust the node
                self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                slots.release()

    listeners: dict[tuple[str, int], Listener] = {}
    selector = selectors.DefaultSelector()
    wake_r, wake_w = os.pipe()  # signals wake the loop at once (set_wakeup_fd)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    selector.register(wake_r, selectors.EVENT_READ)
    flags = {"reload": True, "stop": False}
    signal.signal(signal.SIGHUP, lambda *_: flags.update(reload=True))
    signal.signal(signal.SIGTERM, lambda *_: flags.update(stop=True))
    signal.signal(signal.SIGINT, lambda *_: flags.update(stop=True))
    seen: object = None

    def reload() -> bool:
        """Load HEALTH_FILE; keep, open and close listeners; acknowledge. False: nothing to serve."""
        nonlocal conf
        text = read_text(paths.etc_file(HEALTH_FILE))
        if text is None:
            return False
        try:
            new = parse_health(text)
        except AgentError as exc:
            log(str(exc))
            return True  # keep serving the last good one
        wanted = health_listeners(new)
        errors = []
        for addr in [a for a in listeners if a not in wanted]:
            selector.unregister(listeners[addr])
            listeners.pop(addr).server_close()
        for addr, target in wanted.items():
            if addr not in listeners:
                try:
                    Listener.address_family = socket_family(addr[0])
                    listeners[addr] = Listener(addr, Handler)
                except OSError as exc:
                    errors.append(f"cannot listen on {addr[0]}:{addr[1]}: {exc.strerror}")
                    log(errors[-1])
                    continue
                selector.register(listeners[addr], selectors.EVENT_READ)
            listeners[addr].target = target
        conf = new
        write_json(health_run_file(paths, HEALTH_ACK), {
            "config": sha256(text), "prefix": prefix, "pid": os.getpid(), "errors": errors,
            "listening": sorted(f"{ip}:{port}" for ip, port in listeners)}, durable=False)
        return True

    try:
        while not flags["stop"]:
            stamp = file_stamp(paths.etc_file(HEALTH_FILE))
            if flags["reload"] or stamp != seen:
                flags["reload"], seen = False, stamp
                if not reload():
                    break
            for key, _ in selector.select(HEALTH_POLL):
                if key.fileobj == wake_r:
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 512)
                else:
                    key.fileobj._handle_request_noblock()  # type: ignore[union-attr]
    finally:
        for listener in listeners.values():
            listener.server_close()
    return 0


def socket_family(ip: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def file_stamp(path: str) -> object:
    """What changes when `path` is replaced or rewritten (None: absent)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def health_supervise(paths: Paths, prefix: str) -> int:
    """Keep the health server running (restarted with backoff) while HEALTH_FILE exists; SIGHUP is
    passed on. Both are forks of the agent that starts them: no interpreter start-up (compiling the
    agent twice took seconds on a loaded node), the agent's own isolation (-I -S) and cwd "/"."""
    os.environ.pop(TEST_HOOK_ENV, None)  # a test's hooks are for the agent it started
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    child: list[int] = []
    stopping: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if signum != signal.SIGHUP:
            stopping.append(signum)
        for pid in child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in signals:
        signal.signal(sig, forward)
    backoff = 0.5
    while not stopping and os.path.exists(paths.etc_file(HEALTH_FILE)):
        started = time.monotonic()
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # none lost, none run by the child's copy of `forward`
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                for sig in signals:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
                code = health_serve(paths, prefix)
            except BaseException:
                import traceback

                traceback.print_exc()  # into the log
            os._exit(code)
        child[:] = [pid]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        code = wait_child(pid)
        child.clear()
        if stopping or not os.path.exists(paths.etc_file(HEALTH_FILE)):
            break
        log(f"health server exited with {code}; restarting")
        backoff = 0.5 if time.monotonic() - started > 10 else min(backoff * 2, 30.0)
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    return 0


def wait_child(pid: int) -> int:
    """waitpid (retried when a signal interrupts it); the exit code."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status)


def health_run_file(paths: Paths, name: str) -> str:
    return os.path.join(paths.run, name)


def running_health(paths: Paths) -> int | None:
    """The pid of the running health supervisor (that very process: pid and start time), or None."""
    rec = read_json(health_run_file(paths, HEALTH_PID)) or {}
    pid, start = rec.get("pid"), rec.get("start")
    return pid if isinstance(pid, int) and isinstance(start, str) and proc_start(pid) == start else None


def stop_health(paths: Paths) -> bool:
    """Stop the health server (its listening ports close with it); True if it was running."""
    pid = running_health(paths)
    if pid is not None:
        start = proc_start(pid)
        kill_group(pid, "health", alive=lambda: proc_start(pid) == start)
    for name in (HEALTH_PID, HEALTH_ACK):
        remove(health_run_file(paths, name))
    return pid is not None


def health_loaded(paths: Paths, text: str, prefix: str) -> dict | None:
    """The server's acknowledgement, if it has loaded `text` (with `prefix`)."""
    ack = read_json(health_run_file(paths, HEALTH_ACK)) or {}
    return ack if ack.get("config") == sha256(text) and ack.get("prefix") == prefix else None


def health_current(paths: Paths, prefix: str) -> bool:
    """Does the health server serve etc_dir's HEALTH_FILE (or, with nothing to serve, not run)?"""
    text = read_text(paths.etc_file(HEALTH_FILE)) or ""
    try:
        wanted = bool(health_listeners(parse_health(text)))
    except AgentError:
        return False
    running = running_health(paths) is not None
    return running and health_loaded(paths, text, prefix) is not None if wanted else not running


def reconcile_health(paths: Paths, prefix: str) -> list[str]:
    """Make the health server serve etc_dir's HEALTH_FILE: start it, have it reload, or stop it
    when there is nothing to serve; returns what was done. Waits until the server has loaded it."""
    text = read_text(paths.etc_file(HEALTH_FILE)) or ""
    conf = parse_health(text)
    pid = running_health(paths)
    if not health_listeners(conf):
        return ["stopped health server"] if stop_health(paths) else []
    if pid is not None and health_loaded(paths, text, prefix):
        return []
    ack = read_json(health_run_file(paths, HEALTH_ACK)) or {}
    if pid is not None and ack.get("prefix") not in (None, prefix):
        stop_health(paths)
        pid = None
    if pid is None:
        remove(health_run_file(paths, HEALTH_ACK))
        log_path = os.path.join(paths.state, LOGS_DIR, HEALTH_LOG)
        pid = spawn_daemon(lambda: health_supervise(paths, prefix), log_path)
        write_json(health_run_file(paths, HEALTH_PID), {"pid": pid, "start": proc_start(pid)}, durable=False)
        done = "started health server"
    else:
        os.kill(pid, signal.SIGHUP)
        done = "reloaded health server"
    deadline = time.monotonic() + HEALTH_ACK_WAIT
    loaded = health_loaded(paths, text, prefix)
    while loaded is None:
        if time.monotonic() >= deadline or running_health(paths) is None:
            log_path = os.path.join(paths.state, LOGS_DIR, HEALTH_LOG)
            raise AgentError(f"the health-check server did not load {HEALTH_FILE} within {HEALTH_ACK_WAIT:g}s "
                             f"(see {log_path})")
        time.sleep(0.02)
        loaded = health_loaded(paths, text, prefix)
    for err in loaded.get("errors") or []:
        log("health-check server: " + str(err))
    return [done]



# --------------------------------------------------------------------------- lock and pending marker


class NodeLock:
    """flock on state_dir/lock, holder info written into the file for a clear contention message.

    The lock file is never removed (a run waiting on a removed file and a newcomer that creates a
    new one would both "hold the lock"); should anyone remove or replace it anyway, the holder
    notices it locked a file that is no longer there and locks the one that is.
    """

    def __init__(self, paths: Paths, run_id: str, op: str, wait: float):
        self.path = paths.state_file(LOCK_FILE)
        self.run_id, self.op, self.wait = run_id, op, wait
        self.fd: int | None = None

    def __enter__(self) -> NodeLock:
        make_dir(os.path.dirname(self.path))
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                self._take(fd, deadline)
            except BaseException:
                os.close(fd)
                raise
            if self._still_the_file(fd):
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # only for the message of a waiting run: a full disk must not stop us
            os.ftruncate(fd, 0)
            info = {"run_id": self.run_id, "op": self.op, "pid": os.getpid(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        fault_point("locked", self.op)
        return self

    def _take(self, fd: int, deadline: float) -> None:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                if not waiting:
                    waiting = True
                    fault_point("lock wait", self.op)
                if time.monotonic() >= deadline:
                    holder = read_json(self.path) or {}
                    raise AgentError(
                        "another svcnet {} holds the lock on {} (run {} since {}, pid {}); waited {}s".format(
                            holder.get("op", "apply"), os.uname().nodename, holder.get("run_id", "?"),
                            holder.get("since", "?"), holder.get("pid", "?"), self.wait)) from None
                time.sleep(0.1)

    def _still_the_file(self, fd: int) -> bool:
        """Is the locked file still the one at the lock's path?"""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def pending_marker(paths: Paths) -> dict | None:
    return read_json(paths.state_file(PENDING_FILE))


def deadman_alive(marker: dict) -> bool:
    """Is the marker's dead-man switch still running (the very process, by pid and start time)?"""
    pid, start = marker.get("pid"), marker.get("start")
    if not isinstance(pid, int):
        return False
    if isinstance(start, str):
        return proc_start(pid) == start
    return pid_alive(pid, "deadman")  # a marker from an agent that exec'd `agent.py deadman`


def clear_pending(paths: Paths, marker: dict | None) -> None:
    if remove(paths.state_file(PENDING_FILE)):
        fsync_dir(paths.state)
    if marker and deadman_alive(marker) and marker["pid"] != os.getpid():
        kill_group(marker["pid"], "deadman", 2.0, alive=lambda: deadman_alive(marker))


# --------------------------------------------------------------------------- backup / rollback


def make_backup(paths: Paths, run_id: str, live: dict, nft_live: dict[str, str] | None = None,
                live6: dict | None = None) -> None:
    """Save the state before a change (owned rules, etc_dir artifacts, state.json), durably.

    nft_live: svcnet's nft tables (nft_snapshot), saved as NFT_BACKUP; None where nft is not there.
    live6: the owned ip6tables rules, saved as RULES6_BACKUP (absent: none).
    """
    tmp = paths.backup + ".new"
    remove(tmp)
    make_dir(os.path.join(tmp, "etc"))
    for name in (*ARTIFACT_FILES, NETCONF_JSON):
        text = read_text(paths.etc_file(name))
        if text is not None:
            write_text(os.path.join(tmp, "etc", name), text, artifact_mode(name), durable=False)
    state = load_state(paths)
    write_json(os.path.join(tmp, "rules.json"), live, durable=False)
    if nft_live is not None:
        write_json(os.path.join(tmp, NFT_BACKUP), nft_live, durable=False)
    if live6 is not None and has_owned(live6):
        write_json(os.path.join(tmp, RULES6_BACKUP), live6, durable=False)
    write_json(os.path.join(tmp, "meta.json"), {
        "run_id": run_id, "at": time.time(), "applied_hash": state.get("applied_hash"),
        "saved_rules_hash": state.get("saved_rules_hash"), "had_state": bool(state.get("applied_hash")),
        "marks": state.get(MARKS_KEY),
    }, durable=False)
    fsync_tree(tmp)  # all at once: fewer journal commits than one durable write per file
    remove(paths.backup)
    os.replace(tmp, paths.backup)
    fsync_dir(paths.state)


def artifact_mode(name: str) -> int:
    """Mode of an etc_dir file and of its backup: netconf.json holds the pods' commands, so root's only."""
    return {NETCONF_SH: 0o755, NETCONF_JSON: PRIVATE_FILE_MODE}.get(name, 0o644)


def load_netconf_file(path: str) -> dict:
    data = read_json(path)
    if data is None:
        return empty_netconf()
    try:
        return validate_netconf(data)
    except AgentError:
        return empty_netconf()


def rollback_to_backup(paths: Paths, prefix: str) -> list[str]:
    """Bring rules, address config, pods and etc_dir back to the backup; returns what was done."""
    meta = read_json(os.path.join(paths.backup, "meta.json"))
    if meta is None:
        raise AgentError("no backup to roll back to in " + paths.backup)
    done = []
    errors = []
    rules = read_json(os.path.join(paths.backup, "rules.json")) or empty_snapshot()
    rules6 = read_json(os.path.join(paths.backup, RULES6_BACKUP)) or empty_snapshot()
    tables = read_json(os.path.join(paths.backup, NFT_BACKUP))
    try:
        if set_owned_rules(rules, prefix):
            done.append("rules restored")
        if tables is not None and set_nft_tables(tables):
            done.append("nft tables restored")
    except AgentError as exc:
        errors.append(str(exc))
    try:  # (apart: a failure of one family's must not keep the other's from its backup)
        if set_owned_rules(rules6, prefix, IPV6):
            done.append("IPv6 rules restored")
    except AgentError as exc:
        errors.append(str(exc))
    # What may be on the node: the last recorded address config and the one an apply was making.
    currents = [load_netconf_file(os.path.join(d, NETCONF_JSON)) for d in (paths.etc, paths.staging)]
    previous = load_netconf_file(os.path.join(paths.backup, "etc", NETCONF_JSON))
    try:  # (the backup's netconf may be one an svcnet before the marks applied: see legacy_claims)
        claims = legacy_claims(bool(meta.get("had_state")), bool(meta.get("marks")), previous)
        run_netconf_script(os.path.join(paths.backup, "etc", NETCONF_SH), paths, previous, claims)
        if any([remove_netconf_extras(paths, current, previous) for current in currents]):
            done.append("address config restored")
        if reconcile_pods(paths, previous):
            done.append("pods restored")
    except AgentError as exc:
        errors.append(str(exc))
    for name in (*ARTIFACT_FILES, NETCONF_JSON):  # only what differs: a full disk cannot stop a no-op
        text = read_text(os.path.join(paths.backup, "etc", name))
        if text is None:
            remove(paths.etc_file(name))
        else:
            write_if_changed(paths.etc_file(name), text, artifact_mode(name))
    try:  # the health checks of the restored state (none when it had none)
        reconcile_health(paths, prefix)
    except AgentError as exc:
        errors.append(str(exc))
    remove(paths.staging)
    state = load_state(paths)
    state["applied_hash"] = meta.get("applied_hash")
    state["saved_rules_hash"] = sha256(rules_normal(rules, tables or {}, rules6)) if meta.get("had_state") else None
    state[MARKS_KEY] = meta.get("marks")
    save_state(paths, state)
    if errors:
        raise AgentError("rollback incomplete: " + "; ".join(errors))
    return done


def record_rollback(paths: Paths, run_id: str, reason: str, ok_: bool, msg: str) -> None:
    write_json(paths.state_file(LAST_ROLLBACK_FILE),
               {"run_id": run_id, "at": time.time(), "reason": reason, "ok": ok_, "msg": msg})


# --------------------------------------------------------------------------- persistence


def unit_text(paths: Paths) -> str:
    argv = " ".join(shlex.quote(a) for a in agent_argv(paths, "boot"))
    return ("[Unit]\nDescription=svcnet: Kubernetes Service rules and pod network\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            f"[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart={argv}\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def install_persistence(paths: Paths, state: dict) -> bool:
    """On systemd machines only: svcnet.service runs `agent.py boot`; returns whether it changed."""
    if not os.path.isdir(SYSTEMD_RUN):
        return False
    unit = os.path.join(SYSTEMD_UNIT_DIR, UNIT_NAME)
    text = unit_text(paths)
    if read_text(unit) == text:
        return False
    write_text(unit, text)
    run(["systemctl", "daemon-reload"], check=False)
    run(["systemctl", "enable", UNIT_NAME], check=False)
    state["unit"] = unit
    return True


def remove_persistence(state: dict) -> bool:
    unit = state.get("unit")
    if not unit or not os.path.exists(unit):
        return False
    if os.path.isdir(SYSTEMD_RUN):
        run(["systemctl", "disable", UNIT_NAME], check=False)
    remove(unit)
    if os.path.isdir(SYSTEMD_RUN):
        run(["systemctl", "daemon-reload"], check=False)
    return True


# --------------------------------------------------------------------------- stale conntrack entries
# After an apply, the node deletes the conntrack entries that would keep a flow on an endpoint that no
# longer serves, as kube-proxy's CleanStaleEntries (kubernetes/kubernetes pkg/proxy/conntrack/cleanup.go)
# does after each sync. A UDP flow has no end: as long as the client keeps sending, its entry lives on
# and keeps DNATing to the endpoint it first picked, even once the rules no longer name it.
#
# Stateless, as kube-proxy's newer cleanup: an entry is stale when its original destination is a
# service port's VIP (ClusterIP, externalIP, LB ingress IP) and port, or its NodePort, and its reply
# source is not one of that port's serving endpoints now. No previous state is compared: what the last
# apply recorded may be lost or from a run that failed, while the entries themselves say where they
# go. This covers the entries of a port that went from no endpoints (REJECT) to some: their reply
# source is the VIP itself, never an endpoint. A port with no serving endpoints is left alone (as
# kube-proxy does: its REJECT rules answer new flows; nothing would be gained). A NodePort's entries
# are matched on the port whatever their destination address, as kube-proxy matches them: the
# NodePort rules take that port on the node's addresses. TCP is never touched
# (a connection ends by itself, and a deleted entry would break an established one); SCTP neither,
# as kube-proxy cleans UDP only; the controller sends the ports to clean (its desired state), the
# agent accepts UDP and SCTP.
CONNTRACK_PROTOCOLS = ("UDP", "SCTP")
CONNTRACK_FIELDS = ("protocol", "port", "vips", "node_port", "endpoints")
CONNTRACK_BUDGET = 10.0  # seconds for a node's whole cleanup (listing and deleting), so an apply stays bounded
MAX_CONNTRACK_PORTS = 100000  # service ports in one request (far above what a node serves)
CONNTRACK_DELETED_RE = re.compile(r"(\d+) flow entries have been deleted")
# state.json: the last cleanup stopped short. The probe says so, and the controller then sends the
# apply again even though the rules are in place (the cleanup runs with every apply of the rules),
# so that a failed or overrun cleanup is retried by the next run instead of waiting for a change.
CONNTRACK_PENDING_KEY = "conntrack_pending"


def as_conntrack(key: str, value: object) -> list[dict]:
    """The service ports whose stale entries to delete: {protocol, port, vips, node_port, endpoints}."""
    if not isinstance(value, list) or len(value) > MAX_CONNTRACK_PORTS:
        raise _refuse(key, "a list of service ports", value)
    return [_conntrack_port(f"{key}[{n}]", item) for n, item in enumerate(value)]


def _conntrack_port(where: str, item: object) -> dict:
    if not isinstance(item, dict) or sorted(item) != sorted(CONNTRACK_FIELDS):
        raise _refuse(where, "an object of " + ", ".join(CONNTRACK_FIELDS), item)
    if item["protocol"] not in CONNTRACK_PROTOCOLS:
        raise _refuse(where + ".protocol", " or ".join(CONNTRACK_PROTOCOLS), item["protocol"])
    for name, low in (("port", 1), ("node_port", 0)):
        n = item[name]
        if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= 65535:
            raise _refuse(f"{where}.{name}", f"a port number {low}-65535", n)
    ips = {}
    for name in ("vips", "endpoints"):
        got = item[name]
        if not isinstance(got, list) or not all(isinstance(v, str) and _is_ip(v) for v in got):
            raise _refuse(f"{where}.{name}", "a list of IP addresses", got)
        ips[name] = [str(ipaddress.ip_address(v)) for v in got]  # canonical: as conntrack prints them
    return {**item, **ips}


def parse_conntrack(text: str) -> list[dict]:
    """`conntrack -L` lines as {proto, orig_dst, orig_dport, reply_src}: each line gives the original
    tuple's src=, dst=, sport=, dport= first and the reply tuple's after them."""
    entries = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        seen: dict[str, list[str]] = {}
        for word in words:
            k, eq, v = word.partition("=")
            if eq:
                seen.setdefault(k, []).append(v)
        if len(seen.get("dst", ())) == 2 and len(seen.get("src", ())) == 2 and seen.get("dport"):
            entries.append({"proto": words[0].upper(), "orig_dst": seen["dst"][0], "orig_dport": seen["dport"][0],
                            "reply_src": seen["src"][1]})
    return entries


def stale_conntrack_filters(ports: list[dict], entries: list[dict]) -> list[tuple[str, ...]]:
    """The `conntrack -D` filters (protocol, then its match options) that delete the stale ones of
    `entries`, once each: kube-proxy's filterForIPPortNAT (VIP, port, reply source) and
    filterForPortNAT (NodePort, reply source)."""
    by_vip: dict[tuple[str, str, str], set[str]] = {}
    by_node_port: dict[tuple[str, str], set[str]] = {}
    for p in ports:
        if not p["endpoints"]:
            continue
        for vip in p["vips"]:
            by_vip.setdefault((p["protocol"], vip, str(p["port"])), set()).update(p["endpoints"])
        if p["node_port"]:
            by_node_port.setdefault((p["protocol"], str(p["node_port"])), set()).update(p["endpoints"])
    filters: set[tuple[str, ...]] = set()
    for e in entries:
        proto, reply_src = e["proto"], e["reply_src"]
        serving = by_vip.get((proto, e["orig_dst"], e["orig_dport"]))
        if serving is not None and reply_src not in serving:
            filters.add((proto, "--orig-dst", e["orig_dst"], "--orig-port-dst", e["orig_dport"],
                         "--reply-src", reply_src))
        serving = by_node_port.get((proto, e["orig_dport"]))
        if serving is not None and reply_src not in serving:
            filters.add((proto, "--orig-port-dst", e["orig_dport"], "--reply-src", reply_src))
    return sorted(filters)


def conntrack_family(ip: str) -> str:
    return "ipv6" if ":" in ip else "ipv4"


def clean_conntrack(ports: list[dict], budget: float = CONNTRACK_BUDGET) -> tuple[int, str | None]:
    """Delete the node's stale entries of `ports`: (entries deleted, the error that stopped it or None).

    Within `budget` seconds in all; a command that fails or overruns stops the cleanup, the count
    says what was deleted until then.
    """
    deadline = time.monotonic() + budget
    kinds = sorted({(conntrack_family(ip), p["protocol"]) for p in ports if p["endpoints"]
                    for ip in p["vips"] + p["endpoints"]})
    deleted = 0
    try:
        for fam, proto in kinds:
            listed = run(["conntrack", "-L", "-f", fam, "-p", proto.lower()], timeout=_left(deadline))
            for f in stale_conntrack_filters(ports, parse_conntrack(listed.stdout)):
                argv = ["conntrack", "-D", "-f", fam, "-p", f[0].lower(), *f[1:]]
                proc = run(argv, check=False, timeout=_left(deadline))
                found = CONNTRACK_DELETED_RE.search(proc.stderr + proc.stdout)
                if found is None:  # exit 1 with "0 flow entries" is an entry gone meanwhile; else an error
                    raise AgentError("{} failed (exit {}): {}".format(" ".join(argv), proc.returncode,
                                                                      (proc.stderr or proc.stdout).strip()[-500:]))
                deleted += int(found.group(1))
    except (AgentError, OSError) as exc:
        log(f"conntrack cleanup: {exc}")
        return deleted, str(exc)
    return deleted, None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise AgentError("conntrack cleanup ran out of its time")
    return left


# --------------------------------------------------------------------------- the wire: requests
# Each op's request is a record parsed once, at the entry point, from the JSON object: a field's
# JSON key is its name and its default the record's default (a key absent or null takes it); its
# checker (the field's meta CHECK) turns the JSON value into the field's value or refuses it, naming
# the field. A key no field names is refused too, so that a misspelt one never silently takes a default.

CHECK = "check"  # a request field's meta: its checker, check(key, value) -> value (None: the default)
OMIT_NONE = "omit_none"  # an answer field's meta: left out of the JSON while None
OMIT = {OMIT_NONE: True}  # (for an answer that has nothing to say of it)


def _refuse(key: str, what: str, value: object) -> AgentError:
    return AgentError(f"request field {key!r} must be {what}, not {value!r:.200}")


def as_text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _refuse(key, "text", value)
    return value


def as_dir(key: str, value: object) -> str | None:
    """A directory of svcnet's; empty: the default one."""
    return as_text(key, value) or None


def as_run_id(key: str, value: object) -> str:
    if not (isinstance(value, str) and (value == "" or RUN_ID_RE.fullmatch(value))):
        raise AgentError(f"invalid {key} {value!r:.200}")
    return value


def as_prefix(key: str, value: object) -> str | None:
    """The prefix of svcnet's chains (a test's own, under KUBE-); empty: OWNED_PREFIX."""
    prefix = as_text(key, value)
    if prefix and not (PREFIX_RE.fullmatch(prefix) and prefix.startswith(OWNED_PREFIX)):
        raise AgentError(f"{key} must be {OWNED_PREFIX} followed by upper-case letters, digits and '-': "
                         f"{prefix!r}")
    return prefix or None


def as_seconds(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise _refuse(key, "a number of seconds >= 0", value)
    return float(value)


def as_family(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in IPT_COMMANDS:
        raise _refuse(key, " or ".join(map(str, IPT_COMMANDS)), value)
    return value


def as_flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _refuse(key, "true or false", value)
    return value


def as_netconf(key: str, value: object) -> dict:
    return validate_netconf(value)


def as_parts(key: str, value: object) -> tuple[str, ...] | None:
    """Parts to apply, in PARTS order; empty: all of them."""
    if not isinstance(value, list) or not all(p in PARTS for p in value):
        raise _refuse(key, "a list of parts ({})".format(", ".join(PARTS)), value)
    return tuple(p for p in PARTS if p in value) or None


def as_part_hashes(key: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(k in PARTS and isinstance(v, str) for k, v in value.items()):
        raise _refuse(key, "an object of a text per part ({})".format(", ".join(PARTS)), value)
    return dict(value)


def as_artifacts(key: str, value: object) -> dict[str, str]:
    """The artifact files given, by name (one not given is empty; rules.restore is required: ApplyRequest)."""
    if not isinstance(value, dict) or not all(k in ARTIFACT_FILES for k in value):
        raise _refuse(key, "an object of the files {}".format(", ".join(ARTIFACT_FILES)), value)
    for name in ARTIFACT_FILES:
        if not isinstance(value.get(name, ""), str):
            raise AgentError(f"{key}.{name} must be text")
    return {name: value.get(name, "") for name in ARTIFACT_FILES if name in value}


class Request(Record):
    """What every request may carry: its run, where svcnet's files are, the prefix of svcnet's chains
    and how long to wait for the node lock."""

    run_id: str = field(default="", meta={CHECK: as_run_id})
    etc_dir: str = field(default=DEFAULT_ETC_DIR, meta={CHECK: as_dir})
    state_dir: str = field(default=DEFAULT_STATE_DIR, meta={CHECK: as_dir})
    run_dir: str = field(default=DEFAULT_RUN_DIR, meta={CHECK: as_dir})
    owned_prefix: str = field(default=OWNED_PREFIX, meta={CHECK: as_prefix})
    lock_wait: float = field(default=30.0, meta={CHECK: as_seconds})

    @classmethod
    def parse(cls: type[R], raw: Mapping[str, object]) -> R:
        """The request of this type in the JSON object `raw` (its "op" already found); AgentError if malformed."""
        known = cls.FIELDS
        unknown = sorted(str(k) for k in raw if k != "op" and k not in known)
        if unknown:
            raise AgentError("{} request: unknown field{} {} (known: {})".format(
                raw.get("op"), "s" if len(unknown) > 1 else "", ", ".join(map(repr, unknown)),
                ", ".join(sorted(known))))
        values: dict[str, Any] = {}
        for name, spec in known.items():
            given = raw.get(name)
            value = None if given is None else spec.meta[CHECK](name, given)
            if value is not None:
                values[name] = value
        return cls(**values)

    @property
    def paths(self) -> Paths:
        return Paths(self.etc_dir, self.state_dir, self.run_dir)


class ProbeRequest(Request):
    """What the node has and what svcnet applied on it (changes nothing)."""


class PreflightRequest(Request):
    """Can the node take svcnet's state: commands, kernel features, and (with netconf) no foreign
    link, route or netns of a name the address config uses."""

    netconf: dict | None = field(default=None, meta={CHECK: as_netconf})
    proxy_mode: str = field(default=MODE_IPTABLES, meta={CHECK: as_mode})


class GuardedRequest(Request):
    """A change guarded by a dead-man switch when confirm_timeout > 0: rolled back unless confirmed
    over a fresh connection within that many seconds."""

    confirm_timeout: float = field(default=0.0, meta={CHECK: as_seconds})


class ApplyRequest(GuardedRequest):
    """Apply `parts` of the rendered state: artifacts (the files by name) and netconf (the address config).

    desired_hashes: per part, the hash of what it applies (recorded; the same again: unchanged);
    check: say what would change, change nothing; diff: also answer the changes' diff; agent,
    podserver: the source texts that pod supervisors and the boot unit run from state_dir;
    conntrack: the service ports whose stale conntrack entries to delete once the rules are applied
    (see clean_conntrack; None: none).
    """

    artifacts: dict[str, str] = field(default_factory=dict, meta={CHECK: as_artifacts})
    netconf: dict = field(default_factory=empty_netconf, meta={CHECK: as_netconf})
    parts: tuple[str, ...] = field(default=PARTS, meta={CHECK: as_parts})
    desired_hashes: dict[str, str] = field(default_factory=dict, meta={CHECK: as_part_hashes})
    check: bool = field(default=False, meta={CHECK: as_flag})
    diff: bool = field(default=False, meta={CHECK: as_flag})
    agent: str | None = field(default=None, meta={CHECK: as_text})
    podserver: str | None = field(default=None, meta={CHECK: as_text})
    conntrack: list[dict] | None = field(default=None, meta={CHECK: as_conntrack})
    proxy_mode: str = field(default=MODE_IPTABLES, meta={CHECK: as_mode})

    def __post_init__(self) -> None:
        """The rules must be svcnet's own: refused here, before anything on the node is read or locked."""
        parse_health(self.artifacts.get(HEALTH_FILE, ""))
        if self.proxy_mode == MODE_NFTABLES:
            check_nft_request(self.artifacts)
            return
        if RESTORE_FILE not in self.artifacts:
            raise AgentError(f"apply needs artifacts with {RESTORE_FILE}")
        if self.artifacts.get(NFT_FILE):
            raise AgentError(f"{NFT_FILE} is for proxy_mode {MODE_NFTABLES}, not {self.proxy_mode}")
        check_restore(self.artifacts[RESTORE_FILE], self.owned_prefix)
        parse_jumps(self.artifacts.get(JUMPS_FILE, ""), self.owned_prefix)
        check_restore(self.artifacts.get(RESTORE6_FILE, ""), self.owned_prefix, RESTORE6_FILE)
        parse_jumps(self.artifacts.get(JUMPS6_FILE, ""), self.owned_prefix, JUMPS6_FILE)


class ConfirmRequest(Request):
    """Keep the run's guarded change: disarm its dead-man switch (a teardown's also removes the files)."""


class RollbackRequest(Request):
    """Bring the node back to the backup of the run (any run's when run_id is empty)."""


class TeardownRequest(GuardedRequest):
    """Remove everything svcnet created on the node."""


class BootRequest(Request):
    """Re-create the applied state at boot (svcnet.service)."""

    lock_wait: float = field(default=60.0, meta={CHECK: as_seconds})


class StatusRequest(Request):
    """The pods' processes and the pending confirmation."""


class ScratchRequest(Request):
    """In a scratch netns only: load `restore` and `jumps`, answer the kernel's normal form of them."""

    restore: str = field(default="", meta={CHECK: as_text})
    jumps: str = field(default="", meta={CHECK: as_text})
    family: int = field(default=IPV4, meta={CHECK: as_family})


# --------------------------------------------------------------------------- the wire: answers


class Answer(Record):
    """What every op answers: ok (it did what was asked), changed (the node changed) and a message."""

    ok: bool
    changed: bool
    msg: str

    def to_wire(self) -> dict:
        """The answer as the JSON object on the wire."""
        return {name: value for name, value in self.values().items()
                if value is not None or not self.FIELDS[name].meta.get(OMIT_NONE)}


class ChangeAnswer(Answer):
    """The answer of an op that changes the node (apply, confirm, rollback, teardown).

    pending: the change awaits confirmation; rolled_back: the node is back in its previous state
    (False: the rollback failed too); pods: what was done to pod processes; diff: per DIFF_KEYS,
    the changes; foreign: what the address config names that svcnet did not create;
    conntrack_deleted: the stale conntrack entries an apply deleted (absent: none asked),
    conntrack_error: why that cleanup stopped short (the apply itself stands).
    """

    pending: bool | None = field(default=None, meta=OMIT)
    rolled_back: bool | None = field(default=None, meta=OMIT)
    pods: list[str] | None = field(default=None, meta=OMIT)
    diff: dict[str, str] | None = field(default=None, meta=OMIT)
    foreign: list[str] | None = field(default=None, meta=OMIT)
    conntrack_deleted: int | None = field(default=None, meta=OMIT)
    conntrack_error: str | None = field(default=None, meta=OMIT)


class ProbeAnswer(Answer):
    """What the node has (facts) and how it compares with what svcnet applied and recorded there.

    A preflight answers a probe's fields too, so that a run decides what to change in one round
    trip, and what the node lacks (missing commands, rule features).
    """

    facts: dict
    applied_hash: object
    live_rules_hash: str
    saved_rules_hash: object
    stale_chains: list[str]
    pending: dict | None
    netconf_ok: bool
    netconf_drift: list[str]
    netconf_live_hash: str
    netconf_saved_hash: str
    last_rollback: dict | None
    conntrack_pending: bool | None = field(default=None, meta=OMIT)  # the last conntrack cleanup stopped short
    health_ok: bool = True  # the health-check server serves what the rules' part recorded (health_current)
    missing: list[dict] | None = field(default=None, meta=OMIT)
    features: dict[str, bool] | None = field(default=None, meta=OMIT)


class PreflightRefusal(Answer):
    """A node that cannot take svcnet's state: what it lacks, or the foreign objects in the way."""

    missing: list[dict]
    features: dict[str, bool]
    facts: dict
    foreign: list[str] | None = field(default=None, meta=OMIT)


class BootAnswer(Answer):
    """pods: what was done to pod processes; live_rules_hash: the rules booted (absent: none applied)."""

    pods: list[str] | None = field(default=None, meta=OMIT)
    live_rules_hash: str | None = field(default=None, meta=OMIT)


class StatusAnswer(Answer):
    """Per pod of the applied address config, its process; and the change awaiting confirmation."""

    pods: list[dict]
    pending: dict | None


class ScratchAnswer(Answer):
    """The rules loaded in the scratch netns, parsed (snapshot) and in normal form."""

    snapshot: dict
    normal: str


# The diff of an apply, per part: the rules' under the part's name, the address config's as "netconf".
DIFF_KEYS = {PART_RULES: PART_RULES, PART_NETWORK: "netconf"}
# The IPv6 (ip6tables) rules' diff, apart from the IPv4 one: kube-proxy's dual-stack mode is two
# single-family proxiers, and a chain name (KUBE-SVC-h) is the same in both, so a diff of both would
# not say which family a chain's drift is in. A part's diff keys: PART_DIFF_KEYS.
DIFF_RULES6 = "rules6"
PART_DIFF_KEYS = {PART_RULES: (PART_RULES, DIFF_RULES6), PART_NETWORK: (DIFF_KEYS[PART_NETWORK],)}


def part_diff(part: str, old: list[str], new: list[str]) -> str:
    diff = text_diff(old, new, DIFF_KEYS[part])
    return nft_hunk_context(diff, old) if part == PART_RULES and diff else diff


def split_rules_normal(text: str) -> tuple[str, str]:
    """rules_normal's text as (the IPv4 chains and the nft tables, the IPv6 chains)."""
    if IPV6_RULES_HEADER not in text:
        return text, ""
    before, rest = text.split(IPV6_RULES_HEADER, 1)
    lines = rest.splitlines(keepends=True)
    cut = next((i for i, ln in enumerate(lines) if ln.startswith("table ")), len(lines))  # nft tables follow
    return before + "".join(lines[cut:]), "".join(lines[:cut])


def rules_diffs(old: str, new: str) -> dict[str, str]:
    """The rules diff from rules_normal text `old` to `new`: the IPv4 (and nft) one, and the IPv6
    one under DIFF_RULES6 where either side has IPv6 chains."""
    (old4, old6), (new4, new6) = split_rules_normal(old), split_rules_normal(new)
    out = {DIFF_KEYS[PART_RULES]: part_diff(PART_RULES, old4.splitlines(), new4.splitlines())}
    if old6 or new6:
        out[DIFF_RULES6] = text_diff(old6.splitlines(), new6.splitlines(), DIFF_RULES6)
    return out


# --------------------------------------------------------------------------- operations


def netconf_status(paths: Paths) -> tuple[bool, list[str], str, str]:
    """(live address state matches the applied netconf, drift lines, live hash, saved hash)."""
    conf = load_netconf_file(paths.etc_file(NETCONF_JSON))
    want = desired_lines(conf)
    live = live_lines([conf], paths)
    same = sorted(live) == sorted(want)
    drift = [] if same else [ln for ln in text_diff(live, want, "").splitlines() if ln[:1] in "+-"
                             and not ln.startswith(("+++", "---"))]
    return same, drift, sha256("\n".join(sorted(live))), sha256("\n".join(sorted(want)))


def op_probe(req: Request, features: dict | None = None) -> ProbeAnswer:
    paths = req.paths
    snap = snapshot(req.owned_prefix)
    state = load_state(paths)
    net_ok, drift, live_hash, saved_hash = netconf_status(paths)
    return ProbeAnswer(
        True, False, "",
        facts=gather_facts(features=features),
        applied_hash=state.get("applied_hash"),
        live_rules_hash=sha256(rules_normal(snap, nft_snapshot(), snapshot(req.owned_prefix, IPV6))),
        saved_rules_hash=state.get("saved_rules_hash"),
        stale_chains=stale_chains(snap),
        pending=pending_marker(paths),
        netconf_ok=net_ok,
        netconf_drift=drift,
        netconf_live_hash=live_hash,
        netconf_saved_hash=saved_hash,
        last_rollback=read_json(paths.state_file(LAST_ROLLBACK_FILE)),
        conntrack_pending=True if state.get(CONNTRACK_PENDING_KEY) else None,
        health_ok=health_current(paths, req.owned_prefix),
    )


def op_preflight(req: PreflightRequest) -> Answer:
    missing = [{"command": c, "package": pkg} for c, pkg in REQUIRED_COMMANDS.items() if not shutil.which(c)]
    nft_mode = req.proxy_mode == MODE_NFTABLES
    nft_missing, nft_feats, nft_problem = nft_preflight() if nft_mode else ([], {}, "")
    missing += nft_missing
    features: dict = {}
    msg = ""
    if not any(m["command"] in ("iptables-restore", "unshare") for m in missing):
        try:
            features = scratch_features()
        except AgentError as exc:
            msg = str(exc)
    # (nftables mode needs iptables only to remove svcnet's chains: its rule features do not matter)
    bad = [] if nft_mode else sorted(k for k, v in features.items() if not v and k != "random_fully")
    if bad:
        msg = "kernel/iptables lack: " + ", ".join(bad)
    if features:
        features.update(nft_feats)
    msg = "; ".join(m for m in (msg, nft_problem) if m)
    if missing:
        msg = ("missing commands: " + ", ".join("{} (apt install {})".format(m["command"], m["package"])
                                                for m in missing) + ("; " + msg if msg else ""))
    if missing or not features or bad or nft_problem:
        return PreflightRefusal(False, False, msg, missing=missing, features=features,
                                facts=gather_facts(scratch=False))
    if req.netconf is not None:  # the address config the run will apply: nothing of it may be foreign
        paths = req.paths
        foreign = foreign_objects(paths, req.netconf,
                                  state_claims(paths, load_netconf_file(paths.etc_file(NETCONF_JSON))))
        if foreign:
            return PreflightRefusal(False, False, refusal(foreign), foreign=foreign, missing=missing,
                                    features=features, facts=gather_facts(scratch=False))
    # Everything a probe says too, so a run needs one round trip to decide what to change.
    return op_probe(req, features).replace(msg=msg or "node ready", missing=missing, features=features)


def op_apply(req: ApplyRequest) -> ChangeAnswer:
    paths = req.paths
    with settled_lock(paths, req.run_id, "apply", req.lock_wait):
        marker = pending_marker(paths)
        if marker and marker.get("run_id") != req.run_id:
            log("stale pending marker of run {}: rolling it back first".format(marker.get("run_id")))
            _deadman_rollback(paths, req.owned_prefix, marker, "stale pending marker")
        plan = plan_apply(req)
        if plan.foreign:
            return ChangeAnswer(False, False, refusal(plan.foreign), foreign=plan.foreign)
        if req.check:
            return check_answer(req, plan)
        if plan.unchanged:
            return ChangeAnswer(True, False, "already in the desired state", diff=plan.diff(req.diff),
                                **conntrack_cleanup(req, plan))
        jumps = canonical_jumps(plan.arts[JUMPS_FILE], req.owned_prefix) if plan.do_rules else {}
        return Commit(req, plan, jumps).run()


def conntrack_cleanup(req: ApplyRequest, plan: ApplyPlan) -> dict:
    """Delete the stale conntrack entries once an apply has its rules in place; the answer's fields
    that say what was done ({}: no cleanup asked).

    Also when the rules were already in place: the cleanup is stateless, so it also finishes what an
    earlier apply's cleanup left (it failed or ran out of time). Not after a failed apply (Commit
    stops before it): the node is back on its previous rules. A failed cleanup does not fail the
    apply (the rules are right), as kube-proxy logs it and goes on: the answer says why it stopped,
    and state.json that the next run is to retry it.
    """
    if req.conntrack is None or not plan.do_rules:
        return {}
    deleted, error = clean_conntrack(req.conntrack)
    try:
        record_conntrack_pending(req.paths, error is not None)
    except OSError as exc:
        error = error or f"cannot record the cleanup in {STATE_FILE}: {exc}"
    return {"conntrack_deleted": deleted, "conntrack_error": error}


def record_conntrack_pending(paths: Paths, pending: bool) -> None:
    """Record in state.json whether the cleanup stopped short (CONNTRACK_PENDING_KEY); written only on a change."""
    state = load_state(paths)
    if bool(state.get(CONNTRACK_PENDING_KEY)) == pending:
        return
    if pending:
        state[CONNTRACK_PENDING_KEY] = True
    else:
        state.pop(CONNTRACK_PENDING_KEY, None)
    save_state(paths, state)


@contextlib.contextmanager
def settled_lock(paths: Paths, run_id: str, op: str, wait: float) -> Iterator[NodeLock]:
    """The node lock, taken once no other run's change awaits confirmation.

    Another run confirms each node right after applying it, so its pending marker is short-lived:
    wait for it (releasing the lock meanwhile, so the confirm can run) for up to `wait` seconds, as
    for the lock itself. A marker whose dead-man switch is gone is stale and left to the caller.
    """
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        lock = NodeLock(paths, run_id, op, max(0.0, deadline - time.monotonic()))
        with lock:
            marker = pending_marker(paths) or {}
            if not marker or marker.get("run_id") == run_id or not deadman_alive(marker):
                yield lock
                return
        if time.monotonic() >= deadline:
            raise AgentError("node is awaiting confirmation of run {} (rollback at {}); waited {:g}s; confirm "
                             "or roll it back first".format(marker.get("run_id"), time.strftime(
                                 "%H:%M:%S", time.localtime(marker.get("deadline", 0))), wait))
        time.sleep(0.1)


def applied_hashes(state: dict) -> dict:
    """Per part, the hash of what was last applied ({} on a fresh node)."""
    value = state.get("applied_hash")
    return dict(value) if isinstance(value, dict) else {}


class ApplyPlan(Record):
    """What an apply changes: read from the node under the lock, before anything changes.

    arts, conf: the artifact files and the address config after the apply (a part not applied keeps
    the node's); live, live_normal, old_conf: the node's owned rules (and their normal form) and its
    recorded address config now; claims: unmarked objects an svcnet before the marks applied
    (legacy_claims); foreign: what conf names and svcnet did not create (refused); have_lines,
    want_lines: the address config live and desired (desired_lines); files_same: etc_dir already
    holds the applied parts' files; applied, want: per part, the hashes recorded and desired.
    """

    parts: tuple[str, ...]
    arts: dict[str, str]
    conf: dict
    old_conf: dict
    claims: frozenset[str]
    foreign: list[str]
    live: dict
    live_normal: str
    have_lines: list[str]
    want_lines: list[str]
    files_same: bool
    applied: dict
    want: dict
    saved_rules_hash: object
    mode: str = MODE_IPTABLES
    nft_live: dict[str, str] = field(default_factory=dict)
    nft_applied: str = ""  # the node's recorded rules.nft (what an incremental apply starts from)
    health_ok: bool = True
    live6: dict = field(default_factory=empty_snapshot)  # the node's owned ip6tables rules now

    @property
    def do_rules(self) -> bool:
        return PART_RULES in self.parts

    @property
    def do_net(self) -> bool:
        return PART_NETWORK in self.parts

    @property
    def files(self) -> list[str]:
        """The etc_dir files of the parts applied."""
        return [name for p in self.parts for name in PART_FILES[p]]

    @property
    def net_same(self) -> bool:
        return sorted(self.have_lines) == sorted(self.want_lines)

    @property
    def rules_same(self) -> bool:
        """The same rules hash was applied and the live rules are still what that apply left."""
        want = self.want.get(PART_RULES)
        return not self.do_rules or (bool(want) and self.applied.get(PART_RULES) == want
                                     and self.saved_rules_hash == sha256(self.live_normal) and self.health_ok)

    @property
    def unchanged(self) -> bool:
        return (self.rules_same and self.net_same and self.files_same
                and all(self.applied.get(p) == self.want.get(p) for p in self.parts))

    def diff(self, shown: bool, rules: dict[str, str] | None = None) -> dict[str, str] | None:
        """The answer's diff when `shown`: `rules` (rules_diffs), and the address config's from live
        to desired."""
        if not shown:
            return None
        net = part_diff(PART_NETWORK, sorted(self.have_lines), sorted(self.want_lines))
        return {DIFF_KEYS[PART_RULES]: "", **(rules or {}), DIFF_KEYS[PART_NETWORK]: net}


def plan_apply(req: ApplyRequest) -> ApplyPlan:
    """Read what the apply of `req` compares with (under the lock) and plan it; changes nothing."""
    paths = req.paths
    old_conf = load_netconf_file(paths.etc_file(NETCONF_JSON))
    on_node = {name: read_text(paths.etc_file(name)) for name in ARTIFACT_FILES}
    arts = planned_files(req.parts, req.artifacts, on_node)
    conf = req.netconf if PART_NETWORK in req.parts else old_conf
    claims = state_claims(paths, old_conf)
    live, tables, live6 = snapshot(req.owned_prefix), nft_snapshot(), snapshot(req.owned_prefix, IPV6)
    state = load_state(paths)
    # (a rules file of the other proxy mode, or an empty IPv6 one, is removed: the same as an empty one when absent)
    return ApplyPlan(
        parts=req.parts, arts=arts, conf=conf, old_conf=old_conf, claims=claims,
        foreign=foreign_objects(paths, conf, claims) if PART_NETWORK in req.parts else [],
        live=live, live_normal=rules_normal(live, tables, live6), live6=live6,
        have_lines=live_lines([conf, old_conf], paths), want_lines=desired_lines(conf),
        files_same=all(on_node[name] == arts[name] or (on_node[name] is None and not arts[name]
                                                       and not_kept(name, req.proxy_mode))
                       for p in req.parts for name in PART_FILES[p]),
        applied=applied_hashes(state), want=req.desired_hashes, saved_rules_hash=state.get("saved_rules_hash"),
        mode=req.proxy_mode, nft_live=tables, nft_applied=on_node[NFT_FILE] or "",
        health_ok=health_current(paths, req.owned_prefix))


def planned_files(parts: tuple[str, ...], sent: dict[str, str], on_node: dict[str, str | None]) -> dict[str, str]:
    """The artifact files after an apply of `parts`: those sent, but a part not applied keeps the node's."""
    return {name: sent.get(name, "") if part in parts else on_node.get(name) or ""
            for part in PARTS for name in PART_FILES[part]}


def check_answer(req: ApplyRequest, plan: ApplyPlan) -> ChangeAnswer:
    """Check mode: would the apply change anything, and the diff (the kernel's normal form of the
    desired rules, loaded into a scratch netns); nothing on the node changes."""
    desired = desired_rules_normal(plan, req.owned_prefix) if plan.do_rules else plan.live_normal
    changed = plan.live_normal != desired or not plan.net_same or not plan.files_same
    rules = rules_diffs(plan.live_normal, desired)
    return ChangeAnswer(True, changed, "check mode: nothing changed", diff=plan.diff(True, rules))


def desired_rules_normal(plan: ApplyPlan, prefix: str) -> str:
    """The rules_normal an apply of `plan` leaves: its mode's rules (loaded into a scratch netns), and
    nothing of the other mode's."""
    if plan.mode == MODE_NFTABLES:
        return rules_normal(empty_snapshot(), scratch_nft_tables(plan.arts[NFT_FILE]))
    snap6 = desired_snapshot(plan.arts, prefix, IPV6)[0] if wants_ipv6(plan.arts) else None
    return rules_normal(desired_snapshot(plan.arts, prefix)[0], {}, snap6)


def nft_apply_transaction(plan: ApplyPlan) -> str:
    """The nft transaction of an apply, checked with `nft --check`: the difference from the recorded
    rules.nft when the live rules are still what it made (nft_incremental), else the full one."""
    if plan.mode == MODE_NFTABLES and plan.nft_applied and plan.saved_rules_hash == sha256(plan.live_normal):
        partial = nft_incremental(plan.nft_applied, plan.arts[NFT_FILE])
        if partial is not None and not partial:
            return ""
        if partial and nft(["--check", "-f", "-"], stdin=partial, check=False).returncode == 0:
            log(f"nft: incremental transaction ({partial.count(chr(10))} statements)")
            return partial
    full = nft_transaction(plan.arts[NFT_FILE], plan.nft_live)
    if full:
        log("nft: full transaction")
        nft(["--check", "-f", "-"], stdin=full)
    return full


# The steps of a guarded apply, in order (Commit.STEPS). Before FIRST_CHANGE nothing on the node has
# changed; from "mark pending" on, a pending marker (and from "arm dead-man" on, its dead-man switch)
# makes sure that an agent killed at any later step leaves the node in its previous state (the
# dead-man, or at boot, rolls back) or, once confirmed, in the new one. A failure from FIRST_CHANGE
# on rolls back.
FIRST_CHANGE = "rules"
# A pending marker's phase: the apply runs (or died: never to be confirmed), or it awaits confirmation.
PHASE_APPLYING, PHASE_AWAITING = "applying", "awaiting confirmation"


class Commit:
    """One apply that changes the node as `plan` says, run as the named STEPS (a test can fault each).

    jumps: canonical_jumps of the plan's jump rules. What the steps learn on the way: the rules
    transaction (prepare), the dead-man's pending marker, the live rules after (rules) and what was
    done to pod processes (pods).
    """

    def __init__(self, req: ApplyRequest, plan: ApplyPlan, jumps: dict):
        self.req, self.plan, self.jumps = req, plan, jumps
        self.paths = req.paths
        self.transaction = ""
        self.restore = plan.arts.get(RESTORE_FILE, "")  # what the transaction restores (partial or full)
        self.keep: frozenset[str] = frozenset()  # the service chains a partial restore leaves untouched
        self.sync = SYNC_FULL
        self.ipt_record: dict[str, list] = {}  # ipt_record of the full restore (iptables mode)
        self.transaction6 = ""  # the IPv6 one (prepare_ipv6)
        self.jumps6 = no_jumps()
        self.nft_transaction = ""
        self.marker: dict = {}
        self.final_normal = plan.live_normal
        self.rules_diff: dict[str, str] = {}
        self.pods: list[str] = []
        self.conntrack: dict = {}  # what conntrack_cleanup did (the answer's fields)
        self.health: list[str] = []  # what was done to the health-check server

    def run(self) -> ChangeAnswer:
        first_change = COMMIT_STEPS.index(FIRST_CHANGE)
        for n, (name, step) in enumerate(self.STEPS):
            try:
                fault_point(name)
                step(self)
            except Exception as exc:  # any failure: back to the previous state
                return self.fail(name, exc, changed_node=n >= first_change)
        fault_point("done")
        return self.result().replace(**self.conntrack)

    def prepare(self) -> None:
        """Everything that can be written or checked without changing the node."""
        paths, plan = self.paths, self.plan
        write_if_changed(paths.state_file(AGENT_FILE), self.req.agent if self.req.agent is not None else agent_source())
        if self.req.podserver is not None:
            write_if_changed(paths.state_file(PODSERVER_FILE), self.req.podserver)
        remove(paths.staging)
        make_dir(paths.staging)
        for name in plan.files:
            write_text(os.path.join(paths.staging, name), plan.arts[name], artifact_mode(name), durable=False)
        if plan.do_net:
            write_json(os.path.join(paths.staging, NETCONF_JSON), plan.conf, artifact_mode(NETCONF_JSON), durable=False)
        if plan.do_rules:  # svcnet's chains, jump rules and stale chains: one transaction
            if plan.mode == MODE_IPTABLES:
                self.ipt_record = ipt_record(plan.arts[RESTORE_FILE])
            self.restore, self.keep, self.sync = ipt_sync_plan(
                paths, plan.mode, plan.arts[RESTORE_FILE], sha256(plan.live_normal), plan.saved_rules_hash,
                self.ipt_record)
            self.transaction = rules_transaction(self.restore, self.jumps, plan.live, self.keep)
            if plan.arts[RESTORE_FILE] or normal_form(plan.live) != normal_form(empty_snapshot()):
                iptables_restore(self.transaction, test=True)
            else:  # nftables mode, and no chain of svcnet's to remove
                self.transaction = ""
            self.prepare_ipv6()
            # svcnet's nft tables: the script (nftables mode), or the removal of those left (iptables mode)
            self.nft_transaction = nft_apply_transaction(plan)

    def prepare_ipv6(self) -> None:
        """The IPv6 transaction, tested with the IPv4 one before anything changes (ip6tables is not
        touched when neither the desired nor the live rules have any of svcnet's IPv6 chains)."""
        plan, prefix = self.plan, self.req.owned_prefix
        if not (wants_ipv6(plan.arts) or has_owned(plan.live6)):
            return
        self.jumps6 = canonical_jumps(plan.arts[JUMPS6_FILE], prefix, IPV6)
        self.transaction6 = rules_transaction(plan.arts[RESTORE6_FILE], self.jumps6, plan.live6)
        iptables_restore(self.transaction6, test=True, family=IPV6)

    def back_up(self) -> None:
        make_backup(self.paths, self.req.run_id, self.plan.live, self.plan.nft_live if shutil.which("nft") else None,
                    self.plan.live6)

    def mark_pending(self) -> None:
        """From here a boot, a later run or the dead-man rolls back unless this run settles."""
        self.marker = {"run_id": self.req.run_id, "deadline": time.time() + self.req.confirm_timeout,
                       "phase": PHASE_APPLYING}
        write_json(self.paths.state_file(PENDING_FILE), self.marker)

    def arm_dead_man(self) -> None:
        """Fork the dead-man and wait until it runs (it waits for the lock this run holds)."""
        paths, run_id, prefix = self.paths, self.req.run_id, self.req.owned_prefix
        log_path = os.path.join(paths.state, LOGS_DIR, "deadman.log")
        pid = spawn_daemon(lambda: deadman(paths, run_id, prefix), log_path)
        start = proc_start(pid)
        self.marker.update(pid=pid, start=start)
        if start is None:
            raise AgentError(f"the dead-man switch died at once (see {log_path})")

    def record_dead_man(self) -> None:
        write_json(self.paths.state_file(PENDING_FILE), self.marker)

    def restore_rules(self) -> None:
        plan = self.plan
        if not plan.do_rules:
            return
        # the new mode's rules first, then the removal of the other's (kube-proxy's cleanup)
        if plan.mode == MODE_NFTABLES and self.nft_transaction:
            nft(["-f", "-"], stdin=self.nft_transaction)
        if self.transaction:
            iptables_restore(self.transaction)
        if self.transaction6:  # (a failure from here on rolls back the IPv4 rules just applied too)
            fault_point("rules ipv6")
            iptables_restore(self.transaction6, family=IPV6)
        if plan.mode != MODE_NFTABLES and self.nft_transaction:
            nft(["-f", "-"], stdin=self.nft_transaction)
        prefix = self.req.owned_prefix
        after, tables, after6 = snapshot(prefix), nft_snapshot(), snapshot(prefix, IPV6)
        wrong = (rules_mismatch(after, self.restore, self.jumps, self.keep)
                 or "".join("IPv6 " + m for m in [rules_mismatch(after6, plan.arts[RESTORE6_FILE], self.jumps6)] if m)
                 or nft_mismatch(tables, plan.arts[NFT_FILE]))
        if wrong:
            raise AgentError("the live rules are not what was restored: " + wrong)
        self.final_normal = rules_normal(after, tables, after6)
        if self.req.diff:
            self.rules_diff = rules_diffs(plan.live_normal, self.final_normal)

    def configure_addresses(self) -> None:
        plan = self.plan
        if plan.do_net:
            record_sysctl_origins(self.paths, plan.conf)
            run_netconf_script(os.path.join(self.paths.staging, NETCONF_SH), self.paths, plan.conf, plan.claims)
            remove_netconf_extras(self.paths, plan.old_conf, plan.conf, self.pods, plan.claims)

    def update_pods(self) -> None:
        if self.plan.do_net:
            self.pods.extend(reconcile_pods(self.paths, self.plan.conf))

    def record_applied(self) -> None:
        """Only now does etc_dir say that the new state is applied (what boot re-creates)."""
        paths, plan = self.paths, self.plan
        for name in plan.files:
            if plan.do_rules and (other_mode_file(name, plan.mode) or (name in IPV6_FILES and not plan.arts[name])):
                remove(paths.etc_file(name))  # the other proxy mode's (boot must not apply it), or no IPv6 rules
                continue
            write_if_changed(paths.etc_file(name), plan.arts[name], artifact_mode(name))
        if plan.do_net:
            write_if_changed(paths.etc_file(NETCONF_JSON), json_text(plan.conf), artifact_mode(NETCONF_JSON))
        state = load_state(paths)
        install_persistence(paths, state)
        applied = {**plan.applied, **{p: plan.want.get(p) for p in plan.parts}}
        state.update(applied_hash=applied, last_run_id=self.req.run_id, applied_at=time.time())
        if plan.do_net:  # what it names is marked now: legacy_claims no longer apply
            state[MARKS_KEY] = 1
        if plan.do_rules:  # (a network-only apply leaves the record of the rules, and so their drift check, alone)
            state.update(saved_rules_hash=sha256(self.final_normal))
            state[IPT_SYNC_KEY] = {"mode": self.sync, "lines": self.transaction.count("\n")}
            write_text(paths.state_file(SAVED_FILE), self.final_normal)
            ipt_record_applied(paths, plan.mode, self.ipt_record, sha256(self.final_normal))
        save_state(paths, state)
        remove(paths.staging)

    def clean_stale_flows(self) -> None:
        """Before the confirmation window opens (settle): the cleanup may take a while, under the lock."""
        self.conntrack = conntrack_cleanup(self.req, self.plan)

    def update_health(self) -> None:
        """The health-check server serves what was just recorded (started, reloaded or stopped)."""
        if self.plan.do_rules:
            self.health = reconcile_health(self.paths, self.req.owned_prefix)
            for done in self.health:
                log(done)

    def settle(self) -> None:
        """Await the confirmation (the dead-man's deadline starts now), or need none: disarm."""
        timeout = self.req.confirm_timeout
        if timeout > 0 and self.changed():
            self.marker.update(deadline=time.time() + timeout, phase=PHASE_AWAITING)
            write_json(self.paths.state_file(PENDING_FILE), self.marker)
        else:
            clear_pending(self.paths, self.marker)
            self.marker = {}

    STEPS: ClassVar[tuple[tuple[str, Callable[[Commit], None]], ...]] = (
        ("prepare", prepare),
        ("backup", back_up),
        ("mark pending", mark_pending),
        ("arm dead-man", arm_dead_man),
        ("record dead-man", record_dead_man),
        ("rules", restore_rules),
        ("address config", configure_addresses),
        ("pods", update_pods),
        ("record applied", record_applied),
        ("health checks", update_health),
        ("conntrack", clean_stale_flows),
        ("settle", settle),
    )

    def changed(self) -> bool:
        plan = self.plan
        return not (plan.files_same and plan.net_same and not self.pods and not self.health
                    and self.final_normal == plan.live_normal)

    def result(self) -> ChangeAnswer:
        diff = self.plan.diff(self.req.diff, self.rules_diff)
        if not self.changed():
            return ChangeAnswer(True, False, "already in the desired state (recorded it)", diff=diff, pods=self.pods)
        if self.marker:
            return ChangeAnswer(True, True, f"applied; awaiting confirmation within {self.req.confirm_timeout:g}s",
                                pending=True, diff=diff, pods=self.pods)
        return ChangeAnswer(True, True, "applied", pending=False, diff=diff, pods=self.pods)

    def fail(self, step: str, exc: Exception, changed_node: bool) -> ChangeAnswer:
        """The answer to a failure at `step`: disarmed, and rolled back if the node changed (or may have)."""
        paths, run_id = self.paths, self.req.run_id
        msg = f"apply failed at step {step!r}: {exc}"
        diff = self.plan.diff(self.req.diff, self.rules_diff)
        log(msg)
        if not changed_node:
            if self.marker:
                clear_pending(paths, self.marker)
            remove(paths.staging)
            return ChangeAnswer(False, False, msg, diff=diff)
        remove(paths.state_file(IPT_RECORD_FILE))  # the next apply restores in full (a failed partial too)
        try:
            rollback_to_backup(paths, self.req.owned_prefix)
            record_rollback(paths, run_id, "apply failed", True, msg)
        except Exception as exc2:  # the dead-man, still armed, tries once more when this run lets go
            with contextlib.suppress(Exception):
                record_rollback(paths, run_id, "apply failed", False, str(exc2))
            return ChangeAnswer(False, True, msg + f"; ROLLBACK FAILED: {exc2}", rolled_back=False, diff=diff)
        clear_pending(paths, self.marker)
        return ChangeAnswer(False, False, msg, rolled_back=True, diff=diff)


COMMIT_STEPS = tuple(name for name, _ in Commit.STEPS)  # the fault_point names of a commit, in order


def _deadman_rollback(paths: Paths, prefix: str, marker: dict, reason: str) -> ChangeAnswer:
    run_id = str(marker.get("run_id", ""))
    try:
        done = rollback_to_backup(paths, prefix)
        record_rollback(paths, run_id, reason, True, "; ".join(done))
        result = ChangeAnswer(True, True, f"rolled back run {run_id} ({reason})", rolled_back=True)
    except Exception as exc:
        record_rollback(paths, run_id, reason, False, str(exc))
        result = ChangeAnswer(False, True, f"rollback of run {run_id} failed: {exc}", rolled_back=False)
    remove(paths.state_file(PENDING_FILE))
    return result


DEADMAN_LOCK_WAIT = 60.0


def deadman(paths: Paths, run_id: str, prefix: str) -> int:
    """The dead-man switch of run_id: roll back at its marker's deadline unless the run settled.

    Armed before the run changes anything; the run moves the deadline when its apply succeeded
    (the confirmation window starts then) and removes the marker once confirmed or not guarded.
    The deadline is checked again under the node lock, so an apply still running is waited for,
    and one that died (its lock released) is rolled back.
    """
    os.environ.pop(TEST_HOOK_ENV, None)  # a test's hooks are for the agent it started
    while True:
        marker = pending_marker(paths)
        if not marker or marker.get("run_id") != run_id:
            return 0
        left = float(marker.get("deadline") or 0) - time.time()
        if left > 0:
            time.sleep(min(left, 1.0))
            continue
        code = _deadman_at_deadline(paths, run_id, prefix)
        if code is not None:
            return code


def _deadman_at_deadline(paths: Paths, run_id: str, prefix: str) -> int | None:
    """Roll back under the lock if the marker is still this run's and due; None: keep guarding."""
    try:
        with NodeLock(paths, run_id, "rollback (dead-man)", DEADMAN_LOCK_WAIT):
            marker = pending_marker(paths)
            if not marker or marker.get("run_id") != run_id:
                return 0
            if float(marker.get("deadline") or 0) > time.time():
                return None  # the run finished its apply meanwhile: the confirmation window runs now
            reason = ("the apply stopped before it finished" if marker.get("phase") == PHASE_APPLYING
                      else "not confirmed before the deadline")
            result = _deadman_rollback(paths, prefix, marker, reason)
    except AgentError as exc:  # the lock is still taken: never give up the guard
        log(f"{exc}; still guarding run {run_id}")
        return None
    log(result.msg)
    return 0 if result.ok else 1


def op_confirm(req: ConfirmRequest) -> ChangeAnswer:
    paths, run_id = req.paths, req.run_id
    with NodeLock(paths, run_id, "confirm", req.lock_wait):
        marker = pending_marker(paths)
        if marker and marker.get("run_id") == run_id and marker.get("phase") == PHASE_APPLYING:
            return ChangeAnswer(False, False, f"run {run_id} stopped before its apply finished: it is rolled back "
                                "(nothing to confirm)")
        if not marker or marker.get("run_id") != run_id:
            return not_pending(paths, run_id, marker)
        clear_pending(paths, marker)
        if marker.get("op") != "teardown":
            return ChangeAnswer(True, True, f"run {run_id} confirmed")
        remove_files(paths)  # a confirmed teardown: svcnet's files go too (kept until now for a rollback)
    return ChangeAnswer(True, True, f"run {run_id} confirmed: svcnet removed from {os.uname().nodename}")


def not_pending(paths: Paths, run_id: str, marker: dict | None) -> ChangeAnswer:
    """The answer to a confirmation of run_id when nothing of run_id awaits one."""
    last = read_json(paths.state_file(LAST_ROLLBACK_FILE)) or {}
    if last.get("run_id") == run_id:
        return ChangeAnswer(False, False, "run {} was already rolled back ({} at {})".format(
            run_id, last.get("reason"), time.strftime("%H:%M:%S", time.localtime(last.get("at", 0)))),
            rolled_back=True)
    if marker:
        return ChangeAnswer(False, False, "pending confirmation belongs to run {}, not {}".format(
            marker.get("run_id"), run_id))
    return ChangeAnswer(True, False, f"nothing pending for run {run_id}")


def op_rollback(req: RollbackRequest) -> ChangeAnswer:
    paths, run_id = req.paths, req.run_id
    with NodeLock(paths, run_id, "rollback", req.lock_wait):
        meta = read_json(os.path.join(paths.backup, "meta.json"))
        if meta is None or (run_id and meta.get("run_id") != run_id):
            return ChangeAnswer(True, False, "nothing to roll back for run %s" % (run_id or "(any)"))
        marker = pending_marker(paths)
        clear_pending(paths, marker)
        done = rollback_to_backup(paths, req.owned_prefix)
        record_rollback(paths, str(meta.get("run_id")), "explicit rollback", True, "; ".join(done))
        remove(paths.backup)
        return ChangeAnswer(True, True, "rolled back run {}: {}".format(meta.get("run_id"), ", ".join(done) or "no-op"),
                            rolled_back=True)


def op_teardown(req: TeardownRequest) -> ChangeAnswer:
    """Remove everything svcnet created on the node, guarded like an apply.

    The state is backed up first; a failure rolls the node back to it. With confirm_timeout, a
    dead-man switch armed before anything changes rolls the node back unless the run confirms over
    a fresh connection (op_confirm), which then removes svcnet's files too.
    """
    paths, run_id = req.paths, req.run_id
    with settled_lock(paths, run_id, "teardown", req.lock_wait):
        marker = pending_marker(paths)
        if marker and marker.get("run_id") != run_id:
            log("stale pending marker of run {}: rolling it back first".format(marker.get("run_id")))
            _deadman_rollback(paths, req.owned_prefix, marker, "stale pending marker")
        elif marker:
            clear_pending(paths, marker)
        return _teardown_locked(req)


def _teardown_locked(req: TeardownRequest) -> ChangeAnswer:
    paths, run_id, prefix, timeout = req.paths, req.run_id, req.owned_prefix, req.confirm_timeout
    live, tables, live6 = snapshot(prefix), nft_snapshot(), snapshot(prefix, IPV6)
    if not svcnet_present(paths, live) and not tables and not has_owned(live6):
        return ChangeAnswer(True, remove_files(paths), "nothing to remove")
    make_backup(paths, run_id, live, tables if shutil.which("nft") else None, live6)
    if timeout > 0:  # armed before anything changes: a connection lost halfway is rolled back too
        arm_deadman(paths, run_id, timeout, prefix, "teardown")
    try:
        strip_node(paths, prefix)
    except Exception as exc:  # roll back on ANY failure
        clear_pending(paths, pending_marker(paths))
        return rolled_back_answer(paths, prefix, run_id, "teardown failed", f"teardown failed: {exc}")
    where = os.uname().nodename
    if timeout > 0:
        return ChangeAnswer(True, True, f"svcnet removed from {where}; awaiting confirmation within {timeout:g}s",
                            pending=True)
    remove_files(paths)
    return ChangeAnswer(True, True, f"svcnet removed from {where}")


def svcnet_present(paths: Paths, live: dict) -> bool:
    """Has svcnet anything on this node: owned rules, or files in etc_dir or state_dir (the lock aside)?"""
    if normal_form(live) != normal_form(empty_snapshot()):
        return True
    names = [*(os.listdir(paths.etc) if os.path.isdir(paths.etc) else []),
             *(n for n in (os.listdir(paths.state) if os.path.isdir(paths.state) else []) if n != LOCK_FILE)]
    return bool(names)


def strip_node(paths: Paths, prefix: str) -> None:
    """Remove svcnet's rules, pods, address config and sysctl values; its files stay (for a rollback)."""
    stop_health(paths)
    set_owned_rules(empty_snapshot(), prefix)
    set_owned_rules(empty_snapshot(), prefix, IPV6)
    set_nft_tables({})
    conf = load_netconf_file(paths.etc_file(NETCONF_JSON))
    if os.path.isdir(paths.pods_dir):
        for f in os.listdir(paths.pods_dir):
            if f.endswith(".pid"):
                stop_pod(paths, f[:-4])
    remove_netconf_extras(paths, conf, empty_netconf(), trusted=state_claims(paths, conf))
    restore_sysctls(paths, list(load_state(paths).get("sysctl_orig", {})))


def remove_files(paths: Paths) -> bool:
    """The end of a teardown: svcnet.service and svcnet's files (but the lock); True if any was there."""
    changed = remove_persistence(load_state(paths))
    for d in (paths.etc, paths.run):
        if os.path.isdir(d):
            for name in os.listdir(d):
                gone = remove(os.path.join(d, name))
                changed |= gone and not CODE_CACHE_RE.fullmatch(name)  # this very run wrote its cache
    if os.path.isdir(paths.state):
        for name in os.listdir(paths.state):
            if name != LOCK_FILE:
                changed |= remove(os.path.join(paths.state, name))
    return changed


def arm_deadman(paths: Paths, run_id: str, timeout: float, prefix: str, op: str) -> None:
    """Start the dead-man switch of run_id's change (`op`): it rolls back unless confirmed in time.

    As an apply arms it (Commit): the marker first, then the switch, then its pid in the marker.
    The deadline is already the confirmation's: the change runs under the lock, which the switch
    waits for, so a teardown killed halfway is rolled back as soon as it lets go.
    """
    marker = {"run_id": run_id, "deadline": time.time() + timeout, "phase": PHASE_AWAITING, "op": op}
    write_json(paths.state_file(PENDING_FILE), marker)
    log_path = os.path.join(paths.state, LOGS_DIR, "deadman.log")
    pid = spawn_daemon(lambda: deadman(paths, run_id, prefix), log_path)  # forked: no new interpreter
    start = proc_start(pid)
    if start is None:
        raise AgentError(f"the dead-man switch died at once (see {log_path})")
    marker.update(pid=pid, start=start)
    write_json(paths.state_file(PENDING_FILE), marker)


def rolled_back_answer(paths: Paths, prefix: str, run_id: str, reason: str, msg: str) -> ChangeAnswer:
    """Roll back to the backup after a failed change; the answer that says how it went."""
    log(msg)
    try:
        rollback_to_backup(paths, prefix)
        record_rollback(paths, run_id, reason, True, msg)
    except Exception as exc:
        record_rollback(paths, run_id, reason, False, str(exc))
        return ChangeAnswer(False, True, msg + f"; ROLLBACK FAILED: {exc}", rolled_back=False)
    return ChangeAnswer(False, False, msg, rolled_back=True)


def op_boot(req: BootRequest) -> BootAnswer:
    """Re-create the applied state from etc_dir (at boot; unconfirmed runs are rolled back first)."""
    paths, prefix = req.paths, req.owned_prefix
    with NodeLock(paths, "boot", "boot", req.lock_wait):
        marker = pending_marker(paths)
        notes = []
        if marker:
            notes.append(_deadman_rollback(paths, prefix, marker, "unconfirmed at boot").msg)
        restore, script = read_text(paths.etc_file(RESTORE_FILE)), read_text(paths.etc_file(NFT_FILE))
        if restore is None and script is None:
            return BootAnswer(True, False, "; ".join([*notes, "nothing applied on this node"]))
        if script is not None:  # nftables mode (the apply removed the iptables files)
            boot_nft(script)
        if restore is not None:
            check_restore(restore, prefix)
            iptables_restore(restore)
            ensure_jumps(read_text(paths.etc_file(JUMPS_FILE)) or "", prefix)
            boot_ipv6(paths, prefix)
        conf = load_netconf_file(paths.etc_file(NETCONF_JSON))
        record_sysctl_origins(paths, conf)
        run_netconf_script(paths.etc_file(NETCONF_SH), paths, conf, state_claims(paths, conf))
        pods = reconcile_pods(paths, conf)
        reconcile_health(paths, prefix)
        state = load_state(paths)
        live_hash = live_rules_hash(prefix)
        if state.get("saved_rules_hash") != live_hash:
            notes.append("live rules differ from the saved hash after boot")
        return BootAnswer(True, True, "; ".join([*notes, "booted"]), pods=pods, live_rules_hash=live_hash)


def boot_ipv6(paths: Paths, prefix: str) -> None:
    """At boot: the applied IPv6 rules again, checked as an apply checks them (none: ip6tables untouched)."""
    restore6 = read_text(paths.etc_file(RESTORE6_FILE)) or ""
    jumps6 = read_text(paths.etc_file(JUMPS6_FILE)) or ""
    if not (restore6 or jumps6):
        return
    check_restore(restore6, prefix, RESTORE6_FILE)
    iptables_restore(restore6, family=IPV6)
    ensure_jumps(jumps6, prefix, IPV6)


def op_status(req: StatusRequest) -> StatusAnswer:
    paths = req.paths
    conf = load_netconf_file(paths.etc_file(NETCONF_JSON))
    pods = []
    for p in conf["pods"]:
        running = running_pod(paths, p["netns"])
        want = spec_hash(pod_spec(p))
        pods.append({"pod": pod_label(p), "netns": p["netns"], "ip": p["address"].split("/")[0],
                     "has_command": bool(p.get("command")), "pid": running["pid"] if running else None,
                     "running": running is not None, "current": bool(running and running["spec_hash"] == want)})
    all_ok = all(p["running"] and p["current"] for p in pods if p["has_command"])
    return StatusAnswer(all_ok, False, "" if all_ok else "some pods are not running", pods=pods,
                        pending=pending_marker(paths))


class Op(Record):
    """An op: the type of its request and what answers it (made by `handled`, so that the type
    checker sees that `run` takes that type)."""

    request: type[Request]
    run: Callable[[Any], Answer]


def handled(request: type[R], run: Callable[[R], Answer]) -> Op:
    return Op(request, run)


OPS = {
    "probe": handled(ProbeRequest, op_probe),
    "preflight": handled(PreflightRequest, op_preflight),
    "apply": handled(ApplyRequest, op_apply),
    "confirm": handled(ConfirmRequest, op_confirm),
    "rollback": handled(RollbackRequest, op_rollback),
    "teardown": handled(TeardownRequest, op_teardown),
    "boot": handled(BootRequest, op_boot),
    "status": handled(StatusRequest, op_status),
}
SCRATCH_OPS = {"_scratch_normalize": handled(ScratchRequest, op_scratch_normalize)}


def find_op(name: object) -> Op:
    if isinstance(name, str) and name in OPS:
        return OPS[name]
    if isinstance(name, str) and name in SCRATCH_OPS:
        return SCRATCH_OPS[name]
    raise AgentError("unknown op {!r} (expected one of {})".format(name, ", ".join(OPS)))


def handle(raw: object) -> dict:
    """Answer one JSON request: parsed and checked here, once; every failure becomes {"ok": false, "msg": ...}."""
    if not isinstance(raw, dict):
        return Answer(False, False, "request must be a JSON object").to_wire()
    name = raw.get("op")
    try:
        op = find_op(name)
        return op.run(op.request.parse(raw)).to_wire()
    except AgentError as exc:
        return Answer(False, False, str(exc)).to_wire()
    except Exception as exc:  # never a traceback on stdout
        import traceback

        traceback.print_exc(file=sys.stderr)
        return Answer(False, False, f"internal error in {name}: {type(exc).__name__}: {exc}").to_wire()


def main_request(req: object) -> None:
    """Entry point of the bootstrap: print exactly one JSON answer line."""
    out = handle(req)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """File mode: `agent.py COMMAND [ARG] [--etc-dir D] [--state-dir D] [--run-dir D]`."""
    import argparse

    ap = argparse.ArgumentParser(prog="agent.py", description="svcnet node agent")
    ap.add_argument("command", choices=[*OPS, "request", "supervise", "pod-exec"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--etc-dir", default=DEFAULT_ETC_DIR)
    ap.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    ap.add_argument("--run-dir", default=DEFAULT_RUN_DIR)
    ap.add_argument("--owned-prefix", default=OWNED_PREFIX)
    ns = ap.parse_args(argv)
    paths = Paths(ns.etc_dir, ns.state_dir, ns.run_dir)
    if ns.command == "supervise":
        return supervise(paths, ns.args[0])
    if ns.command == "pod-exec":
        return pod_exec(paths, ns.args[0])
    if ns.command == "request":
        try:
            req = json.load(sys.stdin)
        except ValueError as exc:
            main_request(None)
            log(f"bad request JSON: {exc}")
            return 2
    else:
        req = {"op": ns.command, "run_id": ns.args[0] if ns.args else "", "owned_prefix": ns.owned_prefix}
    if isinstance(req, dict):
        req.setdefault("etc_dir", ns.etc_dir)
        req.setdefault("state_dir", ns.state_dir)
        req.setdefault("run_dir", ns.run_dir)
    out = handle(req)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
