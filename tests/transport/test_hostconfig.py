"""HostConfig: ssh options from ssh_common_args (-o, -F ssh_config), fabric kwargs, secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from svcnet.transport.hostconfig import (
    HostConfig,
    SecretStr,
    SshArgsError,
    become_password,
    parse_ssh_args,
    split_ssh_args,
)
from svcnet.transport.inventory import load_inventory


def test_parse_ssh_args_forms() -> None:
    args = split_ssh_args(
        "-o ProxyCommand='ssh -W %h:%p jump' -oStrictHostKeyChecking=no -o 'UserKnownHostsFile /k' "
        "-o StrictHostKeyChecking=yes -F /etc/cfg -J b1 -p 2200 -i k1 -i k2 -q"
    )
    parsed = parse_ssh_args(args)
    assert parsed.config_file == "/etc/cfg"
    assert parsed.options == {
        "proxycommand": "ssh -W %h:%p jump",
        "stricthostkeychecking": "no",  # first value wins, as in OpenSSH
        "userknownhostsfile": "/k",
        "proxyjump": "b1",
        "port": "2200",
        "identityfile": ["k1", "k2"],
    }
    with pytest.raises(SshArgsError):
        parse_ssh_args(["-o"])
    with pytest.raises(SshArgsError):
        split_ssh_args("-o 'ProxyCommand=ssh")


def test_proxycommand_tokens_expand_from_inventory(tmp_path: Path) -> None:
    (tmp_path / "h.yaml").write_text(
        "all:\n  hosts:\n    node2:\n      ansible_host: 10.1.0.2\n      ansible_port: 2201\n"
        "      ansible_user: ops\n"
        '      ansible_ssh_common_args: -o ProxyCommand="ssh -W %h:%p -l %r bastion %n %%"\n'
        "      ansible_ssh_extra_args: -o UserKnownHostsFile=/dev/null\n"
    )
    cfg = load_inventory(tmp_path / "h.yaml").host_config("node2")
    opts = cfg.ssh_options()
    assert opts["proxycommand"] == "ssh -W 10.1.0.2:2201 -l ops bastion node2 %"
    assert opts["userknownhostsfile"] == "/dev/null"  # extra args are honoured too
    kwargs = cfg.fabric_kwargs(timeout=3)
    assert kwargs["host"] == "10.1.0.2" and kwargs["port"] == 2201 and kwargs["user"] == "ops"
    assert kwargs["gateway"] == opts["proxycommand"]
    assert kwargs["connect_timeout"] == 3
    assert kwargs["connect_kwargs"]["banner_timeout"] == 3
    assert "timeout" not in kwargs["connect_kwargs"]  # fabric refuses it next to connect_timeout


def test_ssh_config_file_by_alias_and_by_address(tmp_path: Path) -> None:
    cfg_file = tmp_path / "ssh_config"
    cfg_file.write_text(
        "Host node1\n  HostName 10.9.0.1\n  Port 2022\n  User lab\n  IdentityFile /keys/lab\n"
        "  ProxyCommand ip netns exec ns1 nc %h %p\n"
        "Host 10.9.0.2\n  UserKnownHostsFile /tmp/kh\n  StrictHostKeyChecking accept-new\n"
    )
    args = ("-F", str(cfg_file))
    by_alias = HostConfig(name="node1", address="node1", ssh_common_args=args).ssh_options()
    assert by_alias["hostname"] == "10.9.0.1"
    assert by_alias["port"] == 2022 and by_alias["user"] == "lab"
    assert by_alias["identityfile"] == ["/keys/lab"]
    assert by_alias["proxycommand"] == "ip netns exec ns1 nc 10.9.0.1 2022"
    by_addr = HostConfig(name="node2", address="10.9.0.2", ssh_common_args=args).ssh_options()
    assert by_addr["userknownhostsfile"] == "/tmp/kh"
    assert by_addr["stricthostkeychecking"] == "accept-new"
    assert by_addr["hostname"] is None and by_addr["proxycommand"] is None
    # An alias entry is found even when ansible_host is an address.
    mixed = HostConfig(name="node1", address="10.9.0.1", ssh_common_args=args, explicit=frozenset({"address"}))
    assert mixed.ssh_options()["port"] == 2022
    kwargs = HostConfig(name="node1", address="node1", ssh_common_args=args).fabric_kwargs()
    assert (kwargs["host"], kwargs["port"], kwargs["user"]) == ("10.9.0.1", 2022, "lab")
    assert kwargs["connect_kwargs"]["key_filename"] == ["/keys/lab"]
    # Command-line -o beats the file, as in OpenSSH.
    over = HostConfig(name="node1", address="node1", ssh_common_args=("-o", "Port=2999", *args))
    assert over.ssh_options()["port"] == 2999


def test_missing_ssh_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = HostConfig(name="n", address="n", ssh_common_args=("-F", str(tmp_path / "nope")))
    with pytest.raises(SshArgsError, match="cannot read ssh config"):
        cfg.ssh_options()


def test_become_password_from_env_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        pw = become_password({"ANSIBLE_BECOME_PASS": "hunter2", "OTHER": "x"})
        cfg = HostConfig(name="n", address="n", become=True, become_password=pw)
        logging.getLogger("test").debug("cfg=%s pw=%s %r", cfg, pw, pw)
    assert pw is not None and pw.get_secret_value() == "hunter2"
    assert str(pw) == repr(pw) == f"{pw}" == "***"
    assert "hunter2" not in repr(cfg) and "hunter2" not in caplog.text
    assert "ANSIBLE_BECOME_PASS" in caplog.text  # where it came from is logged, not the value


def test_become_password_precedence_and_prompt() -> None:
    env = {"SVCNET_BECOME_PASSWORD": "a", "ANSIBLE_BECOME_PASS": "b"}
    assert become_password(env) == SecretStr("a")
    assert become_password({}) is None
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    assert become_password({}, ask=True, prompt=prompt) == SecretStr("typed")
    assert asked == ["BECOME password: "]
    assert become_password({"SVCNET_BECOME_PASSWORD": "env"}, ask=True, prompt=prompt) == SecretStr("env")
    assert len(asked) == 1  # the environment wins; no prompt


def test_inventory_password_var_is_masked_in_vars(tmp_path: Path) -> None:
    (tmp_path / "h.ini").write_text("h1 ansible_become=yes ansible_become_pass=topsecret\n")
    cfg = load_inventory(tmp_path / "h.ini").host_config("h1", become_password=SecretStr("cli"))
    assert cfg.become and cfg.become_user == "root" and cfg.become_method == "sudo"
    assert cfg.become_password == SecretStr("cli")  # an explicit password beats the inventory's
    assert "topsecret" not in repr(cfg) and isinstance(cfg.vars["ansible_become_pass"], SecretStr)
