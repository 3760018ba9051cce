"""Controller side of the node agent: build requests and stdin, run the remote command, parse replies.

The controller runs `REMOTE_COMMAND` on a node (one SSH command per operation) with
`build_stdin(request)` on stdin; the agent (svcnet/agent/node.py, sent along as text) prints one
JSON line, which `parse_response` turns into a dict.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cache
from pathlib import Path

from svcnet.agent import node
from svcnet.desired import NetConf
from svcnet.model.types import NodeFacts, ProcessSecurity
from svcnet.render.artifacts import JUMPS_FILE, NETCONF_FILE, RESTORE_FILE, NodeArtifacts

AGENT_PATH = Path(node.__file__)
PODSERVER_PATH = Path(__file__).resolve().parent.parent / "podserver.py"
BOOTSTRAP = node.BOOTSTRAP
DEFAULT_PYTHON = "/usr/bin/python3"  # as Ansible's interpreter discovery finds it on Debian
PYTHON_FLAGS = " ".join(node.PYTHON_FLAGS)  # isolated, no site-packages: see node.PYTHON_FLAGS


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
OPS = tuple(node.OPS)
APPLY_FILES = (RESTORE_FILE, JUMPS_FILE, NETCONF_FILE)
PARTS = tuple(node.PARTS)


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


def request(op: str, run_id: str = "", **fields: object) -> dict:
    """A request for `op`; fields such as etc_dir/state_dir/run_dir/lock_wait pass through."""
    if op not in OPS:
        raise ValueError(f"unknown agent op {op!r}; expected one of {', '.join(OPS)}")
    return {"op": op, "run_id": run_id, **{k: v for k, v in fields.items() if v is not None}}


def netconf_payload(conf: NetConf) -> dict:
    """The structured address config the agent expects (`netconf` of an apply request)."""
    return {
        "bridge": conf.bridge,
        "bridge_address": conf.bridge_address,
        "sysctls": [{"key": s.key, "value": s.value, "optional": s.optional} for s in conf.sysctls],
        "routes": [{"dst": r.dst, "via": r.via} for r in conf.routes],
        "pods": [
            {**{k: v for k, v in asdict(p).items() if k not in ("command", "ports", "security")},
             "command": list(p.command), "ports": list(p.ports), **_security_payload(p.security)}
            for p in conf.pods
        ],
    }


def preflight_request(conf: NetConf, run_id: str, **fields: object) -> dict:
    """A `preflight` request; the node also refuses when a link, route or netns `conf` names exists
    and is not svcnet's (so a run changes nothing on a node it would have to take those over)."""
    return request("preflight", run_id, netconf=netconf_payload(conf), **fields)


def _security_payload(sec: ProcessSecurity | None) -> dict:
    """A pod's `security` as the agent reads it; absent for a pod without one (its hash stays as before)."""
    if sec is None:
        return {}
    caps = None if sec.capabilities is None else list(sec.capabilities)
    return {"security": {"uid": sec.uid, "gid": sec.gid, "groups": list(sec.groups), "capabilities": caps,
                         "ambient": list(sec.ambient), "no_new_privs": sec.no_new_privs,
                         "read_only_root": sec.read_only_root}}


def desired_hashes(art: NodeArtifacts) -> dict[str, str]:
    """Per part (`rules`, `network`), the hash of what an apply of that part puts on the node."""
    files = art.files()
    docs = {
        node.PART_RULES: {name: files[name] for name in node.PART_FILES[node.PART_RULES]},
        node.PART_NETWORK: {NETCONF_FILE: files[NETCONF_FILE],
                            "netconf": json.dumps(netconf_payload(art.netconf), sort_keys=True)},
    }
    return {part: hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest() for part, doc in docs.items()}


def apply_request(
    art: NodeArtifacts,
    run_id: str,
    *,
    confirm_timeout: float = 0,
    check: bool = False,
    diff: bool = False,
    lock_wait: float = 30,
    parts: tuple[str, ...] = PARTS,
    hashes: Mapping[str, str] | None = None,
    **fields: object,
) -> dict:
    """An `apply` request for `parts` of the node's state (default: rules and address config).

    `hashes`: the desired state's `desired_hashes`, when the caller has them (the artifacts sent
    may also delete stale chains, which are not desired state); else those of `art`.
    """
    files = art.files()
    return request(
        "apply",
        run_id,
        artifacts={name: files[name] for name in APPLY_FILES},
        netconf=netconf_payload(art.netconf),
        parts=list(parts),
        desired_hashes=dict(hashes) if hashes is not None else desired_hashes(art),
        confirm_timeout=confirm_timeout,
        check=check,
        diff=diff,
        lock_wait=lock_wait,
        podserver=podserver_source(),
        agent=agent_source(),
        **fields,
    )


def is_unchanged(probe: Mapping[str, object], want: Mapping[str, str], parts: tuple[str, ...] = PARTS) -> bool:
    """True iff `parts` need nothing sent: same applied hashes, and no drift (live rules == saved
    rules for `rules`, the address config intact for `network`)."""
    applied = probe.get("applied_hash")
    if not probe.get("ok") or not isinstance(applied, dict):
        return False
    if any(applied.get(p) != want.get(p) for p in parts):
        return False
    if node.PART_RULES in parts and probe.get("live_rules_hash") != probe.get("saved_rules_hash"):
        return False
    return not (node.PART_NETWORK in parts and not probe.get("netconf_ok"))


def facts_from_probe(probe: Mapping[str, object]) -> NodeFacts:
    """The renderer's NodeFacts from a probe response."""
    facts = probe.get("facts")
    if not isinstance(facts, dict):
        raise AgentProtocolError("probe response has no facts")
    return NodeFacts(
        random_fully=bool(facts.get("random_fully", True)),
        nfacct_counters=frozenset(str(n) for n in facts.get("nfacct_counters") or ()),
        tcp_be_liberal=bool(facts.get("tcp_be_liberal", False)),
    )
