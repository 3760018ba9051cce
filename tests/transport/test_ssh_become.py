"""Become against real sshd and sudo in the lab: login users with and without a sudo password."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from planted import marker_command, plant_command

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.users import SUDO_PASSWORD, LabUser, add_users, user_inventory
from svcnet.transport import protocol
from svcnet.transport.hostconfig import SecretStr
from svcnet.transport.inventory import load_inventory
from svcnet.transport.ssh import BecomeError, Session

pytestmark = pytest.mark.lab
CLUSTER = Path(__file__).resolve().parents[1] / "lab" / "cluster.yaml"
NOPW = LabUser("svnopw", 4101)
PW = LabUser("svpw", 4102, SUDO_PASSWORD, "lab-sudo-pw-7c2e")
SECRET = "become-pw-that-sudo-never-asks-for-91ad"
DATA = b"first line of the command's input\nsecond\n"


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory(CLUSTER)
    add_users(lab, "node1", [NOPW, PW])
    return lab


def session(lab, tmp_path: Path, user: LabUser, password: str | None) -> Session:
    inv = load_inventory(user_inventory(lab, user.name, tmp_path / f"{user.name}.yaml"))
    return Session(inv.host_config("node1", SecretStr(password) if password else None)).open()


def test_sudo_that_does_not_ask_never_gets_the_password_on_the_command_input(lab, tmp_path):
    with session(lab, tmp_path, NOPW, SECRET) as s:
        r = s.run("id -u; cat", DATA)
        assert (r.rc, r.stdout) == (0, "0\n" + DATA.decode())  # exactly the input, nothing in front of it
        stream = s.start("while read -r x; do echo \"got $x\"; done", b"one\n")
        assert stream.read_line(10) == "got one"  # the first line is ours, not the password
        stream.close()


def test_sudo_that_asks_gets_the_password_for_every_command(lab, tmp_path):
    with session(lab, tmp_path, PW, PW.password) as s:
        for _ in range(3):  # the lab's sudoers asks on every command (timestamp_timeout=0)
            r = s.run("id -u; cat", b"in\n")
            assert (r.rc, r.stdout, r.stderr) == (0, "0\nin\n", "")
        first = protocol.build_stdin(protocol.StatusRequest("b1").to_wire(), session=True)
        agent = s.start(protocol.remote_command(), first)
        assert protocol.parse_response(agent.read_line(60) or "")["ok"]
        agent.send(protocol.request_line(protocol.StatusRequest("b2").to_wire()))
        assert protocol.parse_response(agent.read_line(60) or "")["ok"]
        agent.close()


def test_a_wrong_or_missing_password_is_a_clear_error_not_a_hang(lab, tmp_path):
    t0 = time.monotonic()
    with session(lab, tmp_path, PW, "not-the-password") as s, pytest.raises(BecomeError) as err:
        s.run("id -u")
    # pam_unix waits about 2 s before sudo asks again; 15 s leaves room for a loaded machine
    assert time.monotonic() - t0 < 15
    assert err.value.message == "become: sudo rejected the become password: Sorry, try again."
    with session(lab, tmp_path, PW, None) as s, pytest.raises(BecomeError, match="a password is required"):
        s.run("id -u")


def test_a_module_planted_in_the_login_home_never_runs_as_root(lab, tmp_path):
    home = NOPW.home
    node_run(lab, "node1", plant_command(home, NOPW.name))
    req = protocol.build_stdin(protocol.StatusRequest("p1").to_wire())
    with session(lab, tmp_path, NOPW, None) as s:
        assert protocol.parse_response(s.run(protocol.remote_command(), req).stdout)["ok"]
        assert node_run(lab, "node1", marker_command(home)).stdout == ""
        # The control: the agent's command before the fix, in the same place, ran them as root.
        old = f"{protocol.DEFAULT_PYTHON} -E -S -c '{protocol.BOOTSTRAP}'"
        assert protocol.parse_response(s.run(old, req).stdout)["ok"]
    assert "json euid=0 " in node_run(lab, "node1", marker_command(home)).stdout
