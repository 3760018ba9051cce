"""Read a cluster description: files and directories of multi-document YAML.

Documents are parsed one at a time by yaml-rs (Rust; about 7x faster than libyaml through
PyYAML), falling back to PyYAML's C loader. PyYAML also gives located messages for
malformed YAML, and the position of a field is looked up only when a diagnostic needs it
(`Document.locate`), by composing that one document's node tree. Large descriptions load
fast, and errors still carry file, line and column.

Before a document is parsed, `yamlbounds.check` refuses alias bombs and deep nesting (one
`AliasBudget` per load); whatever the parsers raise becomes a located diagnostic, so no
input makes a loader crash or print a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from svcnet import yamlbounds
from svcnet.diagnostics import Diagnostic, PathT, format_path

try:  # pragma: no cover - depends on how PyYAML was built
    from yaml import CSafeLoader as FastLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as FastLoader  # type: ignore[assignment]

try:
    import yaml_rs
except ImportError:  # pragma: no cover - yaml-rs is a dependency; PyYAML still works
    yaml_rs = None  # type: ignore[assignment]

YAML_SUFFIXES = (".yaml", ".yml")
# A document marker at column 0 ends any scalar, so splitting on it is safe.
DOC_MARKER = re.compile(r"^(---|\.\.\.)(?=\s|$)", re.MULTILINE)
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class Document:
    """One YAML document of a description file."""

    file: str
    index: int  # 0-based position in the file
    line: int  # 1-based line where the document's text starts
    text: str
    obj: Any
    _nodes: yaml.Node | None = field(default=None, repr=False)

    def locate(self, path: PathT) -> tuple[int, int]:
        """1-based (line, col) of the value at `path`, or of its closest existing parent."""
        if self._nodes is None:
            try:
                self._nodes = yaml.compose(self.text, Loader=yaml.SafeLoader)
            except (yaml.YAMLError, RecursionError, MemoryError):
                return (self.line, 1)
        node = self._nodes
        if node is None:
            return (self.line, 1)
        for part in path:
            nxt = _child(node, part)
            if nxt is None:
                break
            node = nxt
        return (self.line + node.start_mark.line, node.start_mark.column + 1)

    def diag(self, path: PathT, message: str, severity: str = "error") -> Diagnostic:
        line, col = self.locate(path)
        return Diagnostic(self.file, line, col, format_path(path), message, severity)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


@dataclass
class LoadResult:
    documents: list[Document]
    diagnostics: list[Diagnostic]


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Files as given; a directory means its `*.yaml`/`*.yml`, sorted (as `kubectl -f`)."""
    files: list[Path] = []
    diags: list[Diagnostic] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.suffix in YAML_SUFFIXES and c.is_file())
            if not found:
                diags.append(Diagnostic(str(p), 1, 1, "(file)", "directory holds no *.yaml or *.yml file"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            diags.append(Diagnostic(str(p), 1, 1, "(file)", "no such file or directory"))
    return files, diags


def _split_documents(text: str) -> list[tuple[int, str, bool]]:
    """Split YAML text into (start line, text, follows `...`) chunks at `---`/`...` markers.

    What follows a `...` end marker up to the next `---` is no document here: YAML 1.2 (yaml-rs)
    would read it as another one and PyYAML refuses it, so `load_text` says so instead of guessing.
    """
    chunks: list[tuple[int, str, bool]] = []
    starts = [0] + [m.start() for m in DOC_MARKER.finditer(text)]
    bounds = [*starts, len(text)]
    line = 1
    for begin, end in pairwise(bounds):
        chunk = text[begin:end]
        start, line = line, line + chunk.count("\n")
        ended = chunk.startswith("...")
        if ended or chunk.startswith("---"):
            chunk = chunk[3:]  # the rest of the marker line stays, so line numbers stay exact
        chunks.append((start, chunk, ended))
    return chunks


class _Loader(FastLoader):
    """PyYAML's safe loader, with a located error for a tagged value its constructors cannot read.

    They raise without a position, and not always a YAMLError: `!!timestamp x` raises
    AttributeError, `!!bool x` KeyError, `!!int x` ValueError.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError, MemoryError):
            raise
        except Exception:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            problem = f"{shown} is not a valid {tag}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _filler(line: str) -> bool:
    """A line that holds no content: blank, a comment or a directive."""
    return not line.strip() or line.lstrip().startswith("#") or line.startswith("%")


def _after_end_marker(name: str, line: int, chunk: str) -> Diagnostic:
    """Content after a `...` end marker, located at its first character."""
    lines = chunk.splitlines()
    at = next(i for i, ln in enumerate(lines) if not _filler(ln))
    col = len(lines[at]) - len(lines[at].lstrip()) + (4 if at == 0 else 1)  # on the marker's line: after `...`
    return Diagnostic(name, line + at, col, "(yaml)",
                      "invalid YAML: content after the document end marker '...' (start another document with '---')")


def _parse(chunk: str, budget: yamlbounds.AliasBudget) -> object:
    """One document's data; malformed YAML raises PyYAML's located error, a bound `BoundError`."""
    yamlbounds.check(chunk, budget)
    if yaml_rs is not None:
        try:
            return yaml_rs.loads(chunk)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a Rust panic is a BaseException (pyo3's PanicException): caught too
            # yaml-rs errors carry no usable position: re-parse with PyYAML for a located one.
            yaml.load(chunk, Loader=_Loader)
            raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return yaml.load(chunk, Loader=_Loader)


def _error_diag(name: str, line: int, chunk: str, exc: Exception) -> Diagnostic:
    """A parse failure of the document `chunk` (starting at `line`) as one located line."""
    if isinstance(exc, yamlbounds.BoundError):
        return Diagnostic(name, line + exc.line, exc.col + 1, format_path(exc.path), exc.message)
    ln, col = line, 1
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        ln, col = line + (mark.line if mark else 0), (mark.column + 1) if mark else 1
        msg = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML forbids, at a bare offset
        if FastLoader is yaml.SafeLoader:
            before = chunk[: exc.position]
        else:  # libyaml counts UTF-8 bytes
            before = chunk.encode("utf-8", "surrogatepass")[: exc.position].decode("utf-8", "replace")
        ln, col = line + before.count("\n"), len(before) - before.rfind("\n")
        msg = f"character {exc.character:#06x} is not allowed ({exc.reason})"
    else:
        msg = str(exc) or type(exc).__name__
    return Diagnostic(name, ln, col, "(yaml)", "invalid YAML: " + " ".join(msg.split()))


def load_text(name: str, text: str, budget: yamlbounds.AliasBudget | None = None) -> LoadResult:
    """Parse one file's text into documents; YAML errors become diagnostics.

    `budget` bounds alias expansion across every file of one load (a fresh one by default).
    """
    budget = budget or yamlbounds.AliasBudget()
    budget.add_text(len(text))
    docs: list[Document] = []
    diags: list[Diagnostic] = []
    index = 0
    for line, chunk, after_end in _split_documents(text):
        if all(_filler(ln) for ln in chunk.splitlines()):
            continue
        if after_end:
            diags.append(_after_end_marker(name, line, chunk))
            index += 1
            continue
        try:
            obj = _parse(chunk, budget)
        except (yamlbounds.BoundError, yaml.YAMLError, RecursionError, MemoryError, ValueError) as exc:
            diags.append(_error_diag(name, line, chunk, exc))
            index += 1
            continue
        if obj is None:
            continue
        doc = Document(name, index, line, chunk, obj)
        index += 1
        huge = yamlbounds.huge_number(chunk, obj)
        if huge is not None:
            limit = sys.get_int_max_str_digits()
            diags.append(doc.diag(huge, f"a number of more than {limit} digits (write it as a string if it is one)"))
            continue
        docs.append(doc)
    if not docs and not diags:
        diags.append(Diagnostic(name, 1, 1, "(file)", "file holds no YAML document"))
    return LoadResult(docs, diags)


def read_text(path: Path) -> tuple[str | None, Diagnostic | None]:
    """Read a file as UTF-8 text; binary or unreadable files give a diagnostic."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, Diagnostic(name, 1, 1, "(file)", f"cannot read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return None, Diagnostic(name, 1, 1, "(file)", f"file is larger than {MAX_FILE_BYTES} bytes")
    if b"\0" in data:
        return None, Diagnostic(name, 1, 1, "(file)", "binary data (NUL byte): not a YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, Diagnostic(name, line, 1, "(file)", "not UTF-8 text: not a YAML file")
    return text.removeprefix("\ufeff"), None


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Load every document from the given files and directories."""
    files, diags = expand_paths(paths)
    docs: list[Document] = []
    budget = yamlbounds.AliasBudget()
    for path in files:
        text, err = read_text(path)
        if err:
            diags.append(err)
            continue
        assert text is not None
        result = load_text(str(path), text, budget)
        docs.extend(result.documents)
        diags.extend(result.diagnostics)
    return LoadResult(docs, diags)
