"""ProxyJump / `-J`: parsing, OpenSSH's precedence against ProxyCommand, and each hop's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.transport.hostconfig import (
    HostConfig,
    JumpHop,
    SshArgsError,
    local_user,
    parse_proxy_jump,
    parse_ssh_args,
    split_ssh_args,
)
from svcnet.transport.inventory import InventoryError, load_inventory
from svcnet.transport.ssh import DEFAULT_KNOWN_HOSTS, known_hosts_path


@pytest.mark.parametrize(
    ("text", "hops"),
    [
        ("bastion", (JumpHop("bastion"),)),
        ("ops@bastion:2222", (JumpHop("bastion", "ops", 2222),)),
        ("a,ops@b:2200,c", (JumpHop("a"), JumpHop("b", "ops", 2200), JumpHop("c"))),  # first hop first
        ("ssh://ops@[fd00::1]:2200", (JumpHop("fd00::1", "ops", 2200),)),
        ("ssh://gw.example/", (JumpHop("gw.example"),)),
        ("[fd00::1]", (JumpHop("fd00::1"),)),
        ("10.0.0.5:22", (JumpHop("10.0.0.5", None, 22),)),
        ("me@corp@gw", (JumpHop("gw", "me@corp"),)),  # the user is what comes before the last @
        ("none", ()),
        (" NONE ", ()),
    ],
)
def test_proxy_jump_forms(text: str, hops: tuple[JumpHop, ...]) -> None:
    assert parse_proxy_jump(text) == hops
    for hop in hops:  # a hop prints back to a form OpenSSH reads (passed on as `-J`)
        assert parse_proxy_jump(str(hop)) == (hop,)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected [USER@]HOST"),
        ("a,,b", "expected [USER@]HOST"),
        ("a,", "expected [USER@]HOST"),
        ("a:0", "1-65535"),
        ("a:65536", "1-65535"),
        ("a:ssh", "1-65535"),
        ("a:", "1-65535"),
        ("@a", "is not a user name"),
        ("fd00::1", "must be in brackets"),
        ("[fd00::1", "expected [ADDRESS]"),
        ("[fd00::1]x", "expected [ADDRESS]"),
        ("ssh://a/path", "cannot have a path"),
        ("-oProxyCommand=sh", "expected [USER@]HOST"),  # never an option to a hop's ProxyCommand
        ("a b", "expected [USER@]HOST"),
        ("x;y@a", "is not a user name"),
    ],
)
def test_bad_proxy_jumps_are_clear_errors(text: str, why: str) -> None:
    with pytest.raises(SshArgsError, match=r"ProxyJump hop .*") as info:
        parse_proxy_jump(text)
    assert why in str(info.value)


def test_jump_on_the_command_line() -> None:
    assert parse_ssh_args(["-J", "a,b"]).options == {"proxyjump": "a,b"}
    assert parse_ssh_args(["-Jops@a:2200"]).options == {"proxyjump": "ops@a:2200"}
    assert parse_ssh_args(split_ssh_args("-o ProxyJump=a -J b")).options == {"proxyjump": "a"}  # first wins
    assert parse_ssh_args(split_ssh_args("-o 'proxyjump c'")).options == {"proxyjump": "c"}
    with pytest.raises(SshArgsError, match="ProxyJump hop 'a:0'"):
        parse_ssh_args(["-J", "a:0"])
    with pytest.raises(SshArgsError, match="ProxyJump hop"):
        parse_ssh_args(["-o", "ProxyJump=ssh://a/b"])


def test_a_bad_jump_in_the_inventory_is_a_located_error(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all:\n  hosts:\n    n1:\n      ansible_ssh_extra_args: -J ops@gw:99999\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    assert any(m.startswith(f"{inv}:4:") and "all.hosts.n1.ansible_ssh_extra_args" in m and "1-65535" in m
               for m in info.value.messages), info.value.messages


def _host(tmp_path: Path, config: str, *args: str, name: str = "node1", address: str = "node1") -> HostConfig:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    return HostConfig(name=name, address=address, ssh_common_args=(*args, "-F", str(cfg)))


def _proxies(host: HostConfig) -> tuple[str | None, str | None]:
    opts = host.ssh_options()
    return opts["proxycommand"], opts["proxyjump"]


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        # In one file, whichever comes first wins, as OpenSSH's readconf does.
        ("Host node1\n  ProxyCommand nc %h %p\n  ProxyJump gw\n", (), ("nc node1 22", None)),
        ("Host node1\n  ProxyJump gw\n  ProxyCommand nc %h %p\n", (), (None, "gw")),
        ("Host node1\n  ProxyJump gw\nHost *\n  ProxyCommand nc %h %p\n", (), (None, "gw")),
        ("Host *\n  ProxyCommand nc %h %p\nHost node1\n  ProxyJump gw\n", (), ("nc node1 22", None)),
        # `none` is a value obtained first like any other: no proxy at all, and the other is ignored.
        ("Host node1\n  ProxyJump none\nHost *\n  ProxyCommand nc %h %p\n", (), (None, None)),
        ("Host node1\n  ProxyCommand none\nHost *\n  ProxyJump gw\n", (), (None, None)),
        # The command line comes before the file.
        ("Host node1\n  ProxyCommand nc %h %p\n", ("-J", "gw"), (None, "gw")),
        ("Host node1\n  ProxyJump gw\n", ("-o", "ProxyCommand=nc %h %p"), ("nc node1 22", None)),
        ("Host node1\n  ProxyJump gw\n", ("-J", "none"), (None, None)),
        ("Host node1\n  ProxyJump gw\n", ("-o", "ProxyCommand=none"), (None, None)),
    ],
)
def test_proxy_command_or_jump_whichever_comes_first(
    tmp_path: Path, config: str, args: tuple[str, ...], expected: tuple[str | None, str | None]
) -> None:
    assert _proxies(_host(tmp_path, config, *args)) == expected


def test_the_address_entry_decides_before_the_alias_entry(tmp_path: Path) -> None:
    config = "Host 10.0.0.11\n  ProxyJump gw\nHost node1\n  ProxyCommand nc %h %p\n"
    assert _proxies(_host(tmp_path, config, address="10.0.0.11")) == (None, "gw")
    only_alias = "Host node1\n  ProxyJump gw\n"
    assert _proxies(_host(tmp_path, only_alias, address="10.0.0.11")) == (None, "gw")


BASTION_CONFIG = """
Host bastion
  HostName 10.0.0.5
  User ops
  Port 2222
  IdentityFile /keys/bastion
  UserKnownHostsFile /kh/bastion
  ProxyCommand ip netns exec ns-b nc %h %p
