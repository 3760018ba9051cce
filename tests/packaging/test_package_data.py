"""The repository's top-level `schemas/`, `playbooks/` and `examples/` are exact copies of the
package data svcnet ships (`svcnet/data/`), so what users read and copy is what svcnet uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet import resources
from svcnet.validate_schema import Schemas

REPO = Path(__file__).resolve().parents[2]
COPIED = (resources.SCHEMAS, resources.PLAYBOOKS, resources.EXAMPLES)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("name", COPIED)
def test_the_top_level_copy_is_identical_to_the_package_data(name: str) -> None:
    shipped, copy = tree(resources.shipped_path(name)), tree(REPO / name)
    assert shipped, f"svcnet ships no {name}"
    assert sorted(shipped) == sorted(copy), f"{name}/ and svcnet/data/{name}/ hold different files"
    differ = [f for f in shipped if shipped[f] != copy[f]]
    assert not differ, f"edit both copies: {name}/ and svcnet/data/{name}/ differ in {differ}"


def test_nothing_in_the_package_reaches_outside_it() -> None:
    assert not any(p.is_symlink() for p in (REPO / "svcnet").rglob("*")), "package data must be real files"
    assert resources.shipped_path().resolve().is_relative_to((REPO / "svcnet").resolve())


def test_the_shipped_schemas_are_the_default() -> None:
    assert set(Schemas.load().keys) == {p.name.removesuffix(".schema.json")
                                        for p in (REPO / "schemas").glob("*.schema.json")} - {"defs"}


def test_shipped_playbooks_are_found_by_bare_name_only() -> None:
    assert resources.playbook("site.yaml") == resources.shipped_path(resources.PLAYBOOKS, "site.yaml")
    assert resources.playbook("nope.yaml") is None
    for sneaky in ("../examples/seed/cluster.yaml", "sub/site.yaml", "", ".", ".."):
        assert resources.playbook(sneaky) is None, sneaky
