"""The tree shows the flow: no module imports a later stage, and there are no import cycles.

Every `import svcnet...` counts, also one inside a function: a lazy import is still a
dependency, and hiding a backwards one in a function body is how the flow stopped being one-way
before.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import svcnet

PACKAGE = Path(svcnet.__file__).resolve().parent

# The stages in the order data flows (README "The pipeline"): a module may import its own stage
# or an earlier one. Shared utilities come first; cli and lab sit on top of everything.
STAGES: tuple[tuple[str, ...], ...] = (
    ("svcnet.diagnostics", "svcnet.yamlbounds", "svcnet.resources"),
    ("svcnet.load",),
    ("svcnet.validate_schema",),
    ("svcnet.model",),
    ("svcnet.desired",),
    ("svcnet.render",),
    ("svcnet.transport",),
    ("svcnet.playbook",),
    ("svcnet.apply",),
    ("svcnet.verify",),
    ("svcnet.inspect", "svcnet.explain"),
    ("svcnet.lab",),
    ("svcnet.cli",),
)
# What ships to nodes: stdlib only (it is sent as text and run isolated), so it imports nothing of
# svcnet's, and any stage may read its constants (the one vocabulary of ops and parts).
SHIPPED = "svcnet.agent"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, package: str, modules: frozenset[str] = frozenset()) -> set[str]:
    """The svcnet modules a file of `package` imports, anywhere in the file.

    `from pkg import name` depends on `pkg.name` when that is one of `modules`, else on `pkg`
    (a name defined in the package's __init__).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m == "svcnet" or m.startswith("svcnet.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    names = frozenset(modules)
    return {name: {m for m in imports_of(path.read_text(), package_of(path), names) if m in names and m != name}
            for name, path in modules.items()}


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def stage_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the longest matching prefix, stage)
    for i, prefixes in enumerate(STAGES):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]


def test_every_module_has_a_stage() -> None:
    lost = [m for m in graph() if m != "svcnet" and not m.startswith(SHIPPED) and stage_of(m) is None]
    assert lost == [], f"modules in no stage (add them to STAGES and the README's table): {lost}"


def test_no_module_imports_a_later_stage() -> None:
    backwards = []
    for mod, deps in sorted(graph().items()):
        if mod.startswith(SHIPPED):
            continue
        for dep in sorted(deps):
            if mod == "svcnet" or dep.startswith(SHIPPED) or dep == "svcnet":
                continue
            s_mod, s_dep = stage_of(mod), stage_of(dep)
            assert s_mod is not None and s_dep is not None
            if s_dep > s_mod:
                backwards.append(f"{mod} imports {dep}")
    assert backwards == []


def test_shipped_code_imports_nothing_of_svcnet() -> None:
    leaks = {m: sorted(d) for m, d in graph().items() if m.startswith(SHIPPED) and d - {"svcnet", SHIPPED}}
    assert leaks == {}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles() -> None:
    # `from svcnet.lab import procs` is an edge to lab.procs, not to lab/__init__ (which imports
    # the package's modules to re-export them): that pattern is not a cycle Python trips on.
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_lazy_and_relative_imports_are_seen() -> None:
    source = (
        "import os\n"
        "from . import chains\n"
        "from ..model.types import Cluster\n"
        "def f():\n"
        "    from svcnet.transport import ssh\n"
        "    import svcnet.verify.task\n"
    )
    modules = frozenset({"svcnet.render.chains", "svcnet.transport.ssh", "svcnet.model.types"})
    assert imports_of(source, "svcnet.render", modules) == {
        "svcnet.render.chains", "svcnet.model.types", "svcnet.transport.ssh", "svcnet.verify.task",
    }


def test_stages_rank_the_flow() -> None:
    assert stage_of("svcnet.render.iptables") < stage_of("svcnet.transport.ssh")  # type: ignore[operator]
    assert stage_of("svcnet.model.types") == stage_of("svcnet.model")
    assert stage_of("svcnet.modelx") is None  # a prefix is a package, not a string
