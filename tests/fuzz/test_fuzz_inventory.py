"""Fuzzing inventories (YAML, INI, group_vars/host_vars): an `Inventory` or located errors, never a crash.

Whatever loads must also resolve: every host's variables and SSH settings, and the groups'
host selections, as `svcnet playbook` uses them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzgen import (
    MEMORY_GROWTH_KIB,
    assert_located,
    dump,
    encode,
    fuzz_settings,
    mutate_object,
    mutate_text,
    peak_rss_kib,
)
from hypothesis import given
from hypothesis import strategies as st

from svcnet.transport.inventory import InventoryError, load_inventory

pytestmark = pytest.mark.slow  # tens of seconds; SVCNET_FUZZ_EXAMPLES scales them

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "transport" / "fixtures"
SEED_FILES = sorted([*REPO.glob("inventory/*"), *FIX.rglob("*.yaml"), *FIX.rglob("*.ini"), *FIX.rglob("*.yml")])
SEED_TEXTS = [p.read_text() for p in SEED_FILES if p.is_file()]

HOSTS = ["node1", "node2", "node[01:03]", "db-[a:c]:2200", "[::1]:22", "fe80::1", "10.0.0.1", "h:22", "n[1:5:2]",
         "r[1:2]-[a:b]", "node[3:1]", "x[01:3]", "web*", "a b", "", "h:²", "n[0:9999999]", "m[0:999][0:999][0:999]",
         "node[:3]", "q[a:C]", "h:0", "h:65536"]
GROUPS = ["web", "db", "all", "ungrouped", "k8s", "web servers", "a.b-c", "", "1"]
VARS: dict[str, list[Any]] = {
    "ansible_host": ["10.0.0.1", "a b", "", "::1", "host.example", None, 5],
    "ansible_port": [22, "22", "0", 70000, "abc", None, True, 2222, "²", "٢٢", " 22", "-1", 22.5],
    "ansible_user": ["root", "a b", "", 5, "svcnet"],
    "ansible_ssh_private_key_file": ["~/.ssh/id", "", 5, "/nonexistent/key"],
    "ansible_ssh_common_args": ["-o StrictHostKeyChecking=no", "-o ProxyCommand='nc %h %p'", "-F /dev/null",
                                "'unterminated", "-o", "-J jump", "-o UserKnownHostsFile=/tmp/kh", "-p 2222",
                                "-o Port=abc", "", 5, "-o ConnectTimeout=²"],
    "ansible_ssh_extra_args": ["-v", "-o ServerAliveInterval=5", "\"", "-x -y -z"],
    "ansible_become": ["yes", "no", True, "maybe", 1, 2, "TRUE", None],
    "ansible_become_method": ["sudo", "su", "doas", "", None],
    "ansible_become_user": ["root", "a b", ""],
    "ansible_become_password": ["s3cret", 5, ""],
    "ansible_group_priority": [1, "2", "x", -1, 10**30, "--1", "²", "-", "1_0"],
    "ansible_ssh_port": [22, "x"],
    "free_var": ["anything", [1, 2], {"a": 1}, None],
}


@st.composite
def variables(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(VARS)), max_size=4, unique=True))
    return {name: draw(st.sampled_from(VARS[name])) for name in names}


@st.composite
def group_body(draw: Any, depth: int) -> dict[str, Any] | None:
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        n = draw(st.integers(0, 3))
        body["hosts"] = {draw(st.sampled_from(HOSTS)): draw(st.none() | variables()) for _ in range(n)}
    if draw(st.booleans()):
        body["vars"] = draw(variables())
    if depth < 2 and draw(st.booleans()):
        n = draw(st.integers(0, 2))
        body["children"] = {draw(st.sampled_from(GROUPS)): draw(group_body(depth + 1)) for _ in range(n)}
    return body or None


@st.composite
def yaml_inventory(draw: Any) -> dict[str, Any]:
    return {"all": draw(group_body(0))}


def _ini_value(value: Any) -> str:
    text = str(value)
    return text if " " not in text else f"'{text}'"


def ini_text(inventory: dict[str, Any]) -> str:
    """An INI rendering of a YAML-shaped inventory (as Ansible's ini plugin reads it)."""
    out: list[str] = []

    def group(name: str, body: dict[str, Any] | None) -> None:
        body = body or {}
        hosts, children = body.get("hosts") or {}, body.get("children") or {}
        out.append(f"[{name}]")
        for host, hv in hosts.items():
            out.append(" ".join([host, *(f"{k}={_ini_value(v)}" for k, v in (hv or {}).items())]))
        if body.get("vars"):
            out.append(f"[{name}:vars]")
            out.extend(f"{k}={_ini_value(v)}" for k, v in body["vars"].items())
        if children:
            out.append(f"[{name}:children]")
            out.extend(children)
            for child, child_body in children.items():
                group(child, child_body)

    group("all", inventory.get("all"))
    return "\n".join(out) + "\n"


@st.composite
def inventory_dir(draw: Any) -> dict[str, bytes]:
    """Relative path -> content of one inventory directory's files."""
    how = draw(st.sampled_from(["yaml", "yaml-mutated", "ini", "ini-text", "seed-text"]))
    files: dict[str, bytes] = {}
    if how == "seed-text":
        name = draw(st.sampled_from(["hosts.yaml", "hosts.ini"]))
        files[name] = encode(draw, mutate_text(draw, draw(st.sampled_from(SEED_TEXTS))))
    else:
        inv = draw(yaml_inventory())
        if how == "yaml-mutated":
            inv = mutate_object(draw, inv)
        if how.startswith("ini"):
            text = ini_text(inv)
            files["hosts.ini"] = encode(draw, mutate_text(draw, text) if how == "ini-text" else text)
        else:
            files["hosts.yaml"] = dump([inv], draw).encode()
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from(["group_vars/all.yaml", "group_vars/web.yml", "group_vars/web/x.yaml",
                                      "host_vars/node1.yaml", "host_vars/node01", "group_vars/nosuch.yaml"]))
        body = draw(variables() | st.sampled_from([[1, 2], "text", None]))
        files[where] = yaml.safe_dump(body).encode() if draw(st.integers(0, 4)) else encode(
            draw, mutate_text(draw, yaml.safe_dump(body)))
    return files


def check_inventory(root: Path) -> bool:
    """The property for one inventory; whether it loaded."""
    try:
        inv = load_inventory(root)
    except InventoryError as exc:
        assert exc.messages
        assert_located(exc.messages)
        return False
    for host in inv.hosts:
        inv.host_vars(host)
        cfg = inv.host_config(host)
        assert cfg.name == host and 1 <= cfg.port <= 65535
        inv.groups_of(host)
    index = inv.index()
    for group in inv.groups:
        assert set(inv.group_hosts(group)) <= set(inv.hosts)
    assert inv.select("all") == list(inv.hosts)
    assert set(index.groups) == set(inv.groups)
    return True


def test_inventories_load_or_report_located_errors() -> None:
    counts = {"examples": 0, "loaded": 0}
    before = peak_rss_kib()
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-inv-") as tmp:
        root = Path(tmp)

        @fuzz_settings(300)
        @given(files=inventory_dir())
        def prop(files: dict[str, bytes]) -> None:
            for child in root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            for rel, data in files.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
            counts["examples"] += 1
            counts["loaded"] += check_inventory(root)

        prop()
    assert peak_rss_kib() - before < MEMORY_GROWTH_KIB
    print(f"fuzz: {counts['examples']} inventories, {counts['loaded']} loaded")
    assert counts["loaded"] >= counts["examples"] // 10, counts  # the loaded ones are resolved too
