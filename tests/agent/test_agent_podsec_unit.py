"""The agent's side of a pod's securityContext: validation, the setpriv argv, the pod's argv, mountinfo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from svcnet.agent import node

POD = {"netns": "svcnet_t_web", "veth": "veth0123abcd", "address": "10.244.1.5/24", "gateway": "10.244.1.1",
       "namespace": "t", "name": "web", "command": ["python3", "server.py"], "ports": [8080]}
LOCKED = {"uid": 65534, "gid": 65534, "groups": [65534], "capabilities": [], "ambient": [], "no_new_privs": True,
          "read_only_root": False}


def conf(security: object) -> dict:
    return {"pods": [{**POD, "security": security}]}


def test_setpriv_argv_drops_everything():
    assert node.setpriv_argv(LOCKED) == [
        "setpriv", "--reuid=65534", "--regid=65534", "--groups=65534", "--bounding-set=-all", "--inh-caps=-all",
        "--ambient-caps=-all", "--no-new-privs"]


def test_setpriv_argv_keeps_the_added_capabilities_also_for_a_non_root_user():
    sec = {**LOCKED, "uid": 1000, "gid": 1000, "groups": [1000, 2000], "capabilities": ["KILL", "NET_BIND_SERVICE"],
           "ambient": ["NET_BIND_SERVICE"], "no_new_privs": False}
    assert node.setpriv_argv(sec) == [
        "setpriv", "--reuid=1000", "--regid=1000", "--groups=1000,2000", "--bounding-set=-all,+kill,+net_bind_service",
        "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service"]


def test_setpriv_argv_of_a_privileged_container_leaves_the_capabilities():
    assert node.setpriv_argv({**LOCKED, "uid": 0, "gid": 0, "groups": [0], "capabilities": None,
                              "no_new_privs": False}) == ["setpriv", "--reuid=0", "--regid=0", "--groups=0"]


def test_pod_argv_without_with_and_with_read_only_security():
    paths = node.Paths("/e", "/s", "/r")
    plain = node.pod_spec(POD)
    assert node.pod_argv(paths, plain) == ["ip", "netns", "exec", "svcnet_t_web", "python3", "server.py"]
    secured = node.pod_spec({**POD, "security": LOCKED})
    assert node.pod_argv(paths, secured) == ["ip", "netns", "exec", "svcnet_t_web", *node.setpriv_argv(LOCKED), "--",
                                             "python3", "server.py"]
    read_only = node.pod_spec({**POD, "security": {**LOCKED, "read_only_root": True}})
    argv = node.pod_argv(paths, read_only)
    assert argv[:4] == ["ip", "netns", "exec", "svcnet_t_web"]
    assert argv[4:] == node.agent_argv(paths, "pod-exec", "svcnet_t_web")  # the command comes from the spec file


def test_the_security_is_part_of_the_spec_hash():
    a = node.spec_hash(node.pod_spec({**POD, "security": LOCKED}))
    b = node.spec_hash(node.pod_spec({**POD, "security": {**LOCKED, "uid": 65533}}))
    assert len({a, b, node.spec_hash(node.pod_spec(POD))}) == 3


@pytest.mark.parametrize(("field", "value"), [
    ("uid", -1), ("uid", 2147483648), ("uid", True), ("uid", "1000"), ("gid", 1.5), ("gid", None),
    ("groups", []), ("groups", ["1,2"]), ("groups", [0] * (node.MAX_GROUPS + 1)), ("groups", 5),
    ("capabilities", ["net_bind_service"]), ("capabilities", ["ALL"]), ("capabilities", ["+all"]),
    ("capabilities", "NET_ADMIN"), ("ambient", ["NET_ADMIN"]), ("ambient", None),
    ("no_new_privs", 1), ("read_only_root", "yes"),
])
def test_validate_netconf_refuses_a_bad_security_value(field, value):
    bad = conf({**LOCKED, field: value})
    with pytest.raises(node.AgentError, match=rf"netconf\.pods\[0\]\.security\.{field}: invalid value"):
        node.validate_netconf(bad)


@pytest.mark.parametrize("security", [[], "root", {**LOCKED, "extra": 1},
                                      {k: v for k, v in LOCKED.items() if k != "gid"}])
def test_validate_netconf_refuses_a_security_of_another_shape(security):
    with pytest.raises(node.AgentError, match=r"netconf\.pods\[0\]\.security: invalid value"):
        node.validate_netconf(conf(security))


def test_validate_netconf_accepts_good_security_and_none():
    good = conf({**LOCKED, "capabilities": ["NET_BIND_SERVICE"], "ambient": ["NET_BIND_SERVICE"]})
    assert node.validate_netconf(copy.deepcopy(good))["pods"] == good["pods"]
    privileged = conf({**LOCKED, "capabilities": None, "ambient": ["SYS_ADMIN"]})
    assert node.validate_netconf(privileged)["pods"][0]["security"]["capabilities"] is None
    assert node.validate_netconf(conf(None))["pods"][0]["security"] is None


def test_mount_points_decodes_escapes_and_lists_each_once():
    info = (b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            b"30 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n"
            b"40 22 0:40 / /mnt/my\\040disk rw - tmpfs t rw\n"
            b"41 40 0:41 / /mnt/my\\040disk rw - tmpfs t rw\n"
            b"42 22 0:42 / /srv/caf\\303\\251 rw - tmpfs t rw\n")
    assert node.mount_points(info) == ["/", "/dev", "/mnt/my disk", "/srv/café"]


@pytest.mark.lab  # root, a private mount namespace of its own for the test
def test_make_read_only_refuses_to_run_in_its_parents_mount_namespace():
    # In a private mount namespace of the test's, so that even a broken guard could not touch the host:
    # there a child that shares its parent's namespace must refuse, and leave / writable.
    child = ("import sys; sys.path[:0] = sys.argv[1:]; from svcnet.agent import node\n"
             "try:\n    node.make_read_only()\nexcept node.AgentError as exc:\n    print(exc)\n")
    outer = ("import subprocess, sys, os\n"
             f"out = subprocess.run([sys.executable, '-c', {child!r}, *sys.argv[1:]], capture_output=True, text=True)\n"
             "print(out.stdout.strip(), out.stderr.strip(), bool(os.statvfs('/').f_flag & os.ST_RDONLY), sep='|')\n")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c", outer,
                           *sys.path], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "not in a mount namespace of its own: refusing to remount||False"
