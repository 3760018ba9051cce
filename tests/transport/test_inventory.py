"""Inventories: YAML and INI agree, variable precedence, located errors, example files."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from svcnet.transport.invdata import expand_host_pattern
from svcnet.transport.inventory import InventoryError, inventory_files, load_inventory

FIX = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def test_yaml_and_ini_agree() -> None:
    yml = load_inventory(FIX / "equiv" / "hosts.yaml")
    ini = load_inventory(FIX / "equiv" / "hosts.ini")
    assert set(yml.hosts) == set(ini.hosts) == {"lonely", "cp1", "node01", "node02", "node03", "node09"}
    for host in yml.hosts:
        assert yml.host_vars(host) == ini.host_vars(host), host
        assert yml.groups_of(host) == ini.groups_of(host), host
        assert yml.host_config(host) == ini.host_config(host), host
    for group in ("all", "k8s", "control", "workers", "ungrouped"):
        assert set(yml.group_hosts(group)) == set(ini.group_hosts(group)), group
    assert ini.host_vars("node09")["ansible_port"] == 2222  # from `host:port`
    assert ini.host_config("node02").become is True
    assert ini.group_hosts("ungrouped") == ["lonely"]


def test_yaml_host_order_follows_ansible() -> None:
    # Ansible's yaml plugin reads a group's vars, then children, then hosts.
    inv = load_inventory(FIX / "equiv" / "hosts.yaml")
    assert inv.hosts == ("cp1", "node01", "node02", "node03", "node09", "lonely")
    assert inv.select("all") == list(inv.hosts)


def test_example_inventories_agree_and_resolve() -> None:
    yml = load_inventory(REPO / "inventory" / "example.yaml")
    ini = load_inventory(REPO / "inventory" / "example.ini")
    assert yml.hosts == ini.hosts == ("node1", "node2", "node3")
    assert [yml.host_config(h) for h in yml.hosts] == [ini.host_config(h) for h in ini.hosts]
    node3 = yml.host_config("node3")
    assert (node3.address, node3.port, node3.user, node3.become) == ("192.0.2.13", 2222, "svcnet", True)
    assert node3.key_file is not None and node3.key_file.endswith(".ssh/id_ed25519")
    assert yml.host_config("node1").ssh_common_args == ()


def test_directory_loads_every_inventory_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("all:\n  hosts:\n    h1: {x: 1}\n")
    (tmp_path / "b.ini").write_text("[web]\nh2\nh1 x=2\n")
    (tmp_path / "README.md").write_text("# not an inventory\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("role: web\n")
    assert [p.name for p in inventory_files(tmp_path)] == ["a.yaml", "b.ini"]
    inv = load_inventory(tmp_path)
    assert inv.hosts == ("h1", "h2")
    assert inv.host_vars("h1")["x"] == 2  # the later file wins
    assert inv.host_vars("h2")["role"] == "web"


def test_variable_precedence() -> None:
    inv = load_inventory(FIX / "prec")
    v = inv.host_vars("n1")
    assert v["v_all"] == "gfile_all"  # group_vars/all beats inventory `all: vars`
    assert v["v_parent"] == "inv_parent"  # parent group beats all
    assert v["v_child"] == "inv_child"  # child group beats parent
    assert v["v_host"] == "inv_host"  # inventory host vars beat every group
    assert v["v_gfile"] == "gfile_parent"  # group_vars files beat inventory-file group vars
    assert v["v_gfile2"] == "gfile_child"  # among group_vars files, child beats parent
    assert v["v_hfile"] == "hfile"  # host_vars files beat inventory host vars
    assert v["v_dir"] == "second"  # group_vars/all/ directory files read in lexical order
    other = inv.host_vars("n2")
    assert other["v_child"] == "inv_all" and "v_gfile" not in other
    assert any("nosuchgroup" in w for w in inv.warnings)


def test_group_priority_breaks_ties_between_sibling_groups() -> None:
    assert load_inventory(FIX / "prio").host_vars("h1")["color"] == "alpha"


@pytest.mark.parametrize(
    ("text", "names", "port"),
    [
        ("node[01:03]", ["node01", "node02", "node03"], None),
        ("db-[a:c]:2200", ["db-a", "db-b", "db-c"], 2200),
        ("n[1:5:2]", ["n1", "n3", "n5"], None),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"], None),
        ("[fe80::1]:22", ["fe80::1"], 22),
        ("fe80::1", ["fe80::1"], None),
    ],
)
def test_host_ranges(text: str, names: list[str], port: int | None) -> None:
    assert expand_host_pattern(text) == (names, port)


def test_ini_ranges_and_literals(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("[web]\nweb[1:2] ansible_port=2222 flag=True text=FALSE\n[web:vars]\nn=5\n")
    inv = load_inventory(tmp_path / "hosts.ini")
    assert inv.hosts == ("web1", "web2")
    assert inv.host_vars("web2") == {"n": 5, "ansible_port": 2222, "flag": True, "text": "FALSE"}


BAD = [
    # (file, line, path, message fragment)
    ("port_range.yaml", 4, "all.hosts.n1.ansible_port", "70000 is out of range"),
    ("group_key_typo.yaml", 3, "all.childen", "did you mean 'children'"),
    ("hosts_list.yaml", 5, "all.children.web.hosts", "hosts must be a mapping"),
    ("loop.yaml", 6, "all.children.a.children.b", "makes a loop"),
    ("become_method.yaml", 4, "all.vars.ansible_become_method", "'su' is not supported"),
    ("syntax.yaml", 4, "(yaml)", "invalid YAML"),
    ("ssh_args_quote.yaml", 5, "all.hosts.n1.ansible_ssh_common_args", "No closing quotation"),
    ("range_width.yaml", 3, "all.hosts.node[01:3]", "same width"),
    ("group_name.yaml", 4, "all.children.web servers", "invalid group name"),
    ("vars_list.yaml", 5, "all.children.web.vars", "vars must be a mapping"),
    ("become_bool.yaml", 4, "all.hosts.n1.ansible_become", "must be a boolean"),
    ("not_mapping.yaml", 1, "(document)", "must be a mapping of groups"),
    ("bad.ini", 3, "[web]", "expected key=value host variable"),
    ("bad.ini", 5, "[web:foo]", "section type 'foo' is unknown"),
    ("bad.ini", 8, "[ghost:vars]", "undefined group 'ghost'"),
    ("bad.ini", 12, "[web:vars]", "99999 is out of range"),
    ("gv_list/group_vars/web.yml", 2, "(document)", "vars file must be a mapping"),
]


@pytest.mark.parametrize(("name", "line", "path", "fragment"), BAD)
def test_bad_inventories_give_located_errors(name: str, line: int, path: str, fragment: str) -> None:
    source = FIX / "bad" / (name.split("/")[0] if "/" in name else name)
    with pytest.raises(InventoryError) as info:
        load_inventory(source)
    wanted = f"{FIX / 'bad' / name}:{line}:"
    hits = [m for m in info.value.messages if m.startswith(wanted) and f": {path}: " in m and fragment in m]
    assert hits, "\n".join(info.value.messages)
    for message in info.value.messages:  # every message is `file:line:col: path: message`
        assert re.match(r"^\S+:\d+:\d+: .+: .+", message), message


def test_all_problems_of_a_file_are_reported() -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(FIX / "bad" / "bad.ini")
    assert len(info.value.messages) == 4
    with pytest.raises(InventoryError) as info:
        load_inventory(FIX / "bad" / "become_bool.yaml")
    assert len(info.value.messages) == 2


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such inventory"):
        load_inventory(tmp_path / "nope.yaml")
    with pytest.raises(InventoryError, match="holds no inventory file"):
        load_inventory(tmp_path)


def test_inventory_select_and_limit() -> None:
    inv = load_inventory(FIX / "equiv" / "hosts.ini")
    assert inv.select("k8s:!control") == ["node01", "node02", "node03", "node09"]
    assert inv.select("workers", limit="node0[12]") == []  # a subscript of `node0`, as in Ansible
    assert inv.select("workers", limit="~node0[12]") == ["node01", "node02"]
    assert inv.select("all:&k8s", limit="cp1,lonely") == ["cp1"]


def test_host_config_logs_no_secret(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "h.yaml").write_text("all:\n  hosts:\n    h1:\n      ansible_become_password: s3cr3t-inv\n")
    inv = load_inventory(tmp_path / "h.yaml")
    with caplog.at_level(logging.DEBUG):
        cfg = inv.host_config("h1")
        logging.getLogger("test").info("config %s %r", cfg, cfg)
    assert cfg.become_password is not None and cfg.become_password.get_secret_value() == "s3cr3t-inv"
    assert "s3cr3t-inv" not in caplog.text and "s3cr3t-inv" not in repr(cfg)
    assert "resolved host" in caplog.text  # the debug line was written, masked


def _aliased(key: str, copies: int, indent: str = "") -> str:
    """`key` holding an anchored 100,000-character string, then `copies` aliases of it."""
    return f"{indent}{key}: &big \"{'x' * 100_000}\"\n{indent}{key}_copies: [" + ", ".join(["*big"] * copies) + "]\n"


def test_alias_bombs_are_refused_in_inventories_and_their_vars_files(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text("all:\n  hosts: {h1: }\n  vars:\n" + _aliased("big", 5000, "    "))
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "bomb.yaml")
    (message,) = info.value.messages
    assert re.match(rf"^{re.escape(str(tmp_path / 'bomb.yaml'))}:5:\d+: all\.vars\.big_copies\[\d+\]: ", message)
    assert "alias bomb" in message
    # The bound holds for everything one load reads: here four vars files, each under it alone.
    (tmp_path / "bomb.yaml").unlink()
    (tmp_path / "hosts.yaml").write_text("all:\n  hosts: {h1: , h2: }\n  children: {web: {hosts: {h1: }}}\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    third = 16 * 1024 * 1024 // 3 // 100_064 + 1
    for vars_file in ("group_vars/all.yaml", "group_vars/web.yaml", "host_vars/h1.yaml", "host_vars/h2.yaml"):
        (tmp_path / vars_file).write_text(_aliased("big", third))
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    (message,) = info.value.messages
    assert message.startswith(f"{tmp_path / 'host_vars' / 'h2.yaml'}:2:") and "alias bomb" in message


def test_host_ranges_are_bounded_before_they_expand(tmp_path: Path) -> None:
    # `m[0:999][0:999]` is a million hosts from 15 characters (`n[0:99999999]`: gigabytes).
    (tmp_path / "big.yaml").write_text("all:\n  hosts:\n    m[0:999][0:999]:\n")
    (tmp_path / "big.ini").write_text("[web]\nok1\nm[0:999][0:999] ansible_port=22\n")
    for name, line, path in (("big.yaml", 3, "all.hosts.m[0:999][0:999]"), ("big.ini", 3, "[web]")):
        with pytest.raises(InventoryError) as info:
            load_inventory(tmp_path / name)
        (message,) = info.value.messages
        assert message.startswith(f"{tmp_path / name}:{line}:") and f": {path}: " in message, message
        assert "1,000,000 or more host entries" in message
    # The bound is on the whole inventory: three ranges of 40,000 each, the third one refused.
    (tmp_path / "three.ini").write_text("[a]\na[1:40000]\n[b]\nb[1:40000]\n[c]\na[1:40000]\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "three.ini")
    (message,) = info.value.messages
    assert message.startswith(f"{tmp_path / 'three.ini'}:6:") and "room for 20,000 more" in message
    with pytest.raises(ValueError, match="room for 10 more"):
        expand_host_pattern("n[0:99999999999]", 10)  # counted, not built
    assert expand_host_pattern("n[1:3]", 3) == (["n1", "n2", "n3"], None)


def test_lines_under_an_invalid_group_header_are_not_read(tmp_path: Path) -> None:
    # Found by tests/fuzz: the variables under `[;web:vars]` raised KeyError (a traceback).
    (tmp_path / "h.ini").write_text("[web]\nh1\n[;web:vars]\nx=1\n[;db]\nh2\n[;db:children]\nweb\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "h.ini")
    assert [m.split(": ")[0] for m in info.value.messages] == [f"{tmp_path / 'h.ini'}:{n}:1" for n in (3, 5, 7)]
    assert all("invalid group name" in m for m in info.value.messages)


def test_many_hosts_and_groups_resolve_without_quadratic_work(tmp_path: Path) -> None:
    # A range of many hosts: resolving each host searched every group's host list (quadratic:
    # about a minute here), and the host index listed every group's hosts up front.
    (tmp_path / "a.ini").write_text("[big]\nh[1:30000]\n[k8s:children]\nbig\n")
    (tmp_path / "b.ini").write_text("[big]\nh[1:99000]\n" + "".join(f"[g{i}:children]\nbig\n" for i in range(300)))
    started = time.monotonic()
    big = load_inventory(tmp_path / "a.ini")
    configs = [big.host_config(h) for h in big.hosts]
    assert len(configs) == 30_000 and configs[-1].name == "h30000"
    inv = load_inventory(tmp_path / "b.ini")
    assert inv.select("g7:&big", limit="h9999*") == ["h9999"]
    assert len(inv.groups_of("h5")) == 302  # all, big, g0..g299
    # Generous for a loaded 2-core machine; the quadratic version took over a minute.
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("var", "value"), [("ansible_port", "²"), ("ansible_group_priority", "--1"),
                                            ("ansible_group_priority", "1²"), ("ansible_group_priority", "9" * 5000)])
def test_numbers_int_cannot_read_are_located_errors(tmp_path: Path, var: str, value: str) -> None:
    # Found by tests/fuzz: str.isdigit() accepts '²', lstrip('-') accepted '--1', and int() refuses
    # 5,000 digits: each raised ValueError (a traceback) while the inventory was resolved.
    (tmp_path / "h.yaml").write_text(f"all:\n  hosts: {{h1: }}\n  vars:\n    {var}: '{value}'\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "h.yaml")
    (message,) = info.value.messages
    assert message.startswith(f"{tmp_path / 'h.yaml'}:4:") and f"all.vars.{var}" in message
