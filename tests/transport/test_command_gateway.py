"""CommandGateway: the agent's wire over any one-command-with-stdin transport (Ansible's, testinfra's)."""

from __future__ import annotations

import json

import pytest

from svcnet.transport.gateway import AgentReplyError, CommandGateway
from svcnet.transport.protocol import BOOTSTRAP, ProbeRequest, remote_command
from svcnet.transport.ssh import Result


class Recording(CommandGateway):
    """Answers every command with `reply` and records what was run, and when it reconnected."""

    def __init__(self, reply: str, python: str | None = None):
        super().__init__("node1", python)
        self.reply = reply
        self.log: list[tuple[str, object]] = []

    def execute(self, command: str, stdin: bytes, timeout: float | None) -> Result:
        self.log.append(("run", (command, stdin)))
        return Result(0, self.reply, "boom: the last words", 0.0)

    def reconnect(self) -> None:
        self.log.append(("reconnect", None))


def test_a_request_is_the_agent_command_with_source_and_request_on_stdin():
    gw = Recording('{"ok": true, "msg": "probed"}\n', python="/opt/py/bin/python3")
    answer = gw.ask(ProbeRequest("r1"))
    assert answer.ok and answer.msg == "probed"
    ((_, (command, stdin)),) = gw.log
    assert command == remote_command("/opt/py/bin/python3") and BOOTSTRAP in command
    doc = json.loads(stdin)
    assert doc["request"] == {"op": "probe", "run_id": "r1"} and "session" not in doc  # one process per request
    assert "def main_request" in doc["agent"]


def test_a_confirmation_reconnects_first():
    gw = Recording('{"ok": true, "msg": "confirmed"}\n')
    assert gw.confirm("r1").ok
    assert [kind for kind, _ in gw.log] == ["reconnect", "run"]
    assert json.loads(gw.log[1][1][1])["request"]["op"] == "confirm"


def test_output_that_is_not_an_answer_is_an_agent_reply_error_with_stderr():
    gw = Recording("Traceback (most recent call last):\n")
    with pytest.raises(AgentReplyError, match=r"not JSON.*boom: the last words"):
        gw.ask(ProbeRequest("r1"))


def test_commands_and_python_commands_go_through_execute():
    gw = Recording("hi\n")
    assert gw.run("echo hi", b"in").stdout == "hi\n"
    assert gw.python_command("print(1)", ["ip", "netns", "exec", "x"]).startswith("cd / && exec ip netns exec x ")