Host inner
  HostName 10.1.0.6
  User inner-ops
  ProxyCommand never-used %h
Host node1
  HostName 10.2.0.11
  User root
  IdentityFile /keys/node
  UserKnownHostsFile /kh/nodes
"""


def test_each_hop_gets_its_own_ssh_config_and_known_hosts(tmp_path: Path) -> None:
    node = _host(tmp_path, BASTION_CONFIG, "-J", "bastion")
    (bastion,) = node.jump_hosts()
    kwargs = bastion.fabric_kwargs(timeout=3)
    assert (kwargs["host"], kwargs["port"], kwargs["user"]) == ("10.0.0.5", 2222, "ops")
    assert kwargs["connect_kwargs"]["key_filename"] == ["/keys/bastion"]
    assert kwargs["gateway"] == "ip netns exec ns-b nc 10.0.0.5 2222"  # the first hop's own ProxyCommand
    assert known_hosts_path(bastion) == Path("/kh/bastion")
    target = node.fabric_kwargs(timeout=3)
    assert (target["host"], target["port"], target["user"]) == ("10.2.0.11", 22, "root")
    assert "gateway" not in target  # reached through the bastion, not by a command
    assert known_hosts_path(node) == Path("/kh/nodes")


def test_a_chain_is_followed_first_hop_first(tmp_path: Path) -> None:
    node = _host(tmp_path, BASTION_CONFIG, "-J", "alice@bastion:2200,inner")
    first, second = node.jump_hosts()
    one, two = first.fabric_kwargs(), second.fabric_kwargs()
    assert (first.name, one["host"], one["port"], one["user"]) == ("bastion", "10.0.0.5", 2200, "alice")
    assert one["gateway"] == "ip netns exec ns-b nc 10.0.0.5 2200"
    # A later hop is reached through the one before: its own ProxyCommand does not apply (OpenSSH: `-J` wins).
    assert (second.name, two["host"], two["port"], two["user"]) == ("inner", "10.1.0.6", 22, "inner-ops")
    assert "gateway" not in two


def test_the_first_hops_own_proxy_jump_extends_the_chain(tmp_path: Path) -> None:
    config = "Host a\n  ProxyJump outer\nHost node1\n  ProxyJump a\n"
    assert [h.name for h in _host(tmp_path, config).jump_hosts()] == ["outer", "a"]


def test_a_hop_without_user_is_reached_as_the_local_user(tmp_path: Path) -> None:
    (hop,) = _host(tmp_path, "Host node1\n  ProxyJump gw\n").jump_hosts()
    assert hop.fabric_kwargs()["user"] == local_user()  # as OpenSSH; the node's user is not carried over


def test_command_line_options_do_not_carry_over_to_hops(tmp_path: Path) -> None:
    node = _host(tmp_path, "", "-o", "UserKnownHostsFile=/kh/only-node", "-J", "gw")
    (hop,) = node.jump_hosts()
    assert known_hosts_path(node) == Path("/kh/only-node")
    assert known_hosts_path(hop) == Path(DEFAULT_KNOWN_HOSTS).expanduser()  # what `ssh -W ... gw` would check


@pytest.mark.parametrize(
    "config",
    [
        "Host *\n  ProxyJump gw\n",  # gw itself matches `Host *`
        "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\nHost node1\n  ProxyJump a\n",
        "Host node1\n  ProxyJump node1\n",
    ],
)
def test_a_jump_loop_is_a_clear_error(tmp_path: Path, config: str) -> None:
    with pytest.raises(SshArgsError, match="ProxyJump loop: jump host"):
        _host(tmp_path, config).jump_hosts()


def test_a_chain_has_a_bound(tmp_path: Path) -> None:
    hops = ",".join(f"h{i}" for i in range(17))
    with pytest.raises(SshArgsError, match="more than 16 jump hosts on the way to node1"):
        _host(tmp_path, "", "-J", hops).jump_hosts()
    assert len(_host(tmp_path, "", "-J", hops.rsplit(",", 1)[0]).jump_hosts()) == 16


def test_a_bad_proxy_jump_in_ssh_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SshArgsError, match="ProxyJump hop 'gw:0'"):
        _host(tmp_path, "Host node1\n  ProxyJump gw:0\n").jump_hosts()


def test_the_files_proxy_command_tokens_expand_to_what_svcnet_connects_to(tmp_path: Path) -> None:
    config = "Host node1\n  HostName 10.2.0.11\n  Port 22\n  ProxyCommand nc %h %p %r\n"
    from_file = _host(tmp_path, config)
    assert from_file.ssh_options()["proxycommand"] == f"nc 10.2.0.11 22 {local_user()}"  # paramiko's %r default
    inventory = HostConfig(name="node1", address="node1", port=2201, user="ops", explicit=frozenset({"port", "user"}),
                           ssh_common_args=from_file.ssh_common_args)
    assert inventory.ssh_options()["proxycommand"] == "nc 10.2.0.11 2201 ops"
    command_line = _host(tmp_path, config, "-p", "2202", "-l", "deploy")
    assert command_line.ssh_options()["proxycommand"] == "nc 10.2.0.11 2202 deploy"
