"""A description as it was at a git revision, read with git's plumbing into a temporary directory.

Only the files `svcnet validate` would read are copied: a file path as given, a directory's
`*.yaml`/`*.yml` (not its subdirectories, as `kubectl -f`). git runs from an argument list, never a
shell; the revision must look like one (no leading `-`, no spaces, no `rev:path`) and is passed
after `--end-of-options`, so no value can become an option of git.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from svcnet.diagnostics import Diagnostic
from svcnet.load import YAML_SUFFIXES

# Names, `~N`, `^N`, `@{…}` and hashes; what git accepts beyond that is not needed to name a commit.
_REVISION = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@{}~^/+-]*")
_MAX_REVISION = 256
_BLOB_MODES = ("100644", "100755")
_TREE_MODE = "040000"
_LINK_MODE = "120000"
GIT_TIMEOUT = 120  # seconds; plumbing on a local repository


class RevisionError(Exception):
    """The revision or the paths cannot be read from git (a usage error)."""


def check_revision(rev: str) -> str:
    """`rev` if it can only name a commit, else RevisionError (options such as `--output=…` included)."""
    if not rev or len(rev) > _MAX_REVISION or not _REVISION.fullmatch(rev) or ".." in rev:
        raise RevisionError(f"{rev!r} is not a git revision svcnet diff reads (such as HEAD~1, main, a commit hash)")
    return rev


def _git(top: Path | None, *args: str, stdin: bytes | None = None) -> bytes:
    cmd = ["git", "--no-pager", "--no-optional-locks", "--literal-pathspecs"]
    if top is not None:
        cmd += ["-C", str(top)]
    try:
        done = subprocess.run([*cmd, *args], input=stdin, capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise RevisionError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise RevisionError(f"git {args[0]} did not finish within {GIT_TIMEOUT} s") from None
    if done.returncode:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RevisionError(f"git {args[0]}: {why[-1] if why else f'exit status {done.returncode}'}")
    return done.stdout


def _existing_dir(path: Path) -> Path:
    """The path if it is a directory, else its closest existing parent (it may be gone from the work tree)."""
    p = path.absolute()
    while not p.is_dir():
        p = p.parent
    return p


@dataclass(frozen=True)
class Snapshot:
    """The description's paths at a revision, as files under `root` (removed on exit)."""

    rev: str
    commit: str
    root: Path
    paths: tuple[Path, ...]
    problems: tuple[Diagnostic, ...]  # entries git holds that are not plain files

    def located(self, d: Diagnostic) -> Diagnostic:
        """A diagnostic about a copied file, named as git names it: `REV:path/in/repo`."""
        prefix = str(self.root) + os.sep
        return replace(d, file=self._name(d.file, prefix), message=d.message.replace(prefix, f"{self.rev}:"))

    def _name(self, file: str, prefix: str) -> str:
        return f"{self.rev}:{file[len(prefix):]}" if file.startswith(prefix) else file


@contextmanager
def snapshot(rev: str, paths: Sequence[str]) -> Iterator[Snapshot]:
    """Copy what `svcnet validate PATHS` would read, as it was at `rev`, into a temporary directory."""
    check_revision(rev)
    first = _existing_dir(Path(paths[0]))
    top = Path(_git(first, "rev-parse", "--show-toplevel").decode().strip())
    try:
        commit = _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}").decode().strip()
    except RevisionError:
        raise RevisionError(f"{rev!r}: no such commit in the git repository at {top}") from None
    root = Path(tempfile.mkdtemp(prefix="svcnet-diff-"))
    try:
        rels = [_relative(top, p) for p in paths]
        problems: list[Diagnostic] = []
        for rel in rels:
            problems += _copy(top, commit, rel, root, rev)
        yield Snapshot(rev, commit, root, tuple(root / rel for rel in rels), tuple(problems))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _relative(top: Path, path: str) -> str:
    """`path` relative to the repository's top, refusing one outside it."""
    real = Path(os.path.realpath(path))
    try:
        rel = real.relative_to(top.resolve())
    except ValueError:
        raise RevisionError(f"{path}: outside the git repository at {top}") from None
    return rel.as_posix() or "."


def _entries(top: Path, commit: str, rel: str, children: bool) -> list[tuple[str, str, str]]:
    """(mode, object, path) of the tree entry `rel`, or of its children."""
    spec = [] if rel == "." and children else [rel + "/" if children else rel]
    raw = _git(top, "ls-tree", "-z", "--full-tree", commit, "--", *spec)
    out = []
    for item in raw.split(b"\0"):
        if not item:
            continue
        meta, _, name = item.partition(b"\t")
        mode, _kind, obj = meta.decode().split(" ")
        out.append((mode, obj, os.fsdecode(name)))
    return out


def _copy(top: Path, commit: str, rel: str, root: Path, rev: str) -> list[Diagnostic]:
    """Write what `rel` names at `commit` under `root`; entries that are not plain files are reported."""
    if rel == ".":
        mode = _TREE_MODE
    else:
        own = _entries(top, commit, rel, children=False)
        if not own:
            return []  # not there at this revision: the loader says "no such file or directory"
        mode = own[0][0]
    if mode == _TREE_MODE:
        entries = [e for e in _entries(top, commit, rel, children=True) if Path(e[2]).suffix in YAML_SUFFIXES]
        (root if rel == "." else _inside(root, rel)).mkdir(parents=True, exist_ok=True)
    else:
        entries = own
    problems = []
    blobs = []
    for mode, obj, name in entries:
        if mode in _BLOB_MODES:
            blobs.append((obj, name))
        elif mode != _TREE_MODE:  # a subdirectory is skipped, as the loader skips it
            what = "a symbolic link" if mode == _LINK_MODE else f"a git entry of mode {mode}"
            problems.append(Diagnostic(f"{rev}:{name}", 1, 1, "(file)",
                                       f"{what}: svcnet diff reads only regular files from git"))
    for (_obj, name), data in zip(blobs, _read_blobs(top, [obj for obj, _ in blobs]), strict=True):
        dest = _inside(root, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return problems


def _inside(root: Path, name: str) -> Path:
    """root/name, refusing a name git should never hold (`..`, absolute) that would leave root."""
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RevisionError(f"git holds a path svcnet will not write: {name!r}")
    return root.joinpath(*parts)


def _read_blobs(top: Path, objects: list[str]) -> list[bytes]:
    """The contents of blobs, all from one `git cat-file --batch`."""
    if not objects:
        return []
    raw = _git(top, "cat-file", "--batch", stdin="".join(o + "\n" for o in objects).encode())
    out = []
    pos = 0
    for obj in objects:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].decode().split(" ")
        if len(header) != 3 or header[0] != obj or header[1] != "blob":
            raise RevisionError(f"git cat-file: unexpected answer for {obj}")
        size = int(header[2])
        out.append(raw[end + 1:end + 1 + size])
        pos = end + 1 + size + 1
    return out
