"""Controller side of the node agent's wire: typed requests and answers, the remote command, stdin.

The controller runs `remote_command()` on a node with `build_stdin(request.to_wire())` on stdin;
the agent (svcnet/agent/node.py, sent along as text) prints one JSON line per request, which
`parse_response` checks and `request.answer(...)` reads into a typed answer. The keys and values
on the wire are the agent's: each request's `to_wire()` writes exactly what the agent reads, and
its defaults are defined here once (svcnet/transport/gateway.py sends them).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar

from svcnet.agent import node, podserver
from svcnet.desired import ConntrackPort, NetConf
from svcnet.model.types import NodeFacts, ProcessSecurity
from svcnet.render.artifacts import (
    HEALTH_FILE,
    JUMPS6_FILE,
    JUMPS_FILE,
    NETCONF_FILE,
    NFT_FILE,
    RESTORE6_FILE,
    RESTORE_FILE,
    NodeArtifacts,
)

AGENT_PATH = Path(node.__file__)
PODSERVER_PATH = Path(podserver.__file__)
BOOTSTRAP = node.BOOTSTRAP
DEFAULT_PYTHON = "/usr/bin/python3"  # as Ansible's interpreter discovery finds it on Debian
PYTHON_FLAGS = " ".join(node.PYTHON_FLAGS)  # isolated, no site-packages: see node.PYTHON_FLAGS
OPS = tuple(node.OPS)
PARTS = tuple(node.PARTS)
APPLY_FILES = (RESTORE_FILE, JUMPS_FILE, NETCONF_FILE, HEALTH_FILE)
# Sent only where the node has IPv6 rules: a file not sent is empty (the node removes svcnet's IPv6 chains).
APPLY_FILES_IPV6 = (RESTORE6_FILE, JUMPS6_FILE)
PROXY_MODES = node.PROXY_MODES
MODE_IPTABLES, MODE_NFTABLES = node.MODE_IPTABLES, node.MODE_NFTABLES
# The keys of an apply's `diff`, per part: the agent names them (the address config's after its file).
DIFF_KEYS = dict(node.DIFF_KEYS)
DIFF_RULES, DIFF_NETCONF = DIFF_KEYS[node.PART_RULES], DIFF_KEYS[node.PART_NETWORK]
# The owned ip6tables rules' diff (rules6.restore against the live ones), apart from the IPv4 one, in
# its form, where the node has IPv6 rules (read by verify's rule checks; shown by apply --diff).
DIFF_RULES6 = node.DIFF_RULES6
PART_DIFF_KEYS = {part: tuple(keys) for part, keys in node.PART_DIFF_KEYS.items()}
LOCK_WAIT = 30  # seconds the agent waits for another run's lock (its own default too; an int, as sent so far)


def python_command(code: str, python: str | None = None, prefix: Sequence[str] = ()) -> str:
    """A remote shell command running Python `code` as `-c`, isolated and from the directory "/".

    An SSH command starts in the login user's home (which, under become, a user other than root
    can write); `-I` keeps it off sys.path and `cd /` leaves it. `python`: the inventory's
    ansible_python_interpreter (an absolute path by default, so no PATH lookup picks another);
    `prefix`: argv run in front of it (e.g. `ip netns exec NS`).
    """
    argv = [*prefix, python or DEFAULT_PYTHON]
    return f"cd / && exec {shlex.join(argv)} {PYTHON_FLAGS} -c {shlex.quote(code)}"


def remote_command(python: str | None = None) -> str:
    """The command that runs the agent with `python` (the inventory's ansible_python_interpreter)."""
    return python_command(BOOTSTRAP, python)


REMOTE_COMMAND = remote_command()


def new_run_id(kind: str = "") -> str:
    """A run's id (time and a random suffix; `kind` in front, e.g. "verify"), as the agent accepts it."""
    stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    return f"{kind}-{stamp}" if kind else stamp


class AgentProtocolError(RuntimeError):
    """The agent's output was not one JSON response (node named when known)."""


@cache
def agent_source() -> str:
    return AGENT_PATH.read_text()


@cache
def podserver_source() -> str:
    return PODSERVER_PATH.read_text()


def _check_op(request: Mapping[str, object]) -> None:
    if request.get("op") not in OPS:
        raise ValueError(f"unknown agent op {request.get('op')!r}; expected one of {', '.join(OPS)}")


def build_stdin(request: Mapping[str, object], session: bool = False) -> bytes:
    """What to send on the remote command's stdin: one line with the agent source and the request.

    `session`: the agent then stays up for more requests (`request_line`) until end of input.
    """
    _check_op(request)
    doc: dict[str, object] = {"agent": agent_source(), "request": dict(request)}
    if session:
        doc["session"] = True
    return json.dumps(doc).encode() + b"\n"


def request_line(request: Mapping[str, object]) -> bytes:
    """A further request to an agent started with `build_stdin(..., session=True)`."""
    _check_op(request)
    return json.dumps(dict(request)).encode() + b"\n"


def parse_response(stdout: str, node_name: str = "") -> dict:
    """The agent's response dict from its stdout (the last non-empty line must be a JSON object)."""
    where = f" from {node_name}" if node_name else ""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise AgentProtocolError(f"no response{where}: the agent printed nothing (is python3 installed?)")
    try:
        resp = json.loads(lines[-1])
    except ValueError:
        raise AgentProtocolError(f"response{where} is not JSON: {lines[-1][:300]!r}") from None
    if not isinstance(resp, dict) or "ok" not in resp:
        raise AgentProtocolError(f"response{where} is not an agent response: {lines[-1][:300]!r}")
    return resp


# -- payloads ---------------------------------------------------------------------------------
def netconf_payload(conf: NetConf) -> dict:
    """The structured address config the agent expects (`netconf` of an apply request)."""
    # A dual-stack node's other family only where there is one: a single-stack payload (its hash)
    # stays as before dual-stack.
    second = {node.SECOND_BRIDGE_ADDRESS: conf.second_bridge_address} if conf.second_bridge_address else {}
    return {
        "bridge": conf.bridge,
        "bridge_address": conf.bridge_address,
        **second,
        "sysctls": [{"key": s.key, "value": s.value, "optional": s.optional} for s in conf.sysctls],
        "routes": [{"dst": r.dst, "via": r.via} for r in conf.routes],
        "pods": [
            {**{k: v for k, v in asdict(p).items() if k not in _POD_EXTRA_FIELDS or (k in _POD_SECOND and v)},
             "command": list(p.command), "ports": list(p.ports), **_security_payload(p.security)}
            for p in conf.pods
        ],
    }


_POD_SECOND = ("second_address", "second_gateway")  # absent on a single-stack pod
_POD_EXTRA_FIELDS = ("command", "ports", "security", *_POD_SECOND)


def _security_payload(sec: ProcessSecurity | None) -> dict:
    """A pod's `security` as the agent reads it; absent for a pod without one (its hash stays as before)."""
    if sec is None:
        return {}
    caps = None if sec.capabilities is None else list(sec.capabilities)
    return {"security": {"uid": sec.uid, "gid": sec.gid, "groups": list(sec.groups), "capabilities": caps,
                         "ambient": list(sec.ambient), "no_new_privs": sec.no_new_privs,
                         "read_only_root": sec.read_only_root}}


def conntrack_payload(ports: Sequence[ConntrackPort]) -> list[dict]:
    """The service ports of an apply's conntrack cleanup, as the agent reads them (`conntrack`)."""
    return [{"protocol": p.protocol, "port": p.port, "vips": list(p.vips), "node_port": p.node_port,
             "endpoints": list(p.endpoints)} for p in ports]


def desired_hashes(art: NodeArtifacts) -> dict[str, str]:
    """Per part (`rules`, `network`), the hash of what an apply of that part puts on the node."""
    files = art.files()
    docs = {
        node.PART_RULES: {name: files[name] for name in node.PART_FILES[node.PART_RULES] if name in files},
        node.PART_NETWORK: {NETCONF_FILE: files[NETCONF_FILE],
                            "netconf": json.dumps(netconf_payload(art.netconf), sort_keys=True)},
    }
    return {part: hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest() for part, doc in docs.items()}


def apply_files(art: NodeArtifacts, proxy_mode: str) -> dict[str, str]:
    """The artifact files an apply sends in `proxy_mode`: the other mode's rules files go empty (the
    node removes them, with the rules they stood for)."""
    files = art.files()
    sent = {name: files.get(name, "") for name in APPLY_FILES}
    sent.update({name: files[name] for name in APPLY_FILES_IPV6 if name in files})
    if proxy_mode == MODE_NFTABLES:
        sent.update({RESTORE_FILE: "", JUMPS_FILE: "", NFT_FILE: files.get(NFT_FILE, "")})
        for name in APPLY_FILES_IPV6:
            sent.pop(name, None)
    return sent


# -- answers ----------------------------------------------------------------------------------
def _text(wire: Mapping[str, Any], key: str) -> str:
    return str(wire.get(key))


def _str_map(value: object) -> dict[str, str] | None:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


@dataclass(frozen=True)
class ProbeAnswer:
    """What a probe (and a passing preflight, which probes too) says of the node's svcnet state."""

    ok: bool
    msg: str
    facts: NodeFacts | None = None  # what the renderer needs to know of the node (None: not gathered)
    facts_wire: Mapping[str, Any] | None = None  # the facts as the agent sent them (shown by preflight)
    applied_hash: Mapping[str, str] | None = None  # per part, the hash of what was applied last
    live_rules_hash: str | None = None
    saved_rules_hash: str | None = None
    netconf_ok: bool = False  # the address config is as the last apply left it
    health_ok: bool = True  # the health-check server serves what the last apply recorded
    stale_chains: tuple[str, ...] = ()  # owned chains the desired rules no longer have
    conntrack_pending: bool = False  # the last apply's conntrack cleanup stopped short: apply the rules again

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> ProbeAnswer:
        facts = wire.get("facts")
        return cls(
            ok=bool(wire.get("ok")), msg=_text(wire, "msg"),
            facts=facts_from_wire(facts) if isinstance(facts, dict) else None,
            facts_wire=facts if isinstance(facts, dict) else None,
            applied_hash=_str_map(wire.get("applied_hash")),
            live_rules_hash=wire.get("live_rules_hash"), saved_rules_hash=wire.get("saved_rules_hash"),
            netconf_ok=bool(wire.get("netconf_ok")),
            health_ok=bool(wire.get("health_ok", True)),
            stale_chains=tuple(str(c) for c in wire.get("stale_chains") or ()),
            conntrack_pending=bool(wire.get("conntrack_pending")),
        )

    def unchanged(self, want: Mapping[str, str], parts: Sequence[str] = PARTS) -> bool:
        """True iff `parts` need nothing sent: same applied hashes, and no drift (live rules == saved
        rules and the health-check server serving for `rules`, the address config intact for `network`),
        and for `rules` no conntrack cleanup to finish (an apply of the rules retries it)."""
        applied = self.applied_hash
        if not self.ok or applied is None:
            return False
        if any(applied.get(p) != want.get(p) for p in parts):
            return False
        if node.PART_RULES in parts and (self.live_rules_hash != self.saved_rules_hash or self.conntrack_pending
                                         or not self.health_ok):
            return False
        return not (node.PART_NETWORK in parts and not self.netconf_ok)


def facts_from_wire(facts: Mapping[str, Any]) -> NodeFacts:
    """The renderer's NodeFacts from the `facts` of a probe answer."""
    return NodeFacts(
        random_fully=bool(facts.get("random_fully", True)),
        nfacct_counters=frozenset(str(n) for n in facts.get("nfacct_counters") or ()),
        tcp_be_liberal=bool(facts.get("tcp_be_liberal", False)),
    )


@dataclass(frozen=True)
class ChangeAnswer:
    """The answer to a change (apply, teardown) or its confirmation.

    pending: changed, and rolled back by the node's dead-man switch unless confirmed in time;
    rolled_back: the change failed and the node is back where it was; diff: per DIFF_KEYS, what
    differs (check or diff mode), None when the agent sent none.
    """

    ok: bool
    msg: str
    changed: bool = False
    pending: bool = False
    rolled_back: bool = False
    diff: Mapping[str, str] | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(ok=bool(wire.get("ok")), msg=_text(wire, "msg"), changed=bool(wire.get("changed")),
                   pending=bool(wire.get("pending")), rolled_back=bool(wire.get("rolled_back")),
                   diff=_str_map(wire.get("diff")))


@dataclass(frozen=True)
class ApplyAnswer(ChangeAnswer):
    """The answer to an ApplyRequest; conntrack_deleted: the stale conntrack entries the node deleted
    once its rules were in place (None: no cleanup ran), conntrack_error: why it stopped short."""

    conntrack_deleted: int | None = None
    conntrack_error: str | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        change = ChangeAnswer.from_wire(wire)
        deleted = wire.get("conntrack_deleted")
        error = wire.get("conntrack_error")
        return cls(**asdict(change), conntrack_deleted=deleted if isinstance(deleted, int) else None,
                   conntrack_error=None if error is None else str(error))


class TeardownAnswer(ChangeAnswer):
    """The answer to a TeardownRequest (no diff)."""


class ConfirmAnswer(ChangeAnswer):
    """The answer to a ConfirmRequest: ok, or the run's change was already rolled back."""


@dataclass(frozen=True)
class PodStatus:
    """One pod as the agent's status sees it."""

    pod: str  # "namespace/name"
    running: bool = False
    current: bool = False  # runs the spec last applied
    pid: int | None = None


@dataclass(frozen=True)
class StatusAnswer:
    ok: bool
    msg: str
    pods: tuple[PodStatus, ...] = ()

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> StatusAnswer:
        pods = tuple(PodStatus(str(p.get("pod")), bool(p.get("running")), bool(p.get("current")), p.get("pid"))
                     for p in wire.get("pods") or () if isinstance(p, dict))
        return cls(ok=bool(wire.get("ok")), msg=_text(wire, "msg"), pods=pods)


# -- requests ---------------------------------------------------------------------------------
A = TypeVar("A", covariant=True)


class Request(Protocol[A]):
    """A request to the agent: its JSON on the wire, and how its answer reads."""

    def to_wire(self) -> dict[str, object]: ...

    def answer(self, wire: Mapping[str, Any]) -> A: ...


def _wire(op: str, run_id: str, **fields: object) -> dict[str, object]:
    return {"op": op, "run_id": run_id, **{k: v for k, v in fields.items() if v is not None}}


@dataclass(frozen=True)
class ProbeRequest:
    """What the node has of svcnet's, and its facts (read only, no lock)."""

    run_id: str
    OP: ClassVar[str] = "probe"

    def to_wire(self) -> dict[str, object]:
        return _wire(self.OP, self.run_id)

    def answer(self, wire: Mapping[str, Any]) -> ProbeAnswer:
        return ProbeAnswer.from_wire(wire)


@dataclass(frozen=True)
class PreflightRequest:
    """Can the node run svcnet (commands, kernel features)? `netconf`: the address config the run
    will apply; the node also refuses when a link, route or netns it names exists and is not
    svcnet's (so a run changes nothing on a node it would have to take those over)."""

    run_id: str
    netconf: NetConf | None = None
    proxy_mode: str = MODE_IPTABLES  # nftables: also nft (its version) and the kernel's nftables features
    OP: ClassVar[str] = "preflight"

    def to_wire(self) -> dict[str, object]:
        return _wire(self.OP, self.run_id, netconf=None if self.netconf is None else netconf_payload(self.netconf),
                     proxy_mode=None if self.proxy_mode == MODE_IPTABLES else self.proxy_mode)

    def answer(self, wire: Mapping[str, Any]) -> ProbeAnswer:
        return ProbeAnswer.from_wire(wire)


@dataclass(frozen=True)
class ApplyRequest:
    """Apply `parts` of the node's desired state (default: rules and address config), guarded.

    confirm_timeout: seconds the node waits for a ConfirmRequest before it rolls back (0: no
    dead-man switch); check: change nothing, report the diff; diff: also report what changed;
    an apply of the rules (not checked) also has the node delete the stale conntrack entries of the
    artifacts' `conntrack` ports;
    hashes: the desired state's `desired_hashes`, when the caller has them (the artifacts sent
    may also delete stale chains, which are not desired state); else those of `artifacts`;
    proxy_mode: kube-proxy's mode the rules are in (nftables: `rules.nft` replaces svcnet's nft tables
    and the node's svcnet iptables chains go; iptables: the reverse).
    """

    run_id: str
    artifacts: NodeArtifacts
    parts: tuple[str, ...] = PARTS
    hashes: Mapping[str, str] | None = None
    confirm_timeout: float = 0
    check: bool = False
    diff: bool = False
    lock_wait: float = LOCK_WAIT
    proxy_mode: str = MODE_IPTABLES
    OP: ClassVar[str] = "apply"

    def to_wire(self) -> dict[str, object]:
        return _wire(
            self.OP, self.run_id,
            artifacts=apply_files(self.artifacts, self.proxy_mode),
            netconf=netconf_payload(self.artifacts.netconf),
            parts=list(self.parts),
            desired_hashes=dict(self.hashes) if self.hashes is not None else desired_hashes(self.artifacts),
            confirm_timeout=self.confirm_timeout,
            check=self.check,
            diff=self.diff,
            lock_wait=self.lock_wait,
            podserver=podserver_source(),
            agent=agent_source(),
            conntrack=self._conntrack(),
            proxy_mode=None if self.proxy_mode == MODE_IPTABLES else self.proxy_mode,
        )

    def _conntrack(self) -> list[dict] | None:
        if self.check or node.PART_RULES not in self.parts:
            return None
        return conntrack_payload(self.artifacts.conntrack)

    def answer(self, wire: Mapping[str, Any]) -> ApplyAnswer:
        return ApplyAnswer.from_wire(wire)


@dataclass(frozen=True)
class ConfirmRequest:
    """Keep the run's pending change (sent over a fresh connection: the change left one working)."""

    run_id: str
    OP: ClassVar[str] = "confirm"

    def to_wire(self) -> dict[str, object]:
        return _wire(self.OP, self.run_id)

    def answer(self, wire: Mapping[str, Any]) -> ConfirmAnswer:
        return ConfirmAnswer.from_wire(wire)


@dataclass(frozen=True)
class TeardownRequest:
    """Remove everything svcnet created on the node, guarded like an apply."""

    run_id: str
    lock_wait: float = LOCK_WAIT
    confirm_timeout: float = 0
    OP: ClassVar[str] = "teardown"

    def to_wire(self) -> dict[str, object]:
        return _wire(self.OP, self.run_id, lock_wait=self.lock_wait, confirm_timeout=self.confirm_timeout)

    def answer(self, wire: Mapping[str, Any]) -> TeardownAnswer:
        return TeardownAnswer.from_wire(wire)


@dataclass(frozen=True)
class StatusRequest:
    """The node's pods and whether a change awaits confirmation."""

    run_id: str
    OP: ClassVar[str] = "status"

    def to_wire(self) -> dict[str, object]:
        return _wire(self.OP, self.run_id)

    def answer(self, wire: Mapping[str, Any]) -> StatusAnswer:
        return StatusAnswer.from_wire(wire)
