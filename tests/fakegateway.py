"""An in-memory stand-in for a node's gateway: the runner's one seam (as pyinfra's connector).

`FakeNode` answers each agent request as the agent would in the normal case (it remembers the
hashes applied, so a second run changes nothing) and as a test scripts it otherwise: a canned
answer (`answers`) or an exception (`raises`) per op, `confirm_error` for the fresh connection.
Every request is recorded in `Fleet.log`, in order, as (node, op, wire dict, fresh connection).
For unit tests of the dispatcher and the apply tasks; the lab tests are the integration tests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from svcnet.transport.protocol import DIFF_NETCONF, DIFF_RULES, ConfirmAnswer, ConfirmRequest
from svcnet.transport.ssh import Result

FACTS = {"random_fully": True, "nfacct_counters": [], "tcp_be_liberal": False}
RULES_DIFF = "--- live rules\n+++ desired rules\n@@ -1 +1 @@\n-old\n+new\n"
NETCONF_DIFF = "--- live netconf\n+++ desired netconf\n@@ -1 +1 @@\n-bridge down\n+bridge up\n"


@dataclass
class FakeNode:
    name: str
    applied: dict[str, str] = field(default_factory=dict)  # part -> hash, as the agent's state records it
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # op -> the answer to give instead
    raises: dict[str, Exception] = field(default_factory=dict)  # op -> raised instead of an answer
    confirm_error: Exception | None = None  # raised by the confirmation over a fresh connection
    diff: Mapping[str, str] = field(default_factory=lambda: {DIFF_RULES: RULES_DIFF, DIFF_NETCONF: NETCONF_DIFF})

    def answer(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        op = str(wire["op"])
        if op in self.raises:
            raise self.raises[op]
        if op in self.answers:
            return self.answers[op]
        return getattr(self, f"op_{op}")(wire)

    def op_probe(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        return {"ok": True, "changed": False, "msg": "", "facts": FACTS, "applied_hash": dict(self.applied) or None,
                "live_rules_hash": "h", "saved_rules_hash": "h", "netconf_ok": True, "stale_chains": []}

    def op_preflight(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.op_probe(wire), "msg": "node ready", "missing": [], "features": {}}

    def op_apply(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        parts, want = list(wire["parts"]), dict(wire["desired_hashes"])
        changed = any(self.applied.get(p) != want.get(p) for p in parts)
        shown = {k: (v if changed else "") for k, v in self.diff.items()}
        if wire["check"]:
            return {"ok": True, "changed": changed, "msg": "check mode: nothing changed", "diff": shown}
        extra: dict[str, Any] = {"diff": shown} if wire["diff"] else {}
        if not changed:
            return {"ok": True, "changed": False, "msg": "already in the desired state", **extra}
        self.applied.update({p: want[p] for p in parts})
        pending = float(wire["confirm_timeout"]) > 0
        return {"ok": True, "changed": True, "msg": "applied", "pending": pending, **extra}

    def op_teardown(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        self.applied.clear()
        return {"ok": True, "changed": True, "msg": f"svcnet removed from {self.name}",
                "pending": float(wire["confirm_timeout"]) > 0}

    def op_confirm(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        return {"ok": True, "changed": True, "msg": f"run {wire['run_id']} confirmed"}

    def op_status(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        return {"ok": True, "changed": False, "msg": "", "pods": [], "pending": None}


class FakeGateway:
    """A `Gateway` to a FakeNode: requests go through their real `to_wire()` and `answer()`."""

    def __init__(self, fleet: Fleet, node: FakeNode):
        self.fleet = fleet
        self.node = node
        self.closed = False

    @property
    def name(self) -> str:
        return self.node.name

    def open(self) -> FakeGateway:
        return self

    def ask(self, request: Any, timeout: float = 300.0) -> Any:
        wire = request.to_wire()
        self.fleet.record(self.name, wire, fresh=False)
        return request.answer(self.node.answer(wire))

    def confirm(self, run_id: str) -> ConfirmAnswer:
        req = ConfirmRequest(run_id)
        self.fleet.record(self.name, req.to_wire(), fresh=True)
        if self.node.confirm_error is not None:
            raise self.node.confirm_error
        return req.answer(self.node.answer(req.to_wire()))

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = 60.0) -> Result:
        raise AssertionError(f"{self.name}: no command expected here: {command}")

    def python_command(self, code: str, prefix: Sequence[str] = ()) -> str:
        return " ".join([*prefix, "python3", "-c", code])

    def close(self) -> None:
        self.closed = True


class Fleet:
    """The fake nodes of a test and the gateways the runner asked for (`connect`)."""

    def __init__(self, names: Sequence[str]):
        self.nodes = {n: FakeNode(n) for n in names}
        self.gateways: list[FakeGateway] = []
        self.log: list[tuple[str, str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()  # hosts run in threads

    def connect(self, name: str) -> FakeGateway:
        gw = FakeGateway(self, self.nodes[name])
        self.gateways.append(gw)
        return gw

    def record(self, node: str, wire: dict[str, Any], fresh: bool) -> None:
        with self.lock:
            self.log.append((node, str(wire["op"]), wire, fresh))

    def ops(self, node: str | None = None) -> list[str]:
        """The ops sent (to `node`), in order; a confirmation over a fresh connection as "confirm (fresh)"."""
        return [op + (" (fresh)" if fresh else "") for n, op, _, fresh in self.log if node is None or n == node]

    def sent(self, node: str, op: str) -> list[dict[str, Any]]:
        return [wire for n, o, wire, _ in self.log if n == node and o == op]
