"""The files svcnet ships inside the package: the JSON Schemas, the playbooks, the example descriptions.

They are package data (`svcnet/data/`), read through `importlib.resources`, so an installed wheel
finds them from any directory. The repository's top-level `schemas/`, `playbooks/` and `examples/`
are copies for users to read and copy; tests/packaging/test_package_data.py keeps them identical.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGE = "svcnet"
DATA = "data"
SCHEMAS = "schemas"
PLAYBOOKS = "playbooks"
EXAMPLES = "examples"


def shipped(*parts: str) -> Traversable:
    """A shipped file or directory, e.g. `shipped("schemas", "defs.schema.json")`."""
    return files(PACKAGE).joinpath(DATA, *parts)


def schemas() -> Traversable:
    """The directory of the JSON Schemas (`*.schema.json`)."""
    return shipped(SCHEMAS)


def shipped_path(*parts: str) -> Path:
    """A shipped file or directory as a file-system path.

    Descriptions and playbooks are read by path (a playbook names its cluster relative to its own
    directory), so they must be real files: svcnet is installed unpacked (it also ships its node
    agent as the text of its own source file), never run from a zip.
    """
    found = shipped(*parts)
    if not isinstance(found, Path):
        raise RuntimeError(f"svcnet's package data is not on the file system ({found}): install svcnet unpacked")
    return found


def playbook(name: str) -> Path | None:
    """The shipped playbook `name` (`site.yaml`), or None if svcnet ships none by that name."""
    if not name or Path(name).name != name:  # a bare file name: nothing outside the shipped directory
        return None
    path = shipped_path(PLAYBOOKS, name)
    return path if path.is_file() else None


def example(name: str) -> Path:
    """The directory of the bundled example description `name` (`seed`)."""
    return shipped_path(EXAMPLES, name)
