"""Alias bombs and deep nesting: refused with a located error, never a panic, crash or traceback."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from svcnet.load import load_paths, load_text
from svcnet.model.load import check_paths
from svcnet.yamlbounds import ALIAS_FLOOR, MAX_DEPTH

REPO = Path(__file__).resolve().parents[2]
CLUSTER = (REPO / "examples" / "seed" / "cluster.yaml").read_text()
SVCNET = Path(sys.executable).with_name("svcnet")
LOCATED = re.compile(r"^\S+:\d+:\d+: \S.*: .+")
# The issue's memory limit: within it the unbounded loader aborted with a Rust panic.
MEMORY_LIMIT = 2 * 1024**3


def bomb(refs: int, size: int = 100_000) -> str:
    """The issue's file: one anchored `size`-character string referenced `refs` times."""
    return CLUSTER + (
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bomb\n"
        f"  annotations:\n    big: &big \"{'x' * size}\"\n"
        "spec:\n  ports: [{port: 80}]\n  extra: [" + ", ".join(["*big"] * refs) + "]\n"
    )


def laughs(levels: int = 9) -> str:
    """Billion laughs: each level a list of ten aliases of the level before (10^levels strings)."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def nested_seq(depth: int) -> str:
    """A block sequence nested `depth` deep, one level per line (a mapping holds it)."""
    return "k:\n" + "".join("  " * i + "-\n" for i in range(depth - 2)) + "  " * (depth - 2) + "- x\n"


def test_the_issues_alias_bomb_is_refused_where_the_alias_is() -> None:
    result = load_text("bomb.yaml", bomb(5000))
    (diag,) = result.diagnostics
    # The first alias over the bound: 16 MiB plus 10x the text, 100,064 bytes per alias.
    limit = ALIAS_FLOOR + 10 * len(bomb(5000))
    n = limit // 100_064
    line = len(CLUSTER.splitlines()) + 10
    assert (diag.file, diag.line, diag.path) == ("bomb.yaml", line, f"spec.extra[{n}]")
    assert diag.col == len("  extra: [") + 1 + n * len("*big, ")
    assert "alias bomb" in diag.message and "*big adds 100,064" in diag.message
    assert LOCATED.match(str(diag))


def test_billion_laughs_and_recursive_aliases_are_refused() -> None:
    (diag,) = load_text("lol.yaml", laughs()).diagnostics
    assert "alias bomb" in diag.message and diag.path.startswith("a")
    (diag,) = load_text("loop.yaml", "a: &x\n  b: [1, *x]\n").diagnostics
    assert (diag.line, diag.col, diag.path) == (2, 10, "a.b[1]")
    assert "contains it" in diag.message


def test_ordinary_anchors_still_load() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: &labels {app: web, tier: front}\n"
        "  annotations: *labels\nspec:\n  containers:\n    - &c {name: c, ports: [{containerPort: 80}]}\n    - *c\n"
    )
    (doc,) = load_text("ok.yaml", text).documents
    assert doc.obj["metadata"]["annotations"] == {"app": "web", "tier": "front"}
    assert doc.obj["spec"]["containers"][1]["ports"] == [{"containerPort": 80}]


def test_the_alias_budget_is_shared_by_every_file_of_a_load(tmp_path: Path) -> None:
    # Each file alone stays under the floor; together they are over it.
    per_file = ALIAS_FLOOR // 3
    refs = per_file // 100_064 + 1
    for i in range(4):
        (tmp_path / f"{i}.yaml").write_text(f"a: &a \"{'y' * 100_000}\"\nb: [" + ", ".join(["*a"] * refs) + "]\n")
        assert not load_text(f"{i}.yaml", (tmp_path / f"{i}.yaml").read_text()).diagnostics
    diags = load_paths([tmp_path]).diagnostics
    assert [Path(d.file).name for d in diags] == ["3.yaml"]
    assert "alias bomb" in diags[0].message


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize(
    "make",
    [nested_seq, lambda d: "[" * d + "]" * d, lambda d: "- " * d + "x\n"],
    ids=["indented", "flow", "compact"],
)
def test_nesting_is_bounded_exactly(make, depth: int) -> None:
    result = load_text("deep.yaml", make(depth))
    if depth <= MAX_DEPTH:
        assert not result.diagnostics and result.documents
    else:
        (diag,) = result.diagnostics
        assert f"deeper than {MAX_DEPTH} levels" in diag.message and LOCATED.match(str(diag))


def _depth(obj: object) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


@st.composite
def _nested(draw: st.DrawFn) -> object:
    """Chains of mappings and sequences about MAX_DEPTH deep, with siblings here and there."""
    node: object = draw(st.sampled_from(["x", 1, None, [], {}]))
    levels = draw(st.sampled_from([MAX_DEPTH + 1, MAX_DEPTH, MAX_DEPTH - 1, MAX_DEPTH + 2, MAX_DEPTH - 5]))
    # Alternating mappings and indentless sequences is the tightest layout: a column per level.
    kinds = ["map", "seq"] * levels if draw(st.booleans()) else draw(st.lists(st.sampled_from(["map", "seq"]),
                                                                            min_size=levels, max_size=levels))
    for kind in kinds[:levels]:
        sibling = draw(st.sampled_from([None, "s", ["a", "b"], {"k": "v"}]))
        if kind == "map":
            node = {"k": node} if sibling is None else {"k": node, "sib": sibling}
        else:
            node = [node] if sibling is None else [sibling, node]
    return node


@settings(max_examples=100, deadline=timedelta(seconds=5), database=None)
@given(obj=_nested(), indent=st.integers(2, 9), flow=st.sampled_from([False, True, None]), cr=st.booleans())
def test_the_cheap_depth_precheck_never_lets_a_deep_document_through(obj: object, indent: int, flow: bool | None,
                                                                    cr: bool) -> None:
    # Exactly the documents deeper than MAX_DEPTH are refused, however they are laid out (block,
    # flow, compact `- - x`, indentless sequences, indents of 2 to 9, \r line breaks): so the
    # regular-expression pre-check that lets ordinary documents skip the scan never misses one.
    text = yaml.safe_dump(obj, indent=indent, default_flow_style=flow, width=10**6)
    if cr:
        text = text.replace("\n", "\r")
    result = load_text("deep.yaml", text)
    assert bool(result.diagnostics) == (_depth(obj) > MAX_DEPTH), (result.diagnostics, _depth(obj))


def test_nesting_after_carriage_returns_is_seen() -> None:
    # yaml-rs breaks lines at a lone \r too: the cheap pre-check must see those lines' indentation.
    text = nested_seq(MAX_DEPTH + 1).replace("\n", "\r")
    (diag,) = load_text("cr.yaml", text).diagnostics
    assert f"deeper than {MAX_DEPTH} levels" in diag.message


@pytest.mark.parametrize(
    ("field", "line", "col", "path"),
    [("port: NUM", 5, 18, "spec.ports[0].port"), ("x: [1, NUM]", 6, 10, "spec.x[1]"), ("? NUM\n  : 1", 5, 3, "spec")],
)
def test_integers_too_long_to_print_are_located_errors(tmp_path: Path, field: str, line: int, col: int,
                                                       path: str) -> None:
    # Found by tests/fuzz: yaml-rs builds a 5,000-digit integer; Python refuses to print one
    # (sys.get_int_max_str_digits), so the schema's message raised ValueError (a traceback).
    num = "9" * 5000
    ports = field.replace("NUM", num) if field.startswith("port") else "port: 80"
    extra = "" if field.startswith("port") else "  " + field.replace("NUM", num) + "\n"
    (tmp_path / "svc.yaml").write_text(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: a}}\nspec:\n  ports: [{{{ports}}}]\n{extra}"
    )
    checked = check_paths([tmp_path / "svc.yaml", REPO / "tests" / "validate" / "good" / "base-cluster.yaml"])
    (diag,) = [d for d in checked.diagnostics if d.severity == "error"]
    assert (diag.line, diag.col, diag.path) == (line, col, path)
    assert "more than 4300 digits" in diag.message


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _cli(*args: str, tmp: Path) -> tuple[int, str, int]:
    """Run the svcnet CLI under the issue's memory limit: (exit code, stderr, its peak RSS in KiB)."""
    with (tmp / "err").open("w+") as err:
        proc = subprocess.Popen(
            [str(SVCNET), *args], stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_limit_memory, cwd=tmp,
            env={**os.environ, "RUST_BACKTRACE": "0"},
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            proc.returncode = 0  # reaped by wait4: keep Popen from waiting again
        err.seek(0)
        return os.waitstatus_to_exitcode(status), err.read(), usage.ru_maxrss


@pytest.mark.slow
def test_cli_refuses_bombs_and_deep_nesting_without_a_crash(tmp_path: Path) -> None:
    refs = ", ".join(["*big"] * 50_000)
    big = f"&big \"{'x' * 100_000}\""
    (tmp_path / "bomb.yaml").write_text(bomb(50_000))
    # yaml-rs recursed without a limit and overflowed its stack (SIGSEGV) at about 20,000 levels.
    (tmp_path / "deep.yaml").write_text(CLUSTER + "---\n" + "- " * 50_000 + "x\n")
    (tmp_path / "book.yaml").write_text(f"- hosts: all\n  cluster: c.yaml\n  vars: {{a: {big}, b: [{refs}]}}\n")
    (tmp_path / "inv.yaml").write_text(f"all:\n  hosts: {{h1: }}\n  vars: {{a: {big}, b: [{refs}]}}\n")
    (tmp_path / "ok-book.yaml").write_text("- hosts: all\n  cluster: bomb.yaml\n  tasks: [validate: ]\n")
    runs = {
        "bomb.yaml": ("validate", "bomb.yaml"),
        "deep.yaml": ("validate", "deep.yaml"),
        "book.yaml": ("playbook", "book.yaml", "-i", "inv.yaml"),
        "inv.yaml": ("playbook", "ok-book.yaml", "-i", "inv.yaml"),
    }
    for name, args in runs.items():
        code, stderr, peak_kib = _cli(*args, tmp=tmp_path)
        assert code == 1, (name, code, stderr[-2000:])
        assert "Traceback" not in stderr and "panicked" not in stderr
        assert any(LOCATED.match(line) and name in line for line in stderr.splitlines()), stderr
        assert peak_kib < 400 * 1024, peak_kib  # the 5,000-reference bomb alone took 536 MB
