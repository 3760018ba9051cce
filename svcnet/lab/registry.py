"""Host-wide lab bookkeeping: one lock for parallel labs, and the host mountpoints labs created.

Both live in the default lab root even for labs kept under another root (tests), because the
mountpoints are shared by every lab on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from svcnet.lab.errors import LabError
from svcnet.lab.layout import LAB_ROOT, LOCK_FILE, MOUNTPOINTS_FILE, NODE_PRIVATE_DIRS
from svcnet.lab.state import lab_names


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the host-wide lab lock (serialises lab registration and removal across processes)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    LAB_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(LAB_ROOT / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_mountpoints() -> None:
    """Create missing host directories that node-private mounts need; remember which (lock held)."""
    created = _read_created()
    for mountpoint in NODE_PRIVATE_DIRS:
        path = Path(mountpoint)
        if path.is_dir():
            continue
        if path.exists() or path.is_symlink():
            raise LabError(f"{path} exists and is not a directory; the lab needs it as a mountpoint")
        path.mkdir(mode=0o755)
        created.append(mountpoint)
    _write_created(created)


def release_mountpoints(root: Path) -> None:
    """If no lab is left (here or under root), remove the empty mountpoints labs created (lock held).

    Never while a lab exists: removing a directory that is a mountpoint in another mount
    namespace detaches that mount there.
    """
    if lab_names(LAB_ROOT) or lab_names(root):
        return
    for mountpoint in _read_created():
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)
    with contextlib.suppress(FileNotFoundError):
        (LAB_ROOT / MOUNTPOINTS_FILE).unlink()


def _read_created() -> list[str]:
    try:
        return list(json.loads((LAB_ROOT / MOUNTPOINTS_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return []


def _write_created(created: list[str]) -> None:
    if created:
        (LAB_ROOT / MOUNTPOINTS_FILE).write_text(json.dumps(sorted(set(created))))
